"""More of the pairing policy: ticket TTL, recent partners, the head of the
queue, the interest index at scale, fallback and cancel."""
from __future__ import annotations

import itertools


from services.matcher.pairing import PairKind, Pools, RecentPartners, Ticket

TEXT, VIDEO = 1, 2
MINOR, ADULT = 1, 2
_ids = itertools.count()


def ticket(device=None, band=ADULT, mode=TEXT, lang="en", interests=(), only=False, avoid=(),
           gateway="g1", session=None, enqueued_at=0.0) -> Ticket:
    n = next(_ids)
    return Ticket(ticket_id=f"t{n}", gateway_id=gateway, session_id=session or f"s{n}",
                  device_token=device or f"d{n}", mode=mode, age_band=band, language=lang,
                  interests=frozenset(interests), interests_only=only, avoid=frozenset(avoid),
                  enqueued_at=enqueued_at)


def ids(pair) -> set[str]:
    return {pair.a.ticket_id, pair.b.ticket_id}


# ---------------------------------------------------------------- TTL

def test_a_renewed_ticket_survives_the_ttl():
    p = Pools(ticket_ttl=30)
    t = ticket(interests={"chess"}, only=True)
    p.add(t, 0)
    assert p.renew(t.ticket_id, 20) is True
    assert p.expire(45) == [] and t.ticket_id in p  # 25 s since the renewal
    assert p.renew(t.ticket_id, 45) and p.expire(75) == []  # exactly the TTL: kept
    assert t.enqueued_at == 0  # a renewal does not restart the wait


def test_an_unrenewed_ticket_expires_and_is_never_paired():
    p = Pools(ticket_ttl=30)
    stale = ticket(interests={"chess"}, only=True)
    fresh = ticket(interests={"chess"}, only=True, device="other")
    p.add(stale, 0)
    p.add(ticket(interests={"go"}, only=True), 25)
    assert p.expire(30.5) == [stale]
    assert stale.ticket_id not in p and p.get(stale.ticket_id) is None and len(p) == 1
    assert p.renew(stale.ticket_id, 31) is False  # gone: a renewal cannot revive it here
    assert p.add(fresh, 31) is None  # the chess partner it would have had
    assert p.sweep(1000) == []


def test_expire_drops_every_stale_ticket_in_every_pool_at_once():
    p = Pools(ticket_ttl=10)
    old = [ticket(band=MINOR, interests={"a"}, only=True), ticket(mode=VIDEO, interests={"b"}, only=True),
           ticket(lang="de", interests={"c"}, only=True)]
    for t in old:
        p.add(t, 0)
    young = ticket(interests={"d"}, only=True)
    p.add(young, 5)
    assert sorted(t.ticket_id for t in p.expire(10.5)) == sorted(t.ticket_id for t in old)
    assert p.tickets() == [young] and p.waiting() == {(TEXT, ADULT, "en"): 1}


def test_an_expired_random_taker_is_skipped_by_arrivals():
    p = Pools(ticket_ttl=10)
    gone = ticket()
    p.add(gone, 0)
    p.expire(11)
    assert p.add(ticket(), 11) is None  # the heap entry of the expired ticket is skipped


# ---------------------------------------------------------------- recent partners

def test_recent_partners_are_not_paired_again_within_the_window():
    p = Pools(fallback_after=0, recent_window=600, recent_limit=3)
    assert p.add(ticket(device="alice"), 0) is None
    first = p.add(ticket(device="bob"), 1)
    assert first is not None
    # both press next: new tickets, same devices
    assert p.add(ticket(device="alice"), 2) is None
    assert p.add(ticket(device="bob"), 3) is None
    assert p.sweep(300) == [] and len(p) == 2
    # someone new takes one of them at once
    carol = p.add(ticket(device="carol"), 301)
    assert carol is not None and carol.a.device_token == "alice"


def test_the_sweep_pairs_recent_partners_once_the_window_has_passed():
    p = Pools(fallback_after=0, recent_window=600, ticket_ttl=10_000)
    p.add(ticket(device="alice"), 0)
    p.add(ticket(device="bob"), 0)
    alice, bob = ticket(device="alice"), ticket(device="bob")
    p.add(alice, 1)
    p.add(bob, 1)
    assert p.sweep(599) == []
    (pair,) = p.sweep(601)
    assert ids(pair) == {alice.ticket_id, bob.ticket_id} and pair.kind is PairKind.RANDOM
    assert len(p) == 0


def test_the_sweep_pairs_recent_partners_with_interests_after_window_and_fallback():
    p = Pools(fallback_after=5, recent_window=600, ticket_ttl=10_000)
    p.add(ticket(device="alice", interests={"chess"}), 0)
    p.add(ticket(device="bob", interests={"chess"}), 0)
    alice, bob = ticket(device="alice", interests={"chess"}), ticket(device="bob", interests={"chess"})
    assert p.add(alice, 1) is None and p.add(bob, 1) is None
    assert p.sweep(10) == []  # both take random now, but they met
    (pair,) = p.sweep(601)
    assert ids(pair) == {alice.ticket_id, bob.ticket_id}


def test_interest_only_recent_partners_are_paired_once_the_window_has_passed():
    p = Pools(fallback_after=5, recent_window=600, ticket_ttl=10_000)
    p.add(ticket(device="alice", interests={"chess"}, only=True), 0)
    assert p.add(ticket(device="bob", interests={"chess"}, only=True), 0) is not None
    alice = ticket(device="alice", interests={"chess"}, only=True)
    bob = ticket(device="bob", interests={"chess"}, only=True)
    assert p.add(alice, 1) is None and p.add(bob, 1) is None
    assert p.sweep(601) == [] and p.rescan(300) == []  # still within the window
    pairs = p.rescan(601)
    assert [ids(pair) for pair in pairs] == [{alice.ticket_id, bob.ticket_id}]


def test_only_the_last_few_partners_are_remembered():
    p = Pools(fallback_after=0, recent_window=600, recent_limit=2)
    for other in ("bob", "carol", "dave"):
        p.add(ticket(device="alice"), 0)
        assert p.add(ticket(device=other), 0) is not None
    # alice remembers carol and dave, no longer bob; bob, who met only alice,
    # still remembers her, and either side's memory keeps them apart
    assert p.recent.met("alice", "carol", 1) and p.recent.met("alice", "dave", 1)
    assert p.recent.met("alice", "bob", 1) and p.recent.met("bob", "alice", 1)
    for other in ("erin", "frank"):  # bob moves on twice
        p.add(ticket(device="bob"), 1)
        assert p.add(ticket(device=other), 1) is not None
    assert not p.recent.met("alice", "bob", 2)
    p.add(ticket(device="alice"), 2)
    assert p.add(ticket(device="carol", avoid={"dave"}), 2) is None
    assert p.add(ticket(device="dave"), 2) is None
    assert p.add(ticket(device="bob"), 2) is not None


def test_a_zero_limit_remembers_nobody():
    p = Pools(fallback_after=0, recent_limit=0)
    p.add(ticket(device="alice"), 0)
    p.add(ticket(device="bob"), 0)
    p.add(ticket(device="alice"), 1)
    assert p.add(ticket(device="bob"), 1) is not None


def test_recent_partners_forget_old_meetings():
    recent = RecentPartners(window=10, limit=3)
    recent.record("a", "b", 0)
    assert recent.met("a", "b", 9.9) and recent.met("b", "a", 9.9)
    assert not recent.met("a", "b", 10) and not recent.met("a", "c", 1)
    recent.forget_before(5)  # their last meeting was at 0: dropped
    assert not recent.met("a", "b", 1)
    recent.record("a", "c", 20)
    recent.forget_before(15)
    assert recent.met("a", "c", 21)


# ---------------------------------------------------------------- the head of the queue

def test_at_head_keeps_the_time_the_user_started_waiting():
    p = Pools(fallback_after=5)
    back = ticket(interests={"chess"}, enqueued_at=100.0)
    p.add(back, 110.0, at_head=True)
    assert back.enqueued_at == 100.0 and back.renewed_at == 110.0 and back.seq < 0
    assert back.takes_random(110.0, 5)  # it waited 10 s: takes a random partner at once
    pair = p.add(ticket(), 110.5)
    assert pair is not None and pair.a is back and pair.kind is PairKind.FALLBACK


def test_a_ticket_without_a_start_time_starts_waiting_now():
    p = Pools()
    t = ticket(interests={"chess"}, only=True)
    p.add(t, 42.0, at_head=True)
    assert t.enqueued_at == 42.0


def test_at_head_is_chosen_before_users_who_waited_longer():
    p = Pools(fallback_after=5)
    x = ticket(device="x", avoid={"y"})
    y = ticket(device="y")
    p.add(x, 0)
    assert p.add(y, 1) is None  # x avoids y: both wait
    refused = ticket(device="r", avoid={"x", "y"})
    assert p.add(refused, 2, at_head=True) is None
    pair = p.add(ticket(device="z"), 3)
    assert pair.a is refused  # ahead of x, who arrived first
    later = ticket(device="r2", avoid={"x", "y"})
    p.add(later, 4, at_head=True)
    another = ticket(device="r3", avoid={"x", "y", "r2"})
    p.add(another, 5, at_head=True)
    assert p.add(ticket(device="w"), 6).a is another  # the latest re-queue is at the very head


def test_at_head_is_first_among_equals_for_an_interest():
    p = Pools(fallback_after=100)
    early = ticket(device="e", interests={"chess"}, only=True)
    p.add(early, 0)
    back = ticket(device="b", interests={"chess"}, only=True, avoid={"e"})
    p.add(back, 1, at_head=True)
    pair = p.add(ticket(interests={"chess"}, only=True), 2)
    assert pair.a is back and pair.common_interests == ("chess",)


# ---------------------------------------------------------------- the interest index

def test_an_arrival_finds_the_one_sharer_among_thousands_through_the_index():
    p = Pools(fallback_after=5)
    many = [ticket(interests={f"i{n}"}, only=True) for n in range(5000)]
    for t in many:
        assert p.add(t, 0) is None
    assert len(p) == 5000 and p.waiting() == {(TEXT, ADULT, "en"): 5000}
    calls = []
    real_fits = p.fits

    def counting_fits(x, y, now):
        calls.append(y.ticket_id)
        return real_fits(x, y, now)

    p.fits = counting_fits
    pair = p.add(ticket(interests={"i4321", "nobody-else"}), 1)
    assert pair.a is many[4321] and pair.common_interests == ("i4321",) and pair.kind is PairKind.INTEREST
    assert calls == [many[4321].ticket_id]  # only the sharer was looked at
    calls.clear()
    # nobody takes a random partner: a plain arrival looks at no one
    assert p.add(ticket(), 2) is None and calls == []
    # an unshared interest does not look at anyone either
    assert p.add(ticket(interests={"zzz"}, only=True), 3) is None and calls == []
    assert len(p) == 5001
    # cancelling keeps the index clean: the interest leaves with its ticket
    p.cancel(many[7].ticket_id, many[7].gateway_id, many[7].session_id)
    assert p.add(ticket(interests={"i7"}, only=True), 4) is None
    assert calls == []


def test_the_best_sharer_wins_among_thousands():
    p = Pools()
    for n in range(2000):
        p.add(ticket(interests={f"i{n}", "common"}, only=True, avoid={"x"}), 0)  # all avoid the arrival
    best = ticket(interests={"common", "rare1", "rare2"}, only=True)
    p.add(best, 1)
    pair = p.add(ticket(device="x", interests={"common", "rare1", "rare2"}, only=True), 2)
    assert pair.a is best and pair.common_interests == ("common", "rare1", "rare2")


# ---------------------------------------------------------------- fallback and interests_only

def test_fallback_is_counted_from_when_the_user_started_waiting():
    p = Pools(fallback_after=5)
    t = ticket(interests={"chess"})
    p.add(t, 100)
    assert not t.takes_random(104.9, 5) and t.takes_random(105, 5)
    assert ticket().takes_random(0, 5)  # no interests: always
    assert not ticket(interests={"x"}, only=True).takes_random(10_000, 5)


def test_a_plain_arrival_takes_an_interest_user_once_the_sweep_let_them_fall_back():
    p = Pools(fallback_after=5)
    picky = ticket(interests={"chess"})
    p.add(picky, 0)
    assert p.sweep(5) == []  # alone: marked as taking random, nobody to pair with
    pair = p.add(ticket(), 6)
    assert pair.a is picky and pair.kind is PairKind.FALLBACK and pair.common_interests == ()


def test_an_interest_user_prefers_a_sharer_to_an_earlier_random_taker():
    p = Pools(fallback_after=5)
    plain = ticket()
    p.add(plain, 0)
    sharer = ticket(interests={"chess"}, avoid={plain.device_token})
    p.add(sharer, 1)
    back = ticket(interests={"chess", "go"}, enqueued_at=-100)  # takes random already
    pair = p.add(back, 2, at_head=True)
    assert pair.b is sharer or pair.a is sharer
    assert pair.kind is PairKind.INTEREST and pair.common_interests == ("chess",)


def test_interests_only_users_never_take_a_random_partner():
    p = Pools(fallback_after=1, ticket_ttl=10_000)
    only = ticket(interests={"chess"}, only=True)
    p.add(only, 0)
    assert p.add(ticket(), 10) is None
    assert p.add(ticket(interests={"go"}), 10) is None
    assert p.sweep(5000) != [] and only.ticket_id in p  # the other two paired; it still waits
    pair = p.add(ticket(interests={"chess"}), 5001)
    assert pair.a is only and pair.kind is PairKind.INTEREST


def test_two_interest_users_without_common_ground_fall_back_together():
    p = Pools(fallback_after=5)
    a, b = ticket(interests={"chess"}), ticket(interests={"go"})
    p.add(a, 0)
    p.add(b, 3)
    assert p.sweep(5) == []  # a falls back, b not yet
    (pair,) = p.sweep(8)
    assert (pair.a, pair.b, pair.kind) == (a, b, PairKind.FALLBACK)


# ---------------------------------------------------------------- cancel

def test_cancel_returns_the_ticket_once_and_only_to_its_session():
    p = Pools()
    t = ticket(interests={"chess"}, only=True, gateway="g1", session="s1")
    p.add(t, 0)
    assert p.cancel(t.ticket_id, "g1", "other") is None
    assert p.cancel(t.ticket_id, "g2", "s1") is None
    assert t.ticket_id in p
    assert p.cancel(t.ticket_id, "g1", "s1") is t
    assert p.cancel(t.ticket_id, "g1", "s1") is None
    assert len(p) == 0 and p.waiting() == {}
    assert p.add(ticket(interests={"chess"}, only=True), 1) is None  # no trace in the index


def test_cancel_session_returns_the_current_ticket():
    p = Pools()
    t = ticket(interests={"chess"}, only=True, gateway="g1", session="s1")
    p.add(t, 0)
    assert p.cancel_session("g1", "s2") is None
    assert p.cancel_session("g1", "s1") is t
    assert p.cancel_session("g1", "s1") is None


def test_the_same_session_id_on_two_gateways_is_two_sessions():
    p = Pools(fallback_after=100)
    one = ticket(interests={"a"}, only=True, gateway="g1", session="s")
    two = ticket(interests={"b"}, only=True, gateway="g2", session="s")
    p.add(one, 0)
    p.add(two, 0)
    assert len(p) == 2
    assert p.cancel_session("g2", "s") is two and one.ticket_id in p


def test_recent_partners_keep_apart_whichever_side_arrives():
    p = Pools(fallback_after=0, recent_window=600, recent_limit=2)
    p.add(ticket(device="alice"), 0)
    p.add(ticket(device="bob"), 0)            # alice and bob met
    for other in ("carol", "dave"):           # then bob met two more: alice leaves bob's memory
        p.add(ticket(device="bob"), 1)
        p.add(ticket(device="other-" + other), 1)
    assert p.recent.met("alice", "bob", 2)    # alice still remembers bob
    alice = ticket(device="alice")
    p.add(alice, 2)
    # bob arrives: alice's last partners include bob, so they must not meet again
    assert p.add(ticket(device="bob"), 3) is None
