"""Enforcement end to end: a moderation decision (published as the
moderation service publishes it) reaches the ban service, which applies the
ladder and announces the ban; the gateway ends the live session and refuses
the next connection. Bystanders on the same address are not punished; a
severe case is refused on the address; an appeal lets the person back; a ban
outlives a restart of the ban service. How fast a session ends is measured
by `make bench-ban`, not asserted here."""
from __future__ import annotations

import uuid

import grpc
import pytest

from parley.v1 import ban_pb2, ban_pb2_grpc, common_pb2 as c, events_pb2, moderation_pb2 as m
from services.chat.client import ChatClient, SessionClosed
from services.gateway.identity import AddressHasher
from services.runtime.bus import Bus
from tests.integration.ban.ban_support import Broker, eventually

pytestmark = pytest.mark.integration

# Every client of these tests connects from 127.0.0.1: one address, as for
# the people behind a school's or a carrier's NAT.
PEPPER = "test-pepper"  # conftest's service_env


@pytest.fixture
def stack(start_service):
    ban = start_service("ban")
    start_service("matcher")
    gateways = [start_service("gateway", PARLEY_GATEWAY_BAN_ADDR=ban.grpc_addr) for _ in range(2)]
    return {"ban": ban, "gateways": gateways, "start": start_service}


@pytest.fixture
async def moderation(amqp_url):
    """Publishes decisions the way the moderation service does."""
    bus = Bus(amqp_url, "moderation", "e2e-test")
    await bus.connect()
    yield bus
    await bus.close()


@pytest.fixture
async def broker(amqp_url):
    async with Broker(amqp_url) as broker:
        yield broker


def identity_of(client: ChatClient) -> c.Identity:
    """What the gateway knows of the client, as a report carries it."""
    return AddressHasher(PEPPER).identity("127.0.0.1", client.device_token)


def decision(subject: c.Identity, action=m.ACTION_BAN, category=c.CATEGORY_HARASSMENT,
             duration_s=3600) -> events_pb2.DecisionMade:
    return events_pb2.DecisionMade(decision_id=uuid.uuid4().hex, item_id="item", report_id="report",
                                   subject=subject, action=action, category=category, duration_s=duration_s,
                                   moderator="mod-e2e", note="abuse")


async def chatting_pair(gateway_a, gateway_b):
    a, b = await ChatClient.connect(gateway_a.grpc_addr), await ChatClient.connect(gateway_b.grpc_addr)
    await a.join(), await b.join()
    await a.expect("connected", timeout=15, skip=("waiting",))
    await b.expect("connected", timeout=15, skip=("waiting",))
    return a, b


async def refused(gateway, device_token: str = "") -> bool:
    try:
        client = await ChatClient.connect(gateway.grpc_addr, device_token=device_token)
    except SessionClosed as closed:
        assert "banned" in str(closed)
        return True
    await client.close()
    return False


async def test_a_decision_ends_the_session_and_spares_the_bystander_on_the_same_address(stack, moderation, broker):
    g1, g2 = stack["gateways"]
    a, b = await chatting_pair(g1, g2)  # b, to be banned, on the second gateway; a shares b's address
    subject = identity_of(b)
    assert subject.ip_hash == identity_of(a).ip_hash

    await moderation.publish(decision(subject))
    banned = (await b.expect("banned", timeout=10)).banned
    assert banned.reason == "abuse" and banned.expires_at_unix_ms > 0
    with pytest.raises(SessionClosed):
        await b.receive(timeout=5)
    # The bystander only lost a stranger: still connected, free to join again.
    await a.expect("stranger_disconnected", timeout=5)
    await a.join()
    await a.expect("waiting", timeout=5)
    await a.close()

    # The banned device is refused on either gateway; another device from
    # the same address is let in, and flagged for review as a suspected evader.
    for gateway in (g1, g2):
        assert await refused(gateway, b.device_token)
    newcomer = await ChatClient.connect(g1.grpc_addr)
    await newcomer.join()
    await newcomer.expect("waiting", timeout=5)
    await newcomer.close()

    async def flagged():
        events = await broker.drain(broker.suspicions, 0.2)
        return [e for e in events if e.evader_suspected.identity.device_token == newcomer.device_token]
    [suspicion] = await eventually(flagged)
    assert suspicion.evader_suspected.linked_subject.WhichOneof("kind") in ("ip_hash", "ip_prefix_hash")


async def test_a_severe_case_is_refused_on_the_address_with_any_device(stack, moderation):
    g1, g2 = stack["gateways"]
    a, b = await chatting_pair(g1, g2)
    await moderation.publish(decision(identity_of(b), action=m.ACTION_ESCALATE, category=c.CATEGORY_CHILD_SAFETY))
    banned = (await b.expect("banned", timeout=10)).banned
    assert banned.expires_at_unix_ms == 0  # permanent
    # a fresh device from that address gets nowhere
    assert await refused(g1) and await refused(g2)
    await a.close()


async def test_an_appeal_that_lifts_the_ban_lets_the_person_back(stack, moderation):
    g1, _ = stack["gateways"]
    person = await ChatClient.connect(g1.grpc_addr)
    await moderation.publish(decision(identity_of(person), duration_s=86400))
    await person.expect("banned", timeout=10)
    assert await refused(g1, person.device_token)

    async with grpc.aio.insecure_channel(stack["ban"].grpc_addr) as channel:
        bans = ban_pb2_grpc.BanStub(channel)
        [ban] = [b for b in (await bans.ListBans(ban_pb2.ListBansRequest())).bans
                 if b.subject.device_token == person.device_token]
        appeal = await bans.FileAppeal(ban_pb2.FileAppealRequest(
            ban_id=ban.ban_id, appellant=identity_of(person), statement="that was my cousin on my phone"))
        await bans.DecideAppeal(ban_pb2.DecideAppealRequest(
            appeal_id=appeal.appeal_id, outcome=ban_pb2.APPEAL_OUTCOME_LIFT, moderator="mod-e2e", note="ok"))

    async def back_in():
        return not await refused(g1, person.device_token)
    assert await eventually(back_in)


async def test_a_ban_outlives_a_restart_of_the_ban_service(stack, moderation):
    g1, _ = stack["gateways"]
    person = await ChatClient.connect(g1.grpc_addr)
    await moderation.publish(decision(identity_of(person)))
    await person.expect("banned", timeout=10)
    ban_service = stack["ban"]
    assert ban_service.stop() == 0
    ban_service.start()
    # A gateway started now never heard the ban.issued event: only the
    # restarted ban service can refuse the device.
    fresh_gateway = stack["start"]("gateway", PARLEY_GATEWAY_BAN_ADDR=ban_service.grpc_addr)
    assert await refused(fresh_gateway, person.device_token)
    assert not await refused(fresh_gateway)
