"""The durable ban store: bans, strikes, appeals, the processed-decision
markers, the change log, the suspected-evader flags and the audit log, on
SQLite or PostgreSQL through one SQLAlchemy Core path.

Every change and its audit row are written in one transaction, with a row in
the change log (`ban_changes`) that replicas poll to keep their CheckBan
index current and that is the outbox of the ban.issued / ban.lifted
announcements. A moderation decision is applied at most once: its marker
row, its bans and its strike commit together or not at all.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Row, and_, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from parley.v1 import events_pb2
from services.ban import schema
from services.ban.model import (Appeal, AppealRefusal, Ban, Clock, Subject, SubjectKind, Verdict,
                                appeal_refusal, appealable_until_ms, expiry_ms, identity_subjects, judge,
                                normalized_scope, session_ban_duration_s, wall_clock_ms)
from services.ban.policy import (BanOrder, DecisionPlan, Rules, Rung, StrikeView, active_strikes,
                                 check_decision, next_penalty, plan_decision)
from services.runtime.db import migrate

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_ban"

ISSUE, LIFT = "issue", "lift"


class BanNotFound(LookupError):
    """No ban has this id."""


class BanAlreadyLifted(RuntimeError):
    """The ban was lifted before; a lift is never overwritten."""


class AppealNotFound(LookupError):
    """No appeal has this id."""


class AppealRefused(RuntimeError):
    """The appellant may not appeal this ban (now)."""

    def __init__(self, refusal: AppealRefusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


class AppealExists(RuntimeError):
    """The ban was appealed before: one appeal per ban."""


class AppealAlreadyDecided(RuntimeError):
    """The appeal was decided before; a decision is never overwritten."""


@dataclass(frozen=True)
class DecisionOutcome:
    plan: DecisionPlan
    # True when this decision had been applied before (a redelivery or a
    # second publish): nothing was written this time.
    duplicate: bool
    # The bans issued now; for a duplicate, those it issued before that are
    # still in force.
    bans: list[Ban]


@dataclass(frozen=True)
class Strike:
    device_token: str
    category: int
    decision_id: str | None
    at_ms: int
    voided_at_ms: int | None = None

    def view(self) -> StrikeView:
        return StrikeView(self.at_ms, self.voided_at_ms is not None)


@dataclass(frozen=True)
class AuditEntry:
    at_ms: int
    actor: str
    action: str  # issue | lift | decision | appeal | appeal_decision
    ban_id: str | None
    detail: dict


@dataclass(frozen=True)
class BanDetails:
    ban: Ban
    audit: list[AuditEntry]
    appeal: Appeal | None


@dataclass(frozen=True)
class History:
    subject: Subject
    bans: list[Ban]
    strikes: list[Strike]
    active_strikes: int
    next_penalty: Rung | None  # devices only
    appeals: list[Appeal]
    audit: list[AuditEntry]


@dataclass(frozen=True)
class AppealDecision:
    appeal: Appeal
    lifted: list[Ban]  # the bans the decision lifted (none when upheld)


@dataclass(frozen=True)
class Change:
    change_id: int
    change: str  # issue | lift
    ban: Ban


@dataclass(frozen=True)
class EvaderFlag:
    suspicion_id: str
    device_token: str
    ip_hash: str
    ip_prefix_hash: str
    reason: str
    seen_at_ms: int
    ban: Ban


async def migrate_store(engine: AsyncEngine) -> None:
    """Bring the ban schema to the newest migration (idempotent)."""
    await migrate(engine, MIGRATIONS, VERSION_TABLE)


class BanStore:
    def __init__(self, engine: AsyncEngine, clock: Clock = wall_clock_ms, rules: Rules | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.rules = rules or Rules.default()

    # ------------------------------------------------------------ bans

    async def issue(self, subject: Subject, *, scope: int, category: int, duration_s: int,
                    reason: str, issued_by: str, enforce_on_address: bool = False) -> Ban:
        """Ban `subject` for `duration_s` seconds (0: permanent; a session
        ban lasts at most the configured maximum). `enforce_on_address` only
        means something for an address subject (see model.judge)."""
        if subject.kind is SubjectKind.SESSION_ID:
            duration_s = session_ban_duration_s(duration_s, self.rules.session_ban_max_s)
        order = BanOrder(subject, scope, category, duration_s,
                         enforce_on_address=enforce_on_address and subject.kind.is_address)
        async with self.engine.begin() as conn:
            return await self._insert_ban(conn, order, reason=reason, issued_by=issued_by)

    async def lift(self, ban_id: str, *, by: str, reason: str) -> Ban:
        """Lift a ban. BanNotFound for an unknown id, BanAlreadyLifted for a
        ban lifted before (lifting an expired ban is allowed: it records who
        ended it)."""
        now = self.clock()
        async with self.engine.begin() as conn:
            ban = await self._lift(conn, ban_id, by=by, reason=reason, now=now)
            if ban is None:
                if await self._get(conn, ban_id) is None:
                    raise BanNotFound(f"no ban with id {ban_id!r}")
                raise BanAlreadyLifted(f"ban {ban_id} is already lifted")
            await self._audit(conn, now, by, "lift", ban_id, {"reason": reason})
        return ban

    async def get(self, ban_id: str) -> Ban | None:
        async with self.engine.connect() as conn:
            return await self._get(conn, ban_id)

    async def details(self, ban_id: str) -> BanDetails:
        async with self.engine.connect() as conn:
            ban = await self._get(conn, ban_id)
            if ban is None:
                raise BanNotFound(f"no ban with id {ban_id!r}")
            audit = await self._audit_for(conn, [ban_id])
            appeals = await self._appeals_for(conn, [ban_id])
        return BanDetails(ban, audit, appeals[0] if appeals else None)

    async def bans_on(self, subjects: Iterable[Subject], *, in_force_at: int | None = None) -> list[Ban]:
        """The unlifted bans on any of these subjects (in force at
        `in_force_at` when given)."""
        subjects = list(subjects)
        if not subjects:
            return []
        matches_subject = or_(*(and_(schema.bans.c.subject_kind == s.kind.value,
                                     schema.bans.c.subject_value == s.value) for s in subjects))
        query = select(schema.bans).where(matches_subject, schema.bans.c.lifted_at_ms.is_(None))
        async with self.engine.connect() as conn:
            bans = [_ban(row) for row in await conn.execute(query)]
        if in_force_at is not None:
            bans = [ban for ban in bans if ban.in_force(in_force_at)]
        return bans

    async def verdict_for(self, *, device_token: str = "", ip_hash: str = "", ip_prefix_hash: str = "",
                          session_id: str = "", mode: int, now_ms: int | None = None) -> Verdict:
        """CheckBan's answer read from the database (the service answers
        from its index; this is the reference the index is tested against)."""
        now = self.clock() if now_ms is None else now_ms
        candidates = await self.bans_on(identity_subjects(device_token, ip_hash, ip_prefix_hash, session_id))
        return judge(candidates, mode, now, device_token=device_token)

    async def list_bans(self, *, active_only: bool = False, limit: int = 50) -> list[Ban]:
        """Bans, newest first; `active_only` keeps those in force now."""
        query = select(schema.bans)
        if active_only:
            query = query.where(*_in_force(self.clock()))
        query = query.order_by(schema.bans.c.issued_at_ms.desc(), schema.bans.c.ban_id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [_ban(row) for row in await conn.execute(query)]

    async def history(self, subject: Subject, *, limit: int = 100) -> History:
        """A subject's bans (all of them, newest first), their appeals and
        audit trail, and for a device its strikes and its place on the ladder."""
        now = self.clock()
        bans_query = (select(schema.bans)
                      .where(schema.bans.c.subject_kind == subject.kind.value,
                             schema.bans.c.subject_value == subject.value)
                      .order_by(schema.bans.c.issued_at_ms.desc(), schema.bans.c.ban_id.desc()).limit(limit))
        async with self.engine.connect() as conn:
            # Strikes first: a decision commits its strike and its bans
            # together, so every ban of a strike read here is read below.
            strikes: list[Strike] = []
            if subject.kind is SubjectKind.DEVICE_TOKEN:
                strikes = await self._strikes(conn, subject.value, newest_first=True, limit=limit)
            bans = [_ban(row) for row in await conn.execute(bans_query)]
            ids = [ban.ban_id for ban in bans]
            appeals = sorted(await self._appeals_for(conn, ids), key=lambda a: a.filed_at_ms, reverse=True)
            audit = await self._audit_for(conn, ids)
        if subject.kind is not SubjectKind.DEVICE_TOKEN:
            return History(subject, bans, [], 0, None, appeals, audit)
        active = active_strikes((s.view() for s in strikes), now, self.rules.strike_expiry_ms)
        return History(subject, bans, strikes, active, next_penalty(active, self.rules), appeals, audit)

    # ------------------------------------------------------------ decisions

    async def apply_decision(self, decision: events_pb2.DecisionMade, event_id: str) -> DecisionOutcome:
        """Carry out a moderation decision once. Raises policy.InvalidDecision
        for a decision that cannot be carried out (nothing is written)."""
        action = check_decision(decision)  # before any write
        now = self.clock()
        actor = decision.moderator or "moderation"
        async with self.engine.begin() as conn:
            # The marker goes first: a second delivery of the same decision,
            # even one racing this transaction on another replica, finds it
            # (PostgreSQL makes the second insert wait for the first commit;
            # SQLite's first write takes the database's write lock).
            first_time = await _insert_unless_present(conn, schema.processed_decisions, {
                "decision_id": decision.decision_id, "event_id": event_id,
                "processed_at_ms": now, "outcome": action})
            if not first_time:
                earlier = await conn.execute(
                    select(schema.bans).where(schema.bans.c.decision_id == decision.decision_id))
                still_in_force = [ban for ban in map(_ban, earlier) if ban.in_force(now)]
                return DecisionOutcome(DecisionPlan(decision.decision_id, action), duplicate=True,
                                       bans=still_in_force)

            active = 0
            device = decision.subject.device_token
            if action != "dismiss":
                if conn.dialect.name == "postgresql":
                    # Two decisions on one device at once (two replicas) count
                    # each other's strike: one waits for the other's commit.
                    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                                       {"key": f"ban-strikes:{device}"})
                strikes = await self._strikes(conn, device)
                active = active_strikes((s.view() for s in strikes), now, self.rules.strike_expiry_ms)
            plan = plan_decision(decision, active, self.rules)

            reason = decision.note or f"moderation decision {plan.decision_id}"
            issued = [await self._insert_ban(conn, order, reason=reason, issued_by=actor,
                                             decision_id=plan.decision_id, now=now)
                      for order in plan.bans]
            if plan.strike is not None:
                await conn.execute(schema.strikes.insert().values(
                    device_token=plan.strike.device_token, category=plan.strike.category,
                    decision_id=plan.decision_id, at_ms=now))
            await self._audit(conn, now, actor, "decision", None, {
                "decision_id": plan.decision_id, "event_id": event_id, "action": plan.action,
                "item_id": decision.item_id, "report_id": decision.report_id,
                "bans": [ban.ban_id for ban in issued], "strike": plan.strike is not None,
                "strike_number": plan.strike_number, "penalty": plan.penalty, "severe": plan.severe,
                "note": decision.note})
        return DecisionOutcome(plan, duplicate=False, bans=issued)

    async def strikes_for(self, device_token: str) -> list[Strike]:
        async with self.engine.connect() as conn:
            return await self._strikes(conn, device_token)

    async def is_processed(self, decision_id: str) -> bool:
        query = select(schema.processed_decisions.c.decision_id).where(
            schema.processed_decisions.c.decision_id == decision_id)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def audit_trail(self, ban_id: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Audit entries, oldest first; for one ban when `ban_id` is given."""
        query = select(schema.audit_log).order_by(schema.audit_log.c.id).limit(limit)
        if ban_id is not None:
            query = query.where(schema.audit_log.c.ban_id == ban_id)
        async with self.engine.connect() as conn:
            return [_audit_entry(row) for row in await conn.execute(query)]

    # ------------------------------------------------------------ appeals

    async def file_appeal(self, ban_id: str, *, device_token: str, statement: str, ip_hash: str = "",
                          ip_prefix_hash: str = "") -> Appeal:
        """BanNotFound, AppealRefused (see model.appeal_refusal), AppealExists."""
        now = self.clock()
        async with self.engine.begin() as conn:
            ban = await self._get(conn, ban_id)
            if ban is None:
                raise BanNotFound(f"no ban with id {ban_id!r}")
            refusal = appeal_refusal(ban, now, device_token=device_token, ip_hash=ip_hash,
                                     ip_prefix_hash=ip_prefix_hash)
            if refusal is not None:
                raise AppealRefused(refusal)
            appeal = Appeal(appeal_id=uuid.uuid4().hex, ban_id=ban_id, device_token=device_token,
                            statement=statement, status="pending", filed_at_ms=now)
            # The unique key on ban_id makes "one appeal per ban" hold across
            # replicas and concurrent calls.
            inserted = await _insert_unless_present(conn, schema.appeals, {
                "appeal_id": appeal.appeal_id, "ban_id": ban_id, "device_token": device_token,
                "statement": statement, "status": "pending", "filed_at_ms": now})
            if not inserted:
                raise AppealExists(f"ban {ban_id} has been appealed already")
            await self._audit(conn, now, f"device:{device_token}", "appeal", ban_id, {
                "appeal_id": appeal.appeal_id, "statement": statement})
        return appeal

    async def get_appeal(self, appeal_id: str) -> Appeal | None:
        query = select(schema.appeals).where(schema.appeals.c.appeal_id == appeal_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _appeal(row) if row is not None else None

    async def list_appeals(self, *, status: str | None = None, limit: int = 50) -> list[Appeal]:
        """Appeals, oldest first (the order to decide them in)."""
        query = select(schema.appeals).order_by(schema.appeals.c.filed_at_ms, schema.appeals.c.appeal_id)
        if status is not None:
            query = query.where(schema.appeals.c.status == status)
        async with self.engine.connect() as conn:
            return [_appeal(row) for row in await conn.execute(query.limit(limit))]

    async def decide_appeal(self, appeal_id: str, *, lift: bool, moderator: str, note: str) -> AppealDecision:
        """Uphold (the ban stands) or lift: every unlifted ban of the same
        moderation decision is lifted (or the one ban, when no decision made
        it) and the decision's strike is voided. AppealNotFound,
        AppealAlreadyDecided."""
        now = self.clock()
        status = "lifted" if lift else "upheld"
        async with self.engine.begin() as conn:
            row = (await conn.execute(
                update(schema.appeals)
                .where(schema.appeals.c.appeal_id == appeal_id, schema.appeals.c.status == "pending")
                .values(status=status, decided_by=moderator, decided_at_ms=now, decision_note=note)
                .returning(*schema.appeals.c))).first()
            if row is None:
                existing = (await conn.execute(
                    select(schema.appeals).where(schema.appeals.c.appeal_id == appeal_id))).first()
                if existing is None:
                    raise AppealNotFound(f"no appeal with id {appeal_id!r}")
                raise AppealAlreadyDecided(f"appeal {appeal_id} was decided already ({existing.status})")
            appeal = _appeal(row)
            lifted: list[Ban] = []
            voided = 0
            if lift:
                ban = await self._get(conn, appeal.ban_id)
                family = [appeal.ban_id]
                if ban is not None and ban.decision_id:
                    family = list((await conn.execute(
                        select(schema.bans.c.ban_id).where(schema.bans.c.decision_id == ban.decision_id)
                    )).scalars())
                    voided = (await conn.execute(
                        update(schema.strikes)
                        .where(schema.strikes.c.decision_id == ban.decision_id,
                               schema.strikes.c.voided_at_ms.is_(None))
                        .values(voided_at_ms=now))).rowcount
                reason = f"appeal {appeal_id} upheld by {moderator}" + (f": {note}" if note else "")
                for member in family:
                    done = await self._lift(conn, member, by=moderator, reason=reason, now=now)
                    if done is not None:
                        lifted.append(done)
                        await self._audit(conn, now, moderator, "lift", member,
                                          {"reason": reason, "appeal_id": appeal_id})
            await self._audit(conn, now, moderator, "appeal_decision", appeal.ban_id, {
                "appeal_id": appeal_id, "outcome": status, "note": note,
                "lifted": [ban.ban_id for ban in lifted], "strikes_voided": voided})
        return AppealDecision(appeal, lifted)

    # ------------------------------------------------------------ the index's feed

    async def last_change_id(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.coalesce(func.max(schema.ban_changes.c.id), 0)))).scalar_one()

    async def active_bans(self, *, batch: int = 20_000, now_ms: int | None = None) -> AsyncIterator[list[Ban]]:
        """Every ban in force, in batches (keyset pages by ban id, each its
        own short read), for loading the index at start."""
        now = self.clock() if now_ms is None else now_ms
        after = ""
        while True:
            query = (select(schema.bans).where(*_in_force(now), schema.bans.c.ban_id > after)
                     .order_by(schema.bans.c.ban_id).limit(batch))
            async with self.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            if not rows:
                return
            yield [_ban(row) for row in rows]
            after = rows[-1].ban_id

    async def changes_after(self, change_id: int, *, limit: int = 5_000) -> list[Change]:
        """Changes with a larger id, oldest first, each with its ban as it is now."""
        query = (select(schema.ban_changes.c.id, schema.ban_changes.c.change, schema.bans)
                 .join(schema.bans, schema.bans.c.ban_id == schema.ban_changes.c.ban_id)
                 .where(schema.ban_changes.c.id > change_id)
                 .order_by(schema.ban_changes.c.id).limit(limit))
        async with self.engine.connect() as conn:
            return [Change(row.id, row.change, _ban(row)) for row in await conn.execute(query)]

    # ------------------------------------------------------------ announcement outbox

    async def mark_announced(self, ban_id: str, change: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(schema.ban_changes)
                               .where(schema.ban_changes.c.ban_id == ban_id, schema.ban_changes.c.change == change,
                                      schema.ban_changes.c.announced_at_ms.is_(None))
                               .values(announced_at_ms=self.clock()))

    async def unannounced(self, *, older_than_ms: int, limit: int = 500) -> list[Change]:
        """Changes not yet announced, made before `older_than_ms` (the
        call that made a newer one is still announcing it)."""
        query = (select(schema.ban_changes.c.id, schema.ban_changes.c.change, schema.bans)
                 .join(schema.bans, schema.bans.c.ban_id == schema.ban_changes.c.ban_id)
                 .where(schema.ban_changes.c.announced_at_ms.is_(None),
                        schema.ban_changes.c.at_ms < older_than_ms)
                 .order_by(schema.ban_changes.c.id).limit(limit))
        async with self.engine.connect() as conn:
            return [Change(row.id, row.change, _ban(row)) for row in await conn.execute(query)]

    async def mark_change_announced(self, change_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(schema.ban_changes).where(schema.ban_changes.c.id == change_id)
                               .values(announced_at_ms=self.clock()))

    # ------------------------------------------------------------ suspected evaders

    async def flag_evader(self, *, device_token: str, ban: Ban, ip_hash: str, ip_prefix_hash: str,
                          reason: str) -> EvaderFlag | None:
        """Record that this device was seen on this watch ban's address; the
        flag, or None when it was flagged before (by any replica)."""
        flag = EvaderFlag(uuid.uuid4().hex, device_token, ip_hash, ip_prefix_hash, reason, self.clock(), ban)
        async with self.engine.begin() as conn:
            inserted = await _insert_unless_present(conn, schema.evader_flags, {
                "device_token": device_token, "ban_id": ban.ban_id, "suspicion_id": flag.suspicion_id,
                "ip_hash": ip_hash, "ip_prefix_hash": ip_prefix_hash, "reason": reason,
                "seen_at_ms": flag.seen_at_ms})
        return flag if inserted else None

    async def mark_flag_published(self, suspicion_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(schema.evader_flags)
                               .where(schema.evader_flags.c.suspicion_id == suspicion_id)
                               .values(published_at_ms=self.clock()))

    async def unpublished_flags(self, *, older_than_ms: int, limit: int = 500) -> list[EvaderFlag]:
        f = schema.evader_flags
        query = (select(f.c.suspicion_id, f.c.device_token, f.c.ip_hash, f.c.ip_prefix_hash,
                        f.c.reason.label("flag_reason"), f.c.seen_at_ms, schema.bans)
                 .join(schema.bans, schema.bans.c.ban_id == f.c.ban_id)
                 .where(f.c.published_at_ms.is_(None), f.c.seen_at_ms < older_than_ms)
                 .order_by(f.c.seen_at_ms).limit(limit))
        async with self.engine.connect() as conn:
            return [EvaderFlag(row.suspicion_id, row.device_token, row.ip_hash, row.ip_prefix_hash, row.flag_reason,
                               row.seen_at_ms, _ban(row)) for row in await conn.execute(query)]

    # ------------------------------------------------------------ inside a transaction

    async def _insert_ban(self, conn: AsyncConnection, order: BanOrder, *, reason: str, issued_by: str,
                          decision_id: str | None = None, now: int | None = None) -> Ban:
        now = self.clock() if now is None else now
        ban = Ban(
            ban_id=uuid.uuid4().hex,
            subject=order.subject,
            scope=normalized_scope(order.scope),
            category=order.category,
            reason=reason,
            issued_by=issued_by,
            issued_at_ms=now,
            expires_at_ms=expiry_ms(now, order.duration_s),
            decision_id=decision_id,
            enforce_on_address=order.enforce_on_address,
            appealable_until_ms=appealable_until_ms(order.subject, now, self.rules.appeal_window_ms),
        )
        await conn.execute(schema.bans.insert().values(
            ban_id=ban.ban_id, subject_kind=ban.subject.kind.value, subject_value=ban.subject.value,
            scope=ban.scope, category=ban.category, reason=ban.reason, issued_by=ban.issued_by,
            issued_at_ms=ban.issued_at_ms, expires_at_ms=ban.expires_at_ms, decision_id=decision_id,
            enforce_on_address=ban.enforce_on_address, appealable_until_ms=ban.appealable_until_ms))
        await conn.execute(schema.ban_changes.insert().values(ban_id=ban.ban_id, change=ISSUE, at_ms=now))
        await self._audit(conn, now, issued_by, "issue", ban.ban_id, {
            "subject_kind": ban.subject.kind.value, "scope": ban.scope, "category": ban.category,
            "expires_at_ms": ban.expires_at_ms, "reason": reason, "decision_id": decision_id,
            "enforce_on_address": ban.enforce_on_address})
        return ban

    async def _lift(self, conn: AsyncConnection, ban_id: str, *, by: str, reason: str, now: int) -> Ban | None:
        """Lift an unlifted ban (None when there is none by that id). The
        condition on lifted_at_ms makes two concurrent lifts safe: only one
        of them updates the row."""
        row = (await conn.execute(
            update(schema.bans)
            .where(schema.bans.c.ban_id == ban_id, schema.bans.c.lifted_at_ms.is_(None))
            .values(lifted_at_ms=now, lifted_by=by, lift_reason=reason)
            .returning(*schema.bans.c))).first()
        if row is None:
            return None
        await conn.execute(schema.ban_changes.insert().values(ban_id=ban_id, change=LIFT, at_ms=now))
        return _ban(row)

    async def _strikes(self, conn: AsyncConnection, device_token: str, *, newest_first: bool = False,
                       limit: int | None = None) -> list[Strike]:
        order = (schema.strikes.c.at_ms.desc(), schema.strikes.c.id.desc()) if newest_first else (
            schema.strikes.c.at_ms, schema.strikes.c.id)
        query = select(schema.strikes).where(schema.strikes.c.device_token == device_token).order_by(*order)
        if limit is not None:
            query = query.limit(limit)
        return [Strike(row.device_token, row.category, row.decision_id, row.at_ms, row.voided_at_ms)
                for row in await conn.execute(query)]

    @staticmethod
    async def _audit_for(conn: AsyncConnection, ban_ids: list[str]) -> list[AuditEntry]:
        if not ban_ids:
            return []
        query = (select(schema.audit_log).where(schema.audit_log.c.ban_id.in_(ban_ids))
                 .order_by(schema.audit_log.c.id))
        return [_audit_entry(row) for row in await conn.execute(query)]

    @staticmethod
    async def _appeals_for(conn: AsyncConnection, ban_ids: list[str]) -> list[Appeal]:
        if not ban_ids:
            return []
        query = select(schema.appeals).where(schema.appeals.c.ban_id.in_(ban_ids))
        return [_appeal(row) for row in await conn.execute(query)]

    @staticmethod
    async def _audit(conn: AsyncConnection, at_ms: int, actor: str, action: str, ban_id: str | None,
                     detail: dict) -> None:
        # The subject's value (a device token, an IP hash) is on the ban row;
        # the audit row points at it rather than copying it.
        await conn.execute(schema.audit_log.insert().values(
            at_ms=at_ms, actor=actor, action=action, ban_id=ban_id,
            detail=json.dumps(detail, sort_keys=True)))

    @staticmethod
    async def _get(conn: AsyncConnection, ban_id: str) -> Ban | None:
        row = (await conn.execute(select(schema.bans).where(schema.bans.c.ban_id == ban_id))).first()
        return _ban(row) if row is not None else None


def _in_force(now: int) -> tuple:
    return (schema.bans.c.lifted_at_ms.is_(None),
            or_(schema.bans.c.expires_at_ms == 0, schema.bans.c.expires_at_ms > now))


async def _insert_unless_present(conn: AsyncConnection, table, values: dict) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row was inserted."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    key = list(table.primary_key.columns)[0]
    statement = insert(table).values(**values).on_conflict_do_nothing().returning(key)
    return (await conn.execute(statement)).first() is not None


_KINDS = {kind.value: kind for kind in SubjectKind}
# _ban unpacks a row of select(schema.bans) by position (a million rows load
# at start: by name is twice as slow); this is the order it expects.
assert [c.name for c in schema.bans.columns] == [
    "ban_id", "subject_kind", "subject_value", "scope", "category", "reason", "issued_by", "issued_at_ms",
    "expires_at_ms", "lifted_at_ms", "lifted_by", "lift_reason", "decision_id", "enforce_on_address",
    "appealable_until_ms"]


def _ban(row: Row) -> Ban:
    """A ban from a row of select(schema.bans), or a row that ends with
    those columns (a join that puts other columns first)."""
    (ban_id, kind, value, scope, category, reason, issued_by, issued_at_ms, expires_at_ms, lifted_at_ms,
     lifted_by, lift_reason, decision_id, enforce_on_address, appealable_until_ms) = row[-15:]
    return Ban(ban_id, Subject(_KINDS[kind], value), scope, category, reason, issued_by, issued_at_ms,
               expires_at_ms, lifted_at_ms, lifted_by, lift_reason, decision_id, bool(enforce_on_address),
               appealable_until_ms)


def _appeal(row: Row) -> Appeal:
    return Appeal(appeal_id=row.appeal_id, ban_id=row.ban_id, device_token=row.device_token,
                  statement=row.statement, status=row.status, filed_at_ms=row.filed_at_ms,
                  decided_by=row.decided_by, decided_at_ms=row.decided_at_ms,
                  decision_note=row.decision_note)


def _audit_entry(row: Row) -> AuditEntry:
    return AuditEntry(row.at_ms, row.actor, row.action, row.ban_id, json.loads(row.detail))

