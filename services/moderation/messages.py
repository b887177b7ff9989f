"""Store records as protobuf messages: review items for the gRPC API, and
decisions as the DecisionMade event the ban service acts on."""
from __future__ import annotations

from parley.v1 import common_pb2, events_pb2, moderation_pb2
from services.moderation.store import DECIDED, OPEN, Decision, Identity, ReviewItem

_STATUS_MESSAGE = {OPEN: moderation_pb2.REVIEW_STATUS_OPEN, DECIDED: moderation_pb2.REVIEW_STATUS_DECIDED}


def identity_message(identity: Identity) -> common_pb2.Identity:
    return common_pb2.Identity(device_token=identity.device_token, ip_hash=identity.ip_hash,
                               ip_prefix_hash=identity.ip_prefix_hash)


def item_message(item: ReviewItem) -> moderation_pb2.ReviewItem:
    return moderation_pb2.ReviewItem(
        item_id=item.item_id, report_id=item.report_id,
        status=_STATUS_MESSAGE.get(item.status, moderation_pb2.REVIEW_STATUS_UNSPECIFIED),
        category=item.category, priority=item.priority, comment=item.comment,
        reported=identity_message(item.reported), reporter=identity_message(item.reporter),
        match_id=item.match_id,
        evidence=[common_pb2.ChatLine(from_reporter=line.from_reporter, text=line.text,
                                      sent_at_unix_ms=line.sent_at_ms) for line in item.evidence],
        snapshot_hashes=item.snapshot_hashes, created_at_unix_ms=item.created_at_ms,
        decision_id=item.decision_id or "")


def decision_event(decision: Decision) -> events_pb2.DecisionMade:
    """The reported user is the subject: the ban service bans by their
    device token, IP hash and IP prefix hash."""
    return events_pb2.DecisionMade(
        decision_id=decision.decision_id, item_id=decision.item_id, report_id=decision.report_id,
        subject=identity_message(decision.subject), action=decision.action, category=decision.category,
        duration_s=decision.duration_s, moderator=decision.moderator, note=decision.note)
