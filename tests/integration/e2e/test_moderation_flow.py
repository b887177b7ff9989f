"""Moderation end to end, every service a real process on the real broker:
two strangers talk through a real gateway (gRPC sessions), the gateway
copies each line and video snapshot to moderation, the detectors judge
them, and what they decide reaches the users: a warning, an ended
conversation, and for severe cases a permanent ban that the ban service
applies and the gateway enforces at once (the banned frame) and at the next
connection. A child-safety review item with the conversation's lines, or
the snapshot in the evidence vault, waits for a human.

Every client here connects from 127.0.0.1. A severe snapshot ban covers the
offender's address too (the ban service's policy for severe categories), so
it reaches the other stranger of these tests as well; that is not asserted."""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import aio_pika
import grpc
import pytest

from parley.v1 import common_pb2 as c
from parley.v1 import events_pb2, gateway_pb2
from parley.v1 import moderation_pb2 as m
from parley.v1 import moderation_pb2_grpc
from services.chat.client import ChatClient, SessionClosed
from services.moderation.snapshots import decode_snapshot, pdq_hashes
from services.runtime import envelope as env
from services.runtime.topology import EVENTS_EXCHANGE
from tests.integration.moderation.servicekit import As, eventually, start_moderation, take_from_queue

pytestmark = pytest.mark.integration

SNAPSHOTS = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots"
SCENE = (SNAPSHOTS / "scene.jpg").read_bytes()
PASS_OVER = ("typing", "notice", "message", "stranger_disconnected")


def stack(start_service, **moderation_settings):
    ban = start_service("ban")
    moderation = start_moderation(start_service, **moderation_settings)
    start_service("matcher")
    gateway = start_service("gateway", PARLEY_GATEWAY_BAN_ADDR=ban.grpc_addr)
    return gateway, moderation


@pytest.fixture
async def channel(amqp_url):
    connection = await aio_pika.connect(amqp_url)
    yield await connection.channel()
    await connection.close()


@pytest.fixture
async def decisions(channel):
    """A copy of every moderation.decision_made (the ban service consumes
    the real queue)."""
    events = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(f"test.decisions.{uuid.uuid4().hex[:6]}", exclusive=True)
    await queue.bind(events, "moderation.decision_made")
    return queue


async def next_decision(queue) -> events_pb2.DecisionMade:
    async def published():
        message = await queue.get(no_ack=True, fail=False)
        return env.decode(message.body, message.content_type, message.type) if message else None
    return (await eventually(published, 60)).decision_made


async def pair(gateway, mode, band) -> tuple[ChatClient, ChatClient, str]:
    interest = uuid.uuid4().hex[:8]
    a, b = await ChatClient.connect(gateway.grpc_addr), await ChatClient.connect(gateway.grpc_addr)
    for client in (a, b):
        await client.join(mode=mode, age_band=band, interests=[interest])
    connected = (await a.expect("connected", timeout=30, skip=("waiting",))).connected
    await b.expect("connected", timeout=30, skip=("waiting",))
    return a, b, connected.match_id


async def converse(speakers: dict[str, ChatClient], lines) -> None:
    """Each line said and seen by the other side before the next one."""
    for who, text in lines:
        other = speakers["b" if who == "a" else "a"]
        await speakers[who].say(text)
        got = await other.expect("message", timeout=30, skip=("typing", "notice"))
        assert got.message.text == text


async def open_items(api, match_id: str):
    reply = await api.ListReviewItems(m.ListReviewItemsRequest(status=m.REVIEW_STATUS_OPEN, limit=500), timeout=5)
    found = [item for item in reply.items if item.match_id == match_id]
    return found[0] if found else None


async def test_an_adult_grooming_in_a_minors_pool_is_banned_and_the_case_escalated(
        start_service, decisions):
    gateway, moderation = stack(start_service)
    adult, minor, match_id = await pair(gateway, c.MODE_TEXT, c.AGE_BAND_MINOR)
    lines = [("a", "hey"), ("b", "hi"), ("a", "how old are u"), ("b", "13"), ("a", "cool. ur really pretty i bet"),
             ("b", "lol thanks"), ("a", "are your parents home"), ("b", "no theyre at work"),
             ("a", "good. dont tell them about me ok, its our secret")]
    await converse({"a": adult, "b": minor}, lines)

    # the conversation ends at once, then the ban ends the adult's session
    ended = (await adult.expect("notice", timeout=60, skip=("typing", "message"))).notice
    while not ended.conversation_ended:  # a warning came first
        ended = (await adult.expect("notice", timeout=60, skip=("typing", "message"))).notice
    assert ended.category == c.CATEGORY_CHILD_SAFETY and ended.match_id == match_id
    await minor.expect("stranger_disconnected", timeout=60, skip=("typing", "message"))
    banned = (await adult.expect("banned", timeout=60, skip=PASS_OVER)).banned
    assert banned.category == c.CATEGORY_CHILD_SAFETY and banned.expires_at_unix_ms == 0  # permanent
    with pytest.raises(SessionClosed):
        await ChatClient.connect(gateway.grpc_addr, device_token=adult.device_token)

    decision = await next_decision(decisions)
    assert (decision.action, decision.duration_s, decision.category) == (m.ACTION_BAN, 0, c.CATEGORY_CHILD_SAFETY)
    assert decision.moderator == "auto:text.grooming" and decision.subject.device_token == adult.device_token

    async with grpc.aio.insecure_channel(moderation.grpc_addr) as grpc_channel:
        carol = As(moderation_pb2_grpc.ModerationStub(grpc_channel), "carol")

        async def escalated():
            return await open_items(carol, match_id)
        item = await eventually(escalated, 60)
        case = await carol.GetReviewItem(m.GetReviewItemRequest(item_id=item.item_id), timeout=5)
    assert case.category == c.CATEGORY_CHILD_SAFETY and case.child_safety and case.priority >= 7699
    assert case.reported.device_token == adult.device_token
    assert [(line.from_reporter, line.text) for line in case.evidence] == [(who == "b", text) for who, text in lines]

    # the minor is not punished: they look for someone else
    await minor.next()
    await minor.expect("waiting", timeout=30, skip=PASS_OVER)
    await adult.close(), await minor.close()


async def test_a_snapshot_from_a_hash_bank_ends_the_session_with_a_permanent_ban(
        start_service, tmp_path, decisions):
    bank = tmp_path / "known.txt"
    pdq = pdq_hashes(decode_snapshot(SCENE).pdq_rgb).hex
    bank.write_text(f"{pdq},known-item-1\n")
    gateway, moderation = stack(start_service, PARLEY_MODERATION_HASH_BANKS=f"known={bank}")
    a, b, match_id = await pair(gateway, c.MODE_VIDEO, c.AGE_BAND_ADULT)

    await a.send(snapshot=gateway_pb2.Snapshot(jpeg=SCENE))
    ended = await a.expect("notice", timeout=60)
    assert ended.notice.conversation_ended and ended.notice.category == c.CATEGORY_KNOWN_BAD_HASH
    banned = (await a.expect("banned", timeout=60, skip=PASS_OVER)).banned
    assert banned.category == c.CATEGORY_KNOWN_BAD_HASH and banned.expires_at_unix_ms == 0

    decision = await next_decision(decisions)
    assert (decision.action, decision.duration_s) == (m.ACTION_BAN, 0)
    assert decision.category == c.CATEGORY_KNOWN_BAD_HASH and decision.moderator == "auto:snapshot.hash_bank"
    assert decision.subject.device_token == a.device_token and decision.subject.ip_hash

    async with grpc.aio.insecure_channel(moderation.grpc_addr) as grpc_channel:
        carol = As(moderation_pb2_grpc.ModerationStub(grpc_channel), "carol")

        async def escalated():
            return await open_items(carol, match_id)
        item = await eventually(escalated, 60)
        case = await carol.GetReviewItem(m.GetReviewItemRequest(item_id=item.item_id), timeout=5)
    assert case.category == c.CATEGORY_KNOWN_BAD_HASH and case.child_safety and case.priority >= 7699
    assert f"pdq:{pdq}" in case.snapshot_hashes
    assert hashlib.sha256(SCENE).hexdigest() in case.vault_sha256
    await a.close(), await b.close()


async def test_abuse_among_adults_gets_a_warning_and_the_conversation_goes_on(start_service):
    gateway, _moderation = stack(start_service)
    a, b, match_id = await pair(gateway, c.MODE_TEXT, c.AGE_BAND_ADULT)
    await a.say("you are a fucking idiot")
    notice = (await a.expect("notice", timeout=60)).notice
    assert notice.category == c.CATEGORY_HARASSMENT and not notice.conversation_ended and notice.message
    assert notice.match_id == match_id
    await b.expect("message", timeout=30)
    await a.say("sorry, bad day")
    assert (await b.expect("message", timeout=30)).message.text == "sorry, bad day"
    await a.close(), await b.close()


async def test_a_snapshot_that_is_no_image_is_dead_lettered_and_the_session_goes_on(start_service, channel):
    gateway, moderation = stack(start_service)
    a, b, _ = await pair(gateway, c.MODE_VIDEO, c.AGE_BAND_ADULT)
    bogus = b"\xff\xd8\xff\xe0" + uuid.uuid4().bytes * 64  # a JPEG's first bytes, then nothing of one
    await a.send(snapshot=gateway_pb2.Snapshot(jpeg=bogus))
    sha = hashlib.sha256(bogus).hexdigest()

    def is_ours(message) -> bool:
        envelope = env.decode(message.body, message.content_type, message.type)
        return envelope.snapshot_observed.sha256 == sha
    dead = await take_from_queue(channel, "moderation.snapshots.dlq", is_ours, 60)
    assert dead.headers["x-parley-reason"].startswith("snapshot ")
    await a.say("still here")
    assert (await b.expect("message", timeout=30)).message.text == "still here"
    await a.close(), await b.close()
