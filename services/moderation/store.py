"""The review store: reports with their evidence, the review queue, decisions
and the audit log, in SQLite or PostgreSQL through one SQLAlchemy Core code
path. Every change writes its audit row in the same transaction.

Each writing transaction starts with its write (an INSERT or a guarded
UPDATE), not a read: on PostgreSQL the row lock or the unique key settles
races between replicas, and on SQLite the write lock is taken before any
snapshot, so concurrent writers wait instead of failing with a stale one.

The schema itself is in `migrations/`; the tables below must match the
newest migration.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from parley.v1 import common_pb2, events_pb2, moderation_pb2
from services.moderation import review
from services.moderation.enums import enum_name

Clock = Callable[[], int]

OPEN = "open"
DECIDED = "decided"

# What a store call raises when the database is down or refuses: callers
# turn these into "try again", never into a crash.
STORE_ERRORS = (DBAPIError, OSError)


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


reports = sa.Table(
    "reports", metadata,
    sa.Column("report_id", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    sa.Column("category", sa.Integer, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    *_identity_columns("reporter"),
    *_identity_columns("reported"),
    sa.Column("match_id", sa.Text, nullable=False),
    sa.Column("mode", sa.Integer, nullable=False),
    sa.Column("age_band", sa.Integer, nullable=False),
    sa.Column("reported_at_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_reports_reported_device_token", "reported_device_token"),
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
    sa.Column("report_id", sa.Text, sa.ForeignKey("reports.report_id"), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("category", sa.Integer, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("claimed_by", sa.Text, nullable=True),
    # No foreign key: decisions point back here, and the status update and
    # the decision insert happen in one transaction anyway.
    sa.Column("decision_id", sa.String(32), nullable=True),
)
# The queue order of list_items, per status.
sa.Index("ix_review_items_queue", review_items.c.status, review_items.c.priority.desc(),
         review_items.c.created_at_ms)

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


# ---------------------------------------------------------------- records

@dataclass(frozen=True)
class Identity:
    device_token: str
    ip_hash: str
    ip_prefix_hash: str


@dataclass(frozen=True)
class EvidenceLine:
    from_reporter: bool
    text: str
    sent_at_ms: int


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


class Intake(NamedTuple):
    item: ReviewItem
    created: bool  # False: the report was already stored (a redelivery)


@dataclass(frozen=True)
class AuditEntry:
    at_ms: int
    actor: str
    action: str
    item_id: str | None
    detail: dict


class ItemNotFound(LookupError):
    pass


class AlreadyDecided(RuntimeError):
    def __init__(self, item_id: str, decision_id: str | None) -> None:
        super().__init__(f"review item {item_id} is already decided (decision {decision_id})")
        self.decision_id = decision_id


# ---------------------------------------------------------------- the store

class ReviewStore:
    def __init__(self, engine: AsyncEngine, clock: Clock = wall_clock_ms) -> None:
        self.engine = engine
        self.clock = clock

    # ------------------------------------------------------------ reports

    async def add_report(self, report: events_pb2.ReportFiled, event_id: str) -> Intake:
        """Store a report with its evidence and open its review item, in one
        transaction. A report already stored (same report_id, e.g. redelivered
        by the broker) changes nothing and returns the existing item."""
        now = self.clock()
        item_id = new_id()
        item_priority = review.priority(report.category, len(report.evidence), len(report.snapshot_hashes))
        try:
            async with self.engine.begin() as conn:
                # First statement: a duplicate report_id fails right here.
                await conn.execute(reports.insert().values(_report_row(report, event_id, now)))
                if report.evidence:
                    await conn.execute(evidence_lines.insert(), [
                        {"report_id": report.report_id, "seq": seq, "from_reporter": line.from_reporter,
                         "text": line.text, "sent_at_ms": line.sent_at_unix_ms}
                        for seq, line in enumerate(report.evidence)])
                if report.snapshot_hashes:
                    await conn.execute(snapshot_hashes.insert(), [
                        {"report_id": report.report_id, "seq": seq, "hash": value}
                        for seq, value in enumerate(report.snapshot_hashes)])
                await conn.execute(review_items.insert().values(
                    item_id=item_id, report_id=report.report_id, status=OPEN, priority=item_priority,
                    category=report.category, created_at_ms=now, claimed_by=None, decision_id=None))
                await self._audit(conn, now, "intake", "report_filed", item_id, {
                    "report_id": report.report_id, "event_id": event_id,
                    "category": enum_name(common_pb2.Category, report.category),
                    "evidence_lines": len(report.evidence), "snapshot_hashes": len(report.snapshot_hashes)})
        except IntegrityError:
            existing = await self.get_item_by_report(report.report_id)
            if existing is None:
                raise  # some other constraint: a real error
            return Intake(existing, created=False)
        created = await self.get_item(item_id)
        assert created is not None
        return Intake(created, created=True)

    # ------------------------------------------------------------ the queue

    async def list_items(self, status: str | None = None, limit: int = 50) -> list[ReviewItem]:
        """Items, highest priority first, oldest first among equals.
        `status` None lists every status."""
        query = _item_query().order_by(
            review_items.c.priority.desc(), review_items.c.created_at_ms, review_items.c.item_id
        ).limit(limit)
        if status is not None:
            query = query.where(review_items.c.status == status)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            return await _with_evidence(conn, rows)

    async def get_item(self, item_id: str) -> ReviewItem | None:
        return await self._one_item(review_items.c.item_id == item_id)

    async def get_item_by_report(self, report_id: str) -> ReviewItem | None:
        return await self._one_item(review_items.c.report_id == report_id)

    async def _one_item(self, condition) -> ReviewItem | None:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(_item_query().where(condition))).all()
            items = await _with_evidence(conn, rows)
        return items[0] if items else None

    async def count_open(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(
                sa.select(sa.func.count()).select_from(review_items).where(review_items.c.status == OPEN)
            )).scalar_one()

    # ------------------------------------------------------------ decisions

    async def decide(self, item_id: str, action: int, category: int, duration_s: int,
                     moderator: str, note: str = "") -> Decision:
        """Decide an open item, once. `category` UNSPECIFIED keeps the item's.
        Raises ItemNotFound or AlreadyDecided. The decision starts unpublished."""
        now = self.clock()
        decision_id = new_id()
        async with self.engine.begin() as conn:
            # First statement, and the guard: only one decision flips the status.
            claimed = await conn.execute(
                review_items.update()
                .where(review_items.c.item_id == item_id, review_items.c.status == OPEN)
                .values(status=DECIDED, decision_id=decision_id))
            if claimed.rowcount != 1:
                current = (await conn.execute(
                    sa.select(review_items.c.decision_id).where(review_items.c.item_id == item_id)
                )).first()
                if current is None:
                    raise ItemNotFound(f"no review item {item_id}")
                raise AlreadyDecided(item_id, current.decision_id)
            item = (await conn.execute(
                sa.select(review_items.c.category, reports.c.report_id, *_identity_select("reported"))
                .join(reports, reports.c.report_id == review_items.c.report_id)
                .where(review_items.c.item_id == item_id))).one()
            decided_category = category or item.category
            await conn.execute(decisions.insert().values(
                decision_id=decision_id, item_id=item_id, action=action, category=decided_category,
                duration_s=duration_s, moderator=moderator, note=note, decided_at_ms=now,
                published_at_ms=None))
            await self._audit(conn, now, f"moderator:{moderator}", "decided", item_id, {
                "decision_id": decision_id, "action": enum_name(moderation_pb2.Action, action),
                "category": enum_name(common_pb2.Category, decided_category), "duration_s": duration_s})
        return Decision(decision_id=decision_id, item_id=item_id, report_id=item.report_id,
                        subject=_identity(item, "reported"), action=action, category=decided_category,
                        duration_s=duration_s, moderator=moderator, note=note, decided_at_ms=now,
                        published_at_ms=None)

    async def get_decision(self, decision_id: str) -> Decision | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                _decision_query().where(decisions.c.decision_id == decision_id))).first()
        return _decision(row) if row else None

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

    # ------------------------------------------------------------ the audit log

    async def audit_entries(self, item_id: str | None = None) -> list[AuditEntry]:
        query = sa.select(audit_log).order_by(audit_log.c.id)
        if item_id is not None:
            query = query.where(audit_log.c.item_id == item_id)
        async with self.engine.connect() as conn:
            return [AuditEntry(row.at_ms, row.actor, row.action, row.item_id, json.loads(row.detail))
                    for row in (await conn.execute(query)).all()]

    @staticmethod
    async def _audit(conn: AsyncConnection, at_ms: int, actor: str, action: str, item_id: str | None,
                     detail: dict) -> None:
        await conn.execute(audit_log.insert().values(
            at_ms=at_ms, actor=actor, action=action, item_id=item_id,
            detail=json.dumps(detail, sort_keys=True)))


# ---------------------------------------------------------------- rows

def _report_row(report: events_pb2.ReportFiled, event_id: str, now: int) -> dict:
    row = {
        "report_id": report.report_id, "event_id": event_id, "received_at_ms": now,
        "category": report.category, "comment": report.comment, "match_id": report.match_id,
        "mode": report.mode, "age_band": report.age_band, "reported_at_ms": report.reported_at_unix_ms,
    }
    for who, identity in (("reporter", report.reporter), ("reported", report.reported)):
        row[f"{who}_device_token"] = identity.device_token
        row[f"{who}_ip_hash"] = identity.ip_hash
        row[f"{who}_ip_prefix_hash"] = identity.ip_prefix_hash
    return row


def _identity_select(who: str) -> list[sa.Column]:
    return [reports.c[f"{who}_{part}"] for part in ("device_token", "ip_hash", "ip_prefix_hash")]


def _identity(row, who: str) -> Identity:
    return Identity(device_token=getattr(row, f"{who}_device_token"), ip_hash=getattr(row, f"{who}_ip_hash"),
                    ip_prefix_hash=getattr(row, f"{who}_ip_prefix_hash"))


def _item_query() -> sa.Select:
    return (sa.select(review_items, reports.c.comment, reports.c.match_id, reports.c.mode,
                      reports.c.age_band, reports.c.reported_at_ms,
                      *_identity_select("reporter"), *_identity_select("reported"))
            .join(reports, reports.c.report_id == review_items.c.report_id))


async def _with_evidence(conn: AsyncConnection, rows: Iterable) -> list[ReviewItem]:
    """Review items from joined rows, with evidence and hashes loaded in one
    query each rather than one per item."""
    rows = list(rows)
    report_ids = [row.report_id for row in rows]
    lines: dict[str, list[EvidenceLine]] = {rid: [] for rid in report_ids}
    hashes: dict[str, list[str]] = {rid: [] for rid in report_ids}
    if report_ids:
        for line in await conn.execute(
                sa.select(evidence_lines).where(evidence_lines.c.report_id.in_(report_ids))
                .order_by(evidence_lines.c.report_id, evidence_lines.c.seq)):
            lines[line.report_id].append(EvidenceLine(line.from_reporter, line.text, line.sent_at_ms))
        for value in await conn.execute(
                sa.select(snapshot_hashes).where(snapshot_hashes.c.report_id.in_(report_ids))
                .order_by(snapshot_hashes.c.report_id, snapshot_hashes.c.seq)):
            hashes[value.report_id].append(value.hash)
    return [ReviewItem(
        item_id=row.item_id, report_id=row.report_id, status=row.status, priority=row.priority,
        category=row.category, comment=row.comment, reporter=_identity(row, "reporter"),
        reported=_identity(row, "reported"), match_id=row.match_id, mode=row.mode, age_band=row.age_band,
        reported_at_ms=row.reported_at_ms, created_at_ms=row.created_at_ms, claimed_by=row.claimed_by,
        decision_id=row.decision_id, evidence=tuple(lines[row.report_id]),
        snapshot_hashes=tuple(hashes[row.report_id]),
    ) for row in rows]


def _decision_query() -> sa.Select:
    return (sa.select(decisions, review_items.c.report_id, *_identity_select("reported"))
            .join(review_items, review_items.c.item_id == decisions.c.item_id)
            .join(reports, reports.c.report_id == review_items.c.report_id))


def _decision(row) -> Decision:
    return Decision(decision_id=row.decision_id, item_id=row.item_id, report_id=row.report_id,
                    subject=_identity(row, "reported"), action=row.action, category=row.category,
                    duration_s=row.duration_s, moderator=row.moderator, note=row.note,
                    decided_at_ms=row.decided_at_ms, published_at_ms=row.published_at_ms)


