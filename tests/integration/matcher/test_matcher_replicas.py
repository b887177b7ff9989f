"""The matcher as real processes on the real broker: partitions spread over
replicas, a standby taking over from a killed replica with the waiting users,
ticket expiry, and duplicate requests."""
from __future__ import annotations

import asyncio
import signal
import time
import uuid

import grpc
import pytest

from parley.v1 import common_pb2, events_pb2, matcher_pb2, matcher_pb2_grpc
from services.chat.client import ChatClient
from services.runtime.bus import Bus
from services.runtime.topology import gateway_relay, match_routing_key, matcher_partition
from tests.support import metric_value

pytestmark = pytest.mark.integration
ADULT, MINOR, TEXT = common_pb2.AGE_BAND_ADULT, common_pb2.AGE_BAND_MINOR, common_pb2.MODE_TEXT
PARTITIONS = 8


def waiting(matcher) -> int:
    with grpc.insecure_channel(matcher.grpc_addr) as channel:
        stats = matcher_pb2_grpc.MatcherStub(channel).GetStats(matcher_pb2.GetStatsRequest(), timeout=2)
    return sum(pool.waiting for pool in stats.pools)


async def eventually(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.1)


async def test_a_standby_takes_over_the_waiting_users_of_a_killed_matcher(start_service):
    first = start_service("matcher")
    second = start_service("matcher")
    gateway = start_service("gateway")
    # Users who cannot be paired with each other (interests only, nothing
    # shared), in several pools, so they wait.
    waiting_users = []
    for i, (band, lang) in enumerate([(ADULT, "en"), (ADULT, "de"), (MINOR, "en"), (ADULT, "fr")]):
        client = await ChatClient.connect(gateway.grpc_addr)
        await client.join(age_band=band, language=lang, interests=[f"topic{i}"], interests_only=True)
        await client.expect("waiting")
        waiting_users.append((client, band, lang, f"topic{i}"))
    await eventually(lambda: waiting(first) + waiting(second) == 4, 10, "4 users held by the matchers")
    holder, standby = (first, second) if waiting(first) else (second, first)

    holder.process.send_signal(signal.SIGKILL)
    holder.process.wait(5)
    killed_at = time.monotonic()
    # Every waiting user is still waiting, now on the standby...
    await eventually(lambda: waiting(standby) == 4, 5, "the standby holds all 4 waiting users")
    # ... and is paired when a partner comes, without joining again.
    for client, band, lang, topic in waiting_users:
        partner = await ChatClient.connect(gateway.grpc_addr)
        await partner.join(age_band=band, language=lang, interests=[topic])
        connected = (await client.expect("connected", timeout=5)).connected
        assert list(connected.common_interests) == [topic]
        await partner.expect("connected", timeout=5, skip=("waiting",))
        await partner.close()
    assert time.monotonic() - killed_at < 5 + 4 * 2
    assert metric_value(standby.metrics_port, "parley_matcher_failovers_total") >= 1
    for client, *_ in waiting_users:
        await client.close()


async def test_partitions_spread_over_replicas(start_service):
    first = start_service("matcher")
    second = start_service("matcher")

    def owned() -> tuple[float, float]:
        return (metric_value(first.metrics_port, "parley_matcher_partitions_owned"),
                metric_value(second.metrics_port, "parley_matcher_partitions_owned"))

    await eventually(lambda: sum(owned()) == PARTITIONS and all(owned()), 10,
                     "both replicas own partitions and together all of them")
    # ... and the first, which had them all, has handed the second its share.
    rebalances = lambda: metric_value(first.metrics_port, "parley_matcher_rebalances_total")  # noqa: E731
    await eventually(lambda: rebalances() >= PARTITIONS - owned()[0], 10,
                     "the first replica handed over the partitions it does not own")
    gateway = start_service("gateway")
    # Traffic in many pools reaches both replicas.
    clients = []
    for lang in ["en", "de", "fr", "es", "it", "pt", "nl", "pl", "sv", "tr"]:
        pair = [await ChatClient.connect(gateway.grpc_addr) for _ in range(2)]
        for client in pair:
            await client.join(language=lang)
        for client in pair:
            await client.expect("connected", timeout=10, skip=("waiting",))
        clients += pair
    pairs = tuple(metric_value(replica.metrics_port, "parley_matcher_pairs_total") for replica in (first, second))
    assert sum(pairs) == 10 and all(pairs), pairs
    for client in clients:
        await client.close()


@pytest.fixture
async def fake_gateway(amqp_url):
    """The test plays a gateway: publishes requests, reads MatchFound."""
    gateway_id = f"fake-{uuid.uuid4().hex[:6]}"
    bus = Bus(amqp_url, "gateway", gateway_id)
    await bus.connect(timeout=10)
    found: asyncio.Queue = asyncio.Queue()
    # A pool of this test's own: requests other tests left in the module's
    # durable queues never pair with this test's users.
    language = "".join(chr(ord("a") + b % 26) for b in uuid.uuid4().bytes[:3])

    async def on_relay(envelope):
        if envelope.WhichOneof("event") == "match_found":
            await found.put(envelope.match_found)

    await bus.consume(gateway_relay(gateway_id), on_relay)

    async def request(session: str, device: str, ticket: str | None = None, **fields):
        message = events_pb2.MatchRequested(
            ticket_id=ticket or uuid.uuid4().hex, device_token=device, mode=TEXT, age_band=ADULT,
            language=language, requested_at_unix_ms=int(time.time() * 1000),
            session=common_pb2.SessionRef(gateway_id=gateway_id, session_id=session), **fields)
        partition = matcher_partition(TEXT, ADULT, language, PARTITIONS)
        await bus.publish(message, routing_key=match_routing_key("match_requested", partition))
        return message

    yield request, found
    await bus.close()


async def test_a_ticket_nobody_renews_expires(start_service, fake_gateway):
    matcher = start_service("matcher", PARLEY_MATCHER_TICKET_TTL_SECONDS="1")
    request, found = fake_gateway
    await request("ghost", "ghost-device", interests=["x"], interests_only=True)
    await eventually(lambda: waiting(matcher) == 1, 5, "the ghost waits")
    await eventually(lambda: waiting(matcher) == 0, 5, "the ghost expired")
    assert metric_value(matcher.metrics_port, "parley_matcher_tickets_expired_total") == 1
    await request("real", "real-device", interests=["x"])
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(found.get(), 1.0)


async def test_duplicate_and_replayed_requests_pair_once(start_service, fake_gateway):
    matcher = start_service("matcher")
    request, found = fake_gateway
    first = await request("s1", "d1")
    await request("s1", "d1", ticket=first.ticket_id)  # a duplicate: a renewal of the same ticket
    await eventually(lambda: waiting(matcher) == 1, 5, "one ticket, not two")
    await request("s2", "d2")
    match = await asyncio.wait_for(found.get(), 5)
    assert {match.a.session.session_id, match.b.session.session_id} == {"s1", "s2"}
    await request("s1", "d1", ticket=first.ticket_id)  # replayed after the pair
    await request("s3", "d3")
    # The replay makes no second pair; it only sends s1's result again (a
    # gateway that still renews a paired ticket never got its result).
    again = await asyncio.wait_for(found.get(), 5)
    assert again.match_id == match.match_id
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(found.get(), 1.0)
    assert waiting(matcher) == 1  # only s3
