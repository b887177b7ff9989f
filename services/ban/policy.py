"""What a moderation decision does: pure mapping from a `DecisionMade` to the
bans and strikes to record. The store carries the plan out in one
transaction.

The strike ladder (a later issue) belongs here: it will take the subject's
earlier strikes as an input and turn repeated warnings into bans.
"""
from __future__ import annotations

from dataclasses import dataclass

from parley.v1 import common_pb2, events_pb2, moderation_pb2
from services.ban.model import Subject, SubjectKind


class InvalidDecision(ValueError):
    """A decision that cannot be carried out as sent; no retry changes that."""


@dataclass(frozen=True)
class BanOrder:
    subject: Subject
    scope: int
    category: int
    duration_s: int  # 0: permanent


@dataclass(frozen=True)
class StrikeOrder:
    device_token: str
    category: int


@dataclass(frozen=True)
class DecisionPlan:
    decision_id: str
    action: str                    # short action name, for logs, metrics and the audit log
    bans: tuple[BanOrder, ...] = ()
    strike: StrikeOrder | None = None


ACTION_NAMES = {
    moderation_pb2.ACTION_DISMISS: "dismiss",
    moderation_pb2.ACTION_WARN: "warn",
    moderation_pb2.ACTION_BAN: "ban",
    moderation_pb2.ACTION_ESCALATE: "escalate",
}


def plan_decision(decision: events_pb2.DecisionMade) -> DecisionPlan:
    """Raise InvalidDecision for a decision without an id, with an unknown
    action, or one that acts on nobody."""
    if not decision.decision_id:
        raise InvalidDecision("decision without decision_id")
    action = ACTION_NAMES.get(decision.action)
    if action is None:
        raise InvalidDecision(f"decision {decision.decision_id}: unknown action {decision.action}")
    if action == "dismiss":
        return DecisionPlan(decision.decision_id, action)

    # Every action against a person needs the device token: the gateway gives
    # one to every session, so a decision without it was built wrong.
    device = decision.subject.device_token
    if not device:
        raise InvalidDecision(f"decision {decision.decision_id} ({action}) has no subject device_token")
    # An unknown category from a newer moderation is kept as sent: dropping
    # the decision would drop the enforcement.
    category = decision.category

    if action == "warn":
        return DecisionPlan(decision.decision_id, action, strike=StrikeOrder(device, category))
    if action == "ban":
        if decision.duration_s < 0:
            raise InvalidDecision(f"decision {decision.decision_id}: negative duration_s {decision.duration_s}")
        order = BanOrder(Subject(SubjectKind.DEVICE_TOKEN, device), common_pb2.BAN_SCOPE_ALL,
                         category, decision.duration_s)
        return DecisionPlan(decision.decision_id, action, bans=(order,))
    # escalate: child safety. Permanent, on the device and on the IP, so a
    # fresh device token from the same address does not get back in.
    category = category or common_pb2.CATEGORY_CHILD_SAFETY
    bans = [BanOrder(Subject(SubjectKind.DEVICE_TOKEN, device), common_pb2.BAN_SCOPE_ALL, category, 0)]
    if decision.subject.ip_hash:
        bans.append(BanOrder(Subject(SubjectKind.IP_HASH, decision.subject.ip_hash),
                             common_pb2.BAN_SCOPE_ALL, category, 0))
    return DecisionPlan(decision.decision_id, action, bans=tuple(bans))
