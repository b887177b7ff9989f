"""Model <-> parley.v1 messages."""
import pytest

from parley.v1 import ban_pb2, common_pb2 as c
from services.ban.model import Appeal, Ban, Subject, SubjectKind
from services.ban.wire import (appeal_to_proto, ban_from_proto, ban_to_proto, category_name, subject_from_proto,
                               subject_to_proto)


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
    assert not record.enforce_on_address and record.appealable_until_unix_ms == 0


@pytest.mark.parametrize("ban", [
    Ban(ban_id="b", subject=Subject(SubjectKind.IP_PREFIX_HASH, "p"), scope=c.BAN_SCOPE_ALL, category=6,
        reason="r", issued_by="me", issued_at_ms=5, expires_at_ms=0, decision_id="d",
        enforce_on_address=True, appealable_until_ms=99),
    Ban(ban_id="b", subject=Subject(SubjectKind.DEVICE_TOKEN, "x"), scope=c.BAN_SCOPE_VIDEO, category=1,
        reason="r", issued_by="me", issued_at_ms=5, expires_at_ms=50, lifted_at_ms=7, lifted_by="mod",
        lift_reason="appeal"),
])
def test_ban_round_trip(ban):
    assert ban_from_proto(ban_to_proto(ban)) == ban


def test_a_record_without_a_subject_needs_one_given():
    with pytest.raises(ValueError, match="no subject"):
        ban_from_proto(ban_pb2.BanRecord(ban_id="b"))
    subject = Subject(SubjectKind.SESSION_ID, "s")
    assert ban_from_proto(ban_pb2.BanRecord(ban_id="b"), subject).subject == subject


def test_appeal_to_proto():
    appeal = Appeal("a1", "b1", "dev", "sorry", "upheld", 10, "mod", 20, "no")
    message = appeal_to_proto(appeal)
    assert (message.status, message.decided_by, message.decision_note) == (
        ban_pb2.APPEAL_STATUS_UPHELD, "mod", "no")
    assert not message.HasField("ban")


def test_category_names_are_short_and_bounded():
    assert category_name(c.CATEGORY_CHILD_SAFETY) == "child_safety"
    assert category_name(999) == "unknown"
