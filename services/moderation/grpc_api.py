"""parley.v1.Moderation: the review queue for moderators and their tools."""
from __future__ import annotations

import logging

import grpc

from parley.v1 import moderation_pb2, moderation_pb2_grpc
from services.moderation import review
from services.moderation.enums import enum_name
from services.moderation.messages import item_message
from services.moderation.metrics import ModerationMetrics
from services.moderation.outbox import DecisionOutbox
from services.moderation.store import DECIDED, OPEN, STORE_ERRORS, AlreadyDecided, ItemNotFound, ReviewStore

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

_STATUS_FILTER = {
    moderation_pb2.REVIEW_STATUS_UNSPECIFIED: None,
    moderation_pb2.REVIEW_STATUS_OPEN: OPEN,
    moderation_pb2.REVIEW_STATUS_DECIDED: DECIDED,
}


class ModerationApi(moderation_pb2_grpc.ModerationServicer):
    def __init__(self, store: ReviewStore, outbox: DecisionOutbox, metrics: ModerationMetrics) -> None:
        self.store = store
        self.outbox = outbox
        self.metrics = metrics

    async def ListReviewItems(self, request, context):
        if request.status not in _STATUS_FILTER:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown status {request.status}")
        limit = min(request.limit or DEFAULT_LIMIT, MAX_LIMIT)
        try:
            items = await self.store.list_items(_STATUS_FILTER[request.status], limit)
        except STORE_ERRORS as exc:
            await _store_unavailable(context, exc)
        return moderation_pb2.ListReviewItemsResponse(items=[item_message(item) for item in items])

    async def GetReviewItem(self, request, context):
        if not request.item_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "item_id is required")
        try:
            item = await self.store.get_item(request.item_id)
        except STORE_ERRORS as exc:
            await _store_unavailable(context, exc)
        if item is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no review item {request.item_id}")
        return item_message(item)

    async def Decide(self, request, context):
        try:
            checked = review.validate_decision(request)
        except review.InvalidDecision as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            decision = await self.store.decide(checked.item_id, checked.action, checked.category,
                                               checked.duration_s, checked.moderator, checked.note)
        except ItemNotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except AlreadyDecided as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except STORE_ERRORS as exc:
            await _store_unavailable(context, exc)
        self.metrics.decisions.labels(enum_name(moderation_pb2.Action, decision.action)).inc()
        log.info("decided", extra={"item_id": decision.item_id, "decision_id": decision.decision_id,
                                   "action": enum_name(moderation_pb2.Action, decision.action),
                                   "moderator": decision.moderator})
        # The decision is stored: if the broker does not confirm now, the
        # outbox publishes it later, so the moderator's answer is still OK.
        await self.outbox.publish(decision)
        await self.metrics.refresh_gauges(self.store)
        return moderation_pb2.DecideResponse(decision_id=decision.decision_id)


async def _store_unavailable(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    log.error("review store failed", extra={"error": repr(exc)})
    await context.abort(grpc.StatusCode.UNAVAILABLE, "review store unavailable; try again")
