"""At the door, through a real gateway: proof of work before the first join
(harder for an address that opens sessions fast), rate limits per session and
per address with the client told when to try again, and the rejects counted."""
from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from parley.v1 import gateway_pb2
from services.chat.client import ChatClient, SessionClosed
from tests.support import metric_value

pytestmark = pytest.mark.integration
Err = gateway_pb2.Error


async def paired(gateway) -> tuple[ChatClient, ChatClient]:
    a, b = await ChatClient.connect(gateway.grpc_addr), await ChatClient.connect(gateway.grpc_addr)
    await a.join(), await b.join()
    await a.expect("connected", timeout=10, skip=("waiting",))
    await b.expect("connected", timeout=10, skip=("waiting",))
    return a, b


async def test_proof_of_work_is_required_and_rises_for_an_address_opening_sessions_fast(start_service):
    start_service("matcher")
    gateway = start_service("gateway", PARLEY_GATEWAY_POW_BITS="10", PARLEY_GATEWAY_POW_MAX_BITS="14",
                            PARLEY_GATEWAY_POW_FREE_SESSIONS_PER_MINUTE="3")
    clients = [await ChatClient.connect(gateway.grpc_addr) for _ in range(13)]
    bits = [c.challenge.difficulty_bits for c in clients]
    # 3 a minute are free, then 2 bits more per doubling: up to 6 (2x) 12 bits,
    # up to 12 (4x) 14 bits, and the 13th would be 16 but the cap is 14.
    assert bits == [10] * 3 + [12] * 3 + [14] * 7

    lazy = clients[0]
    await lazy.send(join=gateway_pb2.Join(mode=1, age_band=2))  # no proof
    error = (await lazy.expect("error")).error
    assert error.code == Err.CODE_PROOF_REQUIRED and "10 bits" in error.message
    await lazy.send(join=gateway_pb2.Join(mode=1, age_band=2, proof_of_work="12345"))  # a wrong one
    assert (await lazy.expect("error")).error.code == Err.CODE_PROOF_REQUIRED
    await lazy.join()  # solves it
    await lazy.expect("waiting")
    await lazy.stop()
    await lazy.send(join=gateway_pb2.Join(mode=1, age_band=2))  # paid once per session
    await lazy.expect("waiting")
    assert metric_value(gateway.metrics_port, "parley_gateway_rejects_total", reason="pow") == 2
    for client in clients:
        await client.close()


async def test_chat_lines_over_the_rate_are_refused_once_with_when_to_retry(start_service):
    start_service("matcher")
    gateway = start_service("gateway", PARLEY_GATEWAY_TEXT_PER_SECOND="2", PARLEY_GATEWAY_TEXT_BURST="3")
    a, b = await paired(gateway)
    for i in range(6):
        await a.say(f"line {i}")
    error = (await a.expect("error")).error
    assert error.code == Err.CODE_RATE_LIMITED
    assert 0 < error.retry_after_ms <= 500
    assert [(await b.expect("message")).message.text for _ in range(3)] == ["line 0", "line 1", "line 2"]
    await asyncio.sleep(error.retry_after_ms / 1000)
    await a.say("after the pause")
    assert (await b.expect("message")).message.text == "after the pause"
    # Told once for the whole streak: the next frame a gets answers its block.
    await a.block()
    await a.expect("ack", skip=())
    assert metric_value(gateway.metrics_port, "parley_gateway_rejects_total", reason="rate") == 3
    await a.close(), await b.close()


async def test_joins_and_nexts_are_limited_per_session_and_per_address(start_service):
    start_service("matcher")
    gateway = start_service("gateway", PARLEY_GATEWAY_JOINS_PER_MINUTE="8", PARLEY_GATEWAY_IP_JOINS_PER_MINUTE="12")
    client = await ChatClient.connect(gateway.grpc_addr)
    await client.join()
    await client.expect("waiting")
    await client.next()
    await client.expect("waiting")
    await client.next()  # a burst of 2 (a quarter of 8 a minute), then one every 7.5 s
    error = (await client.expect("error")).error
    assert error.code == Err.CODE_RATE_LIMITED and 6000 < error.retry_after_ms <= 7500
    # The address has spent 2 of its burst of 3: one more session joins, the next waits.
    other, third = await ChatClient.connect(gateway.grpc_addr), await ChatClient.connect(gateway.grpc_addr)
    await other.join(interests=["x"], interests_only=True)
    await other.expect("waiting")
    await third.join(interests=["y"], interests_only=True)
    assert (await third.expect("error")).error.code == Err.CODE_RATE_LIMITED
    for c in (client, other, third):
        await c.close()


async def test_an_address_has_a_limited_number_of_sessions_open(start_service):
    gateway = start_service("gateway", PARLEY_GATEWAY_SESSIONS_PER_IP="2")
    first, second = await ChatClient.connect(gateway.grpc_addr), await ChatClient.connect(gateway.grpc_addr)
    with pytest.raises(SessionClosed, match="CODE_TOO_MANY_SESSIONS"):
        await ChatClient.connect(gateway.grpc_addr)
    # Over the WebSocket too, and told why before the socket closes.
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{gateway.env['PARLEY_GATEWAY_HTTP_PORT']}/ws"
        async with http.ws_connect(url) as socket:
            await socket.send_json({"hello": {}})
            refused = await socket.receive_json(timeout=5)
            assert refused["error"]["code"] == "CODE_TOO_MANY_SESSIONS"
    await first.close()
    deadline = time.monotonic() + 5
    while True:  # the gateway notices the closed stream at once, but asynchronously
        try:
            third = await ChatClient.connect(gateway.grpc_addr)
            break
        except SessionClosed:
            assert time.monotonic() < deadline, "a closed session never gave its place back"
            await asyncio.sleep(0.1)
    await second.close(), await third.close()


async def test_behind_a_trusted_proxy_each_forwarded_address_is_limited_on_its_own(start_service):
    gateway = start_service("gateway", PARLEY_GATEWAY_SESSIONS_PER_IP="1",
                            PARLEY_GATEWAY_TRUSTED_PROXIES="127.0.0.0/8")
    url = f"http://127.0.0.1:{gateway.env['PARLEY_GATEWAY_HTTP_PORT']}/ws"

    async def hello(http, forwarded_for: str):
        socket = await http.ws_connect(url, headers={"X-Forwarded-For": forwarded_for})
        await socket.send_json({"hello": {}})
        return socket, await socket.receive_json(timeout=5)

    async with aiohttp.ClientSession() as http:
        first, answer = await hello(http, "198.51.100.7")
        assert "welcome" in answer
        # Another client behind the same proxy has an address of its own ...
        second, answer = await hello(http, "198.51.100.8")
        assert "welcome" in answer
        # ... and a second session from the first client's address is over its limit.
        third, answer = await hello(http, "203.0.113.1, 198.51.100.7")  # a forged hop is ignored
        assert answer["error"]["code"] == "CODE_TOO_MANY_SESSIONS"
        for socket in (first, second, third):
            await socket.close()
