"""The RabbitMQ side of every service: one robust connection, topology
declared at start, protobuf envelopes in and out, and a consumer loop that
sends poison messages to the dead-letter queue with the reason.

Two publishing channels: durable events (reports, decisions, bans) go on a
channel with publisher confirms and are persistent; ephemeral traffic (relay,
match requests, chat copies) goes on a channel without confirms, which is
several times faster.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import aio_pika
import aiormq
import aiormq.connection
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection
from google.protobuf.message import Message
from yarl import URL

from parley.v1 import events_pb2
from services.runtime import envelope as env
from services.runtime.coalescing import CoalescingRobustConnection, CoalescingTransportFactory
from services.runtime.metrics import Metrics
from services.runtime.topology import EVENTS_EXCHANGE, RELAY_EXCHANGE, QueueKind, QueueSpec

log = logging.getLogger(__name__)

Handler = Callable[[events_pb2.Envelope], Awaitable[None]]

_CONNECTION_ERRORS = (aiormq.exceptions.AMQPConnectionError, aiormq.exceptions.ChannelInvalidStateError,
                      ConnectionError, asyncio.TimeoutError, RuntimeError)


# the AMQP `type` property of each event: the full name of the message inside
_TYPE_NAMES = {field: events_pb2.Envelope.DESCRIPTOR.fields_by_name[field].message_type.full_name
               for field in env.EVENT_KINDS}
_NOT_PERSISTENT = int(aio_pika.DeliveryMode.NOT_PERSISTENT)


class BusUnavailable(RuntimeError):
    """The broker could not be reached within the deadline."""


class Bus:
    def __init__(self, url: str, service: str, instance_id: str, *, coalesce_writes: bool = False,
                 queue_fast_publishes: bool = False) -> None:
        """For services that publish and ack at high rates (the matcher, the gateway):

        `coalesce_writes`: send the frames written in one turn of the event
        loop in one socket write (see services/runtime/coalescing.py).

        `queue_fast_publishes`: an ephemeral publish returns once its frame
        is queued for the connection's writer (in order, before anything
        published or acked after it), instead of waiting for the writer to
        hand it to the socket. aiormq holds the channel's lock across that
        wait, so concurrent publishers on the fast channel take turns, one
        per turn of the event loop; queued, they don't. What a publish
        without confirms promises is the same either way: the frame is on
        its way, and lost if the connection drops before the broker reads
        it (the writer queue holds at most a few frames more than the
        socket buffer does)."""
        self.url = url
        self.coalesce_writes = coalesce_writes
        self.queue_fast_publishes = queue_fast_publishes
        self.producer = f"{service}/{instance_id}"
        self._connection: AbstractRobustConnection | None = None
        self._confirmed: AbstractRobustChannel | None = None
        self._fast: AbstractRobustChannel | None = None
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        self._closing = False
        metrics = Metrics(service)
        self._published = metrics.counter("events_published_total", "Events published", ["event"])
        self._consumed = metrics.counter(
            "events_consumed_total", "Events taken from queues, by outcome", ["event", "outcome"])
        self._dead_lettered = metrics.counter(
            "events_dead_lettered_total", "Messages sent to a dead-letter queue", ["queue"])
        self._publish_failures = metrics.counter(
            "bus_publish_failures_total", "Publishes that failed after retrying")
        self._connected = metrics.gauge("bus_connected", "1 while the broker connection is up")
        # label children looked up once: a labels() call per message is a
        # lock and a dict lookup on the hot path
        self._published_children: dict = {}
        self._consumed_children: dict = {}

    # ------------------------------------------------------------ connection

    async def connect(self, timeout: float = 30.0) -> None:
        """Connect, retrying until `timeout`; later outages are recovered by
        aio-pika's robust connection, which re-declares and re-consumes."""
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            try:
                if self.coalesce_writes:
                    # what connect_robust does, with the transport factory
                    connection = CoalescingRobustConnection(
                        URL(self.url), client_properties={"connection_name": self.producer},
                        transport_factory=CoalescingTransportFactory())
                    await connection.connect(timeout=5)
                    self._connection = connection
                else:
                    self._connection = await aio_pika.connect_robust(
                        self.url, client_properties={"connection_name": self.producer}, timeout=5)
                break
            except (OSError, aiormq.exceptions.AMQPError, asyncio.TimeoutError) as exc:
                if time.monotonic() + delay > deadline:
                    raise BusUnavailable(f"cannot reach RabbitMQ at {_safe_url(self.url)}: {exc}") from exc
                log.warning("waiting for RabbitMQ", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._connection.close_callbacks.add(self._on_close)
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        self._connected.set(1)
        self._confirmed = await self._connection.channel(publisher_confirms=True)
        self._fast = await self._connection.channel(publisher_confirms=False)
        self._exchanges[EVENTS_EXCHANGE] = await self._confirmed.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        self._exchanges[RELAY_EXCHANGE] = await self._confirmed.declare_exchange(
            RELAY_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)

    def _on_close(self, *_args) -> None:
        self._connected.set(0)
        if self._closing:
            return
        log.warning("RabbitMQ connection lost; reconnecting")

    def _on_reconnect(self, *_args) -> None:
        self._connected.set(1)
        log.info("RabbitMQ connection restored")

    @property
    def is_connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def close(self) -> None:
        if self._connection is not None:
            self._closing = True
            await self._connection.close()
            self._connected.set(0)

    # ------------------------------------------------------------ topology

    async def declare(self, spec: QueueSpec, channel: AbstractRobustChannel | None = None):
        """Declare a queue, its dead-letter queue and its bindings (idempotent)."""
        channel = channel or self._confirmed
        durable = spec.kind is not QueueKind.TRANSIENT
        await channel.declare_queue(spec.dlq, durable=True, arguments=spec.dlq_arguments())
        queue = await channel.declare_queue(spec.name, durable=durable, arguments=spec.arguments())
        for exchange_name, routing_key in spec.bindings:
            exchange = await channel.get_exchange(exchange_name, ensure=False)
            await queue.bind(exchange, routing_key)
        return queue

    # ------------------------------------------------------------ publishing

    async def publish(self, event: Message, *, timeout: float = 10.0, event_id: str | None = None,
                      routing_key: str | None = None, headers: dict | None = None) -> events_pb2.Envelope:
        """Publish a domain event on the events exchange. Durable kinds are
        persistent and wait for the broker's confirm; retried while the
        connection recovers, until `timeout`. Pass `event_id` to republish
        an event under its original id, `routing_key` where the key carries
        more than the event (a matcher partition), `headers` for AMQP
        headers an exchange routes on (moderation's shard by match id)."""
        envelope = env.wrap(event, self.producer, event_id)
        kind = env.kind_of(envelope)
        if not kind.routing_key:
            raise ValueError(f"{kind.field} goes on the relay exchange: use send_relay")
        await self._publish(envelope, EVENTS_EXCHANGE, routing_key or kind.routing_key, kind.durable, timeout,
                            headers)
        return envelope

    async def send_relay(self, gateway_id: str, event: Message, *, timeout: float = 5.0) -> None:
        """Send an event to one gateway replica's queue (ephemeral)."""
        envelope = env.wrap(event, self.producer)
        await self._publish(envelope, RELAY_EXCHANGE, gateway_id, False, timeout)

    async def send_relays(self, gateway_ids, event: Message, *, timeout: float = 5.0) -> None:
        """Send one event to several gateway replicas, each its own envelope
        (its own event id), the event wrapped once."""
        envelope = None
        for gateway_id in gateway_ids:
            if envelope is None:
                envelope = env.wrap(event, self.producer)
            else:
                envelope.event_id = uuid.uuid4().hex
            await self._publish(envelope, RELAY_EXCHANGE, gateway_id, False, timeout)

    async def _publish(self, envelope, exchange_name, routing_key, durable, timeout, headers=None) -> None:
        """Publish, retrying while the connection recovers, until `timeout`."""
        field = envelope.WhichOneof("event")
        send = (self._durable_sender if durable else self._fast_sender)(
            envelope, field, exchange_name, routing_key, timeout, headers)
        deadline = time.monotonic() + timeout
        while True:
            try:
                await send()
                self._published_count(field).inc()
                return
            except _CONNECTION_ERRORS as exc:
                if time.monotonic() > deadline:
                    self._publish_failures.inc()
                    raise BusUnavailable(f"publish to {exchange_name}/{routing_key} failed: {exc}") from exc
                await asyncio.sleep(0.2)

    def _durable_sender(self, envelope, field, exchange_name, routing_key, timeout, headers=None):
        """Persistent, on the channel with confirms: returns once confirmed."""
        message = aio_pika.Message(
            envelope.SerializeToString(),
            headers=headers,
            content_type=env.CONTENT_TYPE,
            type=_TYPE_NAMES[field],
            message_id=envelope.event_id,
            app_id=self.producer,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )

        async def send() -> None:
            await self._exchanges[exchange_name].publish(message, routing_key, timeout=timeout)
        return send

    def _fast_sender(self, envelope, field, exchange_name, routing_key, timeout, headers=None):
        """Ephemeral events, on the channel without confirms: what
        aio_pika's Exchange.publish does (mandatory, the same properties),
        straight on the channel underneath, without building an
        aio_pika.Message first. This is the hot path of the matcher (every
        MatchFound) and of the gateway (every relayed frame)."""
        body = envelope.SerializeToString()
        properties = aiormq.spec.Basic.Properties(
            content_type=env.CONTENT_TYPE,
            message_type=_TYPE_NAMES[field],
            message_id=envelope.event_id,
            app_id=self.producer,
            delivery_mode=_NOT_PERSISTENT,
            headers=headers,
        )

        async def send() -> None:
            if self._fast.is_closed:
                raise aiormq.exceptions.ChannelInvalidStateError(f"{self._fast!r} closed")
            channel = await self._fast.get_underlay_channel()
            await channel.basic_publish(body, exchange=exchange_name, routing_key=routing_key,
                                        properties=properties, mandatory=True, timeout=timeout,
                                        wait=not self.queue_fast_publishes)
        return send

    def _published_count(self, field: str):
        child = self._published_children.get(field)
        if child is None:
            child = self._published_children[field] = self._published.labels(field)
        return child

    def _consumed_count(self, field: str, outcome: str):
        child = self._consumed_children.get((field, outcome))
        if child is None:
            child = self._consumed_children[(field, outcome)] = self._consumed.labels(field, outcome)
        return child

    # ------------------------------------------------------------ consuming

    async def consume(self, spec: QueueSpec, handler: Handler, *, prefetch: int = 100,
                      is_transient: Callable[[BaseException], bool] | None = None,
                      manual_ack: bool = False) -> "Subscription":
        """Declare `spec` and hand every message to `handler`.

        Acked after the handler returns. A message that cannot be parsed, or
        whose handler raises PoisonMessage, or that fails on redelivery, is
        copied to the dead-letter queue with the reason and acked. A handler
        failure that `is_transient` accepts (a database outage) is retried with backoff for as long as it takes: the message stays
        unacked in its queue, never dead-lettered for an outage.

        With `manual_ack` the handler is called as handler(envelope, message)
        and acks the message itself, when it likes: the matcher holds a
        waiting user's request unacked until the user is paired, so a matcher
        that dies hands its waiting users back to the queue.
        """
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=prefetch)
        queue = await self.declare(spec, channel)

        async def on_message(message: AbstractIncomingMessage) -> None:
            field = "unknown"
            try:
                envelope = env.decode(message.body, message.content_type, message.type)
                field = env.kind_of(envelope).field
                if manual_ack:
                    await handler(envelope, message)
                    self._consumed_count(field, "ok").inc()
                    return
                await self._handle_with_retry(handler, envelope, is_transient, spec)
            except env.PoisonMessage as exc:
                await self._dead_letter(spec, message, str(exc), field)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if message.redelivered:
                    log.exception("handler failed twice; dead-lettering", extra={"queue": spec.name})
                    await self._dead_letter(spec, message, f"handler failed: {exc!r}", field)
                else:
                    log.exception("handler failed; requeueing once", extra={"queue": spec.name})
                    self._consumed_count(field, "requeued").inc()
                    await message.nack(requeue=True)
                return
            self._consumed_count(field, "ok").inc()
            await message.ack()

        await queue.consume(on_message)
        return Subscription(channel)

    async def _handle_with_retry(self, handler: Handler, envelope, is_transient, spec: QueueSpec) -> None:
        delay = 0.2
        while True:
            try:
                await handler(envelope)
                return
            except Exception as exc:
                if is_transient is None or not is_transient(exc):
                    raise
                self._consumed_count(env.kind_of(envelope).field, "retried").inc()
                log.warning("transient failure; retrying", extra={
                    "queue": spec.name, "error": repr(exc), "retry_in_seconds": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _dead_letter(self, spec: QueueSpec, message: AbstractIncomingMessage,
                           reason: str, field: str) -> None:
        log.warning("dead-lettering message", extra={"queue": spec.name, "reason": reason})
        headers = dict(message.headers or {})
        headers.update({"x-parley-reason": reason[:1000], "x-parley-queue": spec.name,
                        "x-parley-routing-key": message.routing_key or ""})
        copy = aio_pika.Message(message.body, headers=headers, content_type=message.content_type,
                                type=message.type, message_id=message.message_id,
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await self._confirmed.default_exchange.publish(copy, spec.dlq)
        self._dead_lettered.labels(spec.metric_label).inc()
        self._consumed_count(field, "dead_lettered").inc()
        await message.ack()


class Subscription:
    """A consumer on a channel of its own. Closing it returns every message it
    has not acked to the queue."""

    def __init__(self, channel: AbstractRobustChannel) -> None:
        self.channel = channel

    async def close(self) -> None:
        if not self.channel.is_closed:
            await self.channel.close()


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('@', 1)[1]}"
