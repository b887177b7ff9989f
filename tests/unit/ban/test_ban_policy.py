"""What each moderation decision turns into."""
import pytest

from parley.v1 import common_pb2 as c
from parley.v1 import events_pb2, moderation_pb2 as m
from services.ban.model import Subject, SubjectKind
from services.ban.policy import BanOrder, InvalidDecision, StrikeOrder, plan_decision


def decision(action, **fields) -> events_pb2.DecisionMade:
    subject = fields.pop("subject", c.Identity(device_token="dev", ip_hash="iph", ip_prefix_hash="pre"))
    return events_pb2.DecisionMade(decision_id="d1", action=action, subject=subject, **fields)


def test_ban_bans_the_device_for_the_duration_on_everything():
    plan = plan_decision(decision(m.ACTION_BAN, category=c.CATEGORY_SPAM, duration_s=3600))
    assert plan.action == "ban"
    assert plan.bans == (BanOrder(Subject(SubjectKind.DEVICE_TOKEN, "dev"), c.BAN_SCOPE_ALL,
                                  c.CATEGORY_SPAM, 3600),)
    assert plan.strike is None


def test_ban_with_zero_duration_is_permanent():
    assert plan_decision(decision(m.ACTION_BAN, duration_s=0)).bans[0].duration_s == 0


def test_escalate_bans_device_and_ip_permanently_as_child_safety():
    plan = plan_decision(decision(m.ACTION_ESCALATE))
    assert [(o.subject.kind, o.duration_s, o.category) for o in plan.bans] == [
        (SubjectKind.DEVICE_TOKEN, 0, c.CATEGORY_CHILD_SAFETY),
        (SubjectKind.IP_HASH, 0, c.CATEGORY_CHILD_SAFETY)]


def test_escalate_keeps_a_given_category_and_skips_a_missing_ip():
    plan = plan_decision(decision(m.ACTION_ESCALATE, category=c.CATEGORY_KNOWN_BAD_HASH,
                                  subject=c.Identity(device_token="dev")))
    assert [(o.subject.kind, o.category) for o in plan.bans] == [
        (SubjectKind.DEVICE_TOKEN, c.CATEGORY_KNOWN_BAD_HASH)]


def test_warn_is_a_strike_without_a_ban():
    plan = plan_decision(decision(m.ACTION_WARN, category=c.CATEGORY_HARASSMENT))
    assert plan.bans == ()
    assert plan.strike == StrikeOrder("dev", c.CATEGORY_HARASSMENT)


def test_dismiss_does_nothing_and_needs_no_subject():
    plan = plan_decision(decision(m.ACTION_DISMISS, subject=c.Identity()))
    assert (plan.action, plan.bans, plan.strike) == ("dismiss", (), None)


@pytest.mark.parametrize("bad, message", [
    (events_pb2.DecisionMade(action=m.ACTION_BAN, subject=c.Identity(device_token="d")), "decision_id"),
    (events_pb2.DecisionMade(decision_id="d1", action=m.ACTION_UNSPECIFIED), "unknown action"),
    (events_pb2.DecisionMade(decision_id="d1", action=42), "unknown action"),
    (events_pb2.DecisionMade(decision_id="d1", action=m.ACTION_BAN), "no subject"),
    (events_pb2.DecisionMade(decision_id="d1", action=m.ACTION_WARN,
                             subject=c.Identity(ip_hash="only-ip")), "no subject"),
    (events_pb2.DecisionMade(decision_id="d1", action=m.ACTION_BAN, duration_s=-5,
                             subject=c.Identity(device_token="d")), "negative"),
])
def test_decisions_that_cannot_be_carried_out(bad, message):
    with pytest.raises(InvalidDecision, match=message):
        plan_decision(bad)
