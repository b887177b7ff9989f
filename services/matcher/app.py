"""The matcher process: match requests in from the broker, the pairing policy
in memory, match results out to each side's gateway."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import grpc

from parley.v1 import common_pb2, events_pb2, matcher_pb2, matcher_pb2_grpc
from services.matcher.pairing import Pair, Pools, Ticket
from services.matcher.settings import MatcherSettings
from services.runtime.bus import Bus
from services.runtime.envelope import PoisonMessage
from services.runtime.metrics import Metrics
from services.runtime.topology import matcher_requests

log = logging.getLogger(__name__)

MAX_INTERESTS = 10


class MatcherService:
    grpc_service_names = [matcher_pb2.DESCRIPTOR.services_by_name["Matcher"].full_name]

    def __init__(self, settings: MatcherSettings) -> None:
        self.settings = settings
        self.bus = Bus(settings.amqp_url, "matcher", settings.instance_id)
        self.pools = Pools(fallback_after=settings.fallback_after_seconds)
        self.pairs_total = 0
        self._sweeper: asyncio.Task | None = None
        metrics = Metrics("matcher")
        self.m_waiting = metrics.gauge("waiting_users", "Users waiting, by pool", ["mode", "age_band"])
        self.m_pairs = metrics.counter("pairs_total", "Pairs made", ["mode", "kind"])
        self.m_time_to_pair = metrics.histogram(
            "time_to_pair_seconds", "From match request to pair", ["mode"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.m_requests = metrics.counter("requests_total", "Match requests and cancels", ["kind"])

    # ------------------------------------------------------------ lifecycle

    def register(self, server: grpc.aio.Server) -> None:
        matcher_pb2_grpc.add_MatcherServicer_to_server(MatcherApi(self), server)

    async def start(self) -> None:
        await self.bus.connect()
        await self.bus.consume(matcher_requests(), self.handle, prefetch=500)
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.bus.close()

    # ------------------------------------------------------------ events

    async def handle(self, envelope: events_pb2.Envelope) -> None:
        field = envelope.WhichOneof("event")
        if field == "match_requested":
            self.m_requests.labels("request").inc()
            await self._on_request(envelope.match_requested)
        elif field == "match_cancelled":
            self.m_requests.labels("cancel").inc()
            cancel = envelope.match_cancelled
            self.pools.cancel(cancel.ticket_id, cancel.session.gateway_id, cancel.session.session_id)
            self._update_waiting()
        # Other events on this queue are not ours: acked and ignored.

    async def _on_request(self, request: events_pb2.MatchRequested) -> None:
        if request.mode not in (common_pb2.MODE_TEXT, common_pb2.MODE_VIDEO):
            raise PoisonMessage(f"match request with invalid mode {request.mode}")
        if request.age_band not in (common_pb2.AGE_BAND_MINOR, common_pb2.AGE_BAND_ADULT):
            raise PoisonMessage(f"match request with invalid age band {request.age_band}")
        if not (request.ticket_id and request.session.gateway_id and request.session.session_id
                and request.device_token):
            raise PoisonMessage("match request without ticket, session or device")
        ticket = Ticket(
            ticket_id=request.ticket_id,
            gateway_id=request.session.gateway_id,
            session_id=request.session.session_id,
            device_token=request.device_token,
            mode=request.mode,
            age_band=request.age_band,
            language=request.language or "en",
            interests=frozenset(i.strip().lower() for i in request.interests[:MAX_INTERESTS] if i.strip()),
            interests_only=request.interests_only,
            avoid=frozenset(request.avoid_device_tokens),
        )
        pair = self.pools.add(ticket, time.monotonic(), at_head=request.at_head)
        if pair is not None:
            await self._announce(pair)
        self._update_waiting()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_seconds)
            try:
                for pair in self.pools.sweep(time.monotonic()):
                    await self._announce(pair)
                self._update_waiting()
            except Exception:  # a failed publish must not stop the sweeping
                log.exception("sweep failed")

    async def _announce(self, pair: Pair) -> None:
        found = events_pb2.MatchFound(
            match_id=uuid.uuid4().hex,
            a=_participant(pair.a), b=_participant(pair.b),
            common_interests=pair.common_interests,
            random_fallback=pair.kind.value == "fallback",
            mode=pair.a.mode,
        )
        for gateway_id in dict.fromkeys((pair.a.gateway_id, pair.b.gateway_id)):
            await self.bus.send_relay(gateway_id, found)
        self.pairs_total += 1
        mode = common_pb2.Mode.Name(pair.a.mode)
        self.m_pairs.labels(mode, pair.kind.value).inc()
        now = time.monotonic()
        for ticket in (pair.a, pair.b):
            self.m_time_to_pair.labels(mode).observe(now - ticket.enqueued_at)
        log.debug("paired", extra={"match_id": found.match_id, "kind": pair.kind.value})

    def _update_waiting(self) -> None:
        totals: dict[tuple[int, int], int] = {}
        for (mode, band, _language), count in self.pools.waiting().items():
            totals[(mode, band)] = totals.get((mode, band), 0) + count
        for mode in (common_pb2.MODE_TEXT, common_pb2.MODE_VIDEO):
            for band in (common_pb2.AGE_BAND_MINOR, common_pb2.AGE_BAND_ADULT):
                self.m_waiting.labels(common_pb2.Mode.Name(mode), common_pb2.AgeBand.Name(band)).set(
                    totals.get((mode, band), 0))


def _participant(ticket: Ticket) -> events_pb2.MatchParticipant:
    return events_pb2.MatchParticipant(
        ticket_id=ticket.ticket_id,
        session=common_pb2.SessionRef(gateway_id=ticket.gateway_id, session_id=ticket.session_id),
        device_token=ticket.device_token,
        age_band=ticket.age_band,
    )


class MatcherApi(matcher_pb2_grpc.MatcherServicer):
    def __init__(self, service: MatcherService) -> None:
        self.service = service

    async def GetStats(self, request, context):
        pools = [matcher_pb2.PoolStats(mode=mode, age_band=band, language=language, waiting=count)
                 for (mode, band, language), count in sorted(self.service.pools.waiting().items())]
        return matcher_pb2.GetStatsResponse(pools=pools, pairs_total=self.service.pairs_total,
                                            instance_id=self.service.settings.instance_id)
