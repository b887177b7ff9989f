"""The pairing policy, without a broker."""
from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from services.matcher.pairing import PairKind, Pools, Ticket, compatible

TEXT, VIDEO = 1, 2
MINOR, ADULT = 1, 2
_ids = itertools.count()


def ticket(device=None, band=ADULT, mode=TEXT, lang="en", interests=(), only=False, avoid=()) -> Ticket:
    n = next(_ids)
    return Ticket(ticket_id=f"t{n}", gateway_id="g1", session_id=f"s{n}", device_token=device or f"d{n}",
                  mode=mode, age_band=band, language=lang, interests=frozenset(interests),
                  interests_only=only, avoid=frozenset(avoid))


def test_two_plain_users_pair_at_once_longest_waiting_first():
    pools = Pools()
    first, second, third = ticket(), ticket(), ticket()
    assert pools.add(first, 0.0) is None
    pair = pools.add(second, 1.0)
    assert (pair.a, pair.b, pair.kind) == (first, second, PairKind.RANDOM)
    assert pools.add(third, 2.0) is None and len(pools) == 1


def test_minor_and_adult_never_share_a_pool():
    pools = Pools(fallback_after=0)
    pools.add(ticket(band=ADULT), 0.0)
    assert pools.add(ticket(band=MINOR), 0.0) is None
    assert pools.sweep(100.0) == []
    assert sorted(pools.waiting().values()) == [1, 1]


def test_compatible_rejects_cross_band_even_outside_pools():
    assert not compatible(ticket(band=ADULT), ticket(band=MINOR))


def test_modes_and_languages_are_separate_pools():
    pools = Pools()
    pools.add(ticket(mode=TEXT), 0)
    assert pools.add(ticket(mode=VIDEO), 0) is None
    assert pools.add(ticket(lang="de"), 0) is None


def test_shared_interest_pairs_and_names_what_is_shared():
    p = Pools()
    early = ticket(interests={"chess", "go"})
    assert p.add(early, 0) is None
    assert p.add(ticket(interests={"golf"}), 0.5) is None
    pair = p.add(ticket(interests={"chess", "music"}), 1)
    assert pair.a is early and pair.common_interests == ("chess",)
    assert pair.kind is PairKind.INTEREST


def test_prefers_more_shared_interests_over_longer_wait():
    p = Pools()
    long_waiter = ticket(interests={"chess", "golf"})
    better = ticket(interests={"music", "art", "chess"})
    p.add(long_waiter, 0)
    # the two share chess and would pair: keep them apart with an avoid
    better.avoid = frozenset({long_waiter.device_token})
    assert p.add(better, 0.1) is None
    pair = p.add(ticket(interests={"chess", "music", "art"}), 0.2)
    assert pair.a is better and pair.common_interests == ("art", "chess", "music")


def test_interest_users_fall_back_to_random_after_the_wait():
    p = Pools(fallback_after=5)
    a = ticket(interests={"knitting"})
    b = ticket(interests={"surfing"})
    p.add(a, 0)
    assert p.add(b, 1) is None
    assert p.sweep(4.9) == []
    (pair,) = p.sweep(6.0)
    assert {pair.a.ticket_id, pair.b.ticket_id} == {a.ticket_id, b.ticket_id} and pair.kind is PairKind.FALLBACK
    assert pair.a is a  # waited longer


def test_interests_only_keeps_waiting():
    p = Pools(fallback_after=1)
    p.add(ticket(interests={"knitting"}, only=True), 0)
    p.add(ticket(interests={"surfing"}, only=True), 0)
    assert p.sweep(100) == []
    assert len(p) == 2


def test_plain_user_takes_an_interest_user_only_after_their_wait():
    p = Pools(fallback_after=5)
    picky = ticket(interests={"chess"})
    p.add(picky, 0)
    assert p.add(ticket(), 1) is None  # picky still hopes for chess
    (pair,) = p.sweep(5.5)
    assert pair.kind is PairKind.FALLBACK


def test_never_self_or_avoided():
    p = Pools(fallback_after=0)
    p.add(ticket(device="same"), 0)
    assert p.add(ticket(device="same"), 0) is None
    p = Pools()
    p.add(ticket(device="alice", avoid={"bob"}), 0)
    assert p.add(ticket(device="bob"), 0) is None
    p = Pools()
    p.add(ticket(device="alice"), 0)
    assert p.add(ticket(device="bob", avoid={"alice"}), 0) is None


def test_cancel_removes_at_once_and_new_ticket_replaces_old():
    p = Pools()
    a = ticket()
    p.add(a, 0)
    assert p.cancel(a.ticket_id, a.gateway_id, a.session_id)
    assert len(p) == 0 and p.add(ticket(), 1) is None
    p = Pools()
    old = ticket()
    p.add(old, 0)
    renewed = Ticket(**{**old.__dict__, "ticket_id": "renewed"})
    p.add(renewed, 1)
    assert len(p) == 1 and "renewed" in p and old.ticket_id not in p


def test_at_head_goes_before_earlier_arrivals():
    p = Pools(fallback_after=100)
    first = ticket(interests={"x"})
    p.add(first, 0)
    refused = ticket(interests={"x2"})
    p.add(refused, 1, at_head=True)
    pair = p.add(ticket(), 2)  # plain user: nobody takes random yet
    assert pair is None
    assert min(p.tickets(), key=lambda t: t.seq) is refused


# ---------------------------------------------------------------- properties

arrivals = st.lists(st.tuples(
    st.sampled_from([MINOR, ADULT]),
    st.sampled_from([TEXT, VIDEO]),
    st.sets(st.sampled_from(["a", "b", "c"]), max_size=2),
    st.booleans(),                       # interests only
    st.integers(0, 5),                   # device id (collisions = same device)
    st.sets(st.integers(0, 5), max_size=2),  # devices avoided
    st.booleans(),                       # cancel right after?
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(arrivals)
def test_no_unsafe_pair_no_double_booking_and_nobody_compatible_left_waiting(events):
    pools = Pools(fallback_after=1)
    paired_sessions: set[str] = set()
    now = 0.0
    pairs = []
    for band, mode, interests, only, device, avoid, cancel in events:
        now += 0.1
        t = ticket(device=f"d{device}", band=band, mode=mode, interests=interests, only=only,
                   avoid={f"d{x}" for x in avoid})
        pair = pools.add(t, now)
        if pair:
            pairs.append(pair)
        elif cancel:
            pools.cancel(t.ticket_id, t.gateway_id, t.session_id)
    pairs += pools.sweep(now + 10)
    for pair in pairs:
        assert compatible(pair.a, pair.b)
        assert pair.a.age_band == pair.b.age_band
        for t in (pair.a, pair.b):
            assert t.session_id not in paired_sessions
            paired_sessions.add(t.session_id)
    # Liveness: after the fallback wait, no two waiting users who would take
    # each other (and have not just met) remain unpaired.
    waiting = pools.tickets()
    for x, y in itertools.combinations(waiting, 2):
        if pools.fits(x, y, now + 10):
            takes = (x.interests & y.interests) or (
                x.takes_random(now + 10, 1) and y.takes_random(now + 10, 1))
            assert not takes, (x, y)
