"""Model <-> parley.v1 messages."""
from parley.v1 import ban_pb2, common_pb2 as c
from services.ban.model import Ban, Subject, SubjectKind
from services.ban.wire import ban_to_proto, category_name, subject_from_proto, subject_to_proto


def test_subject_round_trip():
    for kind in SubjectKind:
        subject = Subject(kind, "v")
        assert subject_from_proto(subject_to_proto(subject)) == subject


def test_a_subject_naming_nothing_or_empty_is_none():
    assert subject_from_proto(ban_pb2.Subject()) is None
    assert subject_from_proto(ban_pb2.Subject(device_token="")) is None


def test_ban_to_proto_uses_zero_for_absent_times():
    ban = Ban(ban_id="b", subject=Subject(SubjectKind.IP_HASH, "h"), scope=c.BAN_SCOPE_VIDEO,
              category=c.CATEGORY_SPAM, reason="r", issued_by="me", issued_at_ms=5, expires_at_ms=0)
    record = ban_to_proto(ban)
    assert record.subject.ip_hash == "h"
    assert (record.lifted_at_unix_ms, record.expires_at_unix_ms, record.decision_id) == (0, 0, "")


def test_category_names_are_short_and_bounded():
    assert category_name(c.CATEGORY_CHILD_SAFETY) == "child_safety"
    assert category_name(999) == "unknown"
