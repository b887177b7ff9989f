"""Telling the others: ban.issued and ban.lifted to every gateway (and every
ban replica), durable and confirmed; watch bans (address bans that only flag
suspected evaders) on ban.watch_issued / ban.watch_lifted, which only ban
replicas hear: a gateway must never end a session for one.

A ban is stored before it is announced, with a row in the change log that
stays "unannounced" until the broker confirms; a failed announcement is
logged, counted and raised for the caller, and the outbox (app.py) announces
it later. So a ban never goes unannounced for good, and a gateway may hear
of one twice (ending a banned session twice is harmless)."""
from __future__ import annotations

import logging

from parley.v1 import events_pb2
from services.ban.metrics import BanMetrics
from services.ban.model import Ban
from services.ban.wire import ban_to_proto
from services.runtime.bus import Bus
from services.runtime.topology import BAN_WATCH_ISSUED, BAN_WATCH_LIFTED

log = logging.getLogger(__name__)


class AnnouncementFailed(RuntimeError):
    """The event could not be published; the ban itself is stored."""


def routing_key(ban: Ban, change: str) -> str | None:
    """Where a change of this ban is announced: None for the event's own key
    (ban.issued, ban.lifted), else the watch key."""
    if ban.refuses_by_itself:
        return None
    return BAN_WATCH_ISSUED if change == "issue" else BAN_WATCH_LIFTED


class Announcer:
    def __init__(self, bus: Bus, metrics: BanMetrics, timeout: float, mark_announced=None) -> None:
        """`mark_announced(ban_id, change)`, when given, is awaited after the
        broker confirmed (the store's outbox mark)."""
        self.bus = bus
        self.metrics = metrics
        self.timeout = timeout
        self.mark_announced = mark_announced

    async def issued(self, ban: Ban) -> None:
        await self.announce(ban, "issue")

    async def lifted(self, ban: Ban) -> None:
        await self.announce(ban, "lift")

    async def announce(self, ban: Ban, change: str) -> None:
        record = ban_to_proto(ban)
        event = events_pb2.BanIssued(ban=record) if change == "issue" else events_pb2.BanLifted(ban=record)
        name = "ban_issued" if change == "issue" else "ban_lifted"
        try:
            await self.bus.publish(event, timeout=self.timeout, routing_key=routing_key(ban, change))
        except Exception as exc:  # BusUnavailable, a broker nack, a bus never connected
            self.metrics.announce_failures.labels(name).inc()
            log.error("could not announce %s; the ban is stored, enforced at connect, and the outbox "
                      "will announce it", name, extra={"ban_id": ban.ban_id, "error": repr(exc)})
            raise AnnouncementFailed(f"{name} for ban {ban.ban_id} not published: {exc}") from exc
        if self.mark_announced is not None:
            await self.mark_announced(ban.ban_id, change)
