"""The decision outbox against the real broker and a real store: a decision
the broker did not confirm stays stored and unpublished, and a later flush
publishes it to the durable ban.decisions queue."""
from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest

from parley.v1 import common_pb2 as c
from parley.v1 import events_pb2
from parley.v1 import moderation_pb2 as m
from services.moderation.app import MIGRATIONS, VERSION_TABLE
from services.moderation.outbox import DecisionOutbox
from services.moderation.store import ReviewStore
from services.runtime import envelope as env
from services.runtime.bus import Bus
from services.runtime.db import make_engine, migrate
from services.runtime.topology import ban_decisions

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/outbox.db")
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    yield ReviewStore(engine)
    await engine.dispose()


async def decided(store: ReviewStore, report_id: str):
    report = events_pb2.ReportFiled(report_id=report_id, reported=c.Identity(device_token=f"dev-{report_id}"),
                                    category=c.CATEGORY_SPAM)
    item, _ = await store.add_report(report, f"event-{report_id}")
    return await store.decide(item.item_id, m.ACTION_WARN, c.CATEGORY_UNSPECIFIED, 0, "alice")


async def published_decision_ids(amqp_url: str, wanted: set[str], timeout: float = 5.0) -> set[str]:
    """Read ban.decisions until every wanted decision id has arrived."""
    seen: set[str] = set()
    connection = await aio_pika.connect(amqp_url)
    try:
        queue = await (await connection.channel()).get_queue(ban_decisions().name, ensure=True)
        deadline = time.monotonic() + timeout
        while not wanted <= seen and time.monotonic() < deadline:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            envelope = env.decode(message.body, message.content_type, message.type)
            seen.add(envelope.decision_made.decision_id)
    finally:
        await connection.close()
    return seen & wanted


async def test_an_unconfirmed_decision_waits_in_the_outbox_until_a_flush(amqp_url, store):
    broken = Bus(amqp_url, "moderation", "outbox-broken")
    await broken.connect(timeout=10)
    await broken.close()  # the broker is gone for this publisher
    first = await decided(store, "r1")
    assert not await DecisionOutbox(store, broken, publish_timeout=0.5).publish(first)
    assert [d.decision_id for d in await store.unpublished_decisions()] == [first.decision_id]

    bus = Bus(amqp_url, "moderation", "outbox-test")
    await bus.connect(timeout=10)
    try:
        await bus.declare(ban_decisions())
        second = await decided(store, "r2")
        outbox = DecisionOutbox(store, bus, publish_timeout=5)
        assert await outbox.flush() == 2
        assert await outbox.flush() == 0  # nothing left, nothing sent twice
    finally:
        await bus.close()
    assert await store.count_unpublished() == 0
    wanted = {first.decision_id, second.decision_id}
    assert await published_decision_ids(amqp_url, wanted) == wanted
