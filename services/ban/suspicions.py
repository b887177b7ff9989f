"""Suspected evaders: a device that is not banned, seen on an address under a
watch ban, is flagged once per (device, ban) and sent to human review as a
durable ban.evader_suspected event (the moderation service queues it).

CheckBan must not wait for any of that: it notes the suspicion (a set look-up
and a queue put) and answers. A worker records the flag in the store, where
a unique key makes it once across replicas, and publishes it with confirms;
a flag whose publish failed stays unpublished in the store and the outbox
(app.py) publishes it again under the same suspicion id, which consumers
are idempotent on."""
from __future__ import annotations

import asyncio
import logging

from parley.v1 import common_pb2, events_pb2
from services.ban.metrics import BanMetrics
from services.ban.model import Ban, evader_reason
from services.ban.retry import is_transient
from services.ban.store import BanStore, EvaderFlag
from services.ban.wire import subject_to_proto
from services.runtime.bus import Bus

log = logging.getLogger(__name__)

# (device, ban) pairs remembered as flagged by this replica; past this many
# the oldest are forgotten (the store still knows them: a forgotten pair
# costs one insert that finds its row).
REMEMBERED = 200_000
# Suspicions waiting for the worker; past this, new ones are not remembered
# either, so the next check of that device notes it again.
BACKLOG = 10_000


def suspicion_event(flag: EvaderFlag) -> events_pb2.EvaderSuspected:
    ban = flag.ban
    return events_pb2.EvaderSuspected(
        suspicion_id=flag.suspicion_id,
        identity=common_pb2.Identity(device_token=flag.device_token, ip_hash=flag.ip_hash,
                                     ip_prefix_hash=flag.ip_prefix_hash),
        linked_ban_id=ban.ban_id, linked_subject=subject_to_proto(ban.subject),
        linked_category=ban.category, reason=flag.reason, seen_at_unix_ms=flag.seen_at_ms)


class EvaderFlagger:
    def __init__(self, store: BanStore, bus: Bus, metrics: BanMetrics, *, publish_timeout: float) -> None:
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.publish_timeout = publish_timeout
        self._seen: dict[tuple[str, str], None] = {}
        self._queue: asyncio.Queue = asyncio.Queue(BACKLOG)

    def note(self, *, device_token: str, ip_hash: str, ip_prefix_hash: str, ban: Ban) -> None:
        """Called by CheckBan: never blocks, never raises."""
        key = (device_token, ban.ban_id)
        if key in self._seen:
            return
        try:
            self._queue.put_nowait((device_token, ip_hash, ip_prefix_hash, ban))
        except asyncio.QueueFull:
            self.metrics.suspicions.labels("backlog_full").inc()
            return
        self._seen[key] = None
        if len(self._seen) > REMEMBERED:
            del self._seen[next(iter(self._seen))]

    async def run(self) -> None:
        """The worker: record, then publish, each noted suspicion."""
        while True:
            device_token, ip_hash, ip_prefix_hash, ban = await self._queue.get()
            try:
                await self._flag(device_token, ip_hash, ip_prefix_hash, ban)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is away, or a bug: try again at the next check
                self._seen.pop((device_token, ban.ban_id), None)
                self.metrics.suspicions.labels("failed").inc()
                log.warning("could not record a suspected evader; it is noted again at its next check",
                            extra={"ban_id": ban.ban_id, "error": repr(exc), "transient": is_transient(exc)})

    async def _flag(self, device_token: str, ip_hash: str, ip_prefix_hash: str, ban: Ban) -> None:
        flag = await self.store.flag_evader(device_token=device_token, ban=ban, ip_hash=ip_hash,
                                            ip_prefix_hash=ip_prefix_hash, reason=evader_reason(ban))
        if flag is None:
            self.metrics.suspicions.labels("duplicate").inc()
            return
        log.info("suspected evader flagged", extra={"ban_id": ban.ban_id, "suspicion_id": flag.suspicion_id})
        await self.publish(flag)

    async def publish(self, flag: EvaderFlag) -> bool:
        """Publish a recorded flag and mark it published; False when the
        broker did not confirm (the outbox tries again)."""
        try:
            await self.bus.publish(suspicion_event(flag), timeout=self.publish_timeout,
                                   event_id=flag.suspicion_id)
        except Exception as exc:
            self.metrics.suspicions.labels("publish_failed").inc()
            log.warning("could not publish a suspected evader; the outbox will", extra={
                "suspicion_id": flag.suspicion_id, "error": repr(exc)})
            return False
        await self.store.mark_flag_published(flag.suspicion_id)
        self.metrics.suspicions.labels("published").inc()
        return True
