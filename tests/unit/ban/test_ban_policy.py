"""What each moderation decision turns into: strikes, the escalation ladder,
strike expiry and the severe categories."""
import pytest

from parley.v1 import common_pb2 as c
from parley.v1 import events_pb2, moderation_pb2 as m
from services.ban.model import DAY_MS, Subject, SubjectKind
from services.ban.policy import (WARNING, BanOrder, InvalidDecision, Ladder, Rules, Rung, StrikeOrder,
                                 StrikeView, active_strikes, next_penalty, parse_rung, plan_decision,
                                 strike_counts, stronger)

HOUR, DAY = 3600, 86400
RULES = Rules(Ladder.parse(["warn", "1h", "24h", "7d", "30d", "permanent"]))
DEVICE = Subject(SubjectKind.DEVICE_TOKEN, "dev")
IP = Subject(SubjectKind.IP_HASH, "iph")
PREFIX = Subject(SubjectKind.IP_PREFIX_HASH, "pre")


def decision(action, **fields) -> events_pb2.DecisionMade:
    subject = fields.pop("subject", c.Identity(device_token="dev", ip_hash="iph", ip_prefix_hash="pre"))
    return events_pb2.DecisionMade(decision_id="d1", action=action, subject=subject, **fields)


def durations(plan) -> list[tuple]:
    return [(order.subject.kind, order.duration_s, order.enforce_on_address) for order in plan.bans]


# ------------------------------------------------------------ the ladder

def test_ladder_steps():
    assert parse_rung("warn") == WARNING
    assert parse_rung("1h") == Rung(True, HOUR)
    assert parse_rung(" 7D ") == Rung(True, 7 * DAY)
    assert parse_rung("permanent") == Rung(True, 0)
    assert [r.describe() for r in RULES.ladder.rungs] == [
        "warning", "ban 1h", "ban 1d", "ban 1w", "ban 30d", "permanent ban"]


@pytest.mark.parametrize("steps, message", [
    ([], "at least one"), (["1x"], "bad ladder step"), (["0h"], "bad ladder step"), (["1.5h"], "bad ladder step"),
    (["24h", "1h"], "must not go down"), (["permanent", "30d"], "must not go down"), (["1h", "warn"], "go down"),
])
def test_bad_ladders(steps, message):
    with pytest.raises(ValueError, match=message):
        Ladder.parse(steps)


def test_the_nth_strike_takes_the_nth_rung_and_the_last_one_after():
    ladder = RULES.ladder
    assert [ladder.rung(n) for n in range(1, 9)] == [
        WARNING, Rung(True, HOUR), Rung(True, DAY), Rung(True, 7 * DAY), Rung(True, 30 * DAY),
        Rung(True, 0), Rung(True, 0), Rung(True, 0)]
    with pytest.raises(ValueError):
        ladder.rung(0)


def test_stronger():
    assert stronger(WARNING, Rung(True, HOUR)) == Rung(True, HOUR)
    assert stronger(Rung(True, DAY), Rung(True, HOUR)) == Rung(True, DAY)
    assert stronger(Rung(True, 0), Rung(True, 30 * DAY)) == Rung(True, 0)


# ------------------------------------------------------------ strike expiry

def test_strikes_expire_and_voided_ones_never_count():
    expiry = 90 * DAY_MS
    strike = StrikeView(at_ms=1_000)
    assert strike_counts(strike, 1_000 + expiry - 1, expiry)
    assert not strike_counts(strike, 1_000 + expiry, expiry)
    assert not strike_counts(StrikeView(at_ms=1_000, voided=True), 2_000, expiry)
    now = 200 * DAY_MS
    strikes = [StrikeView(now - 100 * DAY_MS), StrikeView(now - 89 * DAY_MS), StrikeView(now - DAY_MS),
               StrikeView(now - DAY_MS, voided=True)]
    assert active_strikes(strikes, now, expiry) == 2
    assert next_penalty(2, RULES) == Rung(True, DAY)


# ------------------------------------------------------------ decisions

def test_a_first_warning_is_a_strike_without_a_ban():
    plan = plan_decision(decision(m.ACTION_WARN, category=c.CATEGORY_HARASSMENT), active=0, rules=RULES)
    assert plan.bans == ()
    assert plan.strike == StrikeOrder("dev", c.CATEGORY_HARASSMENT)
    assert (plan.penalty, plan.strike_number) == ("warning", 1)


@pytest.mark.parametrize("active, duration_s", [(1, HOUR), (2, DAY), (3, 7 * DAY), (4, 30 * DAY), (5, 0), (9, 0)])
def test_repeated_warnings_climb_the_ladder(active, duration_s):
    plan = plan_decision(decision(m.ACTION_WARN, category=c.CATEGORY_SPAM), active=active, rules=RULES)
    assert plan.strike_number == active + 1
    # the device is refused; its addresses are watched, for as long
    assert durations(plan) == [(SubjectKind.DEVICE_TOKEN, duration_s, False),
                               (SubjectKind.IP_HASH, duration_s, False),
                               (SubjectKind.IP_PREFIX_HASH, duration_s, False)]
    assert all(order.scope == c.BAN_SCOPE_ALL and order.category == c.CATEGORY_SPAM for order in plan.bans)


def test_a_ban_takes_the_stronger_of_the_moderators_duration_and_the_ladder():
    first = plan_decision(decision(m.ACTION_BAN, category=c.CATEGORY_SPAM, duration_s=3 * HOUR), 0, RULES)
    assert first.bans[0] == BanOrder(DEVICE, c.BAN_SCOPE_ALL, c.CATEGORY_SPAM, 3 * HOUR)
    assert first.penalty == "ban 3h" and first.strike == StrikeOrder("dev", c.CATEGORY_SPAM)
    # a fourth offence: the ladder says 7 days, the moderator said 3 hours
    fourth = plan_decision(decision(m.ACTION_BAN, category=c.CATEGORY_SPAM, duration_s=3 * HOUR), 3, RULES)
    assert fourth.bans[0].duration_s == 7 * DAY
    # a permanent ban from the moderator is permanent whatever the ladder says
    assert plan_decision(decision(m.ACTION_BAN, duration_s=0), 0, RULES).bans[0].duration_s == 0


def test_a_ban_without_addresses_bans_the_device_only():
    plan = plan_decision(decision(m.ACTION_BAN, duration_s=HOUR, subject=c.Identity(device_token="dev")), 0, RULES)
    assert durations(plan) == [(SubjectKind.DEVICE_TOKEN, HOUR, False)]


@pytest.mark.parametrize("action, category", [
    (m.ACTION_BAN, c.CATEGORY_CHILD_SAFETY), (m.ACTION_WARN, c.CATEGORY_KNOWN_BAD_HASH),
    (m.ACTION_ESCALATE, c.CATEGORY_UNSPECIFIED), (m.ACTION_ESCALATE, c.CATEGORY_SEXUAL_CONTENT),
])
def test_severe_cases_are_permanent_on_every_linked_identifier_at_the_first_strike(action, category):
    plan = plan_decision(decision(action, category=category, duration_s=HOUR), active=0, rules=RULES)
    assert plan.severe and plan.penalty == "permanent ban"
    # the addresses refuse everyone on them: no bystander exception here
    assert durations(plan) == [(SubjectKind.DEVICE_TOKEN, 0, False), (SubjectKind.IP_HASH, 0, True),
                               (SubjectKind.IP_PREFIX_HASH, 0, True)]
    assert plan.strike is not None


def test_escalate_without_a_category_is_child_safety_and_keeps_a_given_one():
    assert {o.category for o in plan_decision(decision(m.ACTION_ESCALATE), 0, RULES).bans} == {
        c.CATEGORY_CHILD_SAFETY}
    plan = plan_decision(decision(m.ACTION_ESCALATE, category=c.CATEGORY_KNOWN_BAD_HASH,
                                  subject=c.Identity(device_token="dev")), 0, RULES)
    assert [(o.subject, o.category) for o in plan.bans] == [(DEVICE, c.CATEGORY_KNOWN_BAD_HASH)]


def test_dismiss_does_nothing_and_needs_no_subject():
    plan = plan_decision(decision(m.ACTION_DISMISS, subject=c.Identity()), 0, RULES)
    assert (plan.action, plan.bans, plan.strike) == ("dismiss", (), None)


def test_an_unknown_category_is_kept_not_dropped():
    plan = plan_decision(decision(m.ACTION_BAN, category=99, duration_s=HOUR), 0, RULES)
    assert plan.bans[0].category == 99


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
        plan_decision(bad, 0, RULES)
