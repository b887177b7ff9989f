"""Between the model and `parley.v1` messages, and the short enum names used
as metric labels and in the CLI."""
from __future__ import annotations

import json

from parley.v1 import ban_pb2, common_pb2
from services.ban.model import Appeal, Ban, Subject, SubjectKind

APPEAL_STATUS = {"pending": ban_pb2.APPEAL_STATUS_PENDING, "upheld": ban_pb2.APPEAL_STATUS_UPHELD,
                 "lifted": ban_pb2.APPEAL_STATUS_LIFTED}
APPEAL_STATUS_NAMES = {number: name for name, number in APPEAL_STATUS.items()}


def subject_from_proto(subject: ban_pb2.Subject) -> Subject | None:
    """The subject a request names, or None when it names none (or an empty one)."""
    kind = subject.WhichOneof("kind")
    if kind is None or not getattr(subject, kind):
        return None
    return Subject(SubjectKind(kind), getattr(subject, kind))


def subject_to_proto(subject: Subject) -> ban_pb2.Subject:
    return ban_pb2.Subject(**{subject.kind.value: subject.value})


def ban_to_proto(ban: Ban) -> ban_pb2.BanRecord:
    return ban_pb2.BanRecord(
        ban_id=ban.ban_id,
        subject=subject_to_proto(ban.subject),
        scope=ban.scope,
        category=ban.category,
        reason=ban.reason,
        issued_by=ban.issued_by,
        issued_at_unix_ms=ban.issued_at_ms,
        expires_at_unix_ms=ban.expires_at_ms,
        lifted_at_unix_ms=ban.lifted_at_ms or 0,
        decision_id=ban.decision_id or "",
        enforce_on_address=ban.enforce_on_address,
        appealable_until_unix_ms=ban.appealable_until_ms,
        lifted_by=ban.lifted_by or "",
        lift_reason=ban.lift_reason or "",
    )


def ban_from_proto(record: ban_pb2.BanRecord, subject: Subject | None = None) -> Ban:
    """A record from an event (or the index, which keeps records without
    their subject: then `subject` is given)."""
    if subject is None:
        subject = subject_from_proto(record.subject)
        if subject is None:
            raise ValueError(f"ban {record.ban_id!r} names no subject")
    return Ban(
        ban_id=record.ban_id,
        subject=subject,
        scope=record.scope,
        category=record.category,
        reason=record.reason,
        issued_by=record.issued_by,
        issued_at_ms=record.issued_at_unix_ms,
        expires_at_ms=record.expires_at_unix_ms,
        lifted_at_ms=record.lifted_at_unix_ms or None,
        lifted_by=record.lifted_by or None,
        lift_reason=record.lift_reason or None,
        decision_id=record.decision_id or None,
        enforce_on_address=record.enforce_on_address,
        appealable_until_ms=record.appealable_until_unix_ms,
    )


def appeal_to_proto(appeal: Appeal, ban: Ban | None = None) -> ban_pb2.Appeal:
    message = ban_pb2.Appeal(
        appeal_id=appeal.appeal_id, ban_id=appeal.ban_id, device_token=appeal.device_token,
        statement=appeal.statement, status=APPEAL_STATUS[appeal.status], filed_at_unix_ms=appeal.filed_at_ms,
        decided_by=appeal.decided_by or "", decided_at_unix_ms=appeal.decided_at_ms or 0,
        decision_note=appeal.decision_note or "")
    if ban is not None:
        message.ban.CopyFrom(ban_to_proto(ban))
    return message


def audit_to_proto(entry) -> ban_pb2.BanAuditEntry:
    return ban_pb2.BanAuditEntry(at_unix_ms=entry.at_ms, actor=entry.actor, action=entry.action,
                                 ban_id=entry.ban_id or "", detail_json=json.dumps(entry.detail, sort_keys=True))


def strike_to_proto(strike, expiry_ms: int) -> ban_pb2.StrikeRecord:
    return ban_pb2.StrikeRecord(device_token=strike.device_token, category=strike.category,
                                decision_id=strike.decision_id or "", at_unix_ms=strike.at_ms,
                                expires_at_unix_ms=strike.at_ms + expiry_ms,
                                voided_at_unix_ms=strike.voided_at_ms or 0)


def _short_name(enum_type, prefix: str, value: int) -> str:
    try:
        return enum_type.Name(value).removeprefix(prefix).lower()
    except ValueError:
        return "unknown"  # a value from a newer contract: still one bounded label


def category_name(category: int) -> str:
    """CATEGORY_SEXUAL_CONTENT -> "sexual_content"."""
    return _short_name(common_pb2.Category, "CATEGORY_", category)


def scope_name(scope: int) -> str:
    return _short_name(common_pb2.BanScope, "BAN_SCOPE_", scope)
