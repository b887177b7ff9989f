"""The rules of when a ban is in force, whom it refuses (the linked-identifier
rule) and who may appeal it."""
import pytest

from parley.v1 import common_pb2 as c
from services.ban.model import (CLEAR, AppealRefusal, Ban, Subject, SubjectKind, appeal_refusal,
                                appealable_until_ms, evader_reason, expiry_ms, identity_subjects, judge,
                                normalized_scope, scope_covers, session_ban_duration_s, strongest)

DEVICE = Subject(SubjectKind.DEVICE_TOKEN, "dev")
IP = Subject(SubjectKind.IP_HASH, "ip")
PREFIX = Subject(SubjectKind.IP_PREFIX_HASH, "pre")
SESSION = Subject(SubjectKind.SESSION_ID, "sess")


def make_ban(ban_id="b1", scope=c.BAN_SCOPE_ALL, issued=1_000, expires=0, lifted=None, subject=DEVICE,
             enforce=False, appealable_until=0) -> Ban:
    return Ban(ban_id=ban_id, subject=subject, scope=scope, category=c.CATEGORY_SPAM, reason="r", issued_by="t",
               issued_at_ms=issued, expires_at_ms=expires, lifted_at_ms=lifted, enforce_on_address=enforce,
               appealable_until_ms=appealable_until)


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
    assert identity_subjects(session_id="s") == [Subject(SubjectKind.SESSION_ID, "s")]
    assert identity_subjects() == []


# ------------------------------------------------------------ the linked-identifier rule

def test_which_bans_refuse_by_themselves():
    assert make_ban(subject=DEVICE).refuses_by_itself
    assert make_ban(subject=SESSION).refuses_by_itself
    assert not make_ban(subject=IP).refuses_by_itself
    assert not make_ban(subject=PREFIX).refuses_by_itself
    assert make_ban(subject=IP, enforce=True).refuses_by_itself
    assert make_ban(subject=PREFIX, enforce=True).refuses_by_itself


def test_a_banned_device_is_refused_on_any_address():
    device_ban = make_ban("d", subject=DEVICE)
    verdict = judge([device_ban], c.MODE_TEXT, 5_000, device_token="dev")
    assert verdict.banned and verdict.ban == device_ban and verdict.watched is None


def test_a_new_device_on_a_watched_ip_or_prefix_is_flagged_not_refused():
    for watch in (make_ban("w-ip", subject=IP), make_ban("w-prefix", subject=PREFIX)):
        verdict = judge([watch], c.MODE_TEXT, 5_000, device_token="someone-else")
        assert not verdict.banned
        assert verdict.watched == watch


def test_the_banned_device_on_its_watched_address_is_refused_not_flagged():
    device_ban, watch = make_ban("d", subject=DEVICE), make_ban("w", subject=IP)
    verdict = judge([watch, device_ban], c.MODE_TEXT, 5_000, device_token="dev")
    assert verdict.ban == device_ban and verdict.watched is None


def test_an_address_ban_that_enforces_refuses_everyone_there():
    range_ban = make_ban("r", subject=PREFIX, enforce=True)
    assert judge([range_ban], c.MODE_TEXT, 5_000, device_token="anyone").ban == range_ban
    # even a caller that gives no device
    assert judge([range_ban], c.MODE_TEXT, 5_000, device_token="").ban == range_ban


def test_no_device_no_flag():
    assert judge([make_ban(subject=IP)], c.MODE_TEXT, 5_000, device_token="") == CLEAR


def test_a_session_ban_refuses_the_session():
    ban = make_ban("s", subject=SESSION, expires=9_000)
    assert judge([ban], c.MODE_UNSPECIFIED, 5_000, device_token="dev").ban == ban


def test_expired_lifted_and_other_mode_bans_do_not_count_even_for_flags():
    stale = [make_ban("x", subject=IP, expires=4_000), make_ban("l", subject=PREFIX, lifted=4_500),
             make_ban("v", subject=IP, scope=c.BAN_SCOPE_VIDEO), make_ban("e", expires=5_000)]
    assert judge(stale, c.MODE_TEXT, 5_000, device_token="dev") == CLEAR
    # the video watch ban flags a video join
    assert judge(stale, c.MODE_VIDEO, 5_000, device_token="dev").watched.ban_id == "v"


def test_the_strongest_refusing_ban_is_shown():
    short, permanent = make_ban("s", expires=9_000), make_ban("p", subject=IP, enforce=True)
    assert judge([short, permanent], c.MODE_TEXT, 5_000, device_token="dev").ban == permanent


def test_evader_reasons_name_the_address_kind():
    assert "IP address" in evader_reason(make_ban(subject=IP))
    assert "IP range" in evader_reason(make_ban(subject=PREFIX))


# ------------------------------------------------------------ appeals and sessions

WINDOW = 20 * 86_400_000


def test_appeal_window():
    assert appealable_until_ms(DEVICE, 1_000, WINDOW) == 1_000 + WINDOW
    assert appealable_until_ms(IP, 1_000, WINDOW) == 1_000 + WINDOW
    assert appealable_until_ms(SESSION, 1_000, WINDOW) == 0  # a session ban is not appealable


@pytest.mark.parametrize("ban, now, appellant, refusal", [
    (make_ban(appealable_until=10_000), 5_000, {"device_token": "dev"}, None),
    (make_ban(appealable_until=10_000, expires=2_000), 5_000, {"device_token": "dev"}, None),  # expired: still
    (make_ban(appealable_until=10_000), 10_000, {"device_token": "dev"}, None),                # the last instant
    (make_ban(appealable_until=10_000), 10_001, {"device_token": "dev"}, AppealRefusal.WINDOW_CLOSED),
    (make_ban(appealable_until=10_000), 5_000, {"device_token": "other"}, AppealRefusal.NOT_YOURS),
    (make_ban(appealable_until=10_000), 5_000, {"device_token": ""}, AppealRefusal.NO_DEVICE),
    (make_ban(appealable_until=10_000, lifted=3_000), 5_000, {"device_token": "dev"}, AppealRefusal.LIFTED),
    (make_ban(subject=SESSION), 5_000, {"device_token": "dev"}, AppealRefusal.NOT_APPEALABLE),
    # a ban on an address: appealed from that address, by any device
    (make_ban(subject=IP, appealable_until=10_000), 5_000, {"device_token": "d2", "ip_hash": "ip"}, None),
    (make_ban(subject=IP, appealable_until=10_000), 5_000, {"device_token": "d2", "ip_hash": "elsewhere"},
     AppealRefusal.NOT_YOURS),
    (make_ban(subject=PREFIX, appealable_until=10_000), 5_000, {"device_token": "d2", "ip_prefix_hash": "pre"},
     None),
    (make_ban(subject=PREFIX, appealable_until=10_000), 5_000, {"device_token": "d2", "ip_hash": "pre"},
     AppealRefusal.NOT_YOURS),
])
def test_who_may_appeal_and_when(ban, now, appellant, refusal):
    assert appeal_refusal(ban, now, **appellant) is refusal


def test_session_ban_duration_is_capped():
    assert session_ban_duration_s(0, 86_400) == 86_400
    assert session_ban_duration_s(600, 86_400) == 600
    assert session_ban_duration_s(10**9, 86_400) == 86_400
