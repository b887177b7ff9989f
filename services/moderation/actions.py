"""Carrying out what the detectors decide, for the message and snapshot
consumers:

- WARN and END_CONVERSATION: a SessionAction on the relay exchange to the
  gateway that holds the offender's session (ephemeral; the gateway acts
  only while that conversation lasts).
- ESCALATE: a review item (ReviewStore.open_escalation), idempotent on a
  stable escalation id, merged with reports of the same user in the same
  conversation.
- REQUEST_BAN: a durable moderation.decision_made (ACTION_BAN; duration 0
  is permanent) through the decision outbox, so that it is published even if
  the broker is away or the process dies right after: the decision is
  committed first.

The outbox publishes decisions of review items (one decision per item), and
the conversation's review item must stay open for a human (to escalate a
child-safety case for a law-enforcement report, or to undo a mistake). So an
automatic ban is a review item of its own, an *enforcement record*: opened
from the same verdict (kind automated, no match id so it merges with
nothing, its summary naming the conversation and the review item), decided
at once by moderator "auto:<detector>" (ACTION_BAN) and published by the
outbox. It shows with `parley-modctl list --decided`, and the audit log has it.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from parley.v1 import common_pb2, events_pb2, moderation_pb2
from services.moderation import review
from services.moderation.enums import enum_name
from services.moderation.metrics import ModerationMetrics
from services.moderation.outbox import DecisionOutbox
from services.moderation.records import Identity
from services.moderation.store import AlreadyDecided, ClaimConflict, Intake, ReviewStore
from services.runtime.bus import Bus, BusUnavailable
from services.runtime.db import is_transient_db_error
from services.runtime.envelope import PoisonMessage

log = logging.getLogger(__name__)

T = TypeVar("T")
Kind = events_pb2.SessionAction.Kind
RETRY_MAX_SECONDS = 30.0


class Enforcer:
    def __init__(self, bus: Bus, store: ReviewStore, outbox: DecisionOutbox, metrics: ModerationMetrics,
                 open_escalation: Callable[[review.Escalation], Awaitable[Intake]], *,
                 auto_ban_seconds: int = 3600, publish_timeout: float = 3.0, store_concurrency: int = 4) -> None:
        self.bus = bus
        self.store = store
        self.outbox = outbox
        self.metrics = metrics
        self.open_escalation = open_escalation
        self.auto_ban_seconds = auto_ban_seconds
        self.publish_timeout = publish_timeout
        self._action_counters: dict[str, object] = {}
        # Review items and bans written at once, at most: SQLite takes one
        # writer at a time, and writers queued on its lock only burn CPU.
        self._store_slots = asyncio.Semaphore(store_concurrency)

    def count(self, action: str) -> None:
        counter = self._action_counters.get(action)
        if counter is None:
            counter = self._action_counters[action] = self.metrics.actions.labels(action)
        counter.inc()

    # ------------------------------------------------------------ the session

    async def session_action(self, session: common_pb2.SessionRef, match_id: str, kind: int, category: int,
                             notice: str) -> None:
        """Warn the user or end their conversation, on the gateway holding
        the session. Ephemeral: lost if the broker is away (the ban, when
        there is one, goes separately and durably)."""
        if not session.gateway_id:
            return
        try:
            await self.bus.send_relay(session.gateway_id, events_pb2.SessionAction(
                session=session, match_id=match_id, kind=kind, category=category, message=notice),
                timeout=self.publish_timeout)
        except BusUnavailable as exc:
            log.error("session action not sent", extra={"session_id": session.session_id,
                                                        "kind": Kind.Name(kind), "error": str(exc)})

    # ------------------------------------------------------------ review and bans

    async def escalate(self, escalation: review.Escalation) -> Intake:
        """File a review item; a malformed one is poison (dead-lettered), a
        store outage is retried for as long as it takes (idempotent)."""
        try:
            async with self._store_slots:
                return await _retrying(lambda: self.open_escalation(escalation), "opening a review item")
        except review.InvalidReport as exc:
            raise PoisonMessage(f"escalation {escalation.escalation_id}: {exc}") from None

    async def request_ban(self, **request) -> str | None:
        """Ask the ban service for a ban through the outbox (see the module
        doc): returns the decision id, or None when a moderator holds the
        enforcement record (they decide it)."""
        async with self._store_slots:
            return await self._request_ban(**request)

    async def _request_ban(self, *, record_id: str, detector: str, subject: Identity, category: int,
                           permanent: bool, match_id: str, mode: int, age_band: int, why: str,
                           review_item_id: str = "", occurred_at_ms: int = 0) -> str | None:
        duration = 0 if permanent else self.auto_ban_seconds
        what = "permanent ban" if permanent else f"ban of at least {duration} s"
        where = f"conversation {match_id}" if match_id else "no conversation"
        summary = (f"automatic {what} asked by {detector}: {why} ({where}"
                   + (f"; review item {review_item_id})" if review_item_id else ")"))
        record = review.Escalation(
            escalation_id=record_id, detector=detector, subject=subject, category=category,
            risk_score=1.0, summary=summary[:review.MAX_COMMENT_CHARS], match_id="", mode=mode,
            age_band=age_band, occurred_at_ms=occurred_at_ms)
        try:
            intake = await _retrying(lambda: self.store.open_escalation(record), "opening an enforcement record")
        except review.InvalidReport as exc:
            raise PoisonMessage(f"ban request {record_id}: {exc}") from None
        item = intake.item
        moderator = f"auto:{detector}"
        decision = None
        if item.decision_id:
            decision = await _retrying(lambda: self.store.get_decision(item.decision_id), "reading a decision")
        else:
            try:
                decision = await _retrying(lambda: self.store.decide(
                    item.item_id, moderation_pb2.ACTION_BAN, category, duration, moderator, summary,
                    child_safety_allowed=True), "deciding an enforcement record")
                self.metrics.decisions.labels("ACTION_BAN").inc()
            except AlreadyDecided as exc:
                decision = await _retrying(lambda: self.store.get_decision(exc.decision_id), "reading a decision")
            except ClaimConflict:
                log.warning("enforcement record claimed by a moderator; leaving the ban to them",
                            extra={"item_id": item.item_id})
                return None
        if decision is None:
            return None
        log.info("automatic ban requested", extra={
            "decision_id": decision.decision_id, "item_id": item.item_id, "detector": detector,
            "category": enum_name(common_pb2.Category, category), "permanent": permanent,
            "review_item_id": review_item_id})
        if decision.published_at_ms is None:
            # Not confirmed now: the outbox's next flush publishes it.
            await self.outbox.publish(decision)
        return decision.decision_id


async def _retrying(call: Callable[[], Awaitable[T]], what: str) -> T:
    """A store call, retried with backoff while the database is away."""
    delay = 0.2
    while True:
        try:
            return await call()
        except Exception as exc:
            if not is_transient_db_error(exc):
                raise
            log.warning("store unavailable; retrying", extra={"what": what, "error": repr(exc),
                                                               "retry_in_seconds": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)
