"""What the gateway does for moderation, through the real broker: video
snapshots go out as events, and moderation's verdicts on a conversation
(warn, end it) come back on the relay exchange and reach the user."""
from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest

from parley.v1 import common_pb2, events_pb2, gateway_pb2
from services.chat.client import ChatClient
from services.runtime.bus import Bus
from services.runtime.topology import moderation_snapshots

pytestmark = pytest.mark.integration
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
Kind = events_pb2.SessionAction.Kind


@pytest.fixture
async def moderation_bus(amqp_url):
    """The test plays the moderation service on the broker."""
    bus = Bus(amqp_url, "moderation", f"test-{uuid.uuid4().hex[:6]}")
    await bus.connect()
    yield bus
    await bus.close()


async def video_pair(gateway) -> tuple[ChatClient, ChatClient, str]:
    a, b = await ChatClient.connect(gateway.grpc_addr), await ChatClient.connect(gateway.grpc_addr)
    for client in (a, b):
        await client.join(mode=common_pb2.MODE_VIDEO, age_band=common_pb2.AGE_BAND_MINOR, interests=["kites"])
    connected = (await a.expect("connected", timeout=10, skip=("waiting",))).connected
    await b.expect("connected", timeout=10, skip=("waiting",))
    return a, b, connected.match_id


async def test_snapshots_reach_moderation_and_its_verdicts_reach_the_user(start_service, moderation_bus):
    received: asyncio.Queue = asyncio.Queue()

    async def on_snapshot(envelope):
        await received.put(envelope.snapshot_observed)

    await moderation_bus.consume(moderation_snapshots(), on_snapshot)
    start_service("matcher")
    gateway = start_service("gateway", PARLEY_INSTANCE_ID="gw-moderated")
    a, b, match_id = await video_pair(gateway)

    await a.send(snapshot=gateway_pb2.Snapshot(jpeg=JPEG))
    observed = await asyncio.wait_for(received.get(), 5)
    assert observed.jpeg == JPEG and observed.sha256 == hashlib.sha256(JPEG).hexdigest()
    assert observed.match_id == match_id and observed.age_band == common_pb2.AGE_BAND_MINOR
    assert observed.session.session_id == a.session_id and observed.identity.device_token == a.device_token

    await moderation_bus.send_relay("gw-moderated", events_pb2.SessionAction(
        session=observed.session, match_id=match_id, kind=Kind.KIND_WARN,
        category=common_pb2.CATEGORY_CONTACT_SOLICITATION, message="Please don't share contact details."))
    notice = (await a.expect("notice")).notice
    assert notice.message == "Please don't share contact details." and not notice.conversation_ended

    await moderation_bus.send_relay("gw-moderated", events_pb2.SessionAction(
        session=observed.session, match_id=match_id, kind=Kind.KIND_END_CONVERSATION,
        category=common_pb2.CATEGORY_SEXUAL_CONTENT, message="Nudity is not allowed here."))
    notice = (await a.expect("notice")).notice
    assert notice.conversation_ended and notice.category == common_pb2.CATEGORY_SEXUAL_CONTENT
    await b.expect("stranger_disconnected")
    # The session goes on: a may look for someone else.
    await a.next()
    await a.expect("waiting")
    await a.close(), await b.close()


async def test_a_bad_snapshot_gets_an_error_and_nothing_is_sent(start_service, moderation_bus):
    received: asyncio.Queue = asyncio.Queue()

    async def on_snapshot(envelope):
        await received.put(envelope.snapshot_observed)

    await moderation_bus.consume(moderation_snapshots(), on_snapshot)
    start_service("matcher")
    gateway = start_service("gateway")
    a, b, _ = await video_pair(gateway)
    await a.send(snapshot=gateway_pb2.Snapshot(jpeg=b"<html>not an image</html>"))
    assert (await a.expect("error")).error.code == gateway_pb2.Error.CODE_INVALID_FRAME
    await a.send(snapshot=gateway_pb2.Snapshot(jpeg=JPEG))
    assert (await asyncio.wait_for(received.get(), 5)).jpeg == JPEG  # only the good one
    assert received.empty()
    await a.close(), await b.close()
