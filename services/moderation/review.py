"""The rules of the review queue, without I/O: how urgent an item is, and
whether a report or a moderator's decision is well-formed.

Priority is the category's rank, then the amount of evidence within a rank.
The later detectors and risk scores become more terms of `priority`; the
evidence bonus stays below one rank step so that no amount of spam evidence
ever puts a spam report above a child-safety one.
"""
from __future__ import annotations

from dataclasses import dataclass

from parley.v1 import common_pb2, events_pb2, moderation_pb2

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
RANK_STEP = 100
# Each evidence line or snapshot hash adds one point, up to this many.
MAX_EVIDENCE_BONUS = RANK_STEP - 1


def priority(category: int, evidence_lines: int, snapshot_hashes: int) -> int:
    """The review priority of a report: higher first."""
    rank = CATEGORY_RANK.get(category, LOWEST_RANK)
    evidence = max(evidence_lines, 0) + max(snapshot_hashes, 0)
    return rank * RANK_STEP + min(evidence, MAX_EVIDENCE_BONUS)


# ---------------------------------------------------------------- reports

# Far above what a gateway sends (its recent-lines buffer); a report past
# these is malformed, and the dead-letter queue keeps it for a human.
MAX_ID_CHARS = 128
MAX_COMMENT_CHARS = 5_000
MAX_EVIDENCE_LINES = 500
MAX_LINE_CHARS = 10_000
MAX_SNAPSHOT_HASHES = 200
MAX_HASH_CHARS = 512


class InvalidReport(ValueError):
    """A ReportFiled that cannot become a review item."""


def check_report(report: events_pb2.ReportFiled) -> None:
    """Raise InvalidReport if the report lacks what review and enforcement need."""
    if not report.report_id:
        raise InvalidReport("report without report_id")
    if len(report.report_id) > MAX_ID_CHARS:
        raise InvalidReport(f"report_id longer than {MAX_ID_CHARS} characters")
    if not report.reported.device_token:
        raise InvalidReport("report without the reported user's device token")
    if len(report.comment) > MAX_COMMENT_CHARS:
        raise InvalidReport(f"comment longer than {MAX_COMMENT_CHARS} characters")
    if len(report.evidence) > MAX_EVIDENCE_LINES:
        raise InvalidReport(f"{len(report.evidence)} evidence lines, at most {MAX_EVIDENCE_LINES}")
    if any(len(line.text) > MAX_LINE_CHARS for line in report.evidence):
        raise InvalidReport(f"an evidence line longer than {MAX_LINE_CHARS} characters")
    if len(report.snapshot_hashes) > MAX_SNAPSHOT_HASHES:
        raise InvalidReport(f"{len(report.snapshot_hashes)} snapshot hashes, at most {MAX_SNAPSHOT_HASHES}")
    if any(len(h) > MAX_HASH_CHARS for h in report.snapshot_hashes):
        raise InvalidReport(f"a snapshot hash longer than {MAX_HASH_CHARS} characters")


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
    """A checked DecideRequest. `category` UNSPECIFIED keeps the report's."""
    item_id: str
    action: int
    category: int
    duration_s: int
    moderator: str
    note: str


def validate_decision(request: moderation_pb2.DecideRequest) -> DecisionInput:
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
    moderator = request.moderator.strip()
    if not moderator:
        raise InvalidDecision("moderator is required, for the audit log")
    if len(moderator) > MAX_MODERATOR_CHARS:
        raise InvalidDecision(f"moderator longer than {MAX_MODERATOR_CHARS} characters")
    if len(request.note) > MAX_NOTE_CHARS:
        raise InvalidDecision(f"note longer than {MAX_NOTE_CHARS} characters")
    return DecisionInput(item_id=request.item_id, action=request.action, category=request.category,
                         duration_s=request.duration_s, moderator=moderator, note=request.note)
