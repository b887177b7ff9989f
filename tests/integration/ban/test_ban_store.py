"""The ban store on both databases it runs on: SQLite (a file) and the real
PostgreSQL. Each test gets an empty, freshly migrated database."""
from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text

from parley.v1 import common_pb2 as c
from parley.v1 import events_pb2, moderation_pb2 as m
from services.ban import schema
from services.ban.model import DAY_MS, AppealRefusal, Subject, SubjectKind
from services.ban.policy import InvalidDecision, Rung
from services.ban.store import (MIGRATIONS, VERSION_TABLE, AppealAlreadyDecided, AppealExists, AppealNotFound,
                                AppealRefused, BanAlreadyLifted, BanNotFound, BanStore, migrate_store)
from services.runtime.db import make_engine

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000  # ms
DEVICE = Subject(SubjectKind.DEVICE_TOKEN, "device-1")
IP = Subject(SubjectKind.IP_HASH, "iphash-1")
PREFIX = Subject(SubjectKind.IP_PREFIX_HASH, "prefix-1")
HOUR_MS = 3_600_000


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


async def issue(store, subject=DEVICE, *, scope=c.BAN_SCOPE_ALL, duration_s=0, category=c.CATEGORY_SPAM,
                enforce=False):
    return await store.issue(subject, scope=scope, category=category, duration_s=duration_s,
                             reason="test reason", issued_by="tester", enforce_on_address=enforce)


async def count(engine, table) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


def decision(decision_id="dec-1", action=m.ACTION_BAN, **fields) -> events_pb2.DecisionMade:
    fields.setdefault("subject", c.Identity(device_token="device-1", ip_hash="iphash-1", ip_prefix_hash="prefix-1"))
    return events_pb2.DecisionMade(decision_id=decision_id, action=action, moderator="mod-ann", **fields)


async def verdict(store, mode=c.MODE_TEXT, **identity):
    return await store.verdict_for(mode=mode, **identity)


# ------------------------------------------------------------ issue, check, lift

async def test_issue_check_lift(store, clock):
    ban = await issue(store)
    assert (ban.issued_at_ms, ban.expires_at_ms, ban.scope) == (T0, 0, c.BAN_SCOPE_ALL)
    assert ban.appealable_until_ms == T0 + 20 * DAY_MS
    assert (await verdict(store, device_token="device-1")).ban == ban
    assert await store.get(ban.ban_id) == ban
    assert not (await verdict(store, device_token="someone-else")).banned

    clock.advance(10)
    lifted = await store.lift(ban.ban_id, by="admin", reason="mistake")
    assert (lifted.lifted_at_ms, lifted.lifted_by, lifted.lift_reason) == (T0 + 10_000, "admin", "mistake")
    assert not (await verdict(store, device_token="device-1")).banned

    trail = await store.audit_trail(ban.ban_id)
    assert [(e.action, e.actor, e.at_ms) for e in trail] == [("issue", "tester", T0),
                                                           ("lift", "admin", T0 + 10_000)]
    assert trail[0].detail["reason"] == "test reason"
    assert trail[1].detail == {"reason": "mistake"}


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
    assert (await verdict(store, device_token="device-1")).ban == ban
    clock.advance(1)
    assert not (await verdict(store, device_token="device-1")).banned
    # An explicit instant overrides the clock.
    assert (await store.verdict_for(device_token="device-1", mode=c.MODE_TEXT, now_ms=T0)).ban == ban


async def test_video_ban_only_counts_for_video(store):
    video = await issue(store, scope=c.BAN_SCOPE_VIDEO)
    assert (await verdict(store, c.MODE_VIDEO, device_token="device-1")).ban == video
    assert not (await verdict(store, c.MODE_TEXT, device_token="device-1")).banned
    assert not (await verdict(store, c.MODE_UNSPECIFIED, device_token="device-1")).banned
    everything = await issue(store, duration_s=60)
    # Both apply to video; the ban on everything is the one shown.
    assert (await verdict(store, c.MODE_VIDEO, device_token="device-1")).ban == everything


async def test_unspecified_scope_is_stored_as_all(store):
    ban = await issue(store, scope=c.BAN_SCOPE_UNSPECIFIED)
    assert ban.scope == c.BAN_SCOPE_ALL
    assert (await store.get(ban.ban_id)).scope == c.BAN_SCOPE_ALL


async def test_address_bans_watch_unless_they_enforce(store):
    watch_prefix = await issue(store, PREFIX)
    watch_ip = await issue(store, IP, duration_s=60)
    # A new device in a watched range is let in, and flagged.
    seen = await verdict(store, device_token="fresh-device", ip_hash="ip-other", ip_prefix_hash="prefix-1")
    assert not seen.banned and seen.watched == watch_prefix
    seen = await verdict(store, device_token="fresh-device", ip_hash="iphash-1", ip_prefix_hash="prefix-other")
    assert not seen.banned and seen.watched == watch_ip
    # A range ban that enforces on the address refuses everyone there.
    range_ban = await issue(store, Subject(SubjectKind.IP_PREFIX_HASH, "prefix-9"), enforce=True)
    assert range_ban.enforce_on_address
    assert (await verdict(store, device_token="fresh-device", ip_prefix_hash="prefix-9")).ban == range_ban
    # The same value under another kind is not a match.
    assert await verdict(store, device_token="prefix-9", ip_hash="prefix-9") == await verdict(store)
    # enforce_on_address means nothing for a device: stored false.
    assert not (await issue(store, DEVICE, enforce=True)).enforce_on_address


async def test_a_session_ban_lasts_at_most_the_maximum_and_is_not_appealable(store):
    ban = await issue(store, Subject(SubjectKind.SESSION_ID, "sess-1"))
    assert ban.expires_at_ms == T0 + 86_400_000 and ban.appealable_until_ms == 0
    assert (await verdict(store, session_id="sess-1", device_token="d")).ban == ban


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


# ------------------------------------------------------------ decisions, strikes, the ladder

async def test_ban_decision_applied_once(store, engine):
    first = await store.apply_decision(decision(category=c.CATEGORY_HARASSMENT, duration_s=86400,
                                                note="threats"), "event-1")
    assert not first.duplicate
    device_ban, ip_watch, prefix_watch = first.bans
    assert (device_ban.subject, device_ban.category, device_ban.decision_id, device_ban.issued_by,
            device_ban.reason) == (DEVICE, c.CATEGORY_HARASSMENT, "dec-1", "mod-ann", "threats")
    assert device_ban.expires_at_ms == T0 + 86_400_000
    # its addresses are watched for as long, not refused
    assert [(b.subject, b.expires_at_ms, b.enforce_on_address) for b in (ip_watch, prefix_watch)] == [
        (IP, T0 + 86_400_000, False), (PREFIX, T0 + 86_400_000, False)]
    assert (await verdict(store, device_token="device-1")).ban == device_ban

    # The same decision again (a redelivery, or published twice with a new event id).
    again = await store.apply_decision(decision(category=c.CATEGORY_HARASSMENT, duration_s=86400), "event-2")
    assert again.duplicate
    assert again.bans == first.bans  # still in force
    assert await count(engine, schema.bans) == 3
    assert await count(engine, schema.strikes) == 1  # one strike, not two
    assert await count(engine, schema.processed_decisions) == 1
    assert await store.is_processed("dec-1")

    audit = await store.audit_trail()
    assert [e.action for e in audit] == ["issue", "issue", "issue", "decision"]
    assert audit[-1].detail["event_id"] == "event-1"
    assert audit[-1].detail["bans"] == [b.ban_id for b in first.bans]
    assert (audit[-1].detail["penalty"], audit[-1].detail["strike_number"]) == ("ban 1d", 1)


async def test_duplicate_decision_does_not_reannounce_a_lifted_ban(store):
    bans = (await store.apply_decision(decision(subject=c.Identity(device_token="device-1")), "event-1")).bans
    await store.lift(bans[0].ban_id, by="admin", reason="appeal")
    again = await store.apply_decision(decision(subject=c.Identity(device_token="device-1")), "event-2")
    assert again.duplicate and again.bans == []


async def test_concurrent_deliveries_apply_once(store, engine):
    outcomes = await asyncio.gather(*(store.apply_decision(decision(), f"event-{i}") for i in range(4)))
    assert sorted(o.duplicate for o in outcomes) == [False, True, True, True]
    assert await count(engine, schema.bans) == 3
    assert await count(engine, schema.strikes) == 1
    assert await count(engine, schema.processed_decisions) == 1


async def test_concurrent_decisions_on_one_device_count_each_other(store):
    """Two different decisions at once: the second sees the first's strike."""
    outcomes = await asyncio.gather(
        store.apply_decision(decision("dec-a", m.ACTION_WARN, category=c.CATEGORY_SPAM), "e-a"),
        store.apply_decision(decision("dec-b", m.ACTION_WARN, category=c.CATEGORY_SPAM), "e-b"))
    assert sorted((o.plan.strike_number, o.plan.penalty) for o in outcomes) == [(1, "warning"), (2, "ban 1h")]


async def test_the_ladder_climbs_with_warnings_and_strikes_expire(store, clock):
    penalties = []
    for n in range(7):
        outcome = await store.apply_decision(decision(f"dec-{n}", m.ACTION_WARN, category=c.CATEGORY_SPAM), f"e{n}")
        device_bans = [b for b in outcome.bans if b.subject == DEVICE]
        penalties.append((outcome.plan.penalty,
                          (device_bans[0].expires_at_ms - clock.now_ms) // 1000 if device_bans and
                          device_bans[0].expires_at_ms else (0 if device_bans else None)))
        clock.advance(60)
    assert penalties == [("warning", None), ("ban 1h", 3600), ("ban 1d", 86400), ("ban 1w", 604800),
                         ("ban 30d", 2592000), ("permanent ban", 0), ("permanent ban", 0)]
    assert len(await store.strikes_for("device-1")) == 7

    # 90 days after the last one, none count: the next is a warning again.
    clock.advance(90 * 86400)
    history = await store.history(DEVICE)
    assert (history.active_strikes, history.next_penalty) == (0, Rung(False))
    outcome = await store.apply_decision(decision("dec-late", m.ACTION_WARN), "e-late")
    assert (outcome.plan.penalty, outcome.bans) == ("warning", [])


async def test_a_ban_decision_is_at_least_what_the_ladder_says(store, clock):
    for n in range(3):  # three strikes already
        await store.apply_decision(decision(f"w{n}", m.ACTION_WARN), f"e{n}")
    outcome = await store.apply_decision(decision("b", m.ACTION_BAN, duration_s=3600), "e-b")
    assert outcome.plan.penalty == "ban 1w"  # the 4th strike, though the moderator said 1h
    assert outcome.bans[0].expires_at_ms == clock.now_ms + 7 * 86_400_000


async def test_severe_categories_are_permanent_on_every_linked_identifier(store):
    outcome = await store.apply_decision(decision(action=m.ACTION_BAN, category=c.CATEGORY_KNOWN_BAD_HASH,
                                                  duration_s=3600), "event-1")
    assert sorted((b.subject.kind, b.expires_at_ms, b.enforce_on_address) for b in outcome.bans) == [
        (SubjectKind.DEVICE_TOKEN, 0, False), (SubjectKind.IP_HASH, 0, True), (SubjectKind.IP_PREFIX_HASH, 0, True)]
    # The same person on a new device, from the same address or the same range, is refused.
    assert (await verdict(store, device_token="new-device", ip_hash="iphash-1")).banned
    assert (await verdict(store, device_token="new-device", ip_hash="x", ip_prefix_hash="prefix-1")).banned


async def test_escalation_is_child_safety_and_permanent(store):
    outcome = await store.apply_decision(decision(action=m.ACTION_ESCALATE), "event-1")
    assert {(b.category, b.expires_at_ms) for b in outcome.bans} == {(c.CATEGORY_CHILD_SAFETY, 0)}
    assert len(outcome.bans) == 3


async def test_warn_records_a_strike_once(store, engine):
    outcome = await store.apply_decision(decision(action=m.ACTION_WARN, category=c.CATEGORY_SPAM), "e1")
    assert outcome.bans == [] and not outcome.duplicate
    assert (await store.apply_decision(decision(action=m.ACTION_WARN), "e2")).duplicate
    strikes = await store.strikes_for("device-1")
    assert [(s.category, s.decision_id, s.at_ms) for s in strikes] == [(c.CATEGORY_SPAM, "dec-1", T0)]
    assert not (await verdict(store, device_token="device-1")).banned
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


# ------------------------------------------------------------ appeals

async def test_appeal_upheld(store, clock):
    [device_ban, *_] = (await store.apply_decision(decision(duration_s=86400), "e1")).bans
    clock.advance(3600)
    appeal = await store.file_appeal(device_ban.ban_id, device_token="device-1", statement="it was my brother")
    assert (appeal.status, appeal.filed_at_ms, appeal.statement) == ("pending", clock.now_ms, "it was my brother")
    with pytest.raises(AppealExists):
        await store.file_appeal(device_ban.ban_id, device_token="device-1", statement="again")
    assert [a.appeal_id for a in await store.list_appeals(status="pending")] == [appeal.appeal_id]

    decided = await store.decide_appeal(appeal.appeal_id, lift=False, moderator="mod-bo", note="clear evidence")
    assert decided.lifted == [] and decided.appeal.status == "upheld"
    assert decided.appeal.decided_by == "mod-bo" and decided.appeal.decision_note == "clear evidence"
    assert (await verdict(store, device_token="device-1")).banned
    with pytest.raises(AppealAlreadyDecided):
        await store.decide_appeal(appeal.appeal_id, lift=True, moderator="mod-cy", note="")
    assert await store.list_appeals(status="pending") == []
    details = await store.details(device_ban.ban_id)
    assert details.appeal.status == "upheld"
    assert [e.action for e in details.audit] == ["issue", "appeal", "appeal_decision"]
    assert details.audit[1].actor == "device:device-1"


async def test_appeal_lifted_lifts_the_decisions_bans_and_voids_its_strike(store, clock, engine):
    await store.apply_decision(decision("w", m.ACTION_WARN), "e0")  # strike 1: a warning
    clock.advance(60)
    bans = (await store.apply_decision(decision("b", m.ACTION_BAN, duration_s=86400), "e1")).bans
    assert (await store.history(DEVICE)).active_strikes == 2
    appeal = await store.file_appeal(bans[0].ban_id, device_token="device-1", statement="not me")
    clock.advance(60)
    decided = await store.decide_appeal(appeal.appeal_id, lift=True, moderator="mod-bo", note="shared phone")
    assert sorted(b.ban_id for b in decided.lifted) == sorted(b.ban_id for b in bans)
    assert all(b.lifted_by == "mod-bo" and "appeal" in b.lift_reason for b in decided.lifted)
    assert not (await verdict(store, device_token="device-1")).banned
    assert not (await verdict(store, device_token="other", ip_hash="iphash-1")).watched  # its watches too
    history = await store.history(DEVICE)
    assert history.active_strikes == 1  # the voided strike no longer counts
    assert [s.voided_at_ms is not None for s in history.strikes] == [True, False]  # newest first
    assert history.next_penalty == Rung(True, 3600)
    # every lift is in the change log, for the other replicas and the announcements
    lifts = [ch for ch in await store.changes_after(0) if ch.change == "lift"]
    assert sorted(ch.ban.ban_id for ch in lifts) == sorted(b.ban_id for b in bans)


async def test_who_may_appeal_and_when(store, clock):
    device_ban = await issue(store, duration_s=3600)
    ip_ban = await issue(store, IP, enforce=True)
    with pytest.raises(AppealRefused) as refused:
        await store.file_appeal(device_ban.ban_id, device_token="someone-else", statement="s")
    assert refused.value.refusal is AppealRefusal.NOT_YOURS
    with pytest.raises(BanNotFound):
        await store.file_appeal("no-such-ban", device_token="device-1", statement="s")
    # a ban on an address is appealed from that address
    await store.file_appeal(ip_ban.ban_id, device_token="any-device", ip_hash="iphash-1", statement="school wifi")
    session_ban = await issue(store, Subject(SubjectKind.SESSION_ID, "s1"))
    with pytest.raises(AppealRefused) as refused:
        await store.file_appeal(session_ban.ban_id, device_token="device-1", statement="s")
    assert refused.value.refusal is AppealRefusal.NOT_APPEALABLE
    lifted = await issue(store, Subject(SubjectKind.DEVICE_TOKEN, "device-2"))
    await store.lift(lifted.ban_id, by="admin", reason="r")
    with pytest.raises(AppealRefused) as refused:
        await store.file_appeal(lifted.ban_id, device_token="device-2", statement="s")
    assert refused.value.refusal is AppealRefusal.LIFTED
    clock.advance(20 * 86400 + 1)  # past the window (the ban itself expired long ago)
    with pytest.raises(AppealRefused) as refused:
        await store.file_appeal(device_ban.ban_id, device_token="device-1", statement="s")
    assert refused.value.refusal is AppealRefusal.WINDOW_CLOSED
    with pytest.raises(AppealNotFound):
        await store.decide_appeal("no-such-appeal", lift=True, moderator="m", note="")


async def test_concurrent_appeals_of_one_ban_one_wins(store):
    ban = await issue(store)
    results = await asyncio.gather(*(store.file_appeal(ban.ban_id, device_token="device-1", statement=f"s{i}")
                                     for i in range(4)), return_exceptions=True)
    assert sum(isinstance(r, AppealExists) for r in results) == 3
    assert len(await store.list_appeals()) == 1


async def test_history_of_a_device_and_of_an_address(store, clock):
    await store.apply_decision(decision("w", m.ACTION_WARN, category=c.CATEGORY_SPAM), "e0")
    clock.advance(1)
    bans = (await store.apply_decision(decision("b", m.ACTION_WARN, category=c.CATEGORY_SPAM), "e1")).bans
    clock.advance(1)
    manual = await issue(store, duration_s=60)
    await store.lift(manual.ban_id, by="admin", reason="typo")
    history = await store.history(DEVICE)
    assert [b.ban_id for b in history.bans] == [manual.ban_id, bans[0].ban_id]  # newest first, lifted too
    assert (history.active_strikes, history.next_penalty) == (2, Rung(True, 86400))
    assert {e.action for e in history.audit} == {"issue", "lift"}
    address = await store.history(IP)
    assert [b.ban_id for b in address.bans] == [bans[1].ban_id]
    assert (address.strikes, address.next_penalty) == ([], None)


# ------------------------------------------------------------ what the index and the outbox read

async def test_change_log_gives_each_change_with_the_bans_state_now(store, clock):
    start = await store.last_change_id()
    first = await issue(store, duration_s=60)
    second = await issue(store, IP)
    await store.lift(first.ban_id, by="admin", reason="r")
    changes = await store.changes_after(start)
    assert [(ch.change, ch.ban.ban_id) for ch in changes] == [
        ("issue", first.ban_id), ("issue", second.ban_id), ("lift", first.ban_id)]
    assert changes[0].ban.lifted_at_ms is not None  # the state now, not then
    assert [ch.change_id for ch in await store.changes_after(changes[1].change_id)] == [changes[2].change_id]
    assert await store.last_change_id() == changes[-1].change_id


async def test_announcement_outbox(store, clock):
    ban = await issue(store)
    clock.advance(10)
    assert [ch.ban.ban_id for ch in await store.unannounced(older_than_ms=clock.now_ms)] == [ban.ban_id]
    assert await store.unannounced(older_than_ms=T0) == []  # not older than that
    await store.mark_announced(ban.ban_id, "issue")
    assert await store.unannounced(older_than_ms=clock.now_ms) == []
    await store.lift(ban.ban_id, by="a", reason="r")
    clock.advance(10)
    [lift] = await store.unannounced(older_than_ms=clock.now_ms)
    await store.mark_change_announced(lift.change_id)
    assert await store.unannounced(older_than_ms=clock.now_ms) == []


async def test_active_bans_in_batches(store, clock):
    bans = [await issue(store, Subject(SubjectKind.DEVICE_TOKEN, f"d{i}"), duration_s=60 if i % 2 else 0)
            for i in range(7)]
    await store.lift(bans[0].ban_id, by="a", reason="r")
    loaded = [ban async for batch in store.active_bans(batch=2) for ban in batch]
    assert sorted(b.ban_id for b in loaded) == sorted(b.ban_id for b in bans[1:])
    clock.advance(61)  # the timed ones have expired
    loaded = [ban async for batch in store.active_bans(batch=2) for ban in batch]
    assert sorted(b.ban_id for b in loaded) == sorted(b.ban_id for b in bans[2::2])


async def test_evader_flags_once_per_device_and_ban(store, clock):
    watch = await issue(store, PREFIX)
    flag = await store.flag_evader(device_token="new-dev", ban=watch, ip_hash="ip-x", ip_prefix_hash="prefix-1",
                                   reason="in a banned range")
    assert flag is not None and flag.ban == watch
    assert await store.flag_evader(device_token="new-dev", ban=watch, ip_hash="ip-y", ip_prefix_hash="prefix-1",
                                   reason="again") is None
    assert await store.flag_evader(device_token="other-dev", ban=watch, ip_hash="ip-x",
                                   ip_prefix_hash="prefix-1", reason="r") is not None
    clock.advance(1)
    pending = await store.unpublished_flags(older_than_ms=clock.now_ms)
    assert {f.device_token for f in pending} == {"new-dev", "other-dev"}
    await store.mark_flag_published(flag.suspicion_id)
    assert [f.device_token for f in await store.unpublished_flags(older_than_ms=clock.now_ms)] == ["other-dev"]


# ------------------------------------------------------------ schema

async def test_migrations_run_twice_are_a_no_op_and_match_the_schema(engine, store):
    ban = await issue(store)
    await migrate_store(engine)  # second run: nothing to do, nothing lost
    await migrate_store(engine)
    async with engine.connect() as conn:
        versions = (await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))).scalars().all()
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), schema.metadata))
    assert versions == ["0002"]
    assert await store.get(ban.ban_id) == ban
    # The migration creates exactly what schema.py describes (the version
    # table aside, which alembic owns).
    differences = [d for d in differences if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)]
    assert differences == []


async def test_upgrading_from_the_first_schema_keeps_address_bans_refusing(database_url):
    """Bans issued before watch bans existed refused everyone on the address;
    after the upgrade they still do, and everything is appealable for 20 days."""
    engine = make_engine(database_url)

    def upgrade_to(revision):
        def run(connection):
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["version_table"] = VERSION_TABLE
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        return run

    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to("0001"))
            await conn.execute(text(
                "INSERT INTO bans (ban_id, subject_kind, subject_value, scope, category, reason, issued_by, "
                "issued_at_ms, expires_at_ms) VALUES "
                f"('old-ip', 'ip_hash', 'ip-old', 1, 1, 'r', 'x', {T0}, 0), "
                f"('old-dev', 'device_token', 'dev-old', 1, 1, 'r', 'x', {T0}, 0)"))
        await migrate_store(engine)
        store = BanStore(engine, SteppedClock())
        ip_ban, device_ban = await store.get("old-ip"), await store.get("old-dev")
        assert ip_ban.enforce_on_address and not device_ban.enforce_on_address
        assert ip_ban.appealable_until_ms == T0 + 20 * DAY_MS
        assert (await store.verdict_for(device_token="any", ip_hash="ip-old", mode=c.MODE_TEXT)).ban == ip_ban
    finally:
        await engine.dispose()
