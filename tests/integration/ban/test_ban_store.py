"""The ban store on both databases it runs on: SQLite (a file) and the real
PostgreSQL. Each test gets an empty, freshly migrated database."""
from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text

from parley.v1 import common_pb2 as c
from parley.v1 import events_pb2, moderation_pb2 as m
from services.ban import schema
from services.ban.model import Subject, SubjectKind
from services.ban.policy import InvalidDecision
from services.ban.store import VERSION_TABLE, BanAlreadyLifted, BanNotFound, BanStore, migrate_store
from services.runtime.db import make_engine

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000  # ms
DEVICE = Subject(SubjectKind.DEVICE_TOKEN, "device-1")


class SteppedClock:
    """The store's clock, moved by the test."""

    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


def _pg_admin(url: str, sql: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


# Synchronous on purpose: pg_url (conftest) runs asyncio.run, which cannot be
# called from inside the running loop of an async fixture.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ban.db"
        return
    # A database per test, made on the server of this run's pg_url.
    pg_url = request.getfixturevalue("pg_url")
    name = f"ban_store_{uuid.uuid4().hex[:10]}"
    _pg_admin(pg_url, f'CREATE DATABASE "{name}"')
    yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    _pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def engine(database_url):
    engine = make_engine(database_url)
    await migrate_store(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def clock():
    return SteppedClock()


@pytest.fixture
def store(engine, clock):
    return BanStore(engine, clock)


async def issue(store, subject=DEVICE, *, scope=c.BAN_SCOPE_ALL, duration_s=0, category=c.CATEGORY_SPAM):
    return await store.issue(subject, scope=scope, category=category, duration_s=duration_s,
                             reason="test reason", issued_by="tester")


async def count(engine, table) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


def decision(decision_id="dec-1", action=m.ACTION_BAN, **fields) -> events_pb2.DecisionMade:
    fields.setdefault("subject", c.Identity(device_token="device-1", ip_hash="iphash-1"))
    return events_pb2.DecisionMade(decision_id=decision_id, action=action, moderator="mod-ann", **fields)


# ------------------------------------------------------------ issue, check, lift

async def test_issue_check_lift(store, clock):
    ban = await issue(store)
    assert (ban.issued_at_ms, ban.expires_at_ms, ban.scope) == (T0, 0, c.BAN_SCOPE_ALL)
    found = await store.active_for(device_token="device-1", mode=c.MODE_TEXT)
    assert found == ban
    assert await store.get(ban.ban_id) == ban
    assert await store.active_for(device_token="someone-else", mode=c.MODE_TEXT) is None

    clock.advance(10)
    lifted = await store.lift(ban.ban_id, by="admin", reason="appeal upheld")
    assert (lifted.lifted_at_ms, lifted.lifted_by, lifted.lift_reason) == (T0 + 10_000, "admin", "appeal upheld")
    assert await store.active_for(device_token="device-1", mode=c.MODE_TEXT) is None

    trail = await store.audit_trail(ban.ban_id)
    assert [(e.action, e.actor, e.at_ms) for e in trail] == [("issue", "tester", T0),
                                                           ("lift", "admin", T0 + 10_000)]
    assert trail[0].detail["reason"] == "test reason"
    assert trail[1].detail == {"reason": "appeal upheld"}


async def test_lift_unknown_or_twice(store, engine):
    with pytest.raises(BanNotFound):
        await store.lift("no-such-ban", by="admin", reason="r")
    ban = await issue(store)
    await store.lift(ban.ban_id, by="admin", reason="first")
    with pytest.raises(BanAlreadyLifted):
        await store.lift(ban.ban_id, by="admin", reason="second")
    assert (await store.get(ban.ban_id)).lift_reason == "first"
    assert [e.action for e in await store.audit_trail(ban.ban_id)] == ["issue", "lift"]


async def test_concurrent_lifts_one_wins(store):
    ban = await issue(store)
    results = await asyncio.gather(*(store.lift(ban.ban_id, by=f"admin{i}", reason="r") for i in range(4)),
                                   return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert sum(isinstance(r, BanAlreadyLifted) for r in results) == 3


async def test_expiry_follows_the_clock(store, clock):
    ban = await issue(store, duration_s=3600)
    assert ban.expires_at_ms == T0 + 3_600_000
    clock.advance(3599)
    assert await store.active_for(device_token="device-1", mode=c.MODE_TEXT) == ban
    clock.advance(1)
    assert await store.active_for(device_token="device-1", mode=c.MODE_TEXT) is None
    # An explicit instant overrides the clock.
    assert await store.active_for(device_token="device-1", mode=c.MODE_TEXT, now_ms=T0) == ban


async def test_video_ban_only_counts_for_video(store):
    video = await issue(store, scope=c.BAN_SCOPE_VIDEO)
    assert await store.active_for(device_token="device-1", mode=c.MODE_VIDEO) == video
    assert await store.active_for(device_token="device-1", mode=c.MODE_TEXT) is None
    assert await store.active_for(device_token="device-1", mode=c.MODE_UNSPECIFIED) is None
    everything = await issue(store, duration_s=60)
    # Both apply to video; the ban on everything is the one shown.
    assert await store.active_for(device_token="device-1", mode=c.MODE_VIDEO) == everything
    assert await store.active_for(device_token="device-1", mode=c.MODE_UNSPECIFIED) == everything


async def test_unspecified_scope_is_stored_as_all(store):
    ban = await issue(store, scope=c.BAN_SCOPE_UNSPECIFIED)
    assert ban.scope == c.BAN_SCOPE_ALL
    assert (await store.get(ban.ban_id)).scope == c.BAN_SCOPE_ALL


async def test_ip_and_prefix_bans_catch_any_device(store):
    prefix = await issue(store, Subject(SubjectKind.IP_PREFIX_HASH, "prefix-9"))
    ip = await issue(store, Subject(SubjectKind.IP_HASH, "ip-9"), duration_s=60)
    # A new device from the banned range is refused.
    assert await store.active_for(device_token="fresh-device", ip_hash="ip-other",
                                  ip_prefix_hash="prefix-9", mode=c.MODE_TEXT) == prefix
    assert await store.active_for(device_token="fresh-device", ip_hash="ip-9",
                                  ip_prefix_hash="prefix-other", mode=c.MODE_TEXT) == ip
    # The same value under another kind is not a match.
    assert await store.active_for(device_token="prefix-9", ip_hash="prefix-9", mode=c.MODE_TEXT) is None
    assert await store.active_for(mode=c.MODE_TEXT) is None


async def test_list_newest_first_and_active_only(store, clock):
    first = await issue(store, duration_s=60)
    clock.advance(1)
    second = await issue(store, Subject(SubjectKind.IP_HASH, "ip-2"))
    clock.advance(1)
    third = await issue(store, Subject(SubjectKind.IP_HASH, "ip-3"))
    await store.lift(third.ban_id, by="admin", reason="mistake")
    assert [b.ban_id for b in await store.list_bans()] == [third.ban_id, second.ban_id, first.ban_id]
    assert [b.ban_id for b in await store.list_bans(limit=1)] == [third.ban_id]
    assert [b.ban_id for b in await store.list_bans(active_only=True)] == [second.ban_id, first.ban_id]
    clock.advance(60)  # the first has expired
    assert [b.ban_id for b in await store.list_bans(active_only=True)] == [second.ban_id]


# ------------------------------------------------------------ decisions

async def test_ban_decision_applied_once(store, engine):
    first = await store.apply_decision(decision(category=c.CATEGORY_HARASSMENT, duration_s=86400,
                                                note="threats"), "event-1")
    assert not first.duplicate
    [ban] = first.bans
    assert (ban.subject, ban.category, ban.decision_id, ban.issued_by, ban.reason) == (
        DEVICE, c.CATEGORY_HARASSMENT, "dec-1", "mod-ann", "threats")
    assert ban.expires_at_ms == T0 + 86_400_000
    assert await store.active_for(device_token="device-1", mode=c.MODE_TEXT) == ban

    # The same decision again (a redelivery, or published twice with a new event id).
    again = await store.apply_decision(decision(category=c.CATEGORY_HARASSMENT, duration_s=86400), "event-2")
    assert again.duplicate
    assert again.bans == [ban]  # still in force: can be announced again
    assert await count(engine, schema.bans) == 1
    assert await count(engine, schema.processed_decisions) == 1
    assert await store.is_processed("dec-1")

    audit = await store.audit_trail()
    assert [e.action for e in audit] == ["issue", "decision"]
    assert audit[1].detail["event_id"] == "event-1"
    assert audit[1].detail["bans"] == [ban.ban_id]


async def test_duplicate_decision_does_not_reannounce_a_lifted_ban(store):
    [ban] = (await store.apply_decision(decision(), "event-1")).bans
    await store.lift(ban.ban_id, by="admin", reason="appeal")
    again = await store.apply_decision(decision(), "event-2")
    assert again.duplicate and again.bans == []


async def test_concurrent_deliveries_apply_once(store, engine):
    outcomes = await asyncio.gather(*(store.apply_decision(decision(), f"event-{i}") for i in range(4)))
    assert sorted(o.duplicate for o in outcomes) == [False, True, True, True]
    assert await count(engine, schema.bans) == 1
    assert await count(engine, schema.processed_decisions) == 1


async def test_escalation_bans_device_and_ip_permanently(store):
    outcome = await store.apply_decision(decision(action=m.ACTION_ESCALATE), "event-1")
    assert sorted((b.subject.kind, b.expires_at_ms, b.category) for b in outcome.bans) == [
        (SubjectKind.DEVICE_TOKEN, 0, c.CATEGORY_CHILD_SAFETY),
        (SubjectKind.IP_HASH, 0, c.CATEGORY_CHILD_SAFETY)]
    # The same person on a new device from the same address is still refused.
    assert await store.active_for(device_token="new-device", ip_hash="iphash-1", mode=c.MODE_TEXT)


async def test_warn_records_a_strike_once(store, engine):
    outcome = await store.apply_decision(decision(action=m.ACTION_WARN, category=c.CATEGORY_SPAM), "e1")
    assert outcome.bans == [] and not outcome.duplicate
    assert (await store.apply_decision(decision(action=m.ACTION_WARN), "e2")).duplicate
    strikes = await store.strikes_for("device-1")
    assert [(s.category, s.decision_id, s.at_ms) for s in strikes] == [(c.CATEGORY_SPAM, "dec-1", T0)]
    assert await store.active_for(device_token="device-1", mode=c.MODE_TEXT) is None
    assert await count(engine, schema.bans) == 0


async def test_dismiss_only_marks_the_decision(store, engine):
    outcome = await store.apply_decision(decision(action=m.ACTION_DISMISS), "e1")
    assert outcome.bans == [] and outcome.plan.strike is None
    assert await store.is_processed("dec-1")
    assert (await count(engine, schema.bans), await count(engine, schema.strikes)) == (0, 0)
    assert [e.action for e in await store.audit_trail()] == ["decision"]


async def test_invalid_decision_writes_nothing(store, engine):
    with pytest.raises(InvalidDecision):
        await store.apply_decision(decision(subject=c.Identity()), "e1")
    with pytest.raises(InvalidDecision):
        await store.apply_decision(decision(action=77), "e1")
    assert await count(engine, schema.processed_decisions) == 0
    assert await count(engine, schema.audit_log) == 0


# ------------------------------------------------------------ schema

async def test_migrations_run_twice_are_a_no_op_and_match_the_schema(engine, store):
    ban = await issue(store)
    await migrate_store(engine)  # second run: nothing to do, nothing lost
    await migrate_store(engine)
    async with engine.connect() as conn:
        versions = (await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))).scalars().all()
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), schema.metadata))
    assert versions == ["0001"]
    assert await store.get(ban.ban_id) == ban
    # The migration creates exactly what schema.py describes (the version
    # table aside, which alembic owns).
    differences = [d for d in differences if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)]
    assert differences == []
