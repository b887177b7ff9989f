"""Between the model and `parley.v1` messages, and the short enum names used
as metric labels and in the CLI."""
from __future__ import annotations

from parley.v1 import ban_pb2, common_pb2
from services.ban.model import Ban, Subject, SubjectKind


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
    )


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
