"""The moderation service's Prometheus metrics (parley_moderation_...).
Labels are bounded enums (category, action, mode, age band): never a user,
report or item id."""
from __future__ import annotations

import logging

from services.moderation.store import STORE_ERRORS, ReviewStore
from services.runtime.metrics import Metrics

log = logging.getLogger(__name__)


class ModerationMetrics:
    def __init__(self) -> None:
        metrics = Metrics("moderation")
        self.reports_received = metrics.counter(
            "reports_received_total", "Reports taken from the broker, by category and outcome "
            "(stored: a new review item; duplicate: a redelivery of a stored report)",
            ["category", "outcome"])
        # Read from the shared store: with replicas on one database, every
        # replica reports the same figure (aggregate with max, not sum).
        self.review_queue_open = metrics.gauge("review_queue_open", "Review items waiting for a decision")
        self.decisions = metrics.counter("decisions_total", "Moderator decisions, by action", ["action"])
        self.messages_observed = metrics.counter(
            "messages_observed_total", "Chat lines copied to moderation, by mode and age band",
            ["mode", "age_band"])
        self.decisions_unpublished = metrics.gauge(
            "decisions_unpublished", "Decisions stored but not yet confirmed by the broker (the outbox)")
        self.suspicions_received = metrics.counter(
            "suspicions_received_total", "Suspected ban evaders taken from the broker, by outcome "
            "(stored: a new item; merged: joined an open item; suppressed: the device and ban were dismissed "
            "before, kept on that item; duplicate: a redelivery)", ["outcome"])
        self.escalations_opened = metrics.counter(
            "escalations_opened_total", "Detector escalations filed into the review queue, by outcome",
            ["outcome"])
        self.moderator_calls = metrics.counter(
            "moderator_calls_total", "Moderator API calls, by method and outcome (ok, unauthenticated, "
            "permission_denied, error)", ["method", "outcome"])
        self.evidence_purged = metrics.counter(
            "evidence_purged_cases_total", "Cases whose evidence the retention purge deleted")
        self.exports = metrics.counter("exports_total", "Law-enforcement packages exported")

    async def refresh_gauges(self, store: ReviewStore) -> None:
        """Read the queue gauges from the store; a store outage leaves them as they were."""
        try:
            self.review_queue_open.set(await store.count_open())
            self.decisions_unpublished.set(await store.count_unpublished())
        except STORE_ERRORS as exc:
            log.warning("could not refresh queue gauges", extra={"error": repr(exc)})
