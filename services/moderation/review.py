"""The rules of the review queue, without I/O: how urgent an item is, how
much a reporter's word counts, which reports merge into one item, and
whether a report, a detector escalation, an evader suspicion or a
moderator's decision is well-formed.

Priority (higher is reviewed first) is one integer, so the queue is one
index scan:

    priority = rank * 1000                      severity of the category
             + round(risk_score * 300)          0..300, from detectors
             + round(min(weight, 4) / 4 * 300)  0..300, the distinct reporters' reputation
             + min(evidence, 99)                0..99, lines and snapshot hashes

The three terms inside a rank add up to at most 699, below one rank step,
so no amount of evidence, risk or reporters ever lifts a spam report above
a child-safety one. One exception moves the rank itself: an item that no
detector backs (risk 0) and whose reporters together weigh under 0.5 (a
reporter whose reports are mostly dismissed) drops one rank, so mass false
reporting with a severe category cannot jump the queue; it still gets
reviewed. A detector may also set a floor (`priority_floor`).

A reporter's weight comes from their history (device token): with U upheld
and D dismissed reports, weight = 2 * (U + 1) / (U + D + 2), clamped to
[0.25, 2.0]: a newcomer weighs 1.0, every upheld report raises it towards
2, every dismissed one lowers it towards the floor, which is above zero so a
real victim with a bad record is never ignored outright.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from parley.v1 import common_pb2, events_pb2, moderation_pb2
from services.moderation.records import Identity

# ---------------------------------------------------------------- severity

# Higher is reviewed first. Unknown categories rank with OTHER.
CATEGORY_RANK: dict[int, int] = {
    common_pb2.CATEGORY_CHILD_SAFETY: 7,
    common_pb2.CATEGORY_KNOWN_BAD_HASH: 7,
    common_pb2.CATEGORY_UNDERAGE: 6,
    common_pb2.CATEGORY_SEXUAL_CONTENT: 5,
    common_pb2.CATEGORY_HARASSMENT: 4,
    common_pb2.CATEGORY_CONTACT_SOLICITATION: 3,
    common_pb2.CATEGORY_SPAM: 2,
    common_pb2.CATEGORY_OTHER: 1,
    common_pb2.CATEGORY_UNSPECIFIED: 1,
}
LOWEST_RANK = 1
RANK_STEP = 1000
RISK_POINTS = 300
REPORTER_POINTS = 300
MAX_EVIDENCE_BONUS = 99
# The summed weight of an item's distinct reporters that earns all the
# reporter points: four newcomers, or two trusted reporters.
FULL_REPORTER_WEIGHT = 4.0
# Below this summed weight, with no detector behind it, an item drops a rank.
CREDIBLE_WEIGHT = 0.5


def rank(category: int) -> int:
    return CATEGORY_RANK.get(category, LOWEST_RANK)


def most_severe(first: int, second: int) -> int:
    """The more severe of two categories (the first on a tie)."""
    return second if rank(second) > rank(first) else first


def priority(category: int, *, risk_score: float = 0.0, reporter_weight: float = 0.0,
             evidence: int = 0, floor: int = 0) -> int:
    """The review priority of an item: higher first (see the module doc)."""
    risk = _clamp(risk_score, 0.0, 1.0)
    weight = max(reporter_weight, 0.0) if math.isfinite(reporter_weight) else 0.0
    category_rank = rank(category)
    if risk == 0.0 and 0.0 < weight < CREDIBLE_WEIGHT:
        category_rank = max(category_rank - 1, LOWEST_RANK)
    value = (category_rank * RANK_STEP
             + round(risk * RISK_POINTS)
             + round(min(weight, FULL_REPORTER_WEIGHT) / FULL_REPORTER_WEIGHT * REPORTER_POINTS)
             + min(max(evidence, 0), MAX_EVIDENCE_BONUS))
    return max(value, floor)


def _clamp(value: float, low: float, high: float) -> float:
    if not math.isfinite(value):
        return low
    return min(max(value, low), high)


# ---------------------------------------------------------------- reputation

MIN_REPORTER_WEIGHT = 0.25
MAX_REPORTER_WEIGHT = 2.0
NEW_REPORTER_WEIGHT = 1.0


def reporter_weight(upheld: int, dismissed: int) -> float:
    """How much one report from a reporter with this history counts."""
    upheld, dismissed = max(upheld, 0), max(dismissed, 0)
    return _clamp(2.0 * (upheld + 1) / (upheld + dismissed + 2), MIN_REPORTER_WEIGHT, MAX_REPORTER_WEIGHT)


UPHOLDING_ACTIONS = frozenset({moderation_pb2.ACTION_WARN, moderation_pb2.ACTION_BAN,
                               moderation_pb2.ACTION_ESCALATE})


def upholds(action: int) -> bool:
    """Does this decision uphold the reports behind the item? (Dismiss does not.)"""
    return action in UPHOLDING_ACTIONS


# ---------------------------------------------------------------- kinds and merging

KIND_REPORT = "report"
KIND_AUTOMATED = "automated"
KIND_SUSPECTED_EVADER = "suspected_evader"
KINDS = (KIND_REPORT, KIND_AUTOMATED, KIND_SUSPECTED_EVADER)

SOURCE_USER = "user"
SOURCE_BAN = "ban"


def detector_source(detector: str) -> str:
    return f"detector:{detector}"


def merge_key(kind: str, device_token: str, match_id: str = "", linked_ban_id: str = "") -> str | None:
    """Filings with the same key merge into one open item instead of each
    opening their own:

    - reports and detector escalations against the same user in the same
      conversation (device token + match id): a user reporting twice, or a
      detector and a user agreeing, make one item with a higher priority;
    - evader suspicions of the same device linked to the same ban.

    Without a match id a report merges with nothing: another conversation is
    other evidence, reviewed on its own."""
    if kind == KIND_SUSPECTED_EVADER:
        return f"evader|{device_token}|{linked_ban_id}" if device_token and linked_ban_id else None
    return f"conversation|{device_token}|{match_id}" if device_token and match_id else None


def merged_kind(existing: str, new: str) -> str:
    """A user report makes an item a report item; otherwise it keeps its kind."""
    return KIND_REPORT if KIND_REPORT in (existing, new) else existing


def restricted_at_intake(category: int, flagged: bool) -> bool:
    """A case whose evidence only role child_safety may see from the start:
    a known-bad-hash match is child sexual abuse material by definition, and
    a detector may flag others. Reports a user files as child safety stay
    open to every moderator, who escalates what is real."""
    return flagged or category == common_pb2.CATEGORY_KNOWN_BAD_HASH


# ---------------------------------------------------------------- input limits

# Far above what a gateway sends (its recent-lines buffer); a report past
# these is malformed, and the dead-letter queue keeps it for a human.
MAX_ID_CHARS = 128
MAX_COMMENT_CHARS = 5_000
MAX_EVIDENCE_LINES = 500
MAX_LINE_CHARS = 10_000
MAX_SNAPSHOT_HASHES = 200
MAX_HASH_CHARS = 512
MAX_SNAPSHOTS = 50
MAX_SNAPSHOT_BYTES = 1024 * 1024


class InvalidReport(ValueError):
    """A ReportFiled (or escalation, or suspicion) that cannot become a review item."""


def _check_evidence(lines, hashes) -> None:
    if len(lines) > MAX_EVIDENCE_LINES:
        raise InvalidReport(f"{len(lines)} evidence lines, at most {MAX_EVIDENCE_LINES}")
    if any(len(line.text) > MAX_LINE_CHARS for line in lines):
        raise InvalidReport(f"an evidence line longer than {MAX_LINE_CHARS} characters")
    if len(hashes) > MAX_SNAPSHOT_HASHES:
        raise InvalidReport(f"{len(hashes)} snapshot hashes, at most {MAX_SNAPSHOT_HASHES}")
    if any(len(h) > MAX_HASH_CHARS for h in hashes):
        raise InvalidReport(f"a snapshot hash longer than {MAX_HASH_CHARS} characters")


def check_report(report: events_pb2.ReportFiled) -> None:
    """Raise InvalidReport if the report lacks what review and enforcement need."""
    if not report.report_id:
        raise InvalidReport("report without report_id")
    if len(report.report_id) > MAX_ID_CHARS:
        raise InvalidReport(f"report_id longer than {MAX_ID_CHARS} characters")
    if ":" in report.report_id:
        raise InvalidReport("report_id must not contain ':' (reserved for detector and ban filings)")
    if not report.reported.device_token:
        raise InvalidReport("report without the reported user's device token")
    if len(report.comment) > MAX_COMMENT_CHARS:
        raise InvalidReport(f"comment longer than {MAX_COMMENT_CHARS} characters")
    _check_evidence(report.evidence, report.snapshot_hashes)


def check_suspicion(suspicion: events_pb2.EvaderSuspected) -> None:
    if not suspicion.suspicion_id:
        raise InvalidReport("suspicion without suspicion_id")
    if len(suspicion.suspicion_id) > MAX_ID_CHARS:
        raise InvalidReport(f"suspicion_id longer than {MAX_ID_CHARS} characters")
    if not suspicion.identity.device_token:
        raise InvalidReport("suspicion without the suspected device token")
    if not suspicion.linked_ban_id:
        raise InvalidReport("suspicion without linked_ban_id")
    if len(suspicion.reason) > MAX_COMMENT_CHARS:
        raise InvalidReport(f"reason longer than {MAX_COMMENT_CHARS} characters")


def linked_subject(suspicion: events_pb2.EvaderSuspected) -> str:
    """The banned subject a suspicion links to, as "kind:value"."""
    kind = suspicion.linked_subject.WhichOneof("kind")
    return f"{kind}:{getattr(suspicion.linked_subject, kind)}" if kind else ""


# ---------------------------------------------------------------- detector escalations

@dataclass(frozen=True)
class Line:
    """One line of a conversation. `from_subject` is True for the flagged
    user's own lines (a report's from_reporter=False)."""
    text: str
    sent_at_ms: int
    from_subject: bool = True


@dataclass(frozen=True)
class Escalation:
    """A detector's verdict sent to human review: what the message and
    snapshot consumers hand to `ModerationService.open_escalation` (which
    counts and logs it) or straight to `ReviewStore.open_escalation`:

        await service.open_escalation(review.Escalation(
            escalation_id=envelope.event_id, detector="snapshot.hash_bank",
            subject=Identity(s.identity.device_token, s.identity.ip_hash, s.identity.ip_prefix_hash),
            category=common_pb2.CATEGORY_KNOWN_BAD_HASH, risk_score=1.0, summary="PDQ match, bank X",
            match_id=s.match_id, mode=s.mode, age_band=s.age_band,
            snapshot_hashes=(f"pdq:{pdq_hex}",), snapshots=(s.jpeg,), child_safety=True,
            occurred_at_ms=s.taken_at_unix_ms))

    `escalation_id` makes it idempotent (the verdict's or the triggering
    event's id: the same id twice opens one item). Escalations against the
    same user in the same conversation merge into one item, together with
    user reports of it. The call returns an Intake (`item`, `created`,
    `merged`) and raises InvalidReport for a malformed escalation (a
    consumer dead-letters that) or a store error (retry: it is idempotent)."""
    escalation_id: str
    detector: str                 # e.g. "text.grooming", "snapshot.hash_bank"
    subject: Identity             # the flagged user
    category: int
    risk_score: float             # 0..1
    summary: str = ""             # one line: why
    match_id: str = ""
    mode: int = 0
    age_band: int = 0
    lines: tuple[Line, ...] = ()
    snapshot_hashes: tuple[str, ...] = ()   # e.g. "pdq:<hex>"
    snapshots: tuple[bytes, ...] = ()       # raw frames (JPEG), kept in the evidence vault
    child_safety: bool = False              # restrict the evidence to role child_safety now
    priority_floor: int = 0                 # at least this priority (0: the formula's)
    occurred_at_ms: int = 0                 # 0: now


def check_escalation(escalation: Escalation) -> None:
    if not escalation.escalation_id or len(escalation.escalation_id) > MAX_ID_CHARS:
        raise InvalidReport(f"escalation_id must be 1 to {MAX_ID_CHARS} characters")
    if not escalation.detector or len(escalation.detector) > MAX_ID_CHARS:
        raise InvalidReport(f"detector must be 1 to {MAX_ID_CHARS} characters")
    if not escalation.subject.device_token:
        raise InvalidReport("escalation without the subject's device token")
    if not math.isfinite(escalation.risk_score) or not 0.0 <= escalation.risk_score <= 1.0:
        raise InvalidReport(f"risk_score {escalation.risk_score} outside 0..1")
    if len(escalation.summary) > MAX_COMMENT_CHARS:
        raise InvalidReport(f"summary longer than {MAX_COMMENT_CHARS} characters")
    _check_evidence(escalation.lines, escalation.snapshot_hashes)
    if len(escalation.snapshots) > MAX_SNAPSHOTS:
        raise InvalidReport(f"{len(escalation.snapshots)} snapshots, at most {MAX_SNAPSHOTS}")
    if any(len(s) > MAX_SNAPSHOT_BYTES for s in escalation.snapshots):
        raise InvalidReport(f"a snapshot over {MAX_SNAPSHOT_BYTES} bytes")


# ---------------------------------------------------------------- decisions

ACTIONS = frozenset({moderation_pb2.ACTION_DISMISS, moderation_pb2.ACTION_WARN,
                     moderation_pb2.ACTION_BAN, moderation_pb2.ACTION_ESCALATE})
# A ban longer than this is a typo for a permanent one (0), and would
# overflow expiry arithmetic downstream.
MAX_BAN_SECONDS = 10 * 365 * 24 * 3600
MAX_MODERATOR_CHARS = 100
MAX_NOTE_CHARS = 2_000


class InvalidDecision(ValueError):
    """A DecideRequest that cannot be applied as asked."""


@dataclass(frozen=True)
class DecisionInput:
    """A checked DecideRequest. `category` UNSPECIFIED keeps the item's."""
    item_id: str
    action: int
    category: int
    duration_s: int
    moderator: str
    note: str


def validate_decision(request: moderation_pb2.DecideRequest, moderator: str) -> DecisionInput:
    """`moderator` is the authenticated name; the request's own field is ignored."""
    if not request.item_id:
        raise InvalidDecision("item_id is required")
    if len(request.item_id) > MAX_ID_CHARS:
        raise InvalidDecision(f"item_id longer than {MAX_ID_CHARS} characters")
    if request.action not in ACTIONS:
        raise InvalidDecision(f"action must be one of DISMISS, WARN, BAN, ESCALATE (got {request.action})")
    if request.category not in common_pb2.Category.values():
        raise InvalidDecision(f"unknown category {request.category}")
    if request.action == moderation_pb2.ACTION_BAN:
        if request.duration_s < 0:
            raise InvalidDecision("a ban needs duration_s >= 0 (0 is permanent)")
        if request.duration_s > MAX_BAN_SECONDS:
            raise InvalidDecision(f"duration_s above {MAX_BAN_SECONDS} (10 years): use 0 for permanent")
    elif request.duration_s != 0:
        raise InvalidDecision("duration_s applies to ACTION_BAN only")
    moderator = moderator.strip()
    if not moderator:
        raise InvalidDecision("moderator is required, for the audit log")
    if len(moderator) > MAX_MODERATOR_CHARS:
        raise InvalidDecision(f"moderator longer than {MAX_MODERATOR_CHARS} characters")
    note = request.note.strip()
    if not note:
        raise InvalidDecision("note is required: the audit log records why")
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidDecision(f"note longer than {MAX_NOTE_CHARS} characters")
    return DecisionInput(item_id=request.item_id, action=request.action, category=request.category,
                         duration_s=request.duration_s, moderator=moderator, note=note)


def check_reason(reason: str, what: str = "reason") -> str:
    """A required free-text reason (release, hold, purge, export): trimmed."""
    reason = reason.strip()
    if not reason:
        raise InvalidDecision(f"{what} is required: the audit log records why")
    if len(reason) > MAX_NOTE_CHARS:
        raise InvalidDecision(f"{what} longer than {MAX_NOTE_CHARS} characters")
    return reason
