"""Telling every gateway: ban.issued and ban.lifted events, durable and
confirmed. A ban is stored before it is announced, so a failed announcement
never un-bans anyone; it is logged, counted and raised for the caller to
decide (the gRPC API answers anyway, the decision consumer retries)."""
from __future__ import annotations

import logging

from parley.v1 import events_pb2
from services.ban.metrics import BanMetrics
from services.ban.model import Ban
from services.ban.wire import ban_to_proto
from services.runtime.bus import Bus

log = logging.getLogger(__name__)


class AnnouncementFailed(RuntimeError):
    """The event could not be published; the ban itself is stored."""


class Announcer:
    def __init__(self, bus: Bus, metrics: BanMetrics, timeout: float) -> None:
        self.bus = bus
        self.metrics = metrics
        self.timeout = timeout

    async def issued(self, ban: Ban) -> None:
        await self._publish(events_pb2.BanIssued(ban=ban_to_proto(ban)), "ban_issued", ban)

    async def lifted(self, ban: Ban) -> None:
        await self._publish(events_pb2.BanLifted(ban=ban_to_proto(ban)), "ban_lifted", ban)

    async def _publish(self, event, name: str, ban: Ban) -> None:
        try:
            await self.bus.publish(event, timeout=self.timeout)
        except Exception as exc:  # BusUnavailable, a broker nack, a bus never connected
            self.metrics.announce_failures.labels(name).inc()
            log.error("could not announce %s; the ban is stored and enforced at connect", name,
                      extra={"ban_id": ban.ban_id, "error": repr(exc)})
            raise AnnouncementFailed(f"{name} for ban {ban.ban_id} not published: {exc}") from exc
