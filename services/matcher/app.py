"""The matcher process, wired together: one worker per partition fed by the
partition's queue, heartbeats that tell replicas who owns what, and match
results out to each side's gateway."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import grpc

from parley.v1 import events_pb2, matcher_pb2, matcher_pb2_grpc
from services.matcher.membership import Membership
from services.matcher.metrics import MatcherMetrics
from services.matcher.pairing import Pair, Pools, Ticket
from services.matcher.partition import PartitionWorker
from services.matcher.settings import MatcherSettings
from services.runtime.bus import Bus
from services.runtime.topology import matcher_members, matcher_requests

log = logging.getLogger(__name__)

RESUBSCRIBE_AFTER = 1.0  # a replica that hands a partition over queues up again behind the owner


class MatcherService:
    grpc_service_names = [matcher_pb2.DESCRIPTOR.services_by_name["Matcher"].full_name]

    def __init__(self, settings: MatcherSettings) -> None:
        self.settings = settings
        self.me = settings.instance_id
        # every request is a MatchFound out and an ack or two: frames out in
        # batches, publishes queued (see Bus)
        self.bus = Bus(settings.amqp_url, "matcher", self.me, coalesce_writes=True, queue_fast_publishes=True)
        self.metrics = MatcherMetrics()
        self.membership = Membership(self.me, settings.member_dead_after_seconds)
        self.workers = [PartitionWorker(p, self._new_pools(), self._announce, self.metrics,
                                        resend=self._resend)
                        for p in range(settings.matcher_partitions)]
        self.pairs_total = 0
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self._replicas: tuple[str, ...] = (self.me,)

    def _new_pools(self) -> Pools:
        s = self.settings
        return Pools(fallback_after=s.fallback_after_seconds, ticket_ttl=s.ticket_ttl_seconds,
                     recent_window=s.recent_partner_window_seconds, recent_limit=s.recent_partner_count)

    # ------------------------------------------------------------ lifecycle

    def register(self, server: grpc.aio.Server) -> None:
        matcher_pb2_grpc.add_MatcherServicer_to_server(MatcherApi(self), server)

    async def start(self) -> None:
        await self.bus.connect()
        await self.bus.consume(matcher_members(self.me), self._on_heartbeat, prefetch=100)
        for worker in self.workers:
            await self._subscribe(worker)
        # Heartbeats start once every partition has this replica in line, so
        # a replica that hands partitions over always has someone to hand to.
        self._tasks = [asyncio.create_task(self._every(self.settings.sweep_interval_seconds, self._tick)),
                       asyncio.create_task(self._every(self.settings.heartbeat_seconds, self._heartbeat)),
                       asyncio.create_task(self._every(self.settings.heartbeat_seconds, self._rebalance))]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Closing the subscriptions hands every waiting user back to the
        # queues, where a standby replica takes them at once.
        for worker in self.workers:
            if worker.subscription is not None:
                await worker.subscription.close()
        await self.bus.close()

    async def _subscribe(self, worker: PartitionWorker) -> None:
        worker.subscription = await self.bus.consume(
            matcher_requests(worker.partition), worker.handle, manual_ack=True,
            prefetch=self.settings.max_waiting_per_partition)

    async def _every(self, seconds: float, step) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except Exception:  # one failed round must not stop the loop
                log.exception("periodic step failed", extra={"step": step.__name__})

    # ------------------------------------------------------------ pairing

    async def _tick(self) -> None:
        for worker in self.workers:
            await worker.tick()
        waiting: dict = {}
        for worker in self.workers:
            for key, count in worker.pools.waiting().items():
                waiting[key] = waiting.get(key, 0) + count
        self.metrics.set_waiting(waiting)
        self.metrics.partitions_active.set(sum(w.active for w in self.workers))

    async def _announce(self, pair: Pair) -> events_pb2.MatchFound:
        found = events_pb2.MatchFound(
            match_id=uuid.uuid4().hex,
            common_interests=pair.common_interests,
            random_fallback=pair.kind.value == "fallback",
            mode=pair.a.mode,
        )
        _fill_participant(found.a, pair.a)
        _fill_participant(found.b, pair.b)
        # to each side's gateway (once when both are on the same one)
        await self.bus.send_relays(dict.fromkeys((pair.a.gateway_id, pair.b.gateway_id)), found)
        self.pairs_total += 1
        return found

    async def _resend(self, gateway_id: str, found: events_pb2.MatchFound) -> None:
        await self.bus.send_relay(gateway_id, found)

    # ------------------------------------------------------------ replicas

    async def _heartbeat(self) -> None:
        await self.bus.publish(events_pb2.MatcherHeartbeat(
            instance_id=self.me, partitions=self.settings.matcher_partitions), timeout=1.0)

    async def _on_heartbeat(self, envelope: events_pb2.Envelope) -> None:
        beat = envelope.matcher_heartbeat
        if envelope.WhichOneof("event") != "matcher_heartbeat" or not beat.instance_id:
            return
        if beat.partitions != self.settings.matcher_partitions:
            log.error("matcher replicas disagree on PARLEY_MATCHER_PARTITIONS",
                      extra={"other": beat.instance_id, "theirs": beat.partitions,
                             "ours": self.settings.matcher_partitions})
        if self.membership.heard(beat.instance_id, time.time()) and beat.instance_id != self.me:
            log.info("matcher replica joined", extra={"replica": beat.instance_id})

    async def _rebalance(self) -> None:
        """Hand partitions this replica does not own to their owner: close the
        subscription (its waiting users return to the queue, where the owner,
        next in line, takes them) and queue up again behind. The broker does
        not say which consumer is active, so when the replicas change every
        partition not owned is handed over once; after that, any partition
        found at work here that is not owned."""
        now = time.time()
        for gone in self.membership.forget_dead(now):
            log.warning("matcher replica gone", extra={"replica": gone})
        alive = tuple(self.membership.alive(now))
        replicas_changed, self._replicas = alive != self._replicas, alive
        owned = self.membership.owned(len(self.workers), now)
        self.metrics.members.set(len(alive))
        self.metrics.partitions_owned.set(len(owned))
        for worker in self.workers:
            if (worker.partition not in owned and worker.subscription is not None
                    and (worker.active or replicas_changed)):
                log.info("handing partition to its owner", extra={
                    "partition": worker.partition, "owner": self.membership.owner(worker.partition, now)})
                subscription, worker.subscription = worker.subscription, None
                await subscription.close()
                worker.reset()
                self.metrics.rebalances.inc()
                asyncio.get_running_loop().call_later(
                    RESUBSCRIBE_AFTER, lambda w=worker: asyncio.ensure_future(self._resubscribe(w)))

    async def _resubscribe(self, worker: PartitionWorker) -> None:
        if self._stopping:
            return
        try:
            await self._subscribe(worker)
        except Exception:
            log.exception("resubscribe failed; retrying", extra={"partition": worker.partition})
            asyncio.get_running_loop().call_later(
                RESUBSCRIBE_AFTER, lambda: asyncio.ensure_future(self._resubscribe(worker)))


def _fill_participant(participant: events_pb2.MatchParticipant, ticket: Ticket) -> None:
    """Set the fields of a participant in place (no message built and copied)."""
    participant.ticket_id = ticket.ticket_id
    participant.session.gateway_id = ticket.gateway_id
    participant.session.session_id = ticket.session_id
    participant.device_token = ticket.device_token
    participant.age_band = ticket.age_band


class MatcherApi(matcher_pb2_grpc.MatcherServicer):
    def __init__(self, service: MatcherService) -> None:
        self.service = service

    async def GetStats(self, request, context):
        waiting: dict = {}
        for worker in self.service.workers:
            for key, count in worker.pools.waiting().items():
                waiting[key] = waiting.get(key, 0) + count
        pools = [matcher_pb2.PoolStats(mode=mode, age_band=band, language=language, waiting=count)
                 for (mode, band, language), count in sorted(waiting.items())]
        return matcher_pb2.GetStatsResponse(pools=pools, pairs_total=self.service.pairs_total,
                                            instance_id=self.service.me)
