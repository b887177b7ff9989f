"""The pure rules of the review queue: priority, report and decision checks."""
from __future__ import annotations

import pytest

from parley.v1 import common_pb2 as c
from parley.v1 import events_pb2, moderation_pb2 as m
from services.moderation import review

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
    ranks = [[review.priority(cat, 0, 0) for cat in group] for group in ORDER]
    for group in ranks:
        assert len(set(group)) == 1, "categories of one rank share a priority"
    firsts = [group[0] for group in ranks]
    assert firsts == sorted(firsts, reverse=True)
    assert len(set(firsts)) == len(firsts)


def test_more_evidence_ranks_higher_within_a_category():
    assert review.priority(c.CATEGORY_HARASSMENT, 5, 0) > review.priority(c.CATEGORY_HARASSMENT, 1, 0)
    assert review.priority(c.CATEGORY_HARASSMENT, 1, 2) > review.priority(c.CATEGORY_HARASSMENT, 1, 0)


def test_no_amount_of_evidence_crosses_a_category():
    most_spam = review.priority(c.CATEGORY_SPAM, 10_000, 10_000)
    bare_contact = review.priority(c.CATEGORY_CONTACT_SOLICITATION, 0, 0)
    assert most_spam < bare_contact
    assert review.priority(c.CATEGORY_UNDERAGE, 500, 200) < review.priority(c.CATEGORY_CHILD_SAFETY, 0, 0)


def test_unknown_category_ranks_lowest_and_counts_never_go_negative():
    assert review.priority(99, 0, 0) == review.priority(c.CATEGORY_OTHER, 0, 0)
    assert review.priority(c.CATEGORY_SPAM, -5, -5) == review.priority(c.CATEGORY_SPAM, 0, 0)


# ---------------------------------------------------------------- reports

def _report(**overrides) -> events_pb2.ReportFiled:
    report = events_pb2.ReportFiled(report_id="r1", reported=c.Identity(device_token="dev-b"),
                                    category=c.CATEGORY_HARASSMENT)
    for key, value in overrides.items():
        setattr(report, key, value)
    return report


def test_a_report_with_id_and_reported_device_is_accepted():
    review.check_report(_report())


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
    base = dict(item_id="item-1", action=m.ACTION_WARN, moderator="alice")
    base.update(fields)
    return m.DecideRequest(**base)


@pytest.mark.parametrize("action", [m.ACTION_DISMISS, m.ACTION_WARN, m.ACTION_ESCALATE])
def test_actions_without_duration_are_valid(action):
    checked = review.validate_decision(_decide(action=action, note="seen"))
    assert (checked.action, checked.duration_s, checked.note) == (action, 0, "seen")


@pytest.mark.parametrize("duration", [0, 1, 86400, review.MAX_BAN_SECONDS])
def test_a_ban_takes_zero_for_permanent_or_a_positive_duration(duration):
    checked = review.validate_decision(_decide(action=m.ACTION_BAN, duration_s=duration))
    assert checked.duration_s == duration


def test_category_override_is_kept_and_unspecified_means_the_reports():
    assert review.validate_decision(_decide(category=c.CATEGORY_SPAM)).category == c.CATEGORY_SPAM
    assert review.validate_decision(_decide()).category == c.CATEGORY_UNSPECIFIED


def test_moderator_is_trimmed():
    assert review.validate_decision(_decide(moderator="  alice ")).moderator == "alice"


@pytest.mark.parametrize("fields, reason", [
    (dict(action=m.ACTION_UNSPECIFIED), "action"),
    (dict(action=42), "action"),
    (dict(action=m.ACTION_BAN, duration_s=-1), "duration_s >= 0"),
    (dict(action=m.ACTION_BAN, duration_s=review.MAX_BAN_SECONDS + 1), "permanent"),
    (dict(action=m.ACTION_WARN, duration_s=3600), "ACTION_BAN only"),
    (dict(item_id=""), "item_id"),
    (dict(moderator="   "), "moderator"),
    (dict(moderator="m" * (review.MAX_MODERATOR_CHARS + 1)), "moderator"),
    (dict(note="n" * (review.MAX_NOTE_CHARS + 1)), "note"),
    (dict(category=77), "category"),
])
def test_bad_decisions_are_refused_with_the_reason(fields, reason):
    with pytest.raises(review.InvalidDecision, match=reason):
        review.validate_decision(_decide(**fields))
