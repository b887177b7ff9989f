"""What the ban service's integration tests share: the test's own broker
connection (listening for what the service announces and publishes) and
the ways to call the service."""
from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import grpc

from parley.v1 import ban_pb2, ban_pb2_grpc, common_pb2 as c
from services.runtime import envelope as env
from services.runtime.topology import BAN_WATCH_ISSUED, BAN_WATCH_LIFTED, EVENTS_EXCHANGE, moderation_suspicions


async def eventually(probe, timeout: float = 10.0, interval: float = 0.05):
    """Call `probe` (async) until it returns something truthy; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)


class Broker:
    """The test's own connection to RabbitMQ: queues listening for what
    gateways hear (ban.issued / ban.lifted), for the watch announcements only
    ban replicas hear, and raw publishing."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> "Broker":
        self.connection = await aio_pika.connect_robust(self.url)
        self.channel = await self.connection.channel()
        # Declared as every service declares it (idempotent): the test may
        # listen before the service has started.
        self.events = await self.channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                          durable=True)
        self.announcements = await self._listen("ban.issued", "ban.lifted")
        self.watch_announcements = await self._listen(BAN_WATCH_ISSUED, BAN_WATCH_LIFTED)
        spec = moderation_suspicions()
        self.suspicions = await self.channel.declare_queue(spec.name, durable=True, arguments=spec.arguments())
        for exchange, key in spec.bindings:
            await self.suspicions.bind(self.events, key)
        return self

    async def _listen(self, *keys: str):
        queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        for key in keys:
            await queue.bind(self.events, key)
        return queue

    async def __aexit__(self, *exc) -> None:
        await self.connection.close()

    @staticmethod
    async def _next(queue, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = await queue.get(fail=False, no_ack=True)
            if message is not None:
                return env.decode(message.body, message.content_type, message.type), message
            await asyncio.sleep(0.02)
        raise AssertionError(f"nothing on {queue.name} within {timeout} s")

    async def next_announcement(self, timeout: float = 10.0):
        return (await self._next(self.announcements, timeout))[0]

    async def next_watch_announcement(self, timeout: float = 10.0):
        return (await self._next(self.watch_announcements, timeout))[0]

    async def drain(self, queue, settle: float = 0.5) -> list:
        """Every envelope on `queue` now and for `settle` seconds more."""
        found = []
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.02)
                continue
            found.append(env.decode(message.body, message.content_type, message.type))
        return found

    async def suspicions_for(self, ban_id: str, wanted: int, timeout: float = 10.0) -> list:
        """The ban.evader_suspected events linked to `ban_id`: waits for
        `wanted`, then a little longer for any more."""
        found: list = []
        deadline = time.monotonic() + timeout
        while len(found) < wanted and time.monotonic() < deadline:
            found += [e for e in await self.drain(self.suspicions, 0.1)
                      if e.evader_suspected.linked_ban_id == ban_id]
        found += [e for e in await self.drain(self.suspicions, 1.0) if e.evader_suspected.linked_ban_id == ban_id]
        return found

    async def publish_raw(self, body: bytes, routing_key: str, **properties) -> None:
        await self.events.publish(aio_pika.Message(body, message_id=uuid.uuid4().hex, **properties), routing_key)

    async def dead_letters(self, queue_name: str, wanted: int, timeout: float = 10.0) -> list:
        queue = await self.channel.get_queue(queue_name, ensure=True)
        found = []
        deadline = time.monotonic() + timeout
        while len(found) < wanted and time.monotonic() < deadline:
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.05)
            else:
                found.append(message)
        return found


def stub_for(service) -> tuple[grpc.aio.Channel, ban_pb2_grpc.BanStub]:
    channel = grpc.aio.insecure_channel(service.grpc_addr)
    return channel, ban_pb2_grpc.BanStub(channel)


def check_request(device: str = "", mode=c.MODE_UNSPECIFIED, session_id: str = "",
                  **identity) -> ban_pb2.CheckBanRequest:
    return ban_pb2.CheckBanRequest(identity=c.Identity(device_token=device, **identity), mode=mode,
                                   session_id=session_id)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
