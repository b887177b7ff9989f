"""End to end through real processes: gateways and matcher over the real
RabbitMQ, clients over real gRPC streams."""
from __future__ import annotations

import asyncio

import pytest

from parley.v1 import common_pb2
from services.chat.client import ChatClient

pytestmark = pytest.mark.integration

ADULT, MINOR = common_pb2.AGE_BAND_ADULT, common_pb2.AGE_BAND_MINOR


@pytest.fixture
def stack(start_service):
    """A matcher and a gateway (the ban service is added where a test needs it)."""
    matcher = start_service("matcher", PARLEY_MATCHER_FALLBACK_AFTER_SECONDS="0.5")
    gateway = start_service("gateway")
    return {"matcher": matcher, "gateway": gateway}


async def connect(gateway) -> ChatClient:
    return await ChatClient.connect(gateway.grpc_addr)


async def pair(a: ChatClient, b: ChatClient, **join) -> tuple:
    await a.join(**join)
    await a.expect("waiting")
    await b.join(**join)
    await b.expect("waiting")
    return (await a.expect("connected", timeout=10)).connected, (await b.expect("connected", timeout=10)).connected


async def test_two_strangers_chat_type_and_part(stack):
    a, b = await connect(stack["gateway"]), await connect(stack["gateway"])
    ca, cb = await pair(a, b, interests=["chess", "music"])
    assert ca.match_id == cb.match_id
    assert {ca.offerer, cb.offerer} == {True, False}

    await a.typing(True)
    assert (await b.expect("typing", skip=())).typing.typing is True
    await a.say("hi, chess?")
    assert (await b.expect("message")).message.text == "hi, chess?"
    await b.say("always")
    assert (await a.expect("message")).message.text == "always"

    await a.stop()
    assert (await b.expect("stranger_disconnected")).stranger_disconnected.match_id == ca.match_id
    # a is idle: text now is refused with a clear error, and the session lives on.
    await a.say("anyone?")
    assert (await a.expect("error")).error.code == 4  # CODE_NOT_CONNECTED
    await a.close(), await b.close()


async def test_common_interests_and_fallback(stack):
    a, b = await connect(stack["gateway"]), await connect(stack["gateway"])
    ca, cb = await pair(a, b, interests=["chess", "music"])
    assert list(ca.common_interests) == ["chess", "music"] == list(cb.common_interests)
    await a.close(), await b.close()

    c, d = await connect(stack["gateway"]), await connect(stack["gateway"])
    await c.join(interests=["knitting"])
    await d.join(interests=["surfing"])
    # No shared interest: after the (test's 0.5 s) wait both get a random stranger.
    cc = (await c.expect("connected", timeout=10, skip=("waiting",))).connected
    assert cc.random_fallback and not cc.common_interests
    await d.expect("connected", timeout=10, skip=("waiting",))
    await c.close(), await d.close()


async def test_next_brings_another_stranger(stack):
    a, b, c = [await connect(stack["gateway"]) for _ in range(3)]
    await pair(a, b)
    await c.join()
    await c.expect("waiting")
    await a.next()
    await b.expect("stranger_disconnected")
    ca = (await a.expect("connected", timeout=10, skip=("waiting",))).connected
    cc = (await c.expect("connected", timeout=10)).connected
    assert ca.match_id == cc.match_id
    for client in (a, b, c):
        await client.close()


async def test_minors_and_adults_are_never_paired(stack):
    adult, minor = await connect(stack["gateway"]), await connect(stack["gateway"])
    await adult.join(age_band=ADULT)
    await minor.join(age_band=MINOR)
    await adult.expect("waiting"), await minor.expect("waiting")
    with pytest.raises(asyncio.TimeoutError):
        await adult.expect("connected", timeout=1.5)
    # ... while a second minor is paired with the first at once.
    minor2 = await connect(stack["gateway"])
    await minor2.join(age_band=MINOR)
    await minor.expect("connected", timeout=10)
    await minor2.expect("connected", timeout=10, skip=("waiting",))
    for client in (adult, minor, minor2):
        await client.close()


async def test_a_vanished_peer_is_reported_disconnected(stack):
    a, b = await connect(stack["gateway"]), await connect(stack["gateway"])
    await pair(a, b)
    await a.close()  # the client just goes away, no stop
    await b.expect("stranger_disconnected")
    await b.close()


async def test_strangers_on_two_gateways_chat_through_relay_queues(start_service):
    start_service("matcher")
    g1, g2 = start_service("gateway"), start_service("gateway")
    a, b = await connect(g1), await connect(g2)
    ca, cb = await pair(a, b)
    assert ca.match_id == cb.match_id
    await a.say("from gateway one")
    assert (await b.expect("message")).message.text == "from gateway one"
    await b.say("from gateway two")
    assert (await a.expect("message")).message.text == "from gateway two"
    await b.stop()
    await a.expect("stranger_disconnected")
    await a.close(), await b.close()
