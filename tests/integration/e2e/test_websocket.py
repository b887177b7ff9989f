"""The WebSocket transport: the same session protocol as the gRPC stream,
in protobuf's JSON mapping, on the same session core."""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import grpc
import pytest

from parley.v1 import ban_pb2, ban_pb2_grpc, common_pb2
from services.chat.client import ChatClient
from services.gateway import proof_of_work

pytestmark = pytest.mark.integration


class WsClient:
    def __init__(self, session: aiohttp.ClientSession, socket) -> None:
        self.session = session
        self.socket = socket
        self.device_token = ""
        self.proof = ""  # the nonce for the first join

    @classmethod
    async def connect(cls, gateway, hello: dict | None = None) -> "WsClient":
        session = aiohttp.ClientSession()
        socket = await session.ws_connect(f"http://127.0.0.1:{gateway.env['PARLEY_GATEWAY_HTTP_PORT']}/ws")
        self = cls(session, socket)
        await self.send({"hello": hello or {"client": "test"}})
        welcome = await self.expect("welcome")
        self.device_token = welcome["welcome"]["deviceToken"]
        challenge = welcome["welcome"].get("proofOfWork")
        if challenge:
            self.proof = proof_of_work.solve(challenge["challenge"], challenge["difficultyBits"])
        return self

    async def send(self, frame: dict) -> None:
        if "join" in frame and self.proof:
            frame = {"join": {**frame["join"], "proofOfWork": self.proof}}
        await self.socket.send_str(json.dumps(frame))

    async def receive(self, timeout: float = 5.0) -> dict | None:
        message = await asyncio.wait_for(self.socket.receive(), timeout)
        if message.type != aiohttp.WSMsgType.TEXT:
            return None
        return json.loads(message.data)

    async def expect(self, kind: str, timeout: float = 5.0, skip=("typing",)) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.receive(max(0.01, deadline - time.monotonic()))
            assert frame is not None, f"socket closed while waiting for {kind}"
            (which,) = frame.keys()
            if which == kind:
                return frame
            assert which in skip, f"expected {kind}, got {frame}"

    async def close(self) -> None:
        await self.socket.close()
        await self.session.close()


JOIN = {"join": {"mode": "MODE_TEXT", "ageBand": "AGE_BAND_ADULT", "language": "en"}}


@pytest.fixture
def stack(start_service):
    ban = start_service("ban")
    start_service("matcher")
    gateway = start_service("gateway", PARLEY_GATEWAY_BAN_ADDR=ban.grpc_addr)
    return ban, gateway


async def test_two_websocket_strangers_chat_and_part(stack):
    _, gateway = stack
    a, b = await WsClient.connect(gateway), await WsClient.connect(gateway)
    await a.send(JOIN), await b.send(JOIN)
    ca = (await a.expect("connected", skip=("waiting",)))["connected"]
    cb = (await b.expect("connected", skip=("waiting",)))["connected"]
    assert ca["matchId"] == cb["matchId"]
    await a.send({"typing": {"typing": True}})
    assert (await b.expect("typing", skip=()))["typing"] == {"typing": True}
    await a.send({"text": {"text": "hello over json"}})
    assert (await b.expect("message"))["message"]["text"] == "hello over json"
    await b.send({"stop": {}})
    assert (await a.expect("strangerDisconnected"))["strangerDisconnected"]["matchId"] == ca["matchId"]
    await a.close(), await b.close()


async def test_websocket_and_grpc_clients_meet(stack):
    _, gateway = stack
    web = await WsClient.connect(gateway)
    native = await ChatClient.connect(gateway.grpc_addr)
    await web.send(JOIN)
    await native.join()
    await web.expect("connected", skip=("waiting",))
    await native.expect("connected", timeout=10, skip=("waiting",))
    await native.say("from grpc")
    assert (await web.expect("message"))["message"]["text"] == "from grpc"
    await web.send({"text": {"text": "from the browser"}})
    assert (await native.expect("message")).message.text == "from the browser"
    await web.close()
    await native.expect("stranger_disconnected")
    await native.close()


async def test_bad_json_frames_get_errors_and_the_session_lives(stack):
    _, gateway = stack
    client = await WsClient.connect(gateway)
    for bad in ("{not json", json.dumps({"jion": {}}), json.dumps({"join": {"mode": "MODE_TELEPATHY"}})):
        await client.socket.send_str(bad)
        assert (await client.expect("error"))["error"]["code"] == "CODE_INVALID_FRAME"
    await client.socket.send_bytes(b"\x00\x01")
    assert (await client.expect("error"))["error"]["code"] == "CODE_INVALID_FRAME"
    await client.send({"text": {"text": "x" * 70_000}})
    assert (await client.expect("error"))["error"]["code"] == "CODE_INVALID_FRAME"
    await client.send({"text": {"text": "nobody here"}})
    assert (await client.expect("error"))["error"]["code"] == "CODE_NOT_CONNECTED"
    await client.send(JOIN)
    await client.expect("waiting")
    await client.close()


async def test_first_frame_must_be_hello(stack):
    _, gateway = stack
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{gateway.env['PARLEY_GATEWAY_HTTP_PORT']}/ws") as socket:
            await socket.send_str(json.dumps(JOIN))
            reply = json.loads((await socket.receive(timeout=5)).data)
            assert reply["error"]["code"] == "CODE_OUT_OF_ORDER"
            assert (await socket.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_a_ban_ends_a_websocket_session_and_refuses_the_next(stack):
    ban, gateway = stack
    a, b = await WsClient.connect(gateway), await WsClient.connect(gateway)
    await a.send(JOIN), await b.send(JOIN)
    await a.expect("connected", skip=("waiting",)), await b.expect("connected", skip=("waiting",))
    async with grpc.aio.insecure_channel(ban.grpc_addr) as channel:
        issued_at = time.monotonic()
        await ban_pb2_grpc.BanStub(channel).IssueBan(ban_pb2.IssueBanRequest(
            subject=ban_pb2.Subject(device_token=b.device_token), scope=common_pb2.BAN_SCOPE_ALL,
            category=common_pb2.CATEGORY_SPAM, duration_s=600, reason="spam", issued_by="test"))
    assert (await b.expect("banned", timeout=1.0))["banned"]["reason"] == "spam"
    assert time.monotonic() - issued_at < 1.0
    assert await b.receive() is None  # the gateway closed the socket
    await a.expect("strangerDisconnected")
    session = aiohttp.ClientSession()
    socket = await session.ws_connect(f"http://127.0.0.1:{gateway.env['PARLEY_GATEWAY_HTTP_PORT']}/ws")
    await socket.send_str(json.dumps({"hello": {"deviceToken": b.device_token}}))
    assert "banned" in json.loads((await socket.receive(timeout=5)).data)
    await socket.close(), await session.close()
    await a.close(), await b.close()
