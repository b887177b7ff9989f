"""Store records as protobuf messages: review items for the gRPC API, and
decisions as the DecisionMade event the ban service acts on."""
from __future__ import annotations

import json

from parley.v1 import common_pb2, events_pb2, moderation_pb2
from services.moderation import review
from services.moderation.store import (CLAIMED, DECIDED, OPEN, AuditEntry, Decision, EvidenceLine, Identity,
                                       ReviewItem)

_STATUS_MESSAGE = {OPEN: moderation_pb2.REVIEW_STATUS_OPEN, DECIDED: moderation_pb2.REVIEW_STATUS_DECIDED,
                   CLAIMED: moderation_pb2.REVIEW_STATUS_CLAIMED}
STATUS_FILTER = {
    moderation_pb2.REVIEW_STATUS_UNSPECIFIED: None,
    moderation_pb2.REVIEW_STATUS_OPEN: OPEN,
    moderation_pb2.REVIEW_STATUS_CLAIMED: CLAIMED,
    moderation_pb2.REVIEW_STATUS_DECIDED: DECIDED,
}
KIND_MESSAGE = {review.KIND_REPORT: moderation_pb2.REVIEW_ITEM_KIND_REPORT,
                review.KIND_SUSPECTED_EVADER: moderation_pb2.REVIEW_ITEM_KIND_SUSPECTED_EVADER,
                review.KIND_AUTOMATED: moderation_pb2.REVIEW_ITEM_KIND_AUTOMATED}
KIND_FILTER = {moderation_pb2.REVIEW_ITEM_KIND_UNSPECIFIED: None,
               **{number: kind for kind, number in KIND_MESSAGE.items()}}


def identity_message(identity: Identity) -> common_pb2.Identity:
    return common_pb2.Identity(device_token=identity.device_token, ip_hash=identity.ip_hash,
                               ip_prefix_hash=identity.ip_prefix_hash)


def _lines(lines: tuple[EvidenceLine, ...]) -> list[common_pb2.ChatLine]:
    return [common_pb2.ChatLine(from_reporter=line.from_reporter, text=line.text, sent_at_unix_ms=line.sent_at_ms)
            for line in lines]


def item_message(item: ReviewItem, now_ms: int) -> moderation_pb2.ReviewItem:
    """The item as the API shows it at `now_ms` (a claim past its lease shows
    as open). Evidence is included when the item was loaded with it."""
    claimant = item.claimant(now_ms)
    message = moderation_pb2.ReviewItem(
        item_id=item.item_id, report_id=item.report_id,
        status=_STATUS_MESSAGE.get(item.shown_status(now_ms), moderation_pb2.REVIEW_STATUS_UNSPECIFIED),
        category=item.category, priority=item.priority, comment=item.comment,
        reported=identity_message(item.reported), reporter=identity_message(item.reporter),
        match_id=item.match_id, created_at_unix_ms=item.created_at_ms, decision_id=item.decision_id or "",
        kind=KIND_MESSAGE.get(item.kind, moderation_pb2.REVIEW_ITEM_KIND_UNSPECIFIED),
        claimed_by=claimant or "", claim_expires_at_unix_ms=(item.claim_expires_at_ms or 0) if claimant else 0,
        risk_score=item.risk_score, reporter_weight=item.reporter_weight, report_count=item.report_count,
        evidence_count=item.evidence_count, child_safety=item.child_safety,
        escalated_at_unix_ms=item.escalated_at_ms or 0, retain_until_unix_ms=item.retain_until_ms or 0,
        legal_hold=item.legal_hold, purged_at_unix_ms=item.purged_at_ms or 0,
        linked_ban_id=item.linked_ban_id, linked_subject=item.linked_subject,
        updated_at_unix_ms=item.updated_at_ms)
    if item.with_evidence:
        message.evidence.extend(_lines(item.evidence))
        message.snapshot_hashes.extend(item.snapshot_hashes)
        message.vault_sha256.extend(link.sha256 for link in item.vault)
        for filing in item.filings:
            message.reports.add(
                report_id=filing.report_id, source=filing.source, reporter=identity_message(filing.reporter),
                category=filing.category, comment=filing.comment, reported_at_unix_ms=filing.reported_at_ms,
                reporter_weight=filing.reporter_weight, risk_score=filing.risk_score,
                evidence=_lines(filing.evidence), snapshot_hashes=filing.snapshot_hashes)
    if item.decision is not None:
        d = item.decision
        message.decision.CopyFrom(moderation_pb2.DecisionInfo(
            decision_id=d.decision_id, action=d.action, category=d.category, duration_s=d.duration_s,
            moderator=d.moderator, note=d.note, decided_at_unix_ms=d.decided_at_ms))
    return message


def audit_message(entry: AuditEntry) -> moderation_pb2.AuditEntry:
    return moderation_pb2.AuditEntry(id=entry.id, at_unix_ms=entry.at_ms, actor=entry.actor, action=entry.action,
                                     item_id=entry.item_id or "", detail_json=json.dumps(entry.detail, sort_keys=True))


def decision_event(decision: Decision) -> events_pb2.DecisionMade:
    """The reported user is the subject: the ban service bans by their
    device token, IP hash and IP prefix hash."""
    return events_pb2.DecisionMade(
        decision_id=decision.decision_id, item_id=decision.item_id, report_id=decision.report_id,
        subject=identity_message(decision.subject), action=decision.action, category=decision.category,
        duration_s=decision.duration_s, moderator=decision.moderator, note=decision.note)
