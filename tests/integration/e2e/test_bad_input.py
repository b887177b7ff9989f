"""Bad input over the real transports: each gets a clear error or a clean
recovery, and nothing else breaks."""
from __future__ import annotations

import asyncio

import aio_pika
import grpc
import pytest

from parley.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from services.chat.client import ChatClient, SessionClosed
from services.gateway import proof_of_work

pytestmark = pytest.mark.integration
Err = gateway_pb2.Error


@pytest.fixture
def stack(start_service):
    return start_service("matcher"), start_service("gateway")


async def test_out_of_order_oversized_and_unknown_values_get_errors(stack):
    _, gateway = stack
    client = await ChatClient.connect(gateway.grpc_addr)
    await client.say("before join")
    assert (await client.expect("error")).error.code == Err.CODE_NOT_CONNECTED
    await client.send(hello=gateway_pb2.Hello())
    assert (await client.expect("error")).error.code == Err.CODE_OUT_OF_ORDER
    await client.join(age_band=42)  # an enum value this version does not know
    error = (await client.expect("error")).error
    assert error.code == Err.CODE_INVALID_FRAME and "age_band" in error.message
    await client.join()
    await client.expect("waiting")
    await client.join()
    assert (await client.expect("error")).error.code == Err.CODE_OUT_OF_ORDER
    # still alive and waiting: a second client pairs with it
    other = await ChatClient.connect(gateway.grpc_addr)
    await other.join()
    await client.expect("connected", timeout=10)
    await other.expect("connected", timeout=10, skip=("waiting",))
    await client.say("x" * 5000)
    assert (await client.expect("error")).error.code == Err.CODE_TOO_LARGE
    await client.say("still here")
    assert (await other.expect("message")).message.text == "still here"
    await client.close(), await other.close()


async def test_bytes_that_are_not_a_frame_or_not_utf8_get_an_error_and_the_session_lives(stack):
    _, gateway = stack
    channel = grpc.aio.insecure_channel(gateway.grpc_addr)
    # A raw stream that sends bytes as they are, bypassing the client library.
    call = channel.stream_stream("/parley.v1.Gateway/Session", request_serializer=lambda b: b,
                                 response_deserializer=gateway_pb2.ServerFrame.FromString)()
    await call.write(gateway_pb2.ClientFrame(hello=gateway_pb2.Hello()).SerializeToString())
    welcome = (await call.read()).welcome
    await call.write(b"\xff\xff\xff\xff")
    frame = await call.read()
    assert frame.error.code == Err.CODE_INVALID_FRAME
    # field 3 (text) -> field 1 (string) with invalid UTF-8
    await call.write(b"\x1a\x03\x0a\x01\xff")
    frame = await call.read()
    assert frame.error.code == Err.CODE_INVALID_FRAME
    await call.write(gateway_pb2.ClientFrame(join=gateway_pb2.Join(
        mode=common_pb2.MODE_TEXT, age_band=common_pb2.AGE_BAND_ADULT,
        proof_of_work=proof_of_work.solve(welcome.proof_of_work.challenge,
                                          welcome.proof_of_work.difficulty_bits))).SerializeToString())
    assert (await call.read()).WhichOneof("frame") == "waiting"
    await call.done_writing()
    await channel.close()


async def test_first_frame_must_be_hello(stack):
    _, gateway = stack
    async with grpc.aio.insecure_channel(gateway.grpc_addr) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)

        async def frames():
            yield gateway_pb2.ClientFrame(text=gateway_pb2.SendText(text="hi"))
            await asyncio.sleep(5)

        call = stub.Session(frames())
        frame = await call.read()
        assert frame.error.code == Err.CODE_OUT_OF_ORDER
        assert await call.read() is grpc.aio.EOF


async def test_poison_events_land_in_dead_letter_queues_and_services_keep_working(stack, amqp_url):
    matcher, gateway = stack
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    events = await channel.get_exchange("parley.events")
    await events.publish(aio_pika.Message(b"garbage", content_type="application/x-protobuf"),
                         "gateway.match_requested.p0")
    # Every gateway's relay queue also takes ban.issued: poison there must
    # not stop the gateway.
    await events.publish(aio_pika.Message(b"\x00\x01junk"), "ban.issued")
    for queue_name in ("matcher.requests.dlq", "gateway.relay.dlq"):
        queue = await channel.declare_queue(queue_name, passive=True)
        message = None
        for _ in range(50):
            message = await queue.get(fail=False)
            if message:
                break
            await asyncio.sleep(0.1)
        assert message is not None, f"nothing in {queue_name}"
        assert "not a parley.v1.Envelope" in message.headers["x-parley-reason"]
        await message.ack()
    await connection.close()
    # both still pair people
    a, b = await ChatClient.connect(gateway.grpc_addr), await ChatClient.connect(gateway.grpc_addr)
    await a.join(), await b.join()
    await a.expect("connected", timeout=10, skip=("waiting",))
    await a.close(), await b.close()


async def test_broker_going_away_and_coming_back(start_service, broker_proxy):
    start_service("matcher", PARLEY_AMQP_URL=broker_proxy.url)
    gateway = start_service("gateway", PARLEY_AMQP_URL=broker_proxy.url,
                            PARLEY_GATEWAY_PUBLISH_TIMEOUT_SECONDS="1")
    a = await ChatClient.connect(gateway.grpc_addr)
    broker_proxy.cut()
    await a.join()
    # the request cannot reach the matcher: the client is told, not left hanging
    error = (await a.expect("error", timeout=10, skip=("waiting", "typing"))).error
    assert error.code == Err.CODE_UNAVAILABLE
    await a.stop()  # back to idle (the cancel fails the same way)
    broker_proxy.restore()
    # the services reconnect by themselves; pairing works again
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        b, c = await ChatClient.connect(gateway.grpc_addr), await ChatClient.connect(gateway.grpc_addr)
        await b.join(), await c.join()
        try:
            await b.expect("connected", timeout=3, skip=("waiting", "error"))
            break
        except (asyncio.TimeoutError, SessionClosed):
            await b.close(), await c.close()
            assert asyncio.get_running_loop().time() < deadline, "no recovery after 30 s"
    await c.expect("connected", timeout=10, skip=("waiting", "error"))
    await a.close(), await b.close(), await c.close()
