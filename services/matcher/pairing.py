"""The pairing policy: pure logic, no broker, no clock of its own.

Pools are keyed by (mode, age band, language), so a minor and an adult are
never in the same pool; `compatible` checks the band again all the same.
Within a pool:
- a user with interests is paired with the waiting user who shares the most
  of them, the longest-waiting first among equals; both learn what is shared;
- after `fallback_after` seconds a user with interests who allows it takes a
  random partner (and is told so); `interests_only` users keep waiting;
- a user without interests takes the longest-waiting user who takes a random
  partner;
- never the same device, never anyone either side avoids (blocked, reported),
  never one of the last `recent_limit` partners within `recent_window` seconds;
- a ticket its gateway stops renewing expires after `ticket_ttl` seconds.

Each pool keeps an index by interest and a heap of the users who take a
random partner now, so an arrival costs about the same with 10 or 10,000
users waiting.
"""
from __future__ import annotations

import enum
import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field

PoolKey = tuple[int, int, str]  # (mode, age band, language)


class PairKind(enum.Enum):
    INTEREST = "interest"   # at least one shared interest
    FALLBACK = "fallback"   # someone had interests, none shared: random after the wait
    RANDOM = "random"       # nobody asked for interests


@dataclass(eq=False)
class Ticket:
    ticket_id: str
    gateway_id: str
    session_id: str
    device_token: str
    mode: int
    age_band: int
    language: str
    interests: frozenset[str] = frozenset()
    interests_only: bool = False
    avoid: frozenset[str] = frozenset()
    enqueued_at: float = 0.0   # when the user started waiting
    renewed_at: float = 0.0    # the last sign of life from its gateway
    seq: int = 0               # wait order within the pool: lower waited longer

    @property
    def pool_key(self) -> PoolKey:
        return (self.mode, self.age_band, self.language)

    def takes_random(self, now: float, fallback_after: float) -> bool:
        """Would this user accept a partner with no shared interest now?"""
        if not self.interests:
            return True
        return not self.interests_only and now - self.enqueued_at >= fallback_after


@dataclass(frozen=True)
class Pair:
    a: Ticket  # waited longer
    b: Ticket
    common_interests: tuple[str, ...]
    kind: PairKind


def compatible(x: Ticket, y: Ticket) -> bool:
    """May these two ever be paired? The safety half of the policy."""
    return (x.age_band == y.age_band
            and x.mode == y.mode
            and x.device_token != y.device_token
            and x.session_id != y.session_id
            and x.device_token not in y.avoid
            and y.device_token not in x.avoid)


class RecentPartners:
    """Who met whom lately, so that "next" brings someone new.

    Devices are kept in the order of their last meeting (a device that meets
    someone moves to the end), so forgetting the stale ones looks only at
    the front instead of at every device met in the window: with 600 s of
    pairs at a few thousand a second, a full scan on every sweep took a good
    share of the matcher's time and stalled the loop."""

    def __init__(self, window: float, limit: int) -> None:
        self.window = window
        self.limit = limit
        # device -> its last `limit` meetings, (other device, when), oldest
        # first: a tuple, not a deque, as a device is kept for `window`
        # seconds (600 by default: over a million devices at a thousand pairs
        # a second), and a tuple of a few entries is a fifth of the memory
        # of a deque and is left alone by the garbage collector
        self._met: OrderedDict[str, tuple[tuple[str, float], ...]] = OrderedDict()
        self._latest = float("-inf")
        self._ordered = True  # _met is in the order of last meetings

    def record(self, x: str, y: str, now: float) -> None:
        if self.limit <= 0:
            return
        if now < self._latest:
            self._ordered = False  # the clock went back: sort before the next forget
        else:
            self._latest = now
        limit = self.limit
        for me, other in ((x, y), (y, x)):
            met = self._met.get(me)
            if met is None:
                self._met[me] = ((other, now),)
            else:
                self._met.move_to_end(me)
                self._met[me] = (*met[1:], (other, now)) if len(met) >= limit else (*met, (other, now))

    def met(self, x: str, y: str, now: float) -> bool:
        """Either side's memory counts: each keeps only its last few."""
        return (any(other == y and now - at < self.window for other, at in self._met.get(x, ()))
                or any(other == x and now - at < self.window for other, at in self._met.get(y, ())))

    def forget_pair(self, x: str, y: str) -> None:
        """Undo a meeting that never happened (the pair was not announced)."""
        for me, other in ((x, y), (y, x)):
            met = self._met.get(me)
            if met is not None:
                self._met[me] = tuple(entry for entry in met if entry[0] != other)

    def forget_before(self, cutoff: float) -> None:
        """Forget the devices whose last meeting was before `cutoff`."""
        if not self._ordered:
            self._met = OrderedDict(sorted(
                self._met.items(), key=lambda item: item[1][-1][1] if item[1] else float("-inf")))
            self._ordered = True
        met = self._met
        while met:
            last = met[next(iter(met))]
            if last and last[-1][1] >= cutoff:
                break
            met.popitem(last=False)


@dataclass
class _Pool:
    tickets: OrderedDict[str, Ticket] = field(default_factory=OrderedDict)
    by_interest: dict[str, dict[str, Ticket]] = field(default_factory=dict)
    # (seq, ticket id) of tickets that take a random partner now; entries of
    # tickets that left are skipped when met (lazy deletion).
    random_heap: list[tuple[int, str]] = field(default_factory=list)
    random_ids: set[str] = field(default_factory=set)
    # interest tickets not yet taking random partners, in wait order
    pending_fallback: OrderedDict[str, Ticket] = field(default_factory=OrderedDict)


class Pools:
    def __init__(self, fallback_after: float = 5.0, ticket_ttl: float = 30.0,
                 recent_window: float = 600.0, recent_limit: int = 3) -> None:
        self.fallback_after = fallback_after
        self.ticket_ttl = ticket_ttl
        self.recent = RecentPartners(recent_window, recent_limit)
        self._pools: dict[PoolKey, _Pool] = {}
        self._by_id: dict[str, Ticket] = {}
        self._by_session: dict[tuple[str, str], Ticket] = {}
        self._seq = itertools.count(1)
        self._head_seq = itertools.count(-1, -1)

    # ------------------------------------------------------------ arrivals

    def add(self, ticket: Ticket, now: float, at_head: bool = False) -> Pair | None:
        """Pair `ticket` now if a partner fits, or put it in its pool. A
        session has one ticket at a time: a new one replaces the old.
        `ticket.enqueued_at`, when set, is kept (a re-queued user keeps the
        time they started waiting)."""
        self.cancel_session(ticket.gateway_id, ticket.session_id)
        ticket.enqueued_at = ticket.enqueued_at or now
        ticket.renewed_at = now
        ticket.seq = next(self._head_seq) if at_head else next(self._seq)
        pool = self._pools.setdefault(ticket.pool_key, _Pool())
        partner, common = self._best_partner(pool, ticket, now)
        if partner is not None:
            self._remove(partner)
            return self._pair(partner, ticket, common, now)
        self._insert(pool, ticket, now)
        return None

    def renew(self, ticket_id: str, now: float) -> bool:
        """A sign of life from the ticket's gateway; False if not waiting."""
        ticket = self._by_id.get(ticket_id)
        if ticket is None:
            return False
        ticket.renewed_at = now
        return True

    def _insert(self, pool: _Pool, ticket: Ticket, now: float) -> None:
        pool.tickets[ticket.ticket_id] = ticket
        if ticket.seq < 0:
            pool.tickets.move_to_end(ticket.ticket_id, last=False)
        for interest in ticket.interests:
            pool.by_interest.setdefault(interest, {})[ticket.ticket_id] = ticket
        if ticket.takes_random(now, self.fallback_after):
            self._mark_random(pool, ticket)
        elif not ticket.interests_only:
            pool.pending_fallback[ticket.ticket_id] = ticket
        self._by_id[ticket.ticket_id] = ticket
        self._by_session[(ticket.gateway_id, ticket.session_id)] = ticket

    def _mark_random(self, pool: _Pool, ticket: Ticket) -> None:
        heapq.heappush(pool.random_heap, (ticket.seq, ticket.ticket_id))
        pool.random_ids.add(ticket.ticket_id)

    def fits(self, x: Ticket, y: Ticket, now: float) -> bool:
        return compatible(x, y) and not self.recent.met(x.device_token, y.device_token, now)

    def _best_partner(self, pool: _Pool, ticket: Ticket, now: float) -> tuple[Ticket | None, frozenset[str]]:
        if ticket.interests:
            shared: dict[str, int] = {}
            for interest in ticket.interests:
                for candidate_id in pool.by_interest.get(interest, ()):
                    shared[candidate_id] = shared.get(candidate_id, 0) + 1
            best: Ticket | None = None
            best_key = (0, 0)
            for candidate_id, count in shared.items():
                candidate = pool.tickets[candidate_id]
                key = (count, -candidate.seq)
                if key > best_key and self.fits(ticket, candidate, now):
                    best, best_key = candidate, key
            if best is not None:
                return best, ticket.interests & best.interests
        if ticket.takes_random(now, self.fallback_after):
            return self._oldest_random(pool, ticket, now), frozenset()
        return None, frozenset()

    def _oldest_random(self, pool: _Pool, ticket: Ticket, now: float) -> Ticket | None:
        """The longest-waiting user who takes a random partner and fits."""
        skipped: list[tuple[int, str]] = []
        found = None
        while pool.random_heap:
            entry = heapq.heappop(pool.random_heap)
            candidate = pool.tickets.get(entry[1])
            if candidate is None or candidate.seq != entry[0]:
                continue  # left the pool
            skipped.append(entry)
            if self.fits(ticket, candidate, now):
                found = candidate
                break
        for entry in skipped:
            heapq.heappush(pool.random_heap, entry)
        return found

    # ------------------------------------------------------------ waiting too long

    def sweep(self, now: float) -> list[Pair]:
        """Let users whose interest wait ran out take random partners, and pair
        any two waiting users who fit and both take one (also those kept apart
        by a recent-partner window that has passed). Call it a few times a
        second."""
        pairs: list[Pair] = []
        for pool in list(self._pools.values()):
            while pool.pending_fallback:
                ticket = next(iter(pool.pending_fallback.values()))
                if now - ticket.enqueued_at < self.fallback_after:
                    break
                del pool.pending_fallback[ticket.ticket_id]
                self._mark_random(pool, ticket)
            if len(pool.random_ids) < 2:
                continue
            for _seq, ticket_id in sorted(pool.random_heap):
                ticket = pool.tickets.get(ticket_id)
                if ticket is None or ticket_id not in pool.random_ids:
                    continue
                partner = self._oldest_random(pool, ticket, now)  # never itself: same session
                if partner is not None:
                    self._remove(ticket)
                    self._remove(partner)
                    pairs.append(self._pair(ticket, partner, frozenset(), now))
        return pairs

    def rescan(self, now: float) -> list[Pair]:
        """Pair waiting users who share an interest but could not be paired
        when they arrived (a recent-partner window kept them apart and has
        since passed). A pass over every waiting user with interests: run it
        every few seconds, not on every sweep."""
        pairs: list[Pair] = []
        for pool in list(self._pools.values()):
            for ticket in sorted((t for t in pool.tickets.values() if t.interests), key=lambda t: t.seq):
                if ticket.ticket_id not in pool.tickets:
                    continue  # paired earlier in this pass
                partner, common = self._best_partner(pool, ticket, now)
                if partner is not None and common:
                    self._remove(ticket)
                    self._remove(partner)
                    pairs.append(self._pair(ticket, partner, common, now))
        return pairs

    def expire(self, now: float) -> list[Ticket]:
        """Drop tickets whose gateway stopped renewing them (a gateway that
        crashed leaves no ghosts)."""
        expired = [t for t in self._by_id.values() if now - t.renewed_at > self.ticket_ttl]
        for ticket in expired:
            self._remove(ticket)
        self.recent.forget_before(now - self.recent.window)
        return expired

    # ------------------------------------------------------------ leaving

    def cancel(self, ticket_id: str, gateway_id: str, session_id: str) -> Ticket | None:
        ticket = self._by_id.get(ticket_id)
        if ticket is None or (ticket.gateway_id, ticket.session_id) != (gateway_id, session_id):
            return None
        self._remove(ticket)
        return ticket

    def cancel_session(self, gateway_id: str, session_id: str) -> Ticket | None:
        ticket = self._by_session.get((gateway_id, session_id))
        if ticket is not None:
            self._remove(ticket)
        return ticket

    def _remove(self, ticket: Ticket) -> None:
        pool = self._pools.get(ticket.pool_key)
        if pool is not None and pool.tickets.pop(ticket.ticket_id, None) is not None:
            for interest in ticket.interests:
                index = pool.by_interest.get(interest)
                if index is not None:
                    index.pop(ticket.ticket_id, None)
                    if not index:
                        del pool.by_interest[interest]
            pool.pending_fallback.pop(ticket.ticket_id, None)
            pool.random_ids.discard(ticket.ticket_id)
            if not pool.tickets:
                del self._pools[ticket.pool_key]
        self._by_id.pop(ticket.ticket_id, None)
        if self._by_session.get((ticket.gateway_id, ticket.session_id)) is ticket:
            del self._by_session[(ticket.gateway_id, ticket.session_id)]

    def _pair(self, x: Ticket, y: Ticket, common: frozenset[str], now: float) -> Pair:
        a, b = (x, y) if x.seq <= y.seq else (y, x)
        self.recent.record(a.device_token, b.device_token, now)
        if common:
            kind = PairKind.INTEREST
        elif a.interests or b.interests:
            kind = PairKind.FALLBACK
        else:
            kind = PairKind.RANDOM
        return Pair(a=a, b=b, common_interests=tuple(sorted(common)), kind=kind)

    # ------------------------------------------------------------ reading

    def waiting(self) -> dict[PoolKey, int]:
        return {key: len(pool.tickets) for key, pool in self._pools.items()}

    def tickets(self) -> list[Ticket]:
        return list(self._by_id.values())

    def get(self, ticket_id: str) -> Ticket | None:
        return self._by_id.get(ticket_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, ticket_id: str) -> bool:
        return ticket_id in self._by_id
