"""One partition's waiting users, as this replica works them.

A waiting user's match request stays unacked until the user is paired,
cancelled or expired: the broker holds the truth about who waits. If this
replica dies (or hands the partition to its owner), the broker returns those
requests to the queue and the next replica rebuilds the pools from them.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage

from parley.v1 import common_pb2, events_pb2
from services.matcher.metrics import MatcherMetrics
from services.matcher.pairing import Pair, Pools, Ticket
from services.runtime.bus import Subscription
from services.runtime.envelope import PoisonMessage

log = logging.getLogger(__name__)

MAX_INTERESTS = 10
DONE_MEMORY = 100_000  # finished ticket ids (and sessions' newest ticket numbers) remembered
RESCAN_EVERY = 2.0     # seconds between full interest rescans


class PartitionWorker:
    def __init__(self, partition: int, pools: Pools,
                 announce: Callable[[Pair], Awaitable[events_pb2.MatchFound | None]],
                 metrics: MatcherMetrics, clock: Callable[[], float] = time.time,
                 resend: Callable[[str, events_pb2.MatchFound], Awaitable[None]] | None = None) -> None:
        self.partition = partition
        self.pools = pools
        self.announce = announce
        self.resend = resend
        self.metrics = metrics
        self.clock = clock
        self.held: dict[str, AbstractIncomingMessage] = {}  # ticket id -> its unacked request
        # finished ticket id -> the MatchFound that paired it (None: cancelled)
        self.done: OrderedDict[str, events_pb2.MatchFound | None] = OrderedDict()
        # (gateway, session) -> the newest ticket number seen: older ones are replays
        self.newest: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._rescanned_at = 0.0
        self.subscription: Subscription | None = None
        self.active = False  # has received work since it subscribed

    # ------------------------------------------------------------ events

    async def handle(self, envelope: events_pb2.Envelope, message: AbstractIncomingMessage) -> None:
        if not self.active:
            self.active = True
            if message.redelivered:
                self.metrics.failovers.inc()
                log.info("partition taken over", extra={"partition": self.partition})
        field = envelope.WhichOneof("event")
        if field == "match_requested":
            await self._on_request(envelope.match_requested, message)
        elif field == "match_cancelled":
            await self._on_cancel(envelope.match_cancelled, message)
        else:
            raise PoisonMessage(f"{field} event on a matcher queue")

    async def _on_request(self, request: events_pb2.MatchRequested, message: AbstractIncomingMessage) -> None:
        _check(request)
        ticket_id = request.ticket_id
        session_key = (request.session.gateway_id, request.session.session_id)
        if request.session_seq and request.session_seq < self.newest.get(session_key, 0):
            # A replay of a ticket the session has since replaced: it must not
            # unseat the session's current ticket.
            self.metrics.request("duplicate").inc()
            self._remember(ticket_id)
            await message.ack()
            return
        if request.session_seq:
            self.newest[session_key] = request.session_seq
            self.newest.move_to_end(session_key)
            if len(self.newest) > DONE_MEMORY:
                self.newest.popitem(last=False)
        if ticket_id in self.done:
            found = self.done[ticket_id]
            if found is not None and self.resend is not None:
                # A renewal of a ticket already paired: the gateway never got
                # (or has not yet got) the result. Sent again, to that gateway
                # only; the gateway ignores a result it already answered.
                self.metrics.request("reannounce").inc()
                await _quietly(self.resend(request.session.gateway_id, found))
                await message.ack()
                return
            self.metrics.request("duplicate").inc()
            await message.ack()
            return
        now = self.clock()
        if self.pools.renew(ticket_id, now):
            self.metrics.request("renewal").inc()
            held = self.held.get(ticket_id)
            if message.redelivered or held is None or _channel_closed(held):
                # The broker gave the request back (a channel or connection
                # was lost): this delivery is now the one that keeps the user.
                self.held[ticket_id] = message
                if held is not None:
                    await _quietly(held.ack())
            else:
                await message.ack()
            return
        self.metrics.request("requeue" if request.at_head else "new").inc()
        replaced = self.pools.cancel_session(request.session.gateway_id, request.session.session_id)
        if replaced is not None:
            await self._finish(replaced)
        ticket = Ticket(
            ticket_id=ticket_id,
            gateway_id=request.session.gateway_id,
            session_id=request.session.session_id,
            device_token=request.device_token,
            mode=request.mode,
            age_band=request.age_band,
            language=request.language or "en",
            interests=frozenset(i.strip().lower() for i in request.interests[:MAX_INTERESTS] if i.strip()),
            interests_only=request.interests_only,
            avoid=frozenset(request.avoid_device_tokens),
            # the wait counts from the first request, across re-queues and failovers
            enqueued_at=min(now, request.requested_at_unix_ms / 1000) if request.requested_at_unix_ms else now,
        )
        self.held[ticket_id] = message
        pair = self.pools.add(ticket, now, at_head=request.at_head)
        if pair is not None:
            await self._complete(pair, now)

    async def _on_cancel(self, cancel: events_pb2.MatchCancelled, message: AbstractIncomingMessage) -> None:
        self.metrics.request("cancel").inc()
        ticket = self.pools.cancel(cancel.ticket_id, cancel.session.gateway_id, cancel.session.session_id)
        if ticket is not None:
            await self._finish(ticket)
        else:
            self._remember(cancel.ticket_id)
        await message.ack()

    # ------------------------------------------------------------ time

    async def tick(self) -> None:
        now = self.clock()
        pairs = self.pools.sweep(now)
        if now - self._rescanned_at >= RESCAN_EVERY:
            self._rescanned_at = now
            pairs += self.pools.rescan(now)
        for pair in pairs:
            await self._complete(pair, now)
        for ticket in self.pools.expire(now):
            self.metrics.expired.inc()
            # Not remembered as done: if its gateway was only late, the next
            # renewal brings the ticket back.
            message = self.held.pop(ticket.ticket_id, None)
            if message is not None:
                await _quietly(message.ack())

    # ------------------------------------------------------------ outcomes

    async def _complete(self, pair: Pair, now: float) -> None:
        try:
            found = await self.announce(pair)
        except Exception:  # the broker is away: both go back to the queue, to be paired again
            self.metrics.announce_failures.inc()
            log.exception("match found but not announced; requeueing both")
            self.pools.recent.forget_pair(pair.a.device_token, pair.b.device_token)
            for ticket in (pair.a, pair.b):
                message = self.held.pop(ticket.ticket_id, None)
                if message is not None:
                    await _quietly(message.nack(requeue=True))
            return
        self.metrics.paired(pair, now)
        for ticket in (pair.a, pair.b):
            await self._finish(ticket, found)

    async def _finish(self, ticket: Ticket, found: events_pb2.MatchFound | None = None) -> None:
        """The ticket leaves for good: ack its request."""
        self._remember(ticket.ticket_id, found)
        message = self.held.pop(ticket.ticket_id, None)
        if message is not None:
            await _quietly(message.ack())

    def _remember(self, ticket_id: str, found: events_pb2.MatchFound | None = None) -> None:
        self.done[ticket_id] = found
        if len(self.done) > DONE_MEMORY:
            self.done.popitem(last=False)

    def reset(self) -> None:
        """Forget the partition's state: its requests went back to the queue."""
        self.pools = Pools(self.pools.fallback_after, self.pools.ticket_ttl,
                           self.pools.recent.window, self.pools.recent.limit)
        self.held.clear()
        self.active = False


def _check(request: events_pb2.MatchRequested) -> None:
    if request.mode not in (common_pb2.MODE_TEXT, common_pb2.MODE_VIDEO):
        raise PoisonMessage(f"match request with invalid mode {request.mode}")
    if request.age_band not in (common_pb2.AGE_BAND_MINOR, common_pb2.AGE_BAND_ADULT):
        raise PoisonMessage(f"match request with invalid age band {request.age_band}")
    if not (request.ticket_id and request.session.gateway_id and request.session.session_id
            and request.device_token):
        raise PoisonMessage("match request without ticket, session or device")


def _channel_closed(message: AbstractIncomingMessage) -> bool:
    try:
        return bool(message.channel.is_closed)
    except Exception:  # noqa: BLE001 - no channel to speak of: as good as closed
        return True


async def _quietly(awaitable) -> None:
    """Ack or nack on a channel that may have closed: then the broker has
    already given the message back, which is what we want anyway."""
    try:
        await awaitable
    except Exception as exc:  # noqa: BLE001
        log.debug("ack/nack on a closed channel", extra={"error": repr(exc)})
