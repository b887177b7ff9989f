"""People in the loop, on both databases: merged reports, claims with a
lease, reporter reputation, evader suspicions, detector escalations and
child-safety cases."""
from __future__ import annotations

import asyncio

import pytest

from parley.v1 import common_pb2 as c
from parley.v1 import moderation_pb2 as m
from services.moderation import review
from services.moderation.retention import DAY_MS
from services.moderation.store import (CLAIMED, DECIDED, OPEN, AlreadyDecided, ClaimConflict, Identity,
                                       ItemNotFound, RestrictedCase)
from tests.integration.moderation.storekit import make_escalation, make_report, make_suspicion

pytestmark = pytest.mark.integration

LEASE = 15 * 60 * 1000
WARN, BAN, DISMISS, ESCALATE = m.ACTION_WARN, m.ACTION_BAN, m.ACTION_DISMISS, m.ACTION_ESCALATE
KEEP = c.CATEGORY_UNSPECIFIED


async def file(store, report_id, **kwargs):
    return (await store.add_report(make_report(report_id, **kwargs), f"event-{report_id}")).item


# ---------------------------------------------------------------- merging

async def test_reports_against_one_user_in_one_conversation_merge_into_one_item(store):
    first = await store.add_report(make_report("r1", lines=2, match_id="m1"), "e1")
    second = await store.add_report(make_report("r2", c.CATEGORY_SEXUAL_CONTENT, lines=3, hashes=1,
                                                reporter="dev-other", match_id="m1"), "e2")
    assert (first.created, first.merged, second.created, second.merged) == (True, False, True, True)
    item = second.item
    assert item.item_id == first.item.item_id and item.report_id == "r1"
    assert (item.report_count, item.evidence_count) == (2, 6)
    assert item.category == c.CATEGORY_SEXUAL_CONTENT  # the most severe of the two
    assert item.reporter_weight == 2.0                  # two newcomers
    assert item.priority == review.priority(c.CATEGORY_SEXUAL_CONTENT, reporter_weight=2.0, evidence=6)
    assert item.priority > first.item.priority
    assert [f.report_id for f in item.filings] == ["r1", "r2"]
    assert [f.reporter.device_token for f in item.filings] == ["dev-reporter", "dev-other"]
    assert len(await store.list_items(OPEN)) == 1
    assert [e.detail.get("merged") for e in await store.audit_entries(item.item_id)] == [None, True]


async def test_the_same_reporter_twice_counts_once(store):
    await file(store, "r1", match_id="m1")
    item = await file(store, "r2", match_id="m1")
    assert item.report_count == 2 and item.reporter_weight == 1.0


async def test_other_conversations_other_users_and_decided_items_do_not_merge(store):
    a = await file(store, "r1", match_id="m1")
    assert (await file(store, "r2", match_id="m2")).item_id != a.item_id
    assert (await file(store, "r3", match_id="m1", reported="dev-someone-else")).item_id != a.item_id
    await store.decide(a.item_id, WARN, KEEP, 0, "alice", "rude")
    later = await file(store, "r4", match_id="m1")
    assert later.item_id != a.item_id and later.report_count == 1


async def test_concurrent_reports_of_one_conversation_make_one_item(store):
    results = await asyncio.gather(*(
        store.add_report(make_report(f"r{i}", reporter=f"dev-{i}", match_id="m1"), f"e{i}") for i in range(6)))
    assert len({intake.item.item_id for intake in results}) == 1
    (item,) = await store.list_items(OPEN)
    assert item.report_count == 6 and item.reporter_weight == 6.0


# ---------------------------------------------------------------- claims

async def test_a_claim_is_a_lease_that_only_its_holder_decides_under(store, clock):
    item = await file(store, "r1")
    claimed = await store.claim(item.item_id, "alice", LEASE, child_safety_allowed=False)
    assert claimed.claimant(clock.now) == "alice" and claimed.shown_status(clock.now) == CLAIMED
    assert [i.item_id for i in await store.list_items(CLAIMED)] == [item.item_id]
    assert await store.list_items(OPEN) == []

    with pytest.raises(ClaimConflict, match="claimed by alice"):
        await store.claim(item.item_id, "bob", LEASE, child_safety_allowed=False)
    with pytest.raises(ClaimConflict, match="claimed by alice"):
        await store.decide(item.item_id, BAN, KEEP, 3600, "bob", "mine now")
    with pytest.raises(ClaimConflict):
        await store.release(item.item_id, "bob", "not mine")
    renewed = await store.claim(item.item_id, "alice", LEASE, child_safety_allowed=False)
    assert renewed.claim_expires_at_ms > claimed.claim_expires_at_ms

    decision = await store.decide(item.item_id, BAN, KEEP, 3600, "alice", "slurs")
    decided = await store.get_item(item.item_id)
    assert decided.status == DECIDED and decided.claimant(clock.now) is None
    assert decided.decision == decision
    with pytest.raises(AlreadyDecided):
        await store.claim(item.item_id, "alice", LEASE, child_safety_allowed=False)


async def test_an_abandoned_claim_returns_the_item_to_the_queue(store, clock):
    item = await file(store, "r1")
    await store.claim(item.item_id, "alice", LEASE, child_safety_allowed=False)
    clock.advance(LEASE)
    assert [i.item_id for i in await store.list_items(OPEN)] == [item.item_id]
    assert await store.list_items(CLAIMED) == []
    assert (await store.get_item(item.item_id)).claimant(clock.now) is None
    with pytest.raises(ClaimConflict):
        await store.release(item.item_id, "alice", "too late")
    taken = await store.claim(item.item_id, "bob", LEASE, child_safety_allowed=False)
    assert taken.claimant(clock.now) == "bob"


async def test_a_released_item_is_open_again_and_anyone_decides_an_unclaimed_one(store, clock):
    item = await file(store, "r1")
    await store.claim(item.item_id, "alice", LEASE, child_safety_allowed=False)
    released = await store.release(item.item_id, "alice", "out of my depth")
    assert released.claimant(clock.now) is None and released.status == OPEN
    await store.decide(item.item_id, WARN, KEEP, 0, "bob", "rude")
    actions = [(e.actor, e.action) for e in await store.audit_entries(item.item_id)]
    assert actions == [("intake", "report_filed"), ("moderator:alice", "claimed"),
                       ("moderator:alice", "released"), ("moderator:bob", "decided")]
    assert (await store.audit_entries(item.item_id))[2].detail == {"reason": "out of my depth"}


async def test_claims_of_unknown_items_are_not_found(store):
    with pytest.raises(ItemNotFound):
        await store.claim("nope", "alice", LEASE, child_safety_allowed=True)
    with pytest.raises(ItemNotFound):
        await store.release("nope", "alice", "")


async def test_two_moderators_claiming_at_once_one_wins(store):
    item = await file(store, "r1")
    results = await asyncio.gather(*(store.claim(item.item_id, f"mod-{i}", LEASE, child_safety_allowed=False)
                                     for i in range(5)), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1 and all(isinstance(r, ClaimConflict) for r in results if r not in winners)


# ---------------------------------------------------------------- the queue's filters

async def test_the_queue_filters_by_category_kind_and_priority(store):
    harassment = await file(store, "r1")
    spam = await file(store, "r2", category=c.CATEGORY_SPAM)
    evader = (await store.add_suspicion(make_suspicion(), "e-s")).item
    assert [i.item_id for i in await store.list_items(None, category=c.CATEGORY_SPAM)] == [spam.item_id]
    assert [i.item_id for i in await store.list_items(None, kind=review.KIND_SUSPECTED_EVADER)] == [evader.item_id]
    assert {i.item_id for i in await store.list_items(None, min_priority=evader.priority)} == {
        harassment.item_id, evader.item_id}
    listed = await store.list_items(None)
    assert all(not i.with_evidence and i.evidence == () for i in listed)


# ---------------------------------------------------------------- reputation

async def test_decisions_build_the_reporters_reputation_and_it_weighs_their_next_reports(store):
    for i in range(3):
        item = await file(store, f"false-{i}", reporter="dev-crier", category=c.CATEGORY_CHILD_SAFETY)
        await store.decide(item.item_id, DISMISS, KEEP, 0, "alice", "nothing there")
    assert await store.reputation("dev-crier") == (0, 3)
    crier = await file(store, "false-3", reporter="dev-crier", category=c.CATEGORY_CHILD_SAFETY, lines=0)
    assert crier.reporter_weight == review.reporter_weight(0, 3) < review.CREDIBLE_WEIGHT
    # mass false reporting counts less: the same report from a newcomer ranks a whole step higher
    fresh = await file(store, "fresh", reporter="dev-new", category=c.CATEGORY_CHILD_SAFETY, lines=0)
    assert fresh.priority - crier.priority > review.RANK_STEP // 2
    assert [i.item_id for i in await store.list_items(OPEN)][0] == fresh.item_id

    item = await file(store, "true-1", reporter="dev-reliable")
    await store.decide(item.item_id, BAN, KEEP, 3600, "alice", "confirmed")
    assert await store.reputation("dev-reliable") == (1, 0)
    reliable = await file(store, "true-2", reporter="dev-reliable")
    assert reliable.reporter_weight == review.reporter_weight(1, 0) > 1.0


async def test_every_distinct_reporter_of_a_merged_item_is_counted_once(store):
    await file(store, "r1", reporter="dev-a", match_id="m1")
    await file(store, "r2", reporter="dev-a", match_id="m1")
    item = await file(store, "r3", reporter="dev-b", match_id="m1")
    await store.decide(item.item_id, WARN, KEEP, 0, "alice", "rude")
    assert await store.reputation("dev-a") == (1, 0)
    assert await store.reputation("dev-b") == (1, 0)


# ---------------------------------------------------------------- evader suspicions

async def test_a_suspicion_becomes_an_evader_item_with_its_linked_ban(store):
    intake = await store.add_suspicion(make_suspicion(), "event-s1")
    item = intake.item
    assert intake.created and item.kind == review.KIND_SUSPECTED_EVADER
    assert item.report_id == "suspicion:s1" and item.linked_ban_id == "ban-1"
    assert item.linked_subject == "ip_hash:ip-banned"
    assert item.reported == Identity("dev-new", "ip-banned", "pfx-banned")
    assert item.reporter == Identity("", "", "") and item.reporter_weight == 0
    assert item.category == c.CATEGORY_HARASSMENT and item.comment == "new device on a banned IP address"
    assert item.priority == review.priority(c.CATEGORY_HARASSMENT)

    again = await store.add_suspicion(make_suspicion(), "event-s1-redelivered")
    assert not again.created and again.item.item_id == item.item_id
    merged = await store.add_suspicion(make_suspicion("s2"), "event-s2")
    assert merged.merged and merged.item.report_count == 2
    other_ban = await store.add_suspicion(make_suspicion("s3", ban_id="ban-2"), "event-s3")
    assert other_ban.item.item_id != item.item_id

    decision = await store.decide(item.item_id, BAN, KEEP, 0, "alice", "same person, new phone")
    assert decision.subject == Identity("dev-new", "ip-banned", "pfx-banned")
    assert (decision.action, decision.category) == (BAN, c.CATEGORY_HARASSMENT)
    # banned: a later sighting (should the ban service send one) is reviewed again
    assert (await store.add_suspicion(make_suspicion("s4"), "event-s4")).item.item_id != item.item_id


async def test_a_dismissed_evader_is_not_queued_again_for_the_same_ban(store):
    item = (await store.add_suspicion(make_suspicion("s1", device="dev-bystander"), "e1")).item
    await store.decide(item.item_id, DISMISS, KEEP, 0, "alice", "a school network")
    again = await store.add_suspicion(make_suspicion("s2", device="dev-bystander"), "e2")
    assert again.created and again.suppressed and again.item.item_id == item.item_id
    assert again.item.status == DECIDED and again.item.report_count == 2
    assert await store.list_items(OPEN) == []
    assert (await store.audit_entries(item.item_id))[-1].detail["not_queued"]
    other_ban = await store.add_suspicion(make_suspicion("s3", device="dev-bystander", ban_id="ban-9"), "e3")
    assert not other_ban.suppressed and other_ban.item.status == OPEN


# ---------------------------------------------------------------- detector escalations

async def test_a_detector_escalation_opens_an_automated_item(store):
    intake = await store.open_escalation(make_escalation(snapshots=(b"\xff\xd8 frame",)))
    item = intake.item
    assert intake.created and item.kind == review.KIND_AUTOMATED and item.report_id == "auto:v1"
    assert item.risk_score == 0.9 and item.reporter_weight == 0 and item.reporter.device_token == ""
    assert item.priority == review.priority(c.CATEGORY_CHILD_SAFETY, risk_score=0.9, evidence=4)
    assert [(line.from_reporter, line.text) for line in item.evidence] == [
        (False, "how old are you"), (True, "13"), (False, "send a photo")]
    assert item.snapshot_hashes == ("pdq:ffee",)
    assert item.filings[0].source == "detector:text.grooming"
    assert item.filings[0].comment == "asked a minor for photos"
    assert {link.kind for link in item.vault} == {"filing", "snapshot"}
    assert not item.child_safety  # a user-visible category: moderators triage it
    again = await store.open_escalation(make_escalation())
    assert not again.created and again.item.item_id == item.item_id


async def test_an_escalation_and_a_user_report_of_one_conversation_merge(store):
    report = await file(store, "r1", match_id="m1", category=c.CATEGORY_HARASSMENT)
    intake = await store.open_escalation(make_escalation(match_id="m1", risk=0.7))
    item = intake.item
    assert intake.merged and item.item_id == report.item_id and item.kind == review.KIND_REPORT
    assert item.category == c.CATEGORY_CHILD_SAFETY and item.risk_score == 0.7
    assert item.priority == review.priority(c.CATEGORY_CHILD_SAFETY, risk_score=0.7, reporter_weight=1.0,
                                            evidence=7)


async def test_a_priority_floor_and_a_bad_escalation(store):
    item = (await store.open_escalation(make_escalation(category=c.CATEGORY_SPAM, risk=0.1,
                                                        priority_floor=6500))).item
    assert item.priority == 6500
    with pytest.raises(review.InvalidReport):
        await store.open_escalation(make_escalation("v2", risk=2.0))


# ---------------------------------------------------------------- child-safety cases

async def test_a_hash_bank_match_is_a_child_safety_case_from_the_start(store):
    item = (await store.open_escalation(make_escalation(category=c.CATEGORY_KNOWN_BAD_HASH))).item
    assert item.child_safety
    with pytest.raises(RestrictedCase):
        await store.view_item(item.item_id, "alice", "moderator", child_safety_allowed=False)
    with pytest.raises(RestrictedCase):
        await store.claim(item.item_id, "alice", LEASE, child_safety_allowed=False)
    with pytest.raises(RestrictedCase):
        await store.decide(item.item_id, DISMISS, KEEP, 0, "alice", "nothing", child_safety_allowed=False)
    seen = await store.view_item(item.item_id, "carol", "child_safety", child_safety_allowed=True)
    assert seen.evidence
    entries = [(e.actor, e.action) for e in await store.audit_entries(item.item_id)]
    assert entries == [("intake", "escalation_opened"), ("moderator:alice", "view_denied"),
                       ("moderator:carol", "viewed")]


async def test_escalating_makes_a_child_safety_case_kept_a_year(store):
    item = await file(store, "r1", category=c.CATEGORY_CHILD_SAFETY)
    seen = await store.view_item(item.item_id, "alice", "moderator", child_safety_allowed=False)
    assert seen.evidence  # before escalation, moderators triage it
    decision = await store.decide(item.item_id, ESCALATE, KEEP, 0, "alice", "grooming a 13-year-old",
                                  child_safety_allowed=False)
    escalated = await store.get_item(item.item_id)
    assert escalated.child_safety and escalated.escalated_at_ms == decision.decided_at_ms
    assert escalated.retain_until_ms == decision.decided_at_ms + 365 * DAY_MS
    with pytest.raises(RestrictedCase):
        await store.view_item(item.item_id, "alice", "moderator", child_safety_allowed=False)


async def test_other_decisions_keep_the_evidence_ninety_days(store):
    item = await file(store, "r1")
    decision = await store.decide(item.item_id, DISMISS, KEEP, 0, "alice", "banter")
    decided = await store.get_item(item.item_id)
    assert not decided.child_safety and decided.escalated_at_ms is None
    assert decided.retain_until_ms == decision.decided_at_ms + 90 * DAY_MS


async def test_a_legal_hold_is_recorded(store):
    item = await file(store, "r1")
    held = await store.set_legal_hold(item.item_id, True, "dana", "admin", "preservation request 42",
                                      child_safety_allowed=False)
    assert held.legal_hold
    lifted = await store.set_legal_hold(item.item_id, False, "dana", "admin", "request withdrawn",
                                        child_safety_allowed=False)
    assert not lifted.legal_hold
    assert [e.detail["hold"] for e in await store.audit_entries(item.item_id) if e.action == "legal_hold"] == [
        True, False]
    with pytest.raises(ItemNotFound):
        await store.set_legal_hold("nope", True, "dana", "admin", "x", child_safety_allowed=True)
