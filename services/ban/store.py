"""The durable ban store: bans, strikes, the processed-decision markers and
the audit log, on SQLite or PostgreSQL through one SQLAlchemy Core path.

Every change and its audit row are written in one transaction, and a
moderation decision is applied at most once: its marker row, its bans and
its strike commit together or not at all.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Row, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from parley.v1 import events_pb2
from services.ban import schema
from services.ban.model import (Ban, Clock, Subject, SubjectKind, expiry_ms, identity_subjects,
                                normalized_scope, strongest, wall_clock_ms)
from services.ban.policy import BanOrder, DecisionPlan, plan_decision
from services.runtime.db import migrate

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_ban"


class BanNotFound(LookupError):
    """No ban has this id."""


class BanAlreadyLifted(RuntimeError):
    """The ban was lifted before; a lift is never overwritten."""


@dataclass(frozen=True)
class DecisionOutcome:
    plan: DecisionPlan
    # True when this decision had been applied before (a redelivery or a
    # second publish): nothing was written this time.
    duplicate: bool
    # The decision's bans: issued now, or, for a duplicate, those it issued
    # before that are still in force (so they can be announced again when
    # the first announcement was lost).
    bans: list[Ban]


@dataclass(frozen=True)
class Strike:
    device_token: str
    category: int
    decision_id: str | None
    at_ms: int


@dataclass(frozen=True)
class AuditEntry:
    at_ms: int
    actor: str
    action: str  # issue | lift | decision
    ban_id: str | None
    detail: dict


async def migrate_store(engine: AsyncEngine) -> None:
    """Bring the ban schema to the newest migration (idempotent)."""
    await migrate(engine, MIGRATIONS, VERSION_TABLE)


class BanStore:
    def __init__(self, engine: AsyncEngine, clock: Clock = wall_clock_ms) -> None:
        self.engine = engine
        self.clock = clock

    # ------------------------------------------------------------ bans

    async def issue(self, subject: Subject, *, scope: int, category: int, duration_s: int,
                    reason: str, issued_by: str) -> Ban:
        """Ban `subject` for `duration_s` seconds (0: permanent)."""
        order = BanOrder(subject, scope, category, duration_s)
        async with self.engine.begin() as conn:
            return await self._insert_ban(conn, order, reason=reason, issued_by=issued_by)

    async def lift(self, ban_id: str, *, by: str, reason: str) -> Ban:
        """Lift a ban. BanNotFound for an unknown id, BanAlreadyLifted for a
        ban lifted before (lifting an expired ban is allowed: it records who
        ended it)."""
        now = self.clock()
        async with self.engine.begin() as conn:
            # The condition on lifted_at_ms makes two concurrent lifts safe:
            # only one of them updates the row.
            result = await conn.execute(
                update(schema.bans)
                .where(schema.bans.c.ban_id == ban_id, schema.bans.c.lifted_at_ms.is_(None))
                .values(lifted_at_ms=now, lifted_by=by, lift_reason=reason)
                .returning(*schema.bans.c))
            row = result.first()
            if row is None:
                if await self._get(conn, ban_id) is None:
                    raise BanNotFound(f"no ban with id {ban_id!r}")
                raise BanAlreadyLifted(f"ban {ban_id} is already lifted")
            await self._audit(conn, now, by, "lift", ban_id, {"reason": reason})
        return _ban(row)

    async def get(self, ban_id: str) -> Ban | None:
        async with self.engine.connect() as conn:
            return await self._get(conn, ban_id)

    async def active_for(self, *, device_token: str = "", ip_hash: str = "", ip_prefix_hash: str = "",
                         mode: int, now_ms: int | None = None) -> Ban | None:
        """The ban that refuses this identity in `mode`, or None. Bans on
        everything always count; video bans only for MODE_VIDEO."""
        subjects = identity_subjects(device_token, ip_hash, ip_prefix_hash)
        if not subjects:
            return None
        now = self.clock() if now_ms is None else now_ms
        matches_subject = or_(*(and_(schema.bans.c.subject_kind == s.kind.value,
                                     schema.bans.c.subject_value == s.value) for s in subjects))
        query = select(schema.bans).where(matches_subject, schema.bans.c.lifted_at_ms.is_(None))
        async with self.engine.connect() as conn:
            candidates = [_ban(row) for row in await conn.execute(query)]
        # Expiry and scope are decided by the model's rule, in one place.
        return strongest(ban for ban in candidates if ban.blocks(mode, now))

    async def list_bans(self, *, active_only: bool = False, limit: int = 50) -> list[Ban]:
        """Bans, newest first; `active_only` keeps those in force now."""
        query = select(schema.bans)
        if active_only:
            query = query.where(schema.bans.c.lifted_at_ms.is_(None),
                                or_(schema.bans.c.expires_at_ms == 0,
                                    schema.bans.c.expires_at_ms > self.clock()))
        query = query.order_by(schema.bans.c.issued_at_ms.desc(), schema.bans.c.ban_id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [_ban(row) for row in await conn.execute(query)]

    # ------------------------------------------------------------ decisions

    async def apply_decision(self, decision: events_pb2.DecisionMade, event_id: str) -> DecisionOutcome:
        """Carry out a moderation decision once. Raises policy.InvalidDecision
        for a decision that cannot be carried out (nothing is written)."""
        plan = plan_decision(decision)
        now = self.clock()
        actor = decision.moderator or "moderation"
        async with self.engine.begin() as conn:
            # The marker goes first: a second delivery of the same decision,
            # even one racing this transaction on another replica, finds it
            # (PostgreSQL makes the second insert wait for the first commit).
            first_time = await _insert_unless_present(conn, schema.processed_decisions, {
                "decision_id": plan.decision_id, "event_id": event_id,
                "processed_at_ms": now, "outcome": plan.action})
            if not first_time:
                earlier = await conn.execute(
                    select(schema.bans).where(schema.bans.c.decision_id == plan.decision_id))
                still_in_force = [ban for ban in map(_ban, earlier) if ban.in_force(now)]
                return DecisionOutcome(plan, duplicate=True, bans=still_in_force)

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
                "bans": [ban.ban_id for ban in issued], "strike": plan.strike is not None})
        return DecisionOutcome(plan, duplicate=False, bans=issued)

    async def strikes_for(self, device_token: str) -> list[Strike]:
        query = (select(schema.strikes).where(schema.strikes.c.device_token == device_token)
                 .order_by(schema.strikes.c.at_ms, schema.strikes.c.id))
        async with self.engine.connect() as conn:
            return [Strike(row.device_token, row.category, row.decision_id, row.at_ms)
                    for row in await conn.execute(query)]

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
            return [AuditEntry(row.at_ms, row.actor, row.action, row.ban_id, json.loads(row.detail))
                    for row in await conn.execute(query)]

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
        )
        await conn.execute(schema.bans.insert().values(
            ban_id=ban.ban_id, subject_kind=ban.subject.kind.value, subject_value=ban.subject.value,
            scope=ban.scope, category=ban.category, reason=ban.reason, issued_by=ban.issued_by,
            issued_at_ms=ban.issued_at_ms, expires_at_ms=ban.expires_at_ms, decision_id=decision_id))
        await self._audit(conn, now, issued_by, "issue", ban.ban_id, {
            "subject_kind": ban.subject.kind.value, "scope": ban.scope, "category": ban.category,
            "expires_at_ms": ban.expires_at_ms, "reason": reason, "decision_id": decision_id})
        return ban

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


async def _insert_unless_present(conn: AsyncConnection, table, values: dict) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row was inserted."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    key = list(table.primary_key.columns)[0]
    statement = insert(table).values(**values).on_conflict_do_nothing().returning(key)
    return (await conn.execute(statement)).first() is not None


def _ban(row: Row) -> Ban:
    return Ban(
        ban_id=row.ban_id,
        subject=Subject(SubjectKind(row.subject_kind), row.subject_value),
        scope=row.scope,
        category=row.category,
        reason=row.reason,
        issued_by=row.issued_by,
        issued_at_ms=row.issued_at_ms,
        expires_at_ms=row.expires_at_ms,
        lifted_at_ms=row.lifted_at_ms,
        lifted_by=row.lifted_by,
        lift_reason=row.lift_reason,
        decision_id=row.decision_id,
    )
