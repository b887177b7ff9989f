"""Two ban replicas on one PostgreSQL database: whatever one of them (or the
database alone) changes, the other's CheckBan agrees; a decision delivered
twice makes one strike; a suspected evader is flagged once between them."""
from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from parley.v1 import ban_pb2, common_pb2 as c, events_pb2, moderation_pb2 as m
from services.ban.model import Subject, SubjectKind
from services.ban.store import BanStore
from services.runtime.db import make_engine
from tests.integration.ban.ban_support import check_request, eventually, stub_for, unique
from tests.support import metric_value

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
async def database(pg_url):
    """A database of this test's own on the run's PostgreSQL server."""
    name = f"ban_replicas_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
def replicas(start_service, database):
    return [start_service("ban", PARLEY_BAN_DATABASE_URL=database) for _ in range(2)]


async def agree(stubs, request, banned: bool) -> bool:
    """Every replica answers `banned` for `request`, eventually."""
    async def probe():
        replies = await asyncio.gather(*(stub.CheckBan(request) for stub in stubs))
        return all(reply.banned is banned for reply in replies)
    return await eventually(probe, timeout=15)


async def test_a_ban_on_one_replica_holds_on_the_other_by_its_event(start_service, database):
    """The ban events alone keep the replicas agreeing (the poll and the
    outbox, their backstops, are held back for this test)."""
    replicas = [start_service("ban", PARLEY_BAN_DATABASE_URL=database, PARLEY_BAN_POLL_INTERVAL_SECONDS="60",
                              PARLEY_BAN_OUTBOX_INTERVAL_SECONDS="300") for _ in range(2)]
    (a_channel, a), (b_channel, b) = stub_for(replicas[0]), stub_for(replicas[1])
    async with a_channel, b_channel:
        ban = await a.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(device_token="dev-r1"),
                                                       reason="r", category=c.CATEGORY_SPAM, duration_s=3600))
        assert await agree([a, b], check_request("dev-r1"), banned=True)
        reply = await b.CheckBan(check_request("dev-r1"))
        assert reply.ban == ban
        # lifted on the other one
        await b.LiftBan(ban_pb2.LiftBanRequest(ban_id=ban.ban_id, reason="mistake", lifted_by="mod"))
        assert await agree([a, b], check_request("dev-r1"), banned=False)
        # watch bans travel too (on the watch keys the gateways do not hear)
        watch = await b.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(ip_hash="ip-r1"), reason="r"))

        async def flagged_on_a():
            return (await a.CheckBan(check_request("someone", ip_hash="ip-r1"))).suspected_evader
        assert await eventually(flagged_on_a, timeout=15)
        await a.LiftBan(ban_pb2.LiftBanRequest(ban_id=watch.ban_id, reason="r"))

        async def unflagged_on_b():
            return not (await b.CheckBan(check_request("someone-else", ip_hash="ip-r1"))).suspected_evader
        assert await eventually(unflagged_on_b, timeout=15)


async def test_a_change_no_event_announced_reaches_every_replica_by_the_poll(start_service, database):
    """Written straight to the database (as if its event was lost): both
    replicas pick it up from the change log. (Their outbox, which would
    announce it after a while, is held back for this test.)"""
    replicas = [start_service("ban", PARLEY_BAN_DATABASE_URL=database, PARLEY_BAN_OUTBOX_INTERVAL_SECONDS="300")
                for _ in range(2)]
    engine = make_engine(database)
    try:
        store = BanStore(engine)
        (a_channel, a), (b_channel, b) = stub_for(replicas[0]), stub_for(replicas[1])
        async with a_channel, b_channel:
            ban = await store.issue(Subject(SubjectKind.DEVICE_TOKEN, "dev-quiet"), scope=c.BAN_SCOPE_ALL,
                                    category=c.CATEGORY_SPAM, duration_s=0, reason="r", issued_by="test")
            assert await agree([a, b], check_request("dev-quiet"), banned=True)
            await store.lift(ban.ban_id, by="test", reason="r")
            assert await agree([a, b], check_request("dev-quiet"), banned=False)
    finally:
        await engine.dispose()


async def test_a_decision_delivered_twice_makes_one_strike_and_both_agree(replicas, publisher):
    device = unique("dev")
    decision = events_pb2.DecisionMade(decision_id=unique("dec"), action=m.ACTION_BAN, duration_s=3600,
                                       category=c.CATEGORY_HARASSMENT, moderator="mod",
                                       subject=c.Identity(device_token=device))
    await asyncio.gather(*(publisher.publish(decision) for _ in range(4)))
    (a_channel, a), (b_channel, b) = stub_for(replicas[0]), stub_for(replicas[1])
    async with a_channel, b_channel:
        assert await agree([a, b], check_request(device), banned=True)

        async def all_four_handled():
            return sum(metric_value(replica.metrics_port, "parley_ban_decisions_total", action="ban")
                       for replica in replicas) >= 4
        assert await eventually(all_four_handled)
        assert sum(metric_value(replica.metrics_port, "parley_ban_decisions_total", action="ban", outcome="applied")
                   for replica in replicas) == 1
        history = await a.GetHistory(ban_pb2.GetHistoryRequest(subject=ban_pb2.Subject(device_token=device)))
        assert len(history.strikes) == 1 and len(history.bans) == 1


async def test_a_suspected_evader_is_flagged_once_between_replicas(replicas, broker):
    (a_channel, a), (b_channel, b) = stub_for(replicas[0]), stub_for(replicas[1])
    async with a_channel, b_channel:
        watch = await a.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(ip_prefix_hash="pre-r"),
                                                         reason="r", category=c.CATEGORY_SPAM))

        async def seen_by_b():
            return (await b.CheckBan(check_request("probe-device", ip_prefix_hash="pre-r"))).suspected_evader
        assert await eventually(seen_by_b, timeout=15)
        for _ in range(5):
            await asyncio.gather(a.CheckBan(check_request("new-phone", ip_prefix_hash="pre-r")),
                                 b.CheckBan(check_request("new-phone", ip_prefix_hash="pre-r")))
    events = await broker.suspicions_for(watch.ban_id, wanted=2)
    devices = sorted(e.evader_suspected.identity.device_token for e in events)
    assert devices == ["new-phone", "probe-device"]


async def test_a_replica_that_restarts_loads_what_changed_while_it_was_down(replicas):
    first, second = replicas
    assert first.stop() == 0
    channel, stub = stub_for(second)
    async with channel:
        ban = await stub.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(device_token="dev-down"),
                                                          reason="r", category=c.CATEGORY_SPAM))
    first.start()
    channel, stub = stub_for(first)
    async with channel:
        reply = await stub.CheckBan(check_request("dev-down"))
        assert reply.banned and reply.ban == ban
