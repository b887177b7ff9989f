"""The in-memory index CheckBan answers from, and the change-log cursor that
keeps it current."""
from dataclasses import replace

from hypothesis import given, settings, strategies as st

from parley.v1 import common_pb2 as c
from services.ban.index import BanIndex, ChangeCursor
from services.ban.model import Ban, Subject, SubjectKind, judge

T0 = 1_700_000_000_000
MINUTE = 60_000


def ban(ban_id="b1", kind=SubjectKind.DEVICE_TOKEN, value="dev", expires=0, scope=c.BAN_SCOPE_ALL,
        enforce=False, lifted=None) -> Ban:
    return Ban(ban_id=ban_id, subject=Subject(kind, value), scope=scope, category=c.CATEGORY_SPAM,
               reason="spam", issued_by="mod", issued_at_ms=T0, expires_at_ms=expires, lifted_at_ms=lifted,
               decision_id="dec", enforce_on_address=enforce, appealable_until_ms=T0 + 1000)


def test_put_find_and_round_trip():
    index = BanIndex()
    b = ban()
    assert index.put(b) and len(index) == 1
    assert index.candidates(device_token="dev") == [b]  # every field survives the compact form
    assert index.candidates(device_token="other", ip_hash="dev") == []  # another kind is another subject
    assert index.candidates() == []
    assert not index.put(b)  # the same again: no change
    assert len(index) == 1


def test_several_bans_on_one_subject():
    index = BanIndex()
    video, everything = ban("v", scope=c.BAN_SCOPE_VIDEO), ban("a", expires=T0 + MINUTE)
    index.put(video), index.put(everything)
    assert {b.ban_id for b in index.candidates(device_token="dev")} == {"v", "a"}
    assert len(index) == 2
    longer = replace(everything, expires_at_ms=T0 + 5 * MINUTE)  # the same ban, changed: replaced
    index.put(longer)
    assert len(index) == 2 and longer in index.candidates(device_token="dev")
    assert index.remove(video) and index.candidates(device_token="dev") == [longer]
    assert not index.remove(video)
    assert index.remove(longer) and len(index) == 0


def test_every_kind_is_looked_up():
    index = BanIndex()
    bans = [ban("d", SubjectKind.DEVICE_TOKEN, "x1"), ban("i", SubjectKind.IP_HASH, "x2"),
            ban("p", SubjectKind.IP_PREFIX_HASH, "x3"), ban("s", SubjectKind.SESSION_ID, "x4")]
    index.load(bans, T0)
    found = index.candidates(device_token="x1", ip_hash="x2", ip_prefix_hash="x3", session_id="x4")
    assert sorted(b.ban_id for b in found) == ["d", "i", "p", "s"]


def test_apply_follows_the_bans_state_and_a_lift_is_final():
    index = BanIndex()
    b = ban(expires=T0 + MINUTE)
    assert index.apply(b, T0)
    lifted = replace(b, lifted_at_ms=T0 + 1)
    assert index.apply(lifted, T0 + 1) and len(index) == 0
    # a late "issued" event for it arrives after the lift: ignored
    assert not index.apply(b, T0 + 2)
    assert index.candidates(device_token="dev") == []
    # an expired ban is not added
    assert not index.apply(ban("old", expires=T0), T0 + 1)


def test_expired_bans_leave_memory_at_the_sweep_after_their_minute():
    index = BanIndex()
    short, later, permanent = ban("s", expires=T0 + 1), ban("l", value="d2", expires=T0 + 10 * MINUTE), ban(
        "p", value="d3")
    index.load([short, later, permanent], T0)
    assert index.sweep(T0 + 2) == 0  # its minute is not over: still in memory (the check ignores it)
    assert index.sweep(T0 + 2 * MINUTE) == 1
    assert len(index) == 2 and index.candidates(device_token="dev") == []
    assert index.sweep(T0 + 11 * MINUTE) == 1
    assert index.candidates(device_token="d3") == [permanent]


def test_a_sweep_keeps_a_ban_whose_expiry_was_extended():
    index = BanIndex()
    b = ban(expires=T0 + 1)
    index.put(b)
    index.put(replace(b, expires_at_ms=T0 + 10 * MINUTE))
    assert index.sweep(T0 + 2 * MINUTE) == 0
    assert len(index) == 1


# ------------------------------------------------------------ the index answers as the store would

subjects = st.sampled_from([(SubjectKind.DEVICE_TOKEN, "d1"), (SubjectKind.DEVICE_TOKEN, "d2"),
                            (SubjectKind.IP_HASH, "i1"), (SubjectKind.IP_PREFIX_HASH, "p1"),
                            (SubjectKind.SESSION_ID, "s1")])
operations = st.lists(st.one_of(
    st.tuples(st.just("issue"), subjects, st.sampled_from([0, MINUTE, 3 * MINUTE]),
              st.sampled_from([c.BAN_SCOPE_ALL, c.BAN_SCOPE_VIDEO]), st.booleans()),
    st.tuples(st.just("lift"), st.integers(0, 20)),
    st.tuples(st.just("time"), st.integers(0, 2 * MINUTE)),
    st.tuples(st.just("replay"), st.integers(0, 20)),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_the_index_judges_like_a_plain_list_of_every_ban(ops):
    """Whatever arrives in whatever order (replays of old states included),
    the index gives the same verdict as the rule over every ban's latest state."""
    index, truth, history, now, n = BanIndex(), {}, [], T0, 0
    for op in ops:
        if op[0] == "issue":
            _, (kind, value), duration, scope, enforce = op
            n += 1
            b = Ban(ban_id=f"b{n}", subject=Subject(kind, value), scope=scope, category=1, reason="r",
                    issued_by="m", issued_at_ms=now, expires_at_ms=now + duration if duration else 0,
                    enforce_on_address=enforce and kind.is_address)
            truth[b.ban_id] = b
            history.append(b)
            index.apply(b, now)
        elif op[0] == "lift" and truth:
            ban_id = sorted(truth)[op[1] % len(truth)]
            if truth[ban_id].lifted_at_ms is None:
                truth[ban_id] = replace(truth[ban_id], lifted_at_ms=now)
                history.append(truth[ban_id])
                index.apply(truth[ban_id], now)
        elif op[0] == "replay" and history:
            index.apply(history[op[1] % len(history)], now)  # a late or repeated event
        elif op[0] == "time":
            now += op[1]
            index.sweep(now)
        for device in ("d1", "d2", ""):
            for mode in (c.MODE_UNSPECIFIED, c.MODE_VIDEO):
                identity = {"device_token": device, "ip_hash": "i1", "ip_prefix_hash": "p1", "session_id": "s1"}
                expected = judge([b for b in truth.values() if b.subject.value in identity.values()],
                                 mode, now, device_token=device)
                assert judge(index.candidates(**identity), mode, now, device_token=device) == expected


# ------------------------------------------------------------ the change cursor

def test_cursor_moves_over_contiguous_ids():
    cursor = ChangeCursor(10)
    assert cursor.advance([11, 12, 13], T0) == 13
    assert cursor.advance([], T0) == 13


def test_cursor_waits_at_a_gap_then_moves_when_it_fills():
    cursor = ChangeCursor(10, gap_timeout_ms=5_000)
    # 12 committed before 11: read 12, but stay before 11
    assert cursor.advance([12], T0) == 10
    assert cursor.open_gaps == 1
    assert cursor.advance([11, 12], T0 + 100) == 12
    assert cursor.open_gaps == 0


def test_cursor_gives_up_on_a_gap_that_never_fills():
    cursor = ChangeCursor(10, gap_timeout_ms=5_000)
    assert cursor.advance([12, 13], T0) == 10
    assert cursor.advance([12, 13], T0 + 4_999) == 10
    assert cursor.advance([12, 13], T0 + 5_000) == 13  # a rolled-back transaction's id


def test_cursor_handles_several_gaps():
    cursor = ChangeCursor(0, gap_timeout_ms=1_000)
    assert cursor.advance([1, 3, 6], T0) == 1
    assert cursor.advance([2, 3, 6], T0 + 10) == 3
    assert cursor.advance([6], T0 + 1_000) == 6  # 4 and 5 noticed at T0: timed out
