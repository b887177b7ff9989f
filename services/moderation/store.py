"""The review store: filings (user reports, detector escalations, evader
suspicions) with their evidence, the review queue with claims, decisions
with their outbox column, reporter reputation, the audit log, and the
evidence vault (content-addressed blobs and the hash-chained custody log),
in SQLite or PostgreSQL through one SQLAlchemy Core code path. Every change
writes its audit row (and, where evidence is concerned, its custody entry)
in the same transaction.

Each writing transaction starts with its write (an INSERT or a guarded
UPDATE), not a read: on PostgreSQL the row lock or the unique key settles
races between replicas, and on SQLite the write lock is taken before any
snapshot, so concurrent writers wait instead of failing with a stale one.
Custody entries are appended under the lock of the one `custody_head` row,
always after the transaction's review-item lock, so appends from several
replicas form one chain and never deadlock.

The schema itself is in `migrations/`; the tables below must match the
newest migration.
"""
from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from parley.v1 import common_pb2, events_pb2, moderation_pb2
from services.moderation import custody, review
from services.moderation.enums import enum_name
from services.moderation.records import EvidenceLine, Identity
from services.moderation.retention import Retention, purgeable

__all__ = ["Identity", "EvidenceLine"]  # re-exported: older callers import them from here

Clock = Callable[[], int]

OPEN = "open"
DECIDED = "decided"
# Not a stored status: an open item with a live claim.
CLAIMED = "claimed"

# What a store call raises when the database is down or refuses: callers
# turn these into "try again", never into a crash.
STORE_ERRORS = (DBAPIError, OSError)

FILING_MEDIA_TYPE = "application/vnd.parley.filing+json"
SNAPSHOT_MEDIA_TYPE = "image/jpeg"
MAX_BLOB_BYTES = 16 * 1024 * 1024
# How often add_* starts over when a concurrent intake opened the item it
# was about to open (the merge key's unique index).
INTAKE_ATTEMPTS = 4


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    return uuid.uuid4().hex


# ---------------------------------------------------------------- schema

# Constraint names spelled out, so that migrations can name them too.
metadata = sa.MetaData(naming_convention={
    "pk": "pk_%(table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(table_name)s_%(column_0_name)s",
})


def _identity_columns(who: str) -> list[sa.Column]:
    return [sa.Column(f"{who}_device_token", sa.Text, nullable=False),
            sa.Column(f"{who}_ip_hash", sa.Text, nullable=False),
            sa.Column(f"{who}_ip_prefix_hash", sa.Text, nullable=False)]


# One row per filing: a user's report ("<report id>"), a detector's
# escalation ("auto:<id>") or an evader suspicion ("suspicion:<id>").
reports = sa.Table(
    "reports", metadata,
    sa.Column("report_id", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    sa.Column("category", sa.Integer, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),  # emptied by the retention purge
    *_identity_columns("reporter"),
    *_identity_columns("reported"),
    sa.Column("match_id", sa.Text, nullable=False),
    sa.Column("mode", sa.Integer, nullable=False),
    sa.Column("age_band", sa.Integer, nullable=False),
    sa.Column("reported_at_ms", sa.BigInteger, nullable=False),
    # The review item it was filed into (several reports may merge into one).
    sa.Column("item_id", sa.String(32), nullable=True),
    sa.Column("source", sa.Text, nullable=False, server_default="user"),
    sa.Column("risk_score", sa.Float, nullable=False, server_default="0"),
    sa.Column("reporter_weight", sa.Float, nullable=False, server_default="0"),
    sa.Index("ix_reports_reported_device_token", "reported_device_token"),
    sa.Index("ix_reports_item_id", "item_id"),
)

evidence_lines = sa.Table(
    "evidence_lines", metadata,
    sa.Column("report_id", sa.Text, sa.ForeignKey("reports.report_id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("from_reporter", sa.Boolean, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("sent_at_ms", sa.BigInteger, nullable=False),
)

snapshot_hashes = sa.Table(
    "snapshot_hashes", metadata,
    sa.Column("report_id", sa.Text, sa.ForeignKey("reports.report_id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),  # keeps the order the gateway sent
    sa.Column("hash", sa.Text, nullable=False),
)

review_items = sa.Table(
    "review_items", metadata,
    sa.Column("item_id", sa.String(32), primary_key=True),
    # The first filing of the item.
    sa.Column("report_id", sa.Text, sa.ForeignKey("reports.report_id"), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("category", sa.Integer, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("claimed_by", sa.Text, nullable=True),
    # No foreign key: decisions point back here, and the status update and
    # the decision insert happen in one transaction anyway.
    sa.Column("decision_id", sa.String(32), nullable=True),
    sa.Column("kind", sa.String(24), nullable=False, server_default="report"),
    # Who the item is about: the subject of its decision.
    sa.Column("subject_device_token", sa.Text, nullable=False, server_default=""),
    sa.Column("subject_ip_hash", sa.Text, nullable=False, server_default=""),
    sa.Column("subject_ip_prefix_hash", sa.Text, nullable=False, server_default=""),
    sa.Column("match_id", sa.Text, nullable=False, server_default=""),
    # review.merge_key; unique among open items (the partial index below).
    sa.Column("merge_key", sa.Text, nullable=True),
    sa.Column("risk_score", sa.Float, nullable=False, server_default="0"),
    sa.Column("reporter_weight", sa.Float, nullable=False, server_default="0"),
    sa.Column("report_count", sa.Integer, nullable=False, server_default="1"),
    sa.Column("evidence_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("priority_floor", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claim_expires_at_ms", sa.BigInteger, nullable=True),
    sa.Column("child_safety", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("escalated_at_ms", sa.BigInteger, nullable=True),
    # NULL while open: an open case is never purged.
    sa.Column("retain_until_ms", sa.BigInteger, nullable=True),
    sa.Column("legal_hold", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("purged_at_ms", sa.BigInteger, nullable=True),
    sa.Column("linked_ban_id", sa.Text, nullable=False, server_default=""),
    sa.Column("linked_subject", sa.Text, nullable=False, server_default=""),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False, server_default="0"),
)
# The queue order of list_items, per status.
sa.Index("ix_review_items_queue", review_items.c.status, review_items.c.priority.desc(),
         review_items.c.created_at_ms)
# One open item per merge key: concurrent intakes of one conversation merge.
sa.Index("uq_review_items_open_merge_key", review_items.c.merge_key, unique=True,
         sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))
sa.Index("ix_review_items_retain_until_ms", review_items.c.retain_until_ms)

decisions = sa.Table(
    "decisions", metadata,
    sa.Column("decision_id", sa.String(32), primary_key=True),
    # unique: one decision per item, whatever races
    sa.Column("item_id", sa.String(32), sa.ForeignKey("review_items.item_id"), nullable=False, unique=True),
    sa.Column("action", sa.Integer, nullable=False),
    sa.Column("category", sa.Integer, nullable=False),
    sa.Column("duration_s", sa.BigInteger, nullable=False),
    sa.Column("moderator", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("decided_at_ms", sa.BigInteger, nullable=False),
    # The outbox: NULL until the broker confirmed the DecisionMade event.
    sa.Column("published_at_ms", sa.BigInteger, nullable=True),
    sa.Index("ix_decisions_published_at_ms", "published_at_ms"),
)

# Append-only (a trigger refuses UPDATE and DELETE; see the 0002 migration).
audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("item_id", sa.String(32), nullable=True),
    sa.Column("detail", sa.Text, nullable=False),  # JSON
    sa.Index("ix_audit_log_item_id", "item_id"),
)

# Per reporter device: how their decided reports went.
reporter_reputation = sa.Table(
    "reporter_reputation", metadata,
    sa.Column("device_token", sa.Text, primary_key=True),
    sa.Column("upheld", sa.Integer, nullable=False),
    sa.Column("dismissed", sa.Integer, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

# The evidence vault: blobs named by the SHA-256 of their bytes (so a blob
# filed twice is stored once), kept in the database so that every replica
# sees the same vault and the pods need no writable volume.
vault_blobs = sa.Table(
    "vault_blobs", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("media_type", sa.Text, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("stored_at_ms", sa.BigInteger, nullable=False),
)

# Which blobs are evidence of which case; a blob goes when no case links it.
case_evidence = sa.Table(
    "case_evidence", metadata,
    sa.Column("item_id", sa.String(32), sa.ForeignKey("review_items.item_id"), primary_key=True),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("vault_blobs.sha256"), primary_key=True),
    sa.Column("kind", sa.String(24), nullable=False),  # "filing", "snapshot"
    sa.Column("ref", sa.Text, nullable=False),         # the filing it came with
    sa.Column("added_at_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_case_evidence_sha256", "sha256"),
)

# The custody log: append-only (trigger) and hash-chained (custody.py).
custody_log = sa.Table(
    "custody_log", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("item_id", sa.String(32), nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text, nullable=False),  # canonical JSON
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("entry_hash", sa.String(64), nullable=False),
    sa.Index("ix_custody_log_item_id", "item_id"),
)

# One row (id 1): the last custody entry. Its row lock orders appends.
custody_head = sa.Table(
    "custody_head", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("entry_hash", sa.String(64), nullable=False),
)

# PDQ hashes added to the hash banks at run time (AddBankHashes), in the
# order added: every replica reads the rows after the last it has seen and
# adds them to the banks it matches snapshots against.
bank_hashes = sa.Table(
    "bank_hashes", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("bank", sa.Text, nullable=False),
    sa.Column("category", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),  # PDQ, 64 lowercase hex digits
    sa.Column("source_id", sa.Text, nullable=False),
    sa.Column("added_by", sa.Text, nullable=False),    # "moderator:<name>"
    sa.Column("added_at_ms", sa.BigInteger, nullable=False),
)


# ---------------------------------------------------------------- records

@dataclass(frozen=True)
class Filing:
    """One report, detector escalation or evader suspicion, as stored."""
    report_id: str
    source: str
    category: int
    comment: str
    reporter: Identity
    reported_at_ms: int
    received_at_ms: int
    reporter_weight: float
    risk_score: float
    evidence: tuple[EvidenceLine, ...] = ()
    snapshot_hashes: tuple[str, ...] = ()


@dataclass(frozen=True)
class VaultLink:
    sha256: str
    kind: str
    ref: str
    added_at_ms: int


@dataclass(frozen=True)
class Decision:
    decision_id: str
    item_id: str
    report_id: str
    subject: Identity  # the reported user
    action: int
    category: int
    duration_s: int
    moderator: str
    note: str
    decided_at_ms: int
    published_at_ms: int | None


@dataclass(frozen=True)
class ReviewItem:
    item_id: str
    report_id: str
    status: str
    priority: int
    category: int
    comment: str
    reporter: Identity
    reported: Identity
    match_id: str
    mode: int
    age_band: int
    reported_at_ms: int
    created_at_ms: int
    claimed_by: str | None
    decision_id: str | None
    evidence: tuple[EvidenceLine, ...]
    snapshot_hashes: tuple[str, ...]
    kind: str = review.KIND_REPORT
    claim_expires_at_ms: int | None = None
    risk_score: float = 0.0
    reporter_weight: float = 0.0
    report_count: int = 1
    evidence_count: int = 0
    priority_floor: int = 0
    child_safety: bool = False
    escalated_at_ms: int | None = None
    retain_until_ms: int | None = None
    legal_hold: bool = False
    purged_at_ms: int | None = None
    linked_ban_id: str = ""
    linked_subject: str = ""
    updated_at_ms: int = 0
    # Loaded with the evidence (get_item, view_item), empty in lists:
    filings: tuple[Filing, ...] = ()
    vault: tuple[VaultLink, ...] = ()
    decision: Decision | None = None
    with_evidence: bool = False

    def claimant(self, now_ms: int) -> str | None:
        """Who holds a live claim on it now."""
        if self.status == OPEN and self.claimed_by and (self.claim_expires_at_ms or 0) > now_ms:
            return self.claimed_by
        return None

    def shown_status(self, now_ms: int) -> str:
        return CLAIMED if self.claimant(now_ms) else self.status

    def without_evidence(self) -> "ReviewItem":
        """The item as a list shows it: what it is, not what it holds."""
        return dataclasses.replace(self, evidence=(), snapshot_hashes=(), filings=(), vault=(),
                                   with_evidence=False)


@dataclass(frozen=True)
class Intake:
    item: ReviewItem
    created: bool  # False: the filing was already stored (a redelivery)
    merged: bool = False  # True: a new filing joined an item already open
    suppressed: bool = False  # True: kept on a dismissed evader item, not queued again

    def __iter__(self):
        """`item, created = await store.add_report(...)`"""
        return iter((self.item, self.created))


@dataclass(frozen=True)
class AuditEntry:
    at_ms: int
    actor: str
    action: str
    item_id: str | None
    detail: dict
    id: int = 0


@dataclass(frozen=True)
class BankHashRow:
    id: int
    bank: str
    category: int
    hash: str
    source_id: str


@dataclass(frozen=True)
class PurgeResult:
    purged_item_ids: tuple[str, ...]
    blobs_deleted: int


@dataclass(frozen=True)
class ExportMaterial:
    """What a law-enforcement package is made of (export.py builds it)."""
    item: ReviewItem
    blobs: tuple[tuple[VaultLink, str, bytes], ...]  # (link, media type, content)
    custody: tuple[custody.StoredEntry, ...]


class ItemNotFound(LookupError):
    pass


class AlreadyDecided(RuntimeError):
    def __init__(self, item_id: str, decision_id: str | None) -> None:
        super().__init__(f"review item {item_id} is already decided (decision {decision_id})")
        self.decision_id = decision_id


class ClaimConflict(RuntimeError):
    """Someone else holds a live claim, or the caller holds none to release."""


class RestrictedCase(PermissionError):
    """A child-safety case, and the caller's role may not see it."""


class NotExportable(RuntimeError):
    """Only escalated child-safety cases with their evidence are exported."""


# ---------------------------------------------------------------- the store

class ReviewStore:
    def __init__(self, engine: AsyncEngine, clock: Clock = wall_clock_ms,
                 retention: Retention | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.retention = retention or Retention()

    # ------------------------------------------------------------ intake

    async def add_report(self, report: events_pb2.ReportFiled, event_id: str) -> Intake:
        """Store a user's report with its evidence and file it into the
        review queue (a new item, or the open item of the same reported user
        and conversation), in one transaction. A report already stored (same
        report_id, e.g. redelivered by the broker) changes nothing and
        returns its item."""
        lines = tuple(EvidenceLine(line.from_reporter, line.text, line.sent_at_unix_ms)
                      for line in report.evidence)
        return await self._file(_NewFiling(
            report_id=report.report_id, event_id=event_id, kind=review.KIND_REPORT,
            source=review.SOURCE_USER, category=report.category, comment=report.comment,
            reporter=_identity_of(report.reporter), reported=_identity_of(report.reported),
            match_id=report.match_id, mode=report.mode, age_band=report.age_band,
            reported_at_ms=report.reported_at_unix_ms, evidence=lines,
            snapshot_hashes=tuple(report.snapshot_hashes), audit_action="report_filed"))

    async def add_suspicion(self, suspicion: events_pb2.EvaderSuspected, event_id: str) -> Intake:
        """A suspected ban evader from the ban service, as a review item of
        kind suspected_evader; idempotent on suspicion_id. Suspicions of one
        device linked to one ban merge into one open item; once a moderator
        dismissed that pair (a bystander on a shared address), later
        suspicions of it are recorded on the dismissed item, not queued."""
        return await self._file(_NewFiling(
            report_id=f"suspicion:{suspicion.suspicion_id}", event_id=event_id,
            kind=review.KIND_SUSPECTED_EVADER, source=review.SOURCE_BAN,
            category=suspicion.linked_category, comment=suspicion.reason,
            reporter=Identity(""), reported=_identity_of(suspicion.identity),
            reported_at_ms=suspicion.seen_at_unix_ms, linked_ban_id=suspicion.linked_ban_id,
            linked_subject=review.linked_subject(suspicion), audit_action="evader_suspected"))

    async def open_escalation(self, escalation: review.Escalation) -> Intake:
        """Open (or join) a review item from a detector's verdict: the call
        for automated escalations. Idempotent on escalation_id; merges with
        user reports and other escalations of the same user in the same
        conversation. Raises review.InvalidReport for a malformed one."""
        review.check_escalation(escalation)
        lines = tuple(EvidenceLine(not line.from_subject, line.text, line.sent_at_ms)
                      for line in escalation.lines)
        return await self._file(_NewFiling(
            report_id=f"auto:{escalation.escalation_id}", event_id=escalation.escalation_id,
            kind=review.KIND_AUTOMATED, source=review.detector_source(escalation.detector),
            category=escalation.category, comment=escalation.summary, reporter=Identity(""),
            reported=escalation.subject, match_id=escalation.match_id, mode=escalation.mode,
            age_band=escalation.age_band, reported_at_ms=escalation.occurred_at_ms, evidence=lines,
            snapshot_hashes=escalation.snapshot_hashes, snapshots=escalation.snapshots,
            risk_score=escalation.risk_score, child_safety=escalation.child_safety,
            priority_floor=escalation.priority_floor, audit_action="escalation_opened"))

    async def _file(self, new: "_NewFiling") -> Intake:
        for attempt in range(INTAKE_ATTEMPTS):
            try:
                return await self._file_once(new)
            except IntegrityError:
                existing = await self.get_item_by_report(new.report_id)
                if existing is not None:
                    return Intake(existing, created=False)
                # Another intake opened the item of this merge key first:
                # start over, and merge into it this time.
                if attempt == INTAKE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _file_once(self, new: "_NewFiling") -> Intake:
        now = self.clock()
        reported_at = new.reported_at_ms or now
        key = review.merge_key(new.kind, new.reported.device_token, new.match_id, new.linked_ban_id)
        evidence = len(new.evidence) + len(new.snapshot_hashes)
        async with self.engine.begin() as conn:
            # First statement: a duplicate report_id fails right here.
            await conn.execute(reports.insert().values(
                report_id=new.report_id, event_id=new.event_id, received_at_ms=now, category=new.category,
                comment=new.comment, **_identity_values("reporter", new.reporter),
                **_identity_values("reported", new.reported), match_id=new.match_id, mode=new.mode,
                age_band=new.age_band, reported_at_ms=reported_at, item_id=None, source=new.source,
                risk_score=new.risk_score, reporter_weight=0.0))
            weight = 0.0
            if new.source == review.SOURCE_USER and new.reporter.device_token:
                weight = await _reporter_weight(conn, new.reporter.device_token)

            merged_into = None
            if key is not None:
                # Locks the open item of this key, if there is one.
                touched = await conn.execute(
                    review_items.update()
                    .where(review_items.c.merge_key == key, review_items.c.status == OPEN)
                    .values(updated_at_ms=now))
                if touched.rowcount == 1:
                    merged_into = (await conn.execute(
                        sa.select(review_items).where(review_items.c.merge_key == key,
                                                      review_items.c.status == OPEN))).one()
            dismissed_item = None
            if merged_into is None and new.kind == review.KIND_SUSPECTED_EVADER and key is not None:
                # A moderator already found this device on this banned
                # address to be a bystander: keep the new sighting on that
                # item, and do not queue it again.
                dismissed_item = (await conn.execute(
                    sa.select(review_items.c.item_id)
                    .join(decisions, decisions.c.item_id == review_items.c.item_id)
                    .where(review_items.c.merge_key == key, review_items.c.status == DECIDED,
                           review_items.c.purged_at_ms.is_(None),
                           decisions.c.action == moderation_pb2.ACTION_DISMISS)
                    .order_by(decisions.c.decided_at_ms.desc()).limit(1))).scalar()
            if dismissed_item is not None:
                kept = await conn.execute(
                    review_items.update()
                    .where(review_items.c.item_id == dismissed_item, review_items.c.purged_at_ms.is_(None))
                    .values(report_count=review_items.c.report_count + 1, updated_at_ms=now))
                if kept.rowcount != 1:  # purged meanwhile: review it afresh
                    dismissed_item = None
            if dismissed_item is not None:
                item_id = dismissed_item
            elif merged_into is not None:
                item_id = merged_into.item_id
                repeat_reporter = weight > 0 and (await conn.execute(
                    sa.select(sa.func.count()).select_from(reports).where(
                        reports.c.item_id == item_id,
                        reports.c.reporter_device_token == new.reporter.device_token))).scalar_one() > 0
                item_weight = merged_into.reporter_weight + (0.0 if repeat_reporter else weight)
                category = review.most_severe(merged_into.category, new.category)
                risk = max(merged_into.risk_score, new.risk_score)
                evidence_count = merged_into.evidence_count + evidence
                floor = max(merged_into.priority_floor, new.priority_floor)
                await conn.execute(review_items.update().where(review_items.c.item_id == item_id).values(
                    category=category, risk_score=risk, reporter_weight=item_weight,
                    report_count=merged_into.report_count + 1, evidence_count=evidence_count,
                    priority_floor=floor, kind=review.merged_kind(merged_into.kind, new.kind),
                    child_safety=merged_into.child_safety or review.restricted_at_intake(
                        new.category, new.child_safety),
                    priority=review.priority(category, risk_score=risk, reporter_weight=item_weight,
                                             evidence=evidence_count, floor=floor)))
            else:
                item_id = new_id()
                await conn.execute(review_items.insert().values(
                    item_id=item_id, report_id=new.report_id, status=OPEN, category=new.category,
                    priority=review.priority(new.category, risk_score=new.risk_score, reporter_weight=weight,
                                             evidence=evidence, floor=new.priority_floor),
                    created_at_ms=now, claimed_by=None, decision_id=None, kind=new.kind,
                    **_identity_values("subject", new.reported), match_id=new.match_id, merge_key=key,
                    risk_score=new.risk_score, reporter_weight=weight, report_count=1,
                    evidence_count=evidence, priority_floor=new.priority_floor,
                    child_safety=review.restricted_at_intake(new.category, new.child_safety),
                    linked_ban_id=new.linked_ban_id, linked_subject=new.linked_subject,
                    updated_at_ms=now))
            await conn.execute(reports.update().where(reports.c.report_id == new.report_id)
                               .values(item_id=item_id, reporter_weight=weight))
            if new.evidence:
                await conn.execute(evidence_lines.insert(), [
                    {"report_id": new.report_id, "seq": seq, "from_reporter": line.from_reporter,
                     "text": line.text, "sent_at_ms": line.sent_at_ms}
                    for seq, line in enumerate(new.evidence)])
            if new.snapshot_hashes:
                await conn.execute(snapshot_hashes.insert(), [
                    {"report_id": new.report_id, "seq": seq, "hash": value}
                    for seq, value in enumerate(new.snapshot_hashes)])

            # The evidence vault: the snapshots, then the filing itself
            # (which names the snapshots by their hash).
            await _lock_custody(conn)
            snapshot_shas = []
            for content in new.snapshots:
                sha = await self._put_blob(conn, now, content, SNAPSHOT_MEDIA_TYPE, "intake", item_id)
                await self._link(conn, now, item_id, sha, "snapshot", new.report_id, "intake")
                snapshot_shas.append(sha)
            filing_blob = custody.canonical_json(new.vault_record(reported_at, weight, snapshot_shas))
            sha = await self._put_blob(conn, now, filing_blob, FILING_MEDIA_TYPE, "intake", item_id)
            await self._link(conn, now, item_id, sha, "filing", new.report_id, "intake")

            detail = {"report_id": new.report_id, "event_id": new.event_id, "source": new.source,
                      "category": enum_name(common_pb2.Category, new.category),
                      "evidence_lines": len(new.evidence), "snapshot_hashes": len(new.snapshot_hashes)}
            if merged_into is not None:
                detail["merged"] = True
            if dismissed_item is not None:
                detail["not_queued"] = "this device and ban were dismissed before"
            if new.risk_score:
                detail["risk_score"] = new.risk_score
            if new.linked_ban_id:
                detail["linked_ban_id"] = new.linked_ban_id
            await self._audit(conn, now, "intake", new.audit_action, item_id, detail)
        item = await self.get_item(item_id)
        assert item is not None
        return Intake(item, created=True, merged=merged_into is not None, suppressed=dismissed_item is not None)

    # ------------------------------------------------------------ the queue

    async def list_items(self, status: str | None = None, limit: int = 50, *, category: int = 0,
                         min_priority: int = 0, kind: str | None = None) -> list[ReviewItem]:
        """Items without their evidence, highest priority first, oldest first
        among equals. `status`: None (any), OPEN (waiting: unclaimed or the
        claim expired), CLAIMED (a live claim) or DECIDED."""
        now = self.clock()
        query = _item_query().order_by(
            review_items.c.priority.desc(), review_items.c.created_at_ms, review_items.c.item_id
        ).limit(limit)
        live_claim = sa.and_(review_items.c.claimed_by.is_not(None), review_items.c.claim_expires_at_ms > now)
        if status == OPEN:
            query = query.where(review_items.c.status == OPEN, sa.not_(live_claim))
        elif status == CLAIMED:
            query = query.where(review_items.c.status == OPEN, live_claim)
        elif status is not None:
            query = query.where(review_items.c.status == status)
        if category:
            query = query.where(review_items.c.category == category)
        if min_priority:
            query = query.where(review_items.c.priority >= min_priority)
        if kind:
            query = query.where(review_items.c.kind == kind)
        async with self.engine.connect() as conn:
            return [_item(row) for row in (await conn.execute(query)).all()]

    async def get_item(self, item_id: str) -> ReviewItem | None:
        """An item with its evidence, unrecorded: for the service itself.
        A moderator's look goes through view_item."""
        return await self._one_item(review_items.c.item_id == item_id)

    async def get_item_by_report(self, report_id: str) -> ReviewItem | None:
        async with self.engine.connect() as conn:
            item_id = (await conn.execute(
                sa.select(reports.c.item_id).where(reports.c.report_id == report_id))).scalar()
        return await self.get_item(item_id) if item_id else None

    async def _one_item(self, condition) -> ReviewItem | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_item_query().where(condition))).first()
            if row is None:
                return None
            return await _with_evidence(conn, _item(row))

    async def count_open(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(
                sa.select(sa.func.count()).select_from(review_items).where(review_items.c.status == OPEN)
            )).scalar_one()

    async def view_item(self, item_id: str, viewer: str, role: str, *, child_safety_allowed: bool
                        ) -> ReviewItem:
        """A moderator looks at an item's evidence: recorded in the audit log
        and the custody log. Raises ItemNotFound, or RestrictedCase (recorded
        too) for a child-safety case the viewer's role may not see."""
        item = await self.get_item(item_id)
        if item is None:
            raise ItemNotFound(f"no review item {item_id}")
        now = self.clock()
        actor = f"moderator:{viewer}"
        async with self.engine.begin() as conn:
            if item.child_safety and not child_safety_allowed:
                await self._audit(conn, now, actor, "view_denied", item_id, {"role": role})
            else:
                await self._audit(conn, now, actor, "viewed", item_id, {
                    "role": role, "evidence_lines": len(item.evidence), "blobs": len(item.vault)})
                await self._custody(conn, now, actor, custody.VIEWED, item_id, None, {"role": role})
        if item.child_safety and not child_safety_allowed:
            raise RestrictedCase(f"review item {item_id} is a child-safety case: role child_safety required")
        return item

    # ------------------------------------------------------------ claims

    async def claim(self, item_id: str, moderator: str, lease_ms: int, *,
                    child_safety_allowed: bool) -> ReviewItem:
        """Take an open item for `lease_ms` (again: renew one's own lease).
        Raises ItemNotFound, AlreadyDecided, ClaimConflict or RestrictedCase."""
        now = self.clock()
        until = now + lease_ms
        async with self.engine.begin() as conn:
            taken = await conn.execute(
                review_items.update()
                .where(review_items.c.item_id == item_id, review_items.c.status == OPEN,
                       _claimable_by(moderator, now), _visible(child_safety_allowed))
                .values(claimed_by=moderator, claim_expires_at_ms=until, updated_at_ms=now))
            if taken.rowcount != 1:
                await self._explain_refusal(conn, item_id, moderator, now, child_safety_allowed)
            await self._audit(conn, now, f"moderator:{moderator}", "claimed", item_id,
                              {"claim_expires_at_ms": until})
        item = await self.get_item(item_id)
        assert item is not None
        return item

    async def release(self, item_id: str, moderator: str, reason: str) -> ReviewItem:
        """Give one's live claim back. Raises ItemNotFound, AlreadyDecided or
        ClaimConflict (no live claim of the caller's)."""
        now = self.clock()
        async with self.engine.begin() as conn:
            released = await conn.execute(
                review_items.update()
                .where(review_items.c.item_id == item_id, review_items.c.status == OPEN,
                       review_items.c.claimed_by == moderator, review_items.c.claim_expires_at_ms > now)
                .values(claimed_by=None, claim_expires_at_ms=None, updated_at_ms=now))
            if released.rowcount != 1:
                await self._explain_refusal(conn, item_id, moderator, now, True)
                raise ClaimConflict(f"review item {item_id} holds no live claim of {moderator}'s")
            await self._audit(conn, now, f"moderator:{moderator}", "released", item_id, {"reason": reason})
        item = await self.get_item(item_id)
        assert item is not None
        return item

    @staticmethod
    async def _explain_refusal(conn: AsyncConnection, item_id: str, moderator: str, now: int,
                               child_safety_allowed: bool) -> None:
        """Raise why a guarded update of an item touched no row."""
        row = (await conn.execute(
            sa.select(review_items.c.status, review_items.c.decision_id, review_items.c.claimed_by,
                      review_items.c.claim_expires_at_ms, review_items.c.child_safety)
            .where(review_items.c.item_id == item_id))).first()
        if row is None:
            raise ItemNotFound(f"no review item {item_id}")
        if row.status != OPEN:
            raise AlreadyDecided(item_id, row.decision_id)
        if row.child_safety and not child_safety_allowed:
            raise RestrictedCase(f"review item {item_id} is a child-safety case: role child_safety required")
        if row.claimed_by and row.claimed_by != moderator and (row.claim_expires_at_ms or 0) > now:
            raise ClaimConflict(f"review item {item_id} is claimed by {row.claimed_by} until "
                                f"{_iso(row.claim_expires_at_ms)}")

    # ------------------------------------------------------------ decisions

    async def decide(self, item_id: str, action: int, category: int, duration_s: int,
                     moderator: str, note: str = "", *, child_safety_allowed: bool = True) -> Decision:
        """Decide an open item, once: unclaimed, claim expired, or claimed by
        `moderator`. `category` UNSPECIFIED keeps the item's. Sets the
        retention clock (one year for an escalation, which also makes the
        case a child-safety case), updates the reporters' reputation, and
        writes the audit and custody entries. Raises ItemNotFound,
        AlreadyDecided, ClaimConflict or RestrictedCase. The decision starts
        unpublished (the outbox)."""
        now = self.clock()
        decision_id = new_id()
        escalate = action == moderation_pb2.ACTION_ESCALATE
        retain_until = self.retention.retain_until(now, escalated=escalate)
        changes = dict(status=DECIDED, decision_id=decision_id, claimed_by=None, claim_expires_at_ms=None,
                       retain_until_ms=retain_until, updated_at_ms=now)
        if escalate:
            changes.update(child_safety=True, escalated_at_ms=now)
        async with self.engine.begin() as conn:
            # First statement, and the guard: only one decision flips the status.
            flipped = await conn.execute(
                review_items.update()
                .where(review_items.c.item_id == item_id, review_items.c.status == OPEN,
                       _claimable_by(moderator, now), _visible(child_safety_allowed))
                .values(**changes))
            if flipped.rowcount != 1:
                await self._explain_refusal(conn, item_id, moderator, now, child_safety_allowed)
                raise AssertionError(f"decide {item_id}: refused without a reason")
            item = (await conn.execute(
                sa.select(review_items.c.category, review_items.c.report_id,
                          *_identity_select(review_items, "subject"))
                .where(review_items.c.item_id == item_id))).one()
            decided_category = category or item.category
            await conn.execute(decisions.insert().values(
                decision_id=decision_id, item_id=item_id, action=action, category=decided_category,
                duration_s=duration_s, moderator=moderator, note=note, decided_at_ms=now,
                published_at_ms=None))
            reporters = await _user_reporters(conn, item_id, item.subject_device_token)
            for device_token in reporters:
                await _count_outcome(conn, device_token, review.upholds(action), now)
            actor = f"moderator:{moderator}"
            await self._audit(conn, now, actor, "decided", item_id, {
                "decision_id": decision_id, "action": enum_name(moderation_pb2.Action, action),
                "category": enum_name(common_pb2.Category, decided_category), "duration_s": duration_s,
                "note": note, "reporters": len(reporters), "retain_until_ms": retain_until})
            await self._custody(conn, now, actor, custody.DECIDED, item_id, None, {
                "decision_id": decision_id, "action": enum_name(moderation_pb2.Action, action),
                "retain_until_ms": retain_until})
            if escalate:
                await self._custody(conn, now, actor, custody.ESCALATED, item_id, None, {
                    "decision_id": decision_id, "note": note, "retain_until_ms": retain_until})
        return Decision(decision_id=decision_id, item_id=item_id, report_id=item.report_id,
                        subject=_identity(item, "subject"), action=action, category=decided_category,
                        duration_s=duration_s, moderator=moderator, note=note, decided_at_ms=now,
                        published_at_ms=None)

    async def get_decision(self, decision_id: str) -> Decision | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                _decision_query().where(decisions.c.decision_id == decision_id))).first()
        return _decision(row) if row else None

    async def reputation(self, device_token: str) -> tuple[int, int]:
        """(upheld, dismissed) reports of a reporter device."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(reporter_reputation.c.upheld, reporter_reputation.c.dismissed)
                                      .where(reporter_reputation.c.device_token == device_token))).first()
        return (row.upheld, row.dismissed) if row else (0, 0)

    # ------------------------------------------------------------ legal hold

    async def set_legal_hold(self, item_id: str, hold: bool, moderator: str, role: str, reason: str, *,
                             child_safety_allowed: bool) -> ReviewItem:
        now = self.clock()
        async with self.engine.begin() as conn:
            changed = await conn.execute(
                review_items.update()
                .where(review_items.c.item_id == item_id, review_items.c.purged_at_ms.is_(None),
                       _visible(child_safety_allowed))
                .values(legal_hold=hold, updated_at_ms=now))
            if changed.rowcount != 1:
                row = (await conn.execute(sa.select(review_items.c.purged_at_ms, review_items.c.child_safety)
                                          .where(review_items.c.item_id == item_id))).first()
                if row is None:
                    raise ItemNotFound(f"no review item {item_id}")
                if row.purged_at_ms is not None:
                    raise NotExportable(f"review item {item_id}: its evidence was purged on "
                                        f"{_iso(row.purged_at_ms)}")
                raise RestrictedCase(f"review item {item_id} is a child-safety case: role child_safety required")
            actor = f"moderator:{moderator}"
            await self._audit(conn, now, actor, "legal_hold", item_id, {"hold": hold, "reason": reason,
                                                                         "role": role})
            await self._custody(conn, now, actor, custody.LEGAL_HOLD, item_id, None,
                                {"hold": hold, "reason": reason})
        item = await self.get_item(item_id)
        assert item is not None
        return item

    # ------------------------------------------------------------ the outbox

    async def unpublished_decisions(self, limit: int = 100) -> list[Decision]:
        """Decisions whose event the broker has not confirmed, oldest first."""
        query = (_decision_query().where(decisions.c.published_at_ms.is_(None))
                 .order_by(decisions.c.decided_at_ms, decisions.c.decision_id).limit(limit))
        async with self.engine.connect() as conn:
            return [_decision(row) for row in (await conn.execute(query)).all()]

    async def count_unpublished(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(
                sa.select(sa.func.count()).select_from(decisions).where(decisions.c.published_at_ms.is_(None))
            )).scalar_one()

    async def mark_published(self, decision_id: str) -> bool:
        """Record the broker's confirm. False if it was already recorded."""
        now = self.clock()
        async with self.engine.begin() as conn:
            marked = await conn.execute(
                decisions.update()
                .where(decisions.c.decision_id == decision_id, decisions.c.published_at_ms.is_(None))
                .values(published_at_ms=now))
            if marked.rowcount != 1:
                return False
            item_id = (await conn.execute(
                sa.select(decisions.c.item_id).where(decisions.c.decision_id == decision_id))).scalar_one()
            await self._audit(conn, now, "outbox", "decision_published", item_id, {"decision_id": decision_id})
        return True

    # ------------------------------------------------------------ hash banks

    async def add_bank_hashes(self, bank: str, category: int, hashes: Sequence[str], source_ids: Sequence[str],
                              actor: str, role: str, reason: str) -> int:
        """Store hashes added to a bank at run time (checked by the caller:
        64 lowercase hex digits each), with the audit entry, in one
        transaction. Returns how many."""
        now = self.clock()
        rows = [{"bank": bank, "category": category, "hash": value, "source_id": source_id,
                 "added_by": actor, "added_at_ms": now} for value, source_id in zip(hashes, source_ids)]
        if not rows:
            return 0
        async with self.engine.begin() as conn:
            await conn.execute(bank_hashes.insert(), rows)
            await self._audit(conn, now, actor, "bank_hashes_added", None, {
                "bank": bank, "category": enum_name(common_pb2.Category, category), "count": len(rows),
                "role": role, "reason": reason, "hashes": list(hashes[:20]),
                "hashes_sha256": custody.sha256_hex("\n".join(hashes).encode())})
        return len(rows)

    async def bank_hashes_after(self, after_id: int, limit: int = 10_000) -> list[BankHashRow]:
        """Run-time bank additions after `after_id`, oldest first."""
        query = (sa.select(bank_hashes).where(bank_hashes.c.id > after_id)
                 .order_by(bank_hashes.c.id).limit(limit))
        async with self.engine.connect() as conn:
            return [BankHashRow(row.id, row.bank, row.category, row.hash, row.source_id)
                    for row in (await conn.execute(query)).all()]

    # ------------------------------------------------------------ the audit log

    async def audit_entries(self, item_id: str | None = None, *, actor: str | None = None,
                            after_id: int = 0, limit: int | None = None) -> list[AuditEntry]:
        """Oldest first; `after_id` and `limit` page through it."""
        query = sa.select(audit_log).where(audit_log.c.id > after_id).order_by(audit_log.c.id)
        if item_id is not None:
            query = query.where(audit_log.c.item_id == item_id)
        if actor is not None:
            query = query.where(audit_log.c.actor == actor)
        if limit is not None:
            query = query.limit(limit)
        async with self.engine.connect() as conn:
            return [AuditEntry(row.at_ms, row.actor, row.action, row.item_id, json.loads(row.detail), row.id)
                    for row in (await conn.execute(query)).all()]

    async def record_audit(self, actor: str, action: str, item_id: str | None, detail: dict) -> None:
        async with self.engine.begin() as conn:
            await self._audit(conn, self.clock(), actor, action, item_id, detail)

    @staticmethod
    async def _audit(conn: AsyncConnection, at_ms: int, actor: str, action: str, item_id: str | None,
                     detail: dict) -> None:
        await conn.execute(audit_log.insert().values(
            at_ms=at_ms, actor=actor, action=action, item_id=item_id,
            detail=json.dumps(detail, sort_keys=True)))

    # ------------------------------------------------------------ the vault

    async def _custody(self, conn: AsyncConnection, at_ms: int, actor: str, action: str,
                       item_id: str | None, sha256: str | None, detail: dict) -> None:
        """Append one entry to the chain. The head row's update is the lock."""
        await conn.execute(custody_head.update().where(custody_head.c.id == 1)
                           .values(seq=custody_head.c.seq + 1))
        head = (await conn.execute(sa.select(custody_head.c.seq, custody_head.c.entry_hash)
                                   .where(custody_head.c.id == 1))).one()
        entry = custody.Entry(seq=head.seq, at_ms=at_ms, actor=actor, action=action, item_id=item_id,
                              sha256=sha256, detail=detail)
        entry_hash = custody.chain_hash(head.entry_hash, entry)
        await conn.execute(custody_log.insert().values(
            seq=entry.seq, at_ms=at_ms, actor=actor, action=action, item_id=item_id, sha256=sha256,
            detail=custody.canonical_json(detail).decode("utf-8"), prev_hash=head.entry_hash,
            entry_hash=entry_hash))
        await conn.execute(custody_head.update().where(custody_head.c.id == 1).values(entry_hash=entry_hash))

    async def _put_blob(self, conn: AsyncConnection, now: int, content: bytes, media_type: str,
                        actor: str, item_id: str) -> str:
        """Store bytes under their SHA-256, once; the custody log records the first store."""
        if len(content) > MAX_BLOB_BYTES:
            raise review.InvalidReport(f"a blob of {len(content)} bytes, at most {MAX_BLOB_BYTES}")
        sha = custody.sha256_hex(content)
        inserted = await conn.execute(_insert(conn, vault_blobs).values(
            sha256=sha, size=len(content), media_type=media_type, content=content, stored_at_ms=now
        ).on_conflict_do_nothing(index_elements=["sha256"]))
        if inserted.rowcount == 1:
            await self._custody(conn, now, actor, custody.STORED, item_id, sha,
                                {"size": len(content), "media_type": media_type})
        return sha

    async def _link(self, conn: AsyncConnection, now: int, item_id: str, sha: str, kind: str, ref: str,
                    actor: str) -> None:
        linked = await conn.execute(_insert(conn, case_evidence).values(
            item_id=item_id, sha256=sha, kind=kind, ref=ref, added_at_ms=now
        ).on_conflict_do_nothing(index_elements=["item_id", "sha256"]))
        if linked.rowcount == 1:
            await self._custody(conn, now, actor, custody.LINKED, item_id, sha, {"kind": kind, "ref": ref})

    async def verify_vault(self, batch: int = 500) -> custody.Verification:
        """Recompute the custody chain and every blob's hash. Writes that land
        while it reads could look like a broken link (a blob stored after the
        chain was read): a failure is checked again until the head stands still."""
        for _attempt in range(3):
            head_before = await self._head()
            result = await self._verify_once(batch)
            if result.ok or await self._head() == head_before:
                return result
        return result

    async def _head(self) -> tuple[int, str]:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(custody_head.c.seq, custody_head.c.entry_hash)
                                      .where(custody_head.c.id == 1))).one()
        return row.seq, row.entry_hash

    async def _verify_once(self, batch: int) -> custody.Verification:
        verifier = custody.ChainVerifier()
        async with self.engine.connect() as conn:
            head = (await conn.execute(sa.select(custody_head.c.seq, custody_head.c.entry_hash)
                                       .where(custody_head.c.id == 1))).one()
            last = 0
            while True:
                rows = (await conn.execute(
                    sa.select(custody_log).where(custody_log.c.seq > last, custody_log.c.seq <= head.seq)
                    .order_by(custody_log.c.seq).limit(batch))).all()
                if not rows:
                    break
                for row in rows:
                    if not verifier.entry(_stored_entry(row)):
                        return verifier.result
                last = rows[-1].seq
            if not verifier.head(head.seq, head.entry_hash):
                return verifier.result
            last_sha = ""
            while True:
                rows = (await conn.execute(
                    sa.select(vault_blobs.c.sha256, vault_blobs.c.size, vault_blobs.c.content)
                    .where(vault_blobs.c.sha256 > last_sha).order_by(vault_blobs.c.sha256).limit(batch))).all()
                if not rows:
                    break
                for row in rows:
                    if not verifier.blob(custody.StoredBlob(row.sha256, row.size, bytes(row.content))):
                        return verifier.result
                last_sha = rows[-1].sha256
        return verifier.finish()

    async def purge_expired(self, actor: str, reason: str, limit: int = 100) -> PurgeResult:
        """Delete the evidence of decided cases past their retention date and
        not under legal hold: their blobs (unless another case still links
        them), transcript lines, snapshot hashes and the reporters' comments.
        The decision, the audit log and the custody log stay; each deletion
        is a custody entry, so the chain stays verifiable."""
        now = self.clock()
        async with self.engine.connect() as conn:
            due = (await conn.execute(
                sa.select(review_items.c.item_id, review_items.c.status, review_items.c.retain_until_ms,
                          review_items.c.legal_hold, review_items.c.purged_at_ms)
                .where(review_items.c.status == DECIDED, review_items.c.purged_at_ms.is_(None),
                       review_items.c.legal_hold == sa.false(), review_items.c.retain_until_ms <= now)
                .order_by(review_items.c.retain_until_ms).limit(limit))).all()
        purged, blobs_deleted = [], 0
        for row in due:
            if not purgeable(decided=row.status == DECIDED, retain_until_ms=row.retain_until_ms,
                             legal_hold=bool(row.legal_hold), purged=row.purged_at_ms is not None, now_ms=now):
                continue  # the query and the rule disagree: keep the evidence
            item_id = row.item_id
            deleted = await self._purge_case(item_id, now, actor, reason)
            if deleted is not None:
                purged.append(item_id)
                blobs_deleted += deleted
        return PurgeResult(tuple(purged), blobs_deleted)

    async def _purge_case(self, item_id: str, now: int, actor: str, reason: str) -> int | None:
        async with self.engine.begin() as conn:
            # The guard: another replica's purge, a new hold or a later date wins.
            taken = await conn.execute(
                review_items.update()
                .where(review_items.c.item_id == item_id, review_items.c.status == DECIDED,
                       review_items.c.purged_at_ms.is_(None), review_items.c.legal_hold == sa.false(),
                       review_items.c.retain_until_ms <= now)
                .values(purged_at_ms=now, updated_at_ms=now))
            if taken.rowcount != 1:
                return None
            await _lock_custody(conn)
            retain_until = (await conn.execute(sa.select(review_items.c.retain_until_ms)
                                               .where(review_items.c.item_id == item_id))).scalar_one()
            links = (await conn.execute(sa.select(case_evidence.c.sha256).where(
                case_evidence.c.item_id == item_id).order_by(case_evidence.c.sha256))).scalars().all()
            await conn.execute(case_evidence.delete().where(case_evidence.c.item_id == item_id))
            deleted = 0
            for sha in links:
                await self._custody(conn, now, actor, custody.UNLINKED, item_id, sha, {})
                still_linked = (await conn.execute(sa.select(sa.func.count()).select_from(case_evidence)
                                                   .where(case_evidence.c.sha256 == sha))).scalar_one()
                if not still_linked:
                    await conn.execute(vault_blobs.delete().where(vault_blobs.c.sha256 == sha))
                    await self._custody(conn, now, actor, custody.PURGED, item_id, sha, {})
                    deleted += 1
            filing_ids = sa.select(reports.c.report_id).where(reports.c.item_id == item_id).scalar_subquery()
            lines = await conn.execute(evidence_lines.delete().where(evidence_lines.c.report_id.in_(filing_ids)))
            await conn.execute(snapshot_hashes.delete().where(snapshot_hashes.c.report_id.in_(filing_ids)))
            await conn.execute(reports.update().where(reports.c.item_id == item_id).values(comment=""))
            detail = {"reason": reason, "retain_until_ms": retain_until, "blobs_unlinked": len(links),
                      "blobs_deleted": deleted, "evidence_lines_deleted": lines.rowcount}
            await self._custody(conn, now, actor, custody.CASE_PURGED, item_id, None, detail)
            await self._audit(conn, now, actor, "purged", item_id, detail)
        return deleted

    async def export_material(self, item_id: str) -> ExportMaterial:
        """The evidence of an escalated child-safety case, for its
        law-enforcement package. Raises ItemNotFound or NotExportable."""
        item = await self.get_item(item_id)
        if item is None:
            raise ItemNotFound(f"no review item {item_id}")
        if item.escalated_at_ms is None:
            raise NotExportable(f"review item {item_id} was not escalated to child safety: "
                                "only escalated cases are exported")
        if item.purged_at_ms is not None:
            raise NotExportable(f"review item {item_id}: its evidence was purged on {_iso(item.purged_at_ms)}")
        async with self.engine.connect() as conn:
            blobs = []
            for link in item.vault:
                row = (await conn.execute(sa.select(vault_blobs.c.media_type, vault_blobs.c.content)
                                          .where(vault_blobs.c.sha256 == link.sha256))).first()
                if row is None:
                    raise NotExportable(f"evidence blob {link.sha256} of review item {item_id} is missing "
                                        "from the vault: run parley-modctl vault verify")
                content = bytes(row.content)
                if custody.sha256_hex(content) != link.sha256:
                    raise NotExportable(f"evidence blob {link.sha256} of review item {item_id} does not match "
                                        "its hash: run parley-modctl vault verify")
                blobs.append((link, row.media_type, content))
            entries = (await conn.execute(sa.select(custody_log).where(custody_log.c.item_id == item_id)
                                          .order_by(custody_log.c.seq))).all()
        return ExportMaterial(item, tuple(blobs), tuple(_stored_entry(row) for row in entries))

    async def record_export(self, item_id: str, exporter: str, role: str, reason: str,
                            package_sha256: str, blob_count: int) -> None:
        now = self.clock()
        actor = f"moderator:{exporter}"
        detail = {"reason": reason, "role": role, "package_sha256": package_sha256, "blobs": blob_count}
        async with self.engine.begin() as conn:
            await self._audit(conn, now, actor, "exported", item_id, detail)
            await self._custody(conn, now, actor, custody.EXPORTED, item_id, None, detail)

    async def custody_entries(self, item_id: str | None = None) -> list[custody.StoredEntry]:
        query = sa.select(custody_log).order_by(custody_log.c.seq)
        if item_id is not None:
            query = query.where(custody_log.c.item_id == item_id)
        async with self.engine.connect() as conn:
            return [_stored_entry(row) for row in (await conn.execute(query)).all()]


# ---------------------------------------------------------------- intake record

@dataclass(frozen=True)
class _NewFiling:
    report_id: str
    event_id: str
    kind: str
    source: str
    category: int
    comment: str
    reporter: Identity
    reported: Identity
    audit_action: str
    match_id: str = ""
    mode: int = 0
    age_band: int = 0
    reported_at_ms: int = 0
    evidence: tuple[EvidenceLine, ...] = ()
    snapshot_hashes: tuple[str, ...] = ()
    snapshots: tuple[bytes, ...] = field(default=(), repr=False)
    risk_score: float = 0.0
    child_safety: bool = False
    priority_floor: int = 0
    linked_ban_id: str = ""
    linked_subject: str = ""

    def vault_record(self, reported_at_ms: int, reporter_weight: float, snapshot_shas: Sequence[str]) -> dict:
        """The filing as the vault keeps it: everything a case file needs,
        in a canonical JSON form whose SHA-256 names it."""
        return {
            "format": "parley.filing.v1",
            "report_id": self.report_id, "event_id": self.event_id, "kind": self.kind,
            "source": self.source, "category": enum_name(common_pb2.Category, self.category),
            "comment": self.comment,
            "reporter": _identity_dict(self.reporter), "reported": _identity_dict(self.reported),
            "match_id": self.match_id, "mode": enum_name(common_pb2.Mode, self.mode),
            "age_band": enum_name(common_pb2.AgeBand, self.age_band), "reported_at_ms": reported_at_ms,
            "evidence": [{"from_reporter": line.from_reporter, "text": line.text,
                          "sent_at_ms": line.sent_at_ms} for line in self.evidence],
            "snapshot_hashes": list(self.snapshot_hashes), "snapshot_sha256": list(snapshot_shas),
            "risk_score": self.risk_score, "reporter_weight": reporter_weight,
            "linked_ban_id": self.linked_ban_id, "linked_subject": self.linked_subject,
        }


# ---------------------------------------------------------------- helpers

async def _lock_custody(conn: AsyncConnection) -> None:
    """Take the custody head's row lock now, before touching any blob: every
    transaction then locks review item, custody head, blobs in that order,
    so a purge and an intake of the same blob never wait on each other in a
    circle."""
    await conn.execute(custody_head.update().where(custody_head.c.id == 1).values(seq=custody_head.c.seq))


def _insert(conn: AsyncConnection, table: sa.Table):
    """INSERT with ON CONFLICT, in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


async def _reporter_weight(conn: AsyncConnection, device_token: str) -> float:
    row = (await conn.execute(sa.select(reporter_reputation.c.upheld, reporter_reputation.c.dismissed)
                              .where(reporter_reputation.c.device_token == device_token))).first()
    return review.reporter_weight(row.upheld, row.dismissed) if row else review.NEW_REPORTER_WEIGHT


async def _user_reporters(conn: AsyncConnection, item_id: str, subject_device: str) -> list[str]:
    """The distinct users who reported this item (not detectors, not the subject)."""
    return list((await conn.execute(
        sa.select(reports.c.reporter_device_token).distinct()
        .where(reports.c.item_id == item_id, reports.c.source == review.SOURCE_USER,
               reports.c.reporter_device_token != "", reports.c.reporter_device_token != subject_device)
        .order_by(reports.c.reporter_device_token))).scalars().all())


async def _count_outcome(conn: AsyncConnection, device_token: str, upheld: bool, now: int) -> None:
    insert = _insert(conn, reporter_reputation).values(
        device_token=device_token, upheld=int(upheld), dismissed=int(not upheld), updated_at_ms=now)
    column = "upheld" if upheld else "dismissed"
    await conn.execute(insert.on_conflict_do_update(
        index_elements=["device_token"],
        set_={column: reporter_reputation.c[column] + 1, "updated_at_ms": now}))


def _claimable_by(moderator: str, now: int):
    """Unclaimed, claim expired, or claimed by `moderator`."""
    return sa.or_(review_items.c.claimed_by.is_(None), review_items.c.claim_expires_at_ms <= now,
                  review_items.c.claimed_by == moderator)


def _visible(child_safety_allowed: bool):
    return sa.true() if child_safety_allowed else review_items.c.child_safety == sa.false()


def _iso(unix_ms: int | None) -> str:
    if not unix_ms:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_ms / 1000))


def _identity_of(message: common_pb2.Identity) -> Identity:
    return Identity(message.device_token, message.ip_hash, message.ip_prefix_hash)


def _identity_values(who: str, identity: Identity) -> dict:
    return {f"{who}_device_token": identity.device_token, f"{who}_ip_hash": identity.ip_hash,
            f"{who}_ip_prefix_hash": identity.ip_prefix_hash}


def _identity_dict(identity: Identity) -> dict:
    return {"device_token": identity.device_token, "ip_hash": identity.ip_hash,
            "ip_prefix_hash": identity.ip_prefix_hash}


def _identity_select(table, who: str) -> list[sa.Column]:
    return [table.c[f"{who}_{part}"] for part in ("device_token", "ip_hash", "ip_prefix_hash")]


def _identity(row, who: str) -> Identity:
    return Identity(device_token=getattr(row, f"{who}_device_token"), ip_hash=getattr(row, f"{who}_ip_hash"),
                    ip_prefix_hash=getattr(row, f"{who}_ip_prefix_hash"))


_first = reports.alias("first_filing")


def _item_query() -> sa.Select:
    """Items with their first filing (comment, reporter, mode ...)."""
    return (sa.select(review_items, _first.c.comment, _first.c.mode, _first.c.age_band,
                      _first.c.reported_at_ms, *_identity_select(_first, "reporter"))
            .join(_first, _first.c.report_id == review_items.c.report_id))


def _item(row) -> ReviewItem:
    return ReviewItem(
        item_id=row.item_id, report_id=row.report_id, status=row.status, priority=row.priority,
        category=row.category, comment=row.comment, reporter=_identity(row, "reporter"),
        reported=_identity(row, "subject"), match_id=row.match_id, mode=row.mode, age_band=row.age_band,
        reported_at_ms=row.reported_at_ms, created_at_ms=row.created_at_ms, claimed_by=row.claimed_by,
        decision_id=row.decision_id, evidence=(), snapshot_hashes=(), kind=row.kind,
        claim_expires_at_ms=row.claim_expires_at_ms, risk_score=row.risk_score,
        reporter_weight=row.reporter_weight, report_count=row.report_count, evidence_count=row.evidence_count,
        priority_floor=row.priority_floor, child_safety=bool(row.child_safety),
        escalated_at_ms=row.escalated_at_ms, retain_until_ms=row.retain_until_ms,
        legal_hold=bool(row.legal_hold), purged_at_ms=row.purged_at_ms, linked_ban_id=row.linked_ban_id,
        linked_subject=row.linked_subject, updated_at_ms=row.updated_at_ms)


async def _with_evidence(conn: AsyncConnection, item: ReviewItem) -> ReviewItem:
    """The item with its filings, their evidence, its vault blobs and its decision."""
    filing_rows = (await conn.execute(
        sa.select(reports).where(reports.c.item_id == item.item_id)
        .order_by(reports.c.received_at_ms, reports.c.report_id))).all()
    ids = [row.report_id for row in filing_rows]
    lines: dict[str, list[EvidenceLine]] = {rid: [] for rid in ids}
    hashes: dict[str, list[str]] = {rid: [] for rid in ids}
    if ids:
        for line in await conn.execute(
                sa.select(evidence_lines).where(evidence_lines.c.report_id.in_(ids))
                .order_by(evidence_lines.c.report_id, evidence_lines.c.seq)):
            lines[line.report_id].append(EvidenceLine(line.from_reporter, line.text, line.sent_at_ms))
        for value in await conn.execute(
                sa.select(snapshot_hashes).where(snapshot_hashes.c.report_id.in_(ids))
                .order_by(snapshot_hashes.c.report_id, snapshot_hashes.c.seq)):
            hashes[value.report_id].append(value.hash)
    filings = tuple(Filing(
        report_id=row.report_id, source=row.source, category=row.category, comment=row.comment,
        reporter=_identity(row, "reporter"), reported_at_ms=row.reported_at_ms,
        received_at_ms=row.received_at_ms, reporter_weight=row.reporter_weight, risk_score=row.risk_score,
        evidence=tuple(lines[row.report_id]), snapshot_hashes=tuple(hashes[row.report_id]))
        for row in filing_rows)
    # One transcript: every filing's lines in time order, a line two filings
    # both carry shown once.
    seen, transcript = set(), []
    for filing in filings:
        for line in filing.evidence:
            key = (line.from_reporter, line.text, line.sent_at_ms)
            if key not in seen:
                seen.add(key)
                transcript.append(line)
    transcript.sort(key=lambda line: line.sent_at_ms)
    all_hashes = tuple(dict.fromkeys(h for filing in filings for h in filing.snapshot_hashes))
    vault = tuple(VaultLink(row.sha256, row.kind, row.ref, row.added_at_ms) for row in await conn.execute(
        sa.select(case_evidence).where(case_evidence.c.item_id == item.item_id)
        .order_by(case_evidence.c.added_at_ms, case_evidence.c.sha256)))
    decision_row = (await conn.execute(_decision_query().where(decisions.c.item_id == item.item_id))).first()
    return _replace(item, filings=filings, evidence=tuple(transcript), snapshot_hashes=all_hashes, vault=vault,
                    decision=_decision(decision_row) if decision_row else None, with_evidence=True)


def _replace(item: ReviewItem, **changes) -> ReviewItem:
    return dataclasses.replace(item, **changes)


def _decision_query() -> sa.Select:
    return (sa.select(decisions, review_items.c.report_id, *_identity_select(review_items, "subject"))
            .join(review_items, review_items.c.item_id == decisions.c.item_id))


def _decision(row) -> Decision:
    return Decision(decision_id=row.decision_id, item_id=row.item_id, report_id=row.report_id,
                    subject=_identity(row, "subject"), action=row.action, category=row.category,
                    duration_s=row.duration_s, moderator=row.moderator, note=row.note,
                    decided_at_ms=row.decided_at_ms, published_at_ms=row.published_at_ms)


def _stored_entry(row) -> custody.StoredEntry:
    try:
        detail = json.loads(row.detail)
    except ValueError:
        detail = row.detail  # an altered row: its hash will not match
    return custody.StoredEntry(
        entry=custody.Entry(seq=row.seq, at_ms=row.at_ms, actor=row.actor, action=row.action,
                            item_id=row.item_id, sha256=row.sha256, detail=detail),
        prev_hash=row.prev_hash, entry_hash=row.entry_hash)
