"""The rules of when a ban is in force and which one is shown."""
import pytest

from parley.v1 import common_pb2 as c
from services.ban.model import Ban, Subject, SubjectKind, expiry_ms, identity_subjects, \
    normalized_scope, scope_covers, strongest


def make_ban(ban_id="b1", scope=c.BAN_SCOPE_ALL, issued=1_000, expires=0, lifted=None) -> Ban:
    return Ban(ban_id=ban_id, subject=Subject(SubjectKind.DEVICE_TOKEN, "dev"), scope=scope,
               category=c.CATEGORY_SPAM, reason="r", issued_by="t", issued_at_ms=issued,
               expires_at_ms=expires, lifted_at_ms=lifted)


@pytest.mark.parametrize("scope, mode, covered", [
    (c.BAN_SCOPE_ALL, c.MODE_UNSPECIFIED, True),
    (c.BAN_SCOPE_ALL, c.MODE_TEXT, True),
    (c.BAN_SCOPE_ALL, c.MODE_VIDEO, True),
    (c.BAN_SCOPE_UNSPECIFIED, c.MODE_TEXT, True),   # unspecified is treated as all
    (c.BAN_SCOPE_VIDEO, c.MODE_UNSPECIFIED, False),  # the connect check
    (c.BAN_SCOPE_VIDEO, c.MODE_TEXT, False),
    (c.BAN_SCOPE_VIDEO, c.MODE_VIDEO, True),
])
def test_scope_rule(scope, mode, covered):
    assert scope_covers(scope, mode) is covered


def test_unspecified_scope_is_stored_as_all():
    assert normalized_scope(c.BAN_SCOPE_UNSPECIFIED) == c.BAN_SCOPE_ALL
    assert normalized_scope(c.BAN_SCOPE_VIDEO) == c.BAN_SCOPE_VIDEO


def test_expiry():
    assert expiry_ms(5_000, 0) == 0
    assert expiry_ms(5_000, 60) == 65_000
    with pytest.raises(ValueError):
        expiry_ms(5_000, -1)


def test_in_force_until_the_expiry_instant():
    ban = make_ban(expires=10_000)
    assert ban.in_force(9_999)
    assert not ban.in_force(10_000)
    assert make_ban(expires=0).in_force(10**15)
    assert not make_ban(lifted=2_000).in_force(1_500)


def test_blocks_combines_time_and_scope():
    video = make_ban(scope=c.BAN_SCOPE_VIDEO, expires=10_000)
    assert video.blocks(c.MODE_VIDEO, 5_000)
    assert not video.blocks(c.MODE_TEXT, 5_000)
    assert not video.blocks(c.MODE_VIDEO, 10_000)


def test_strongest_prefers_all_then_longest_then_newest():
    video_permanent = make_ban("v", scope=c.BAN_SCOPE_VIDEO, expires=0)
    all_short = make_ban("s", expires=5_000)
    all_long = make_ban("l", expires=9_000)
    assert strongest([video_permanent, all_short]).ban_id == "s"
    assert strongest([all_short, all_long, video_permanent]).ban_id == "l"
    assert strongest([all_long, make_ban("p", expires=0)]).ban_id == "p"
    assert strongest([make_ban("old", issued=1), make_ban("new", issued=2)]).ban_id == "new"
    assert strongest([]) is None


def test_identity_subjects_skips_empty_fields():
    assert identity_subjects("d", "", "p") == [Subject(SubjectKind.DEVICE_TOKEN, "d"),
                                               Subject(SubjectKind.IP_PREFIX_HASH, "p")]
    assert identity_subjects() == []
