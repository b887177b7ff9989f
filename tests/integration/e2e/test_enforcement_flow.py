"""Reports and bans end to end: all four services as processes, the real
broker, real gRPC."""
from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from parley.v1 import ban_pb2, ban_pb2_grpc, common_pb2, moderation_pb2, moderation_pb2_grpc
from services.chat.client import ChatClient, SessionClosed, file_appeal
from tests.support import metric_value

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(start_service):
    ban = start_service("ban")
    moderation = start_service("moderation")
    start_service("matcher")
    gateways = [start_service("gateway", PARLEY_GATEWAY_BAN_ADDR=ban.grpc_addr) for _ in range(2)]
    return {"ban": ban, "moderation": moderation, "gateways": gateways}


async def chatting_pair(gateway_a, gateway_b):
    a, b = await ChatClient.connect(gateway_a.grpc_addr), await ChatClient.connect(gateway_b.grpc_addr)
    await a.join(), await b.join()
    await a.expect("connected", timeout=10, skip=("waiting",))
    await b.expect("connected", timeout=10, skip=("waiting",))
    return a, b


async def test_report_reaches_the_review_queue_with_both_sides_lines(stack):
    g1, g2 = stack["gateways"]
    a, b = await chatting_pair(g1, g2)
    await a.say("hello there")
    await b.expect("message")
    await b.say("what is your snap")
    await a.expect("message")
    await a.report(common_pb2.CATEGORY_CONTACT_SOLICITATION, "asked for my snapchat")
    ack = (await a.expect("ack")).ack
    assert ack.what == "report" and ack.id

    # No moderator tokens configured: the service accepts the development ones.
    as_moderator = (("authorization", "Bearer parley-dev-moderator"),)
    async with grpc.aio.insecure_channel(stack["moderation"].grpc_addr) as channel:
        moderation = moderation_pb2_grpc.ModerationStub(channel)
        item = None
        for _ in range(50):
            listed = await moderation.ListReviewItems(moderation_pb2.ListReviewItemsRequest(),
                                                      metadata=as_moderator)
            item = next((i for i in listed.items if i.report_id == ack.id), None)
            if item:
                break
            await asyncio.sleep(0.1)
        assert item is not None, "the report never reached the review queue"
        full = await moderation.GetReviewItem(moderation_pb2.GetReviewItemRequest(item_id=item.item_id),
                                              metadata=as_moderator)
    assert [(line.from_reporter, line.text) for line in full.evidence] == [
        (True, "hello there"), (False, "what is your snap")]
    assert full.reported.device_token == b.device_token
    assert full.reporter.device_token == a.device_token
    assert full.category == common_pb2.CATEGORY_CONTACT_SOLICITATION
    assert full.comment == "asked for my snapchat"
    await a.close(), await b.close()


async def test_ban_ends_the_live_session_on_its_gateway_and_refuses_the_next_connection(stack):
    g1, g2 = stack["gateways"]
    a, b = await chatting_pair(g1, g2)  # b, the one to ban, sits on the second gateway
    async with grpc.aio.insecure_channel(stack["ban"].grpc_addr) as channel:
        bans = ban_pb2_grpc.BanStub(channel)
        issued_at = time.monotonic()
        await bans.IssueBan(ban_pb2.IssueBanRequest(
            subject=ban_pb2.Subject(device_token=b.device_token), scope=common_pb2.BAN_SCOPE_ALL,
            category=common_pb2.CATEGORY_HARASSMENT, duration_s=3600, reason="harassment",
            issued_by="test-moderator"))
        banned = (await b.expect("banned", timeout=1.0)).banned
        took = time.monotonic() - issued_at
        assert banned.reason == "harassment" and banned.expires_at_unix_ms > 0
        assert took < 1.0, f"the session ended {took:.2f} s after the ban"
        with pytest.raises(SessionClosed):
            await b.receive(timeout=2)
        await a.expect("stranger_disconnected", timeout=2)

        # The next connection from that device is refused, on either gateway.
        for gateway in (g1, g2):
            with pytest.raises(SessionClosed, match="banned"):
                await ChatClient.connect(gateway.grpc_addr, device_token=b.device_token)
        # Others are unaffected.
        other = await ChatClient.connect(g2.grpc_addr)
        await other.close()
    await a.close()


async def test_with_the_ban_service_down_the_gateway_fails_open_on_the_bans_it_heard_of(stack):
    g1, _ = stack["gateways"]
    banned_client = await ChatClient.connect(g1.grpc_addr)
    async with grpc.aio.insecure_channel(stack["ban"].grpc_addr) as channel:
        await ban_pb2_grpc.BanStub(channel).IssueBan(ban_pb2.IssueBanRequest(
            subject=ban_pb2.Subject(device_token=banned_client.device_token), scope=common_pb2.BAN_SCOPE_ALL,
            category=common_pb2.CATEGORY_SPAM, duration_s=3600, reason="spam", issued_by="test-moderator"))
    await banned_client.expect("banned", timeout=2)
    assert stack["ban"].stop() == 0

    # The ban service is gone: the ban the gateway heard of still holds ...
    with pytest.raises(SessionClosed, match="banned"):
        await ChatClient.connect(g1.grpc_addr, device_token=banned_client.device_token)
    # ... and everyone it has no ban for is served, the failures counted and logged.
    someone = await ChatClient.connect(g1.grpc_addr)
    await someone.join()
    await someone.expect("waiting")
    await someone.close()
    assert metric_value(g1.metrics_port, "parley_gateway_ban_check_failures_total") >= 3
    assert "failing open" in g1.logs()


async def test_a_banned_device_appeals_once_through_the_gateway(stack):
    g1, _ = stack["gateways"]
    client = await ChatClient.connect(g1.grpc_addr)
    async with grpc.aio.insecure_channel(stack["ban"].grpc_addr) as channel:
        await ban_pb2_grpc.BanStub(channel).IssueBan(ban_pb2.IssueBanRequest(
            subject=ban_pb2.Subject(device_token=client.device_token), scope=common_pb2.BAN_SCOPE_ALL,
            category=common_pb2.CATEGORY_SPAM, duration_s=3600, reason="spam", issued_by="test-moderator"))
    banned = (await client.expect("banned", timeout=2)).banned
    assert banned.ban_id and banned.appealable_until_unix_ms > time.time() * 1000

    appeal_id = await file_appeal(g1.grpc_addr, client.device_token, banned.ban_id, "I only said hello")
    assert appeal_id
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await file_appeal(g1.grpc_addr, client.device_token, banned.ban_id, "please")
    assert again.value.code() == grpc.StatusCode.ALREADY_EXISTS
    stranger = await ChatClient.connect(g1.grpc_addr)
    await stranger.close()
    with pytest.raises(grpc.aio.AioRpcError) as not_theirs:
        await file_appeal(g1.grpc_addr, stranger.device_token, banned.ban_id, "let them back")
    assert not_theirs.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as forged:
        await file_appeal(g1.grpc_addr, "forged.token", banned.ban_id, "hi")
    assert forged.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    async with grpc.aio.insecure_channel(stack["ban"].grpc_addr) as channel:
        listed = await ban_pb2_grpc.BanStub(channel).ListAppeals(ban_pb2.ListAppealsRequest())
    assert [(a.appeal_id, a.statement) for a in listed.appeals] == [(appeal_id, "I only said hello")]
