"""The decision outbox (DESIGN.md, invariant 4: nothing that enforcement
depends on is lost). A decision is committed first, with published_at_ms
NULL, and published as a durable, confirmed DecisionMade second. Decide
tries at once; whatever the broker did not confirm (an outage, a crash
between commit and publish) is published again by `flush`, which the
service runs every few seconds and at start.

Delivery is at least once: a crash between the broker's confirm and
mark_published, or two replicas flushing together, publishes a decision
twice. The ban service is idempotent on decision_id.
"""
from __future__ import annotations

import logging

from services.moderation.messages import decision_event
from services.moderation.store import STORE_ERRORS, Decision, ReviewStore
from services.runtime.bus import Bus

log = logging.getLogger(__name__)


class DecisionOutbox:
    def __init__(self, store: ReviewStore, bus: Bus, publish_timeout: float) -> None:
        self.store = store
        self.bus = bus
        self.publish_timeout = publish_timeout
        # Decisions being published by this process right now: Decide and
        # flush must not publish the same one side by side.
        self._in_flight: set[str] = set()

    async def publish(self, decision: Decision) -> bool:
        """Publish one decision and record the confirm. False when the broker
        did not confirm in time: the decision stays in the outbox."""
        if decision.decision_id in self._in_flight:
            return False
        self._in_flight.add(decision.decision_id)
        try:
            # The decision id is the event id: a republished decision is the same event.
            await self.bus.publish(decision_event(decision), timeout=self.publish_timeout,
                                   event_id=decision.decision_id)
        except Exception as exc:  # any failure: the stored decision waits for the next flush
            log.warning("decision not published; left in the outbox",
                        extra={"decision_id": decision.decision_id, "error": repr(exc)})
            return False
        finally:
            self._in_flight.discard(decision.decision_id)
        try:
            await self.store.mark_published(decision.decision_id)
        except STORE_ERRORS as exc:
            # Published but not marked: the next flush publishes it again,
            # which at-least-once delivery allows.
            log.warning("decision published but not marked", extra={
                "decision_id": decision.decision_id, "error": repr(exc)})
        log.info("decision published", extra={"decision_id": decision.decision_id,
                                               "item_id": decision.item_id})
        return True

    async def flush(self, batch: int = 100) -> int:
        """Publish unpublished decisions, oldest first; stop at the first
        failure (the broker is down: the rest would wait just as long).
        Returns how many were published."""
        published = 0
        while True:
            pending = await self.store.unpublished_decisions(limit=batch)
            pending = [d for d in pending if d.decision_id not in self._in_flight]
            if not pending:
                return published
            for decision in pending:
                if not await self.publish(decision):
                    return published
                published += 1
            if len(pending) < batch:
                return published
