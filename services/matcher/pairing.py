"""The pairing policy: pure logic, no broker, no clock of its own.

Pools are keyed by (mode, age band, language), so a minor and an adult are
never in the same pool; `compatible` checks the band again all the same.
Within a pool:
- a user with interests is paired with the waiting user who shares the most
  of them, the longest-waiting first among equals;
- after `fallback_after` seconds a user with interests who allows it takes a
  random partner (and is told so); `interests_only` users keep waiting;
- a user without interests takes the longest-waiting user who accepts a
  random partner;
- never the same device, never anyone either side avoids (blocked, reported).
"""
from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field

PoolKey = tuple[int, int, str]  # (mode, age band, language)


class PairKind(enum.Enum):
    INTEREST = "interest"   # at least one shared interest
    FALLBACK = "fallback"   # someone had interests, none shared: random after the wait
    RANDOM = "random"       # nobody asked for interests


@dataclass
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
    enqueued_at: float = 0.0

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


@dataclass
class Pools:
    fallback_after: float = 5.0
    _pools: dict[PoolKey, OrderedDict[str, Ticket]] = field(default_factory=dict)
    _by_session: dict[tuple[str, str], Ticket] = field(default_factory=dict)

    # ------------------------------------------------------------ arrivals

    def add(self, ticket: Ticket, now: float, at_head: bool = False) -> Pair | None:
        """Pair `ticket` now if a partner fits, or put it in its pool.
        A session has one ticket at a time: a new one replaces the old."""
        self.cancel_session(ticket.gateway_id, ticket.session_id)
        ticket.enqueued_at = now
        pool = self._pools.setdefault(ticket.pool_key, OrderedDict())
        partner, common = self._best_partner(pool, ticket, now)
        if partner is not None:
            self._remove(partner)
            return _make_pair(partner, ticket, common)
        pool[ticket.ticket_id] = ticket
        if at_head:
            pool.move_to_end(ticket.ticket_id, last=False)
        self._by_session[(ticket.gateway_id, ticket.session_id)] = ticket
        return None

    def _best_partner(self, pool: OrderedDict[str, Ticket], ticket: Ticket,
                      now: float) -> tuple[Ticket | None, frozenset[str]]:
        best: Ticket | None = None
        best_common: frozenset[str] = frozenset()
        random_partner: Ticket | None = None
        ticket_takes_random = ticket.takes_random(now, self.fallback_after)
        for candidate in pool.values():  # longest-waiting first
            if not compatible(ticket, candidate):
                continue
            common = ticket.interests & candidate.interests
            if len(common) > len(best_common):
                best, best_common = candidate, common
            elif (random_partner is None and ticket_takes_random
                  and candidate.takes_random(now, self.fallback_after)):
                random_partner = candidate
        if best is not None:
            return best, best_common
        return random_partner, frozenset()

    # ------------------------------------------------------------ waiting too long

    def sweep(self, now: float) -> list[Pair]:
        """Pair users whose interest wait has run out with anyone who takes a
        random partner. Call it every fraction of a second."""
        pairs: list[Pair] = []
        for pool in self._pools.values():
            ready = [t for t in pool.values() if t.interests and t.takes_random(now, self.fallback_after)]
            for ticket in ready:
                if ticket.ticket_id not in pool:
                    continue  # paired earlier in this sweep
                del pool[ticket.ticket_id]
                partner, common = self._best_partner(pool, ticket, now)
                if partner is None:
                    pool[ticket.ticket_id] = ticket
                    # keep its place: it has waited longest of those behind it
                    _restore_order(pool, ticket)
                    continue
                self._remove(partner)
                self._by_session.pop((ticket.gateway_id, ticket.session_id), None)
                a, b = (ticket, partner) if ticket.enqueued_at <= partner.enqueued_at else (partner, ticket)
                pairs.append(_make_pair(a, b, common))
        return pairs

    # ------------------------------------------------------------ leaving

    def cancel(self, ticket_id: str, gateway_id: str, session_id: str) -> bool:
        ticket = self._by_session.get((gateway_id, session_id))
        if ticket is None or ticket.ticket_id != ticket_id:
            return False
        self._remove(ticket)
        return True

    def cancel_session(self, gateway_id: str, session_id: str) -> bool:
        ticket = self._by_session.get((gateway_id, session_id))
        if ticket is None:
            return False
        self._remove(ticket)
        return True

    def _remove(self, ticket: Ticket) -> None:
        self._pools.get(ticket.pool_key, {}).pop(ticket.ticket_id, None)
        self._by_session.pop((ticket.gateway_id, ticket.session_id), None)

    # ------------------------------------------------------------ reading

    def waiting(self) -> dict[PoolKey, int]:
        return {key: len(pool) for key, pool in self._pools.items() if pool}

    def __len__(self) -> int:
        return len(self._by_session)

    def __contains__(self, ticket_id: str) -> bool:
        return any(ticket_id in pool for pool in self._pools.values())


def _make_pair(a: Ticket, b: Ticket, common: frozenset[str]) -> Pair:
    if common:
        kind = PairKind.INTEREST
    elif a.interests or b.interests:
        kind = PairKind.FALLBACK
    else:
        kind = PairKind.RANDOM
    return Pair(a=a, b=b, common_interests=tuple(sorted(common)), kind=kind)


def _restore_order(pool: OrderedDict[str, Ticket], ticket: Ticket) -> None:
    """Move `ticket` back before every ticket that arrived after it."""
    later = [t.ticket_id for t in pool.values() if t.enqueued_at > ticket.enqueued_at]
    for ticket_id in later:
        pool.move_to_end(ticket_id)
