"""A lean consumer for moderation's busiest queue: chat lines, thousands a
second per process.

`Bus.consume` pays per message for aio-pika's IncomingMessage, two tasks and
an ack frame; at moderation's rate that costs about as much CPU as
classifying the line. Here a delivery from aiormq is decoded and appended to
a batch with no await; the batch is handed over after `linger` seconds (or
at the next turn of the event loop when 0, or when it reaches `max_batch`),
and its messages are acked once the handler returns.

What it keeps of the bus's contract (services/runtime/bus.py):

- a message that is not a parley Envelope, or not of the kinds expected, or
  that the handler hands back with `Batch.dead_letter`, is copied to the
  dead-letter queue with an `x-parley-reason` header (confirmed), then acked;
- a message is acked only after its batch's handler returned, so a crash
  leaves unhandled lines in the queue;
- the queue, its dead-letter queue and bindings are declared on a robust
  channel: after a reconnection they are declared again and the consumer
  starts again (unacked messages come back, as with any consumer).

Acks: `basic.ack multiple=true` at tag N acks every unacked delivery up to
N, so it is only sent when every delivery up to N is done. Deliveries done
while an earlier one is not (a poison message whose dead-letter copy the
broker has not confirmed yet) wait for it, then one ack covers them all;
unless they have waited GAP_PATIENCE or fill three quarters of the prefetch
window: then they are acked one by one, so that the consumer never stops.
Acks go out every ACK_DELAY or every quarter of the prefetch window,
whichever comes first, in the order computed: on a small machine one write
to the broker's socket costs more than the Python of a hundred lines. Give
it a connection that sends the frames of one turn in one write
(services/runtime/coalescing.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from parley.v1 import events_pb2
from services.runtime import envelope as env
from services.runtime.metrics import Metrics
from services.runtime.topology import QueueKind, QueueSpec

log = logging.getLogger(__name__)

_ACK_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError, asyncio.TimeoutError)
ACK_DELAY = 0.01     # seconds between acks, at most
GAP_PATIENCE = 2.0   # seconds done deliveries wait behind one not done before they are acked one by one
_NO_ENVELOPE = events_pb2.Envelope()  # what a delivery that does not parse holds (read only)


@dataclass(eq=False)
class Delivery:
    envelope: events_pb2.Envelope
    tag: int
    body: bytes
    properties: aiormq.spec.Basic.Properties
    routing_key: str
    acks: "_Acks"


@dataclass(eq=False)
class Batch:
    """What the handler gets: the deliveries of one turn, in order."""
    deliveries: list[Delivery]
    poison: list[tuple[Delivery, str]] = field(default_factory=list)

    def dead_letter(self, index: int, reason: str) -> None:
        """Send delivery `index` to the dead-letter queue with `reason`."""
        self.poison.append((self.deliveries[index], reason))


BatchHandler = Callable[[Batch], Awaitable[None]]


class _Acks:
    """Acks of one channel (delivery tags count from 1 on each channel)."""

    def __init__(self, channel: aiormq.abc.AbstractChannel, max_waiting: int = 500,
                 patience: float = GAP_PATIENCE) -> None:
        self.channel = channel
        self.max_waiting = max_waiting
        self.patience = patience
        self.floor = 0                  # every tag up to here is acked
        self.done: set[int] = set()     # done, not acked yet
        self.acked: set[int] = set()    # acked one by one, above the floor
        self.waiting_since: float | None = None  # since when done deliveries wait behind one not done

    def mark(self, tags: Sequence[int]) -> None:
        self.done.update(tags)

    def sends(self) -> list[tuple[int, bool]]:
        """The acks to send now for what is done: (tag, multiple)."""
        top = self.floor
        last_done = 0
        while True:
            following = top + 1
            if following in self.done:
                last_done = following
            elif following not in self.acked:
                break
            top = following
        sends: list[tuple[int, bool]] = []
        advanced = top > self.floor
        if advanced:
            if last_done:
                # every unacked tag up to last_done is done: one frame for all
                sends.append((last_done, True))
            self.done = {t for t in self.done if t > top}
            self.acked = {t for t in self.acked if t > top}
            self.floor = top
        if not self.done:
            self.waiting_since = None
            return sends
        now = time.monotonic()
        if self.waiting_since is None or advanced:
            self.waiting_since = now  # (another) delivery not done holds the rest back
        if len(self.done) > self.max_waiting or now - self.waiting_since >= self.patience:
            # done behind one that is not, for long: one by one, so that the
            # broker keeps delivering (the prefetch window counts unacked messages)
            for tag in sorted(self.done):
                sends.append((tag, False))
                self.acked.add(tag)
            self.done.clear()
        return sends


class BatchConsumer:
    def __init__(self, connection: AbstractRobustConnection, spec: QueueSpec, handler: BatchHandler, *,
                 expected: frozenset[str], prefetch: int = 1000, max_batch: int = 256, linger: float = 0.0,
                 service: str = "moderation") -> None:
        self.connection = connection
        self.spec = spec
        self.handler = handler
        self.expected = expected
        self.prefetch = prefetch
        self.max_batch = max_batch
        self.linger = linger
        self._timer: asyncio.TimerHandle | None = None
        # Acks go out every ACK_DELAY or every quarter of the prefetch window:
        # each write to the broker's socket costs more than a hundred lines.
        self._ack_every = max(1, prefetch // 4)
        self._unacked_done = 0
        self._ack_timer: asyncio.TimerHandle | None = None
        self._ack_lock = asyncio.Lock()
        self.acks_sent = 0
        self.completed = 0
        self.channel: AbstractRobustChannel | None = None
        self.queue = None
        self._acks: _Acks | None = None
        self._pending: list[Delivery] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()
        self._consumer_tag: str | None = None
        self._stopped = False
        metrics = Metrics(service)
        # the bus's own families (the same objects): alerts read them
        self._consumed = metrics.counter(
            "events_consumed_total", "Events taken from queues, by outcome", ["event", "outcome"])
        self._dead_lettered = metrics.counter(
            "events_dead_lettered_total", "Messages sent to a dead-letter queue", ["queue"])
        self._ok = {}

    async def start(self) -> None:
        self.channel = await self.connection.channel(publisher_confirms=True)
        await self.channel.set_qos(prefetch_count=self.prefetch)
        spec = self.spec
        await self.channel.declare_queue(spec.dlq, durable=True, arguments=spec.dlq_arguments())
        self.queue = await self.channel.declare_queue(spec.name, durable=spec.kind is not QueueKind.TRANSIENT,
                                                      arguments=spec.arguments())
        for exchange_name, routing_key in spec.bindings:
            await self.queue.bind(exchange_name, routing_key)
        # After a reconnection the robust channel declares the queue and its
        # bindings again; the consumer is ours to start again.
        self.channel.reopen_callbacks.add(self._on_reopen)
        await self._consume()

    async def _on_reopen(self, *_args) -> None:
        if not self._stopped:
            log.info("consuming again after reconnecting", extra={"queue": self.spec.name})
            await self._consume()

    async def _consume(self) -> None:
        channel = await self.channel.get_underlay_channel()
        self._acks = _Acks(channel, max_waiting=max(1, self.prefetch * 3 // 4))
        result = await channel.basic_consume(self.spec.name, self._on_delivery, no_ack=False)
        self._consumer_tag = result.consumer_tag

    async def stop(self, drain_seconds: float = 3.0) -> None:
        """Stop taking messages, let the batches in hand finish (their acks
        go out), then close the channel: what is unacked goes back.

        A queue of this replica's own (transient: a shard of the chat lines)
        is unbound first, so that its share of the conversations moves to
        the other replicas at once, drained, and deleted: it does not wait
        for its expiry, routing lines to nobody meanwhile."""
        self._stopped = True
        own = self.spec.kind is QueueKind.TRANSIENT and self.queue is not None
        if self.channel is None or self.channel.is_closed:
            return
        with contextlib.suppress(*_ACK_ERRORS):
            underlay = await self.channel.get_underlay_channel()
            if own:
                for exchange_name, routing_key in self.spec.bindings:
                    await self.queue.unbind(exchange_name, routing_key)
                deadline = time.monotonic() + drain_seconds
                while time.monotonic() < deadline:
                    declared = await underlay.queue_declare(self.spec.name, passive=True)
                    if not declared.message_count and not self._pending and not self._tasks:
                        break
                    await asyncio.sleep(0.05)
            if self._consumer_tag:
                await underlay.basic_cancel(self._consumer_tag)
        self._flush()  # the batch in hand, without waiting for its timer
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        self._flush_acks()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        log.info("consumer stopped", extra={"queue": self.spec.name, "messages": self.completed,
                                            "ack_frames": self.acks_sent})
        with contextlib.suppress(*_ACK_ERRORS):
            if own:
                underlay = await self.channel.get_underlay_channel()
                await underlay.queue_delete(self.spec.name)
            await self.channel.close()

    # ------------------------------------------------------------ deliveries

    async def _on_delivery(self, message: aiormq.abc.DeliveredMessage) -> None:
        # No await before the append: deliveries join the batch in tag order.
        properties = message.header.properties
        delivery = Delivery(_NO_ENVELOPE, message.delivery.delivery_tag, message.body, properties,
                            message.delivery.routing_key or "", self._acks)
        reason = None
        try:
            delivery.envelope = env.decode(message.body, properties.content_type, properties.message_type)
            field = delivery.envelope.WhichOneof("event")
            if field not in self.expected:
                reason = f"{field} on {self.spec.name}, expected {' or '.join(sorted(self.expected))}"
        except env.PoisonMessage as exc:
            reason = str(exc)
        if message.channel is not self._acks.channel:
            # a delivery of a channel since replaced: it comes again on the new one
            return
        if reason is not None:
            self._spawn(self._dead_letter_and_ack(delivery, reason))
            return
        self._pending.append(delivery)
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            if self.linger > 0:
                self._timer = loop.call_later(self.linger, self._flush)
            else:
                loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            deliveries = self._pending[:self.max_batch]
            del self._pending[:self.max_batch]
            self._spawn(self._run(Batch(deliveries)))

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: Batch) -> None:
        try:
            await self.handler(batch)
        except Exception as exc:  # noqa: BLE001 - a handler bug must not lose the batch's acks
            log.exception("batch handler failed; dead-lettering the batch", extra={"queue": self.spec.name})
            batch.poison = [(d, f"handler failed: {exc!r}") for d in batch.deliveries]
        poisoned = {id(d) for d, _ in batch.poison}
        self._complete([d for d in batch.deliveries if id(d) not in poisoned], "ok")
        for delivery, reason in batch.poison:
            self._spawn(self._dead_letter_and_ack(delivery, reason))

    def _complete(self, deliveries: Sequence[Delivery], outcome: str) -> None:
        if not deliveries:
            return
        by_channel: dict[int, tuple[_Acks, list[int]]] = {}
        for delivery in deliveries:
            field = delivery.envelope.WhichOneof("event") or "unknown"
            counter = self._ok.get((field, outcome))
            if counter is None:
                counter = self._ok[(field, outcome)] = self._consumed.labels(field, outcome)
            counter.inc()
            by_channel.setdefault(id(delivery.acks), (delivery.acks, []))[1].append(delivery.tag)
        for acks, tags in by_channel.values():
            if acks is not self._acks:
                continue  # that channel is gone: its messages come back
            acks.mark(tags)
            self._unacked_done += len(tags)
            self.completed += len(tags)
        if self._unacked_done >= self._ack_every:
            self._flush_acks()
        elif self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(ACK_DELAY, self._flush_acks)

    def _flush_acks(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        self._unacked_done = 0
        acks = self._acks
        if acks is None:
            return
        sends = acks.sends()
        if sends:
            self._spawn(self._send_acks(acks.channel, sends))

    async def _send_acks(self, channel, sends: list[tuple[int, bool]]) -> None:
        """In the order computed: an ack `multiple` overtaking a single ack of
        a tag below it would make that one unknown to the broker, which
        closes the channel."""
        self.acks_sent += len(sends)
        try:
            async with self._ack_lock:
                for tag, multiple in sends:
                    await channel.basic_ack(tag, multiple=multiple, wait=False)
        except _ACK_ERRORS as exc:
            log.warning("ack failed (the messages will be delivered again)", extra={
                "queue": self.spec.name, "error": repr(exc)})

    async def _dead_letter_and_ack(self, delivery: Delivery, reason: str) -> None:
        log.warning("dead-lettering message", extra={"queue": self.spec.name, "reason": reason})
        properties = delivery.properties
        headers = dict(properties.headers or {})
        headers.update({"x-parley-reason": reason[:1000], "x-parley-queue": self.spec.name,
                        "x-parley-routing-key": delivery.routing_key})
        copy = aio_pika.Message(delivery.body, headers=headers, content_type=properties.content_type,
                                type=properties.message_type, message_id=properties.message_id,
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        try:
            await self.channel.default_exchange.publish(copy, self.spec.dlq, timeout=10)
        except Exception as exc:  # noqa: BLE001 - left unacked: it comes back after a reconnection
            log.error("could not dead-letter a message; leaving it unacked", extra={
                "queue": self.spec.name, "error": repr(exc)})
            return
        self._dead_lettered.labels(self.spec.metric_label).inc()
        self._complete([delivery], "dead_lettered")
