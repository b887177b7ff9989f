"""The pure rules of the review queue: priority, reporter reputation,
merging, and the checks of reports, suspicions, escalations and decisions."""
from __future__ import annotations

import pytest

from parley.v1 import common_pb2 as c
from parley.v1 import ban_pb2, events_pb2, moderation_pb2 as m
from services.moderation import review
from services.moderation.records import Identity

ORDER = [  # most urgent first; equal ranks share a line
    (c.CATEGORY_CHILD_SAFETY, c.CATEGORY_KNOWN_BAD_HASH),
    (c.CATEGORY_UNDERAGE,),
    (c.CATEGORY_SEXUAL_CONTENT,),
    (c.CATEGORY_HARASSMENT,),
    (c.CATEGORY_CONTACT_SOLICITATION,),
    (c.CATEGORY_SPAM,),
    (c.CATEGORY_OTHER, c.CATEGORY_UNSPECIFIED),
]


# ---------------------------------------------------------------- priority

def test_categories_rank_in_the_documented_order():
    ranks = [[review.priority(cat) for cat in group] for group in ORDER]
    for group in ranks:
        assert len(set(group)) == 1, "categories of one rank share a priority"
    firsts = [group[0] for group in ranks]
    assert firsts == sorted(firsts, reverse=True)
    assert len(set(firsts)) == len(firsts)


def test_more_evidence_risk_and_reporters_rank_higher_within_a_category():
    base = review.priority(c.CATEGORY_HARASSMENT, reporter_weight=1.0, evidence=1)
    assert review.priority(c.CATEGORY_HARASSMENT, reporter_weight=1.0, evidence=5) > base
    assert review.priority(c.CATEGORY_HARASSMENT, reporter_weight=1.0, evidence=1, risk_score=0.4) > base
    assert review.priority(c.CATEGORY_HARASSMENT, reporter_weight=2.0, evidence=1) > base


def test_nothing_within_a_category_crosses_into_the_next():
    most_spam = review.priority(c.CATEGORY_SPAM, risk_score=1.0, reporter_weight=1000, evidence=10_000)
    bare_contact = review.priority(c.CATEGORY_CONTACT_SOLICITATION, reporter_weight=0.5)
    assert most_spam < bare_contact
    assert review.priority(c.CATEGORY_UNDERAGE, risk_score=1.0, reporter_weight=50, evidence=700) < \
        review.priority(c.CATEGORY_CHILD_SAFETY)


def test_the_formula_adds_its_terms():
    assert review.priority(c.CATEGORY_HARASSMENT) == 4000
    assert review.priority(c.CATEGORY_HARASSMENT, risk_score=0.5) == 4150
    assert review.priority(c.CATEGORY_HARASSMENT, reporter_weight=1.0) == 4075
    assert review.priority(c.CATEGORY_HARASSMENT, reporter_weight=4.0) == 4300
    assert review.priority(c.CATEGORY_HARASSMENT, reporter_weight=9.0) == 4300  # capped
    assert review.priority(c.CATEGORY_HARASSMENT, evidence=3) == 4003
    assert review.priority(c.CATEGORY_HARASSMENT, evidence=500) == 4099  # capped


def test_a_discredited_reporter_alone_drops_one_rank_unless_a_detector_agrees():
    credible = review.priority(c.CATEGORY_CHILD_SAFETY, reporter_weight=1.0)
    discredited = review.priority(c.CATEGORY_CHILD_SAFETY, reporter_weight=review.MIN_REPORTER_WEIGHT)
    assert discredited < review.priority(c.CATEGORY_UNDERAGE) + review.RANK_STEP
    assert discredited // review.RANK_STEP == review.rank(c.CATEGORY_UNDERAGE)
    assert credible // review.RANK_STEP == review.rank(c.CATEGORY_CHILD_SAFETY)
    backed = review.priority(c.CATEGORY_CHILD_SAFETY, reporter_weight=0.25, risk_score=0.3)
    assert backed // review.RANK_STEP == review.rank(c.CATEGORY_CHILD_SAFETY)
    # a detector or ban filing has no reporters at all: no demotion
    assert review.priority(c.CATEGORY_HARASSMENT) // review.RANK_STEP == review.rank(c.CATEGORY_HARASSMENT)
    # the lowest rank has nowhere to drop
    assert review.priority(c.CATEGORY_OTHER, reporter_weight=0.25) >= review.RANK_STEP


def test_a_floor_raises_but_never_lowers():
    assert review.priority(c.CATEGORY_SPAM, floor=6500) == 6500
    assert review.priority(c.CATEGORY_CHILD_SAFETY, floor=10) == review.priority(c.CATEGORY_CHILD_SAFETY)


def test_unknown_category_ranks_lowest_and_odd_inputs_stay_in_range():
    assert review.priority(99) == review.priority(c.CATEGORY_OTHER)
    assert review.priority(c.CATEGORY_SPAM, evidence=-5) == review.priority(c.CATEGORY_SPAM)
    assert review.priority(c.CATEGORY_SPAM, risk_score=7.0) == review.priority(c.CATEGORY_SPAM, risk_score=1.0)
    assert review.priority(c.CATEGORY_SPAM, risk_score=float("nan")) == review.priority(c.CATEGORY_SPAM)
    assert review.priority(c.CATEGORY_SPAM, reporter_weight=float("inf")) == review.priority(c.CATEGORY_SPAM)


def test_most_severe_keeps_the_higher_rank():
    assert review.most_severe(c.CATEGORY_SPAM, c.CATEGORY_CHILD_SAFETY) == c.CATEGORY_CHILD_SAFETY
    assert review.most_severe(c.CATEGORY_CHILD_SAFETY, c.CATEGORY_SPAM) == c.CATEGORY_CHILD_SAFETY
    assert review.most_severe(c.CATEGORY_CHILD_SAFETY, c.CATEGORY_KNOWN_BAD_HASH) == c.CATEGORY_CHILD_SAFETY


# ---------------------------------------------------------------- reputation

def test_a_new_reporter_weighs_one():
    assert review.reporter_weight(0, 0) == review.NEW_REPORTER_WEIGHT == 1.0


def test_upheld_reports_raise_the_weight_up_to_the_cap():
    weights = [review.reporter_weight(upheld, 0) for upheld in range(0, 50)]
    assert weights == sorted(weights)
    assert weights[1] > 1.0 and weights[-1] <= review.MAX_REPORTER_WEIGHT


def test_dismissed_reports_lower_the_weight_down_to_the_floor():
    weights = [review.reporter_weight(0, dismissed) for dismissed in range(0, 50)]
    assert weights == sorted(weights, reverse=True)
    assert weights[1] < 1.0
    assert weights[-1] == review.MIN_REPORTER_WEIGHT > 0
    assert review.reporter_weight(0, 3) < review.CREDIBLE_WEIGHT  # a mass false reporter counts less


def test_a_mixed_record_weighs_in_between():
    assert review.reporter_weight(10, 10) == pytest.approx(1.0)
    assert review.reporter_weight(0, 2) < review.reporter_weight(3, 2) < review.reporter_weight(3, 0)


def test_only_dismissal_does_not_uphold():
    assert not review.upholds(m.ACTION_DISMISS)
    assert all(review.upholds(a) for a in (m.ACTION_WARN, m.ACTION_BAN, m.ACTION_ESCALATE))


# ---------------------------------------------------------------- merging

def test_reports_of_one_user_in_one_conversation_share_a_merge_key():
    key = review.merge_key(review.KIND_REPORT, "dev-b", "match-1")
    assert key == review.merge_key(review.KIND_AUTOMATED, "dev-b", "match-1")  # detectors join user reports
    assert key != review.merge_key(review.KIND_REPORT, "dev-b", "match-2")
    assert key != review.merge_key(review.KIND_REPORT, "dev-c", "match-1")
    assert review.merge_key(review.KIND_REPORT, "dev-b", "") is None


def test_evader_suspicions_merge_per_device_and_ban():
    key = review.merge_key(review.KIND_SUSPECTED_EVADER, "dev-x", linked_ban_id="ban-1")
    assert key == review.merge_key(review.KIND_SUSPECTED_EVADER, "dev-x", "any-match", "ban-1")
    assert key != review.merge_key(review.KIND_SUSPECTED_EVADER, "dev-x", linked_ban_id="ban-2")
    assert key != review.merge_key(review.KIND_REPORT, "dev-x", "ban-1")


def test_a_user_report_makes_an_item_a_report_item():
    assert review.merged_kind(review.KIND_AUTOMATED, review.KIND_REPORT) == review.KIND_REPORT
    assert review.merged_kind(review.KIND_REPORT, review.KIND_AUTOMATED) == review.KIND_REPORT
    assert review.merged_kind(review.KIND_AUTOMATED, review.KIND_AUTOMATED) == review.KIND_AUTOMATED


def test_hash_bank_matches_are_restricted_from_the_start():
    assert review.restricted_at_intake(c.CATEGORY_KNOWN_BAD_HASH, False)
    assert review.restricted_at_intake(c.CATEGORY_HARASSMENT, True)
    assert not review.restricted_at_intake(c.CATEGORY_CHILD_SAFETY, False)  # moderators triage, then escalate


# ---------------------------------------------------------------- reports

def _report(**overrides) -> events_pb2.ReportFiled:
    report = events_pb2.ReportFiled(report_id="r1", reported=c.Identity(device_token="dev-b"),
                                    category=c.CATEGORY_HARASSMENT)
    for key, value in overrides.items():
        setattr(report, key, value)
    return report


def test_a_report_with_id_and_reported_device_is_accepted():
    review.check_report(_report())


def test_report_ids_cannot_pose_as_detector_or_ban_filings():
    with pytest.raises(review.InvalidReport, match="':'"):
        review.check_report(_report(report_id="auto:x"))


def test_suspicions_need_an_id_a_device_and_a_ban():
    good = events_pb2.EvaderSuspected(suspicion_id="s1", identity=c.Identity(device_token="d"),
                                      linked_ban_id="ban-1")
    review.check_suspicion(good)
    for field, reason in (("suspicion_id", "suspicion_id"), ("linked_ban_id", "linked_ban_id")):
        bad = events_pb2.EvaderSuspected()
        bad.CopyFrom(good)
        setattr(bad, field, "")
        with pytest.raises(review.InvalidReport, match=reason):
            review.check_suspicion(bad)
    with pytest.raises(review.InvalidReport, match="device"):
        review.check_suspicion(events_pb2.EvaderSuspected(suspicion_id="s", linked_ban_id="b"))


def test_a_suspicion_names_its_linked_subject():
    suspicion = events_pb2.EvaderSuspected(linked_subject=ban_pb2.Subject(ip_prefix_hash="pfx"))
    assert review.linked_subject(suspicion) == "ip_prefix_hash:pfx"
    assert review.linked_subject(events_pb2.EvaderSuspected()) == ""


def _escalation(**overrides) -> review.Escalation:
    base = dict(escalation_id="v1", detector="text.grooming", subject=Identity("dev-b"),
                category=c.CATEGORY_CHILD_SAFETY, risk_score=0.9)
    base.update(overrides)
    return review.Escalation(**base)


def test_a_detector_escalation_is_checked():
    review.check_escalation(_escalation(lines=(review.Line("how old are you", 1),), snapshots=(b"jpeg",)))
    for overrides, reason in (
            (dict(escalation_id=""), "escalation_id"), (dict(detector=""), "detector"),
            (dict(subject=Identity("")), "device token"), (dict(risk_score=1.5), "risk_score"),
            (dict(risk_score=float("nan")), "risk_score"),
            (dict(snapshots=(b"x" * (review.MAX_SNAPSHOT_BYTES + 1),)), "snapshot over"),
            (dict(lines=tuple(review.Line("x", i) for i in range(review.MAX_EVIDENCE_LINES + 1))), "lines")):
        with pytest.raises(review.InvalidReport, match=reason):
            review.check_escalation(_escalation(**overrides))


@pytest.mark.parametrize("report, reason", [
    (events_pb2.ReportFiled(reported=c.Identity(device_token="d")), "report_id"),
    (events_pb2.ReportFiled(report_id="r1"), "device token"),
    (events_pb2.ReportFiled(report_id="r" * 129, reported=c.Identity(device_token="d")), "report_id"),
])
def test_a_report_missing_what_enforcement_needs_is_refused(report, reason):
    with pytest.raises(review.InvalidReport, match=reason):
        review.check_report(report)


def test_oversized_evidence_is_refused():
    report = _report()
    report.evidence.extend(c.ChatLine(text="x") for _ in range(review.MAX_EVIDENCE_LINES + 1))
    with pytest.raises(review.InvalidReport, match="evidence lines"):
        review.check_report(report)
    report = _report()
    report.evidence.add(text="x" * (review.MAX_LINE_CHARS + 1))
    with pytest.raises(review.InvalidReport, match="evidence line longer"):
        review.check_report(report)
    report = _report()
    report.snapshot_hashes.extend(["h"] * (review.MAX_SNAPSHOT_HASHES + 1))
    with pytest.raises(review.InvalidReport, match="snapshot hashes"):
        review.check_report(report)


# ---------------------------------------------------------------- decisions

def _decide(**fields) -> m.DecideRequest:
    base = dict(item_id="item-1", action=m.ACTION_WARN, note="seen")
    base.update(fields)
    return m.DecideRequest(**base)


@pytest.mark.parametrize("action", [m.ACTION_DISMISS, m.ACTION_WARN, m.ACTION_ESCALATE])
def test_actions_without_duration_are_valid(action):
    checked = review.validate_decision(_decide(action=action, note=" seen "), "alice")
    assert (checked.action, checked.duration_s, checked.note, checked.moderator) == (action, 0, "seen", "alice")


@pytest.mark.parametrize("duration", [0, 1, 86400, review.MAX_BAN_SECONDS])
def test_a_ban_takes_zero_for_permanent_or_a_positive_duration(duration):
    checked = review.validate_decision(_decide(action=m.ACTION_BAN, duration_s=duration), "alice")
    assert checked.duration_s == duration


def test_category_override_is_kept_and_unspecified_means_the_reports():
    assert review.validate_decision(_decide(category=c.CATEGORY_SPAM), "alice").category == c.CATEGORY_SPAM
    assert review.validate_decision(_decide(), "alice").category == c.CATEGORY_UNSPECIFIED


def test_the_authenticated_moderator_decides_whatever_the_request_claims():
    assert review.validate_decision(_decide(moderator="mallory"), "  alice ").moderator == "alice"


@pytest.mark.parametrize("fields, moderator, reason", [
    (dict(moderator="someone"), "   ", "moderator"),
    (dict(), "m" * (review.MAX_MODERATOR_CHARS + 1), "moderator"),
    (dict(note="  "), "alice", "note is required"),
])
def test_decisions_need_a_moderator_and_a_reason(fields, moderator, reason):
    with pytest.raises(review.InvalidDecision, match=reason):
        review.validate_decision(_decide(**fields), moderator)


@pytest.mark.parametrize("fields, reason", [
    (dict(action=m.ACTION_UNSPECIFIED), "action"),
    (dict(action=42), "action"),
    (dict(action=m.ACTION_BAN, duration_s=-1), "duration_s >= 0"),
    (dict(action=m.ACTION_BAN, duration_s=review.MAX_BAN_SECONDS + 1), "permanent"),
    (dict(action=m.ACTION_WARN, duration_s=3600), "ACTION_BAN only"),
    (dict(item_id=""), "item_id"),
    (dict(note="n" * (review.MAX_NOTE_CHARS + 1)), "note"),
    (dict(category=77), "category"),
])
def test_bad_decisions_are_refused_with_the_reason(fields, reason):
    with pytest.raises(review.InvalidDecision, match=reason):
        review.validate_decision(_decide(**fields), "alice")
