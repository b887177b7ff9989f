"""The moderation service's Prometheus metrics (parley_moderation_...).
Labels are bounded enums (category, action, mode, age band): never a user,
report or item id."""
from __future__ import annotations

import logging

import sqlalchemy as sa

from parley.v1 import common_pb2
from services.moderation.enums import enum_name
from services.moderation.store import OPEN, STORE_ERRORS, ReviewStore, review_items
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

        # ------------------------------------------------ the detectors at work
        self.messages_classified = metrics.counter(
            "messages_classified_total", "Chat lines the text detectors judged")
        self.snapshots_classified = metrics.counter(
            "snapshots_classified_total", "Video snapshots analyzed, by verdict (clean, flagged, severe)",
            ["verdict"])
        self.detections = metrics.counter(
            "detections_total", "Lines or snapshots in which a detector found something, by detector, "
            "category and mode (live: acted on; shadow: a shadow rule, counted only)",
            ["detector", "category", "mode"])
        self.rule_hits = metrics.counter(
            "rule_hits_total", "Findings per text rule, by mode (live or shadow): how a shadow rule "
            "would do before it acts", ["rule", "mode"])
        self.actions = metrics.counter(
            "actions_total", "Actions taken on verdicts (mask, hold, warn, end_conversation, escalate, "
            "request_ban)", ["action"])
        self.actions_dropped = metrics.counter(
            "actions_dropped_total", "Escalations and ban requests dropped because too many waited for the "
            "store (a database outage)")
        self.shadow_actions = metrics.counter(
            "shadow_actions_total", "Actions shadow rules would have added: counted, not taken", ["action"])
        self.classification_seconds = metrics.histogram(
            "classification_seconds", "Time to judge: one batch of chat lines (kind message_batch), one "
            "snapshot (kind snapshot)", ["kind"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        self.batch_size = metrics.histogram(
            "message_batch_size", "Chat lines per classified batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.event_lag = metrics.histogram(
            "event_lag_seconds", "From when an event happened (its envelope's occurred_at) to when "
            "moderation finished handling it, by event (message, snapshot, report, suspicion)", ["event"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
        self.review_oldest_open = metrics.gauge(
            "review_oldest_open_seconds", "Age of the oldest review item waiting for a decision, by "
            "category (0 when none waits); read from the shared store", ["category"])
        self.conversations_tracked = metrics.gauge(
            "conversations_tracked", "Conversations whose recent lines this replica keeps (evidence)")
        self.message_sharding = metrics.gauge(
            "message_sharding", "1 when chat lines come through the consistent-hash exchange (a queue per "
            "replica), 0 when through the one shared queue")
        self.hash_bank_entries = metrics.gauge(
            "hash_bank_entries", "PDQ hashes matched against snapshots, by bank", ["bank"])
        self.bank_additions = metrics.counter(
            "hash_bank_additions_total", "Hashes added to banks at run time and taken in by this replica")
        self._categories = [name for name, _number in common_pb2.Category.items()]

    async def refresh_gauges(self, store: ReviewStore) -> None:
        """Read the queue gauges from the store; a store outage leaves them as they were."""
        try:
            self.review_queue_open.set(await store.count_open())
            self.decisions_unpublished.set(await store.count_unpublished())
            oldest = await oldest_open_by_category(store)
        except STORE_ERRORS as exc:
            log.warning("could not refresh queue gauges", extra={"error": repr(exc)})
            return
        now = store.clock()
        for name in self._categories:
            created = oldest.get(name)
            self.review_oldest_open.labels(name).set(max(0.0, (now - created) / 1000) if created else 0.0)


async def oldest_open_by_category(store: ReviewStore) -> dict[str, int]:
    """Category name -> creation time (ms) of its oldest item waiting for a
    decision (claimed or not: a claimed item has not been decided either)."""
    query = (sa.select(review_items.c.category, sa.func.min(review_items.c.created_at_ms))
             .where(review_items.c.status == OPEN).group_by(review_items.c.category))
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    oldest: dict[str, int] = {}
    for category, created in rows:
        name = enum_name(common_pb2.Category, category)
        oldest[name] = min(created, oldest.get(name, created))
    return oldest
