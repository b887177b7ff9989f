"""Rate limits at the door, as pure logic: the clock is passed in.

Per session: chat lines per second, all frames per second (typing and video
signaling included), joins and nexts per minute. Per IP hash: joins and nexts
per minute across all its sessions, sessions open at once, and how fast it
opens new ones (which raises its proof-of-work difficulty). Limits are per
gateway replica; a client spread over replicas by the load balancer gets each
replica's allowance, which the sessions-per-address limit keeps small.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RateLimits:
    text_per_second: float = 3.0
    text_burst: int = 10
    frames_per_second: float = 30.0
    frames_burst: int = 100
    joins_per_minute: float = 20.0
    ip_joins_per_minute: float = 300.0
    sessions_per_ip: int = 100
    # Clients send a frame every few seconds (gateway.proto, Snapshot).
    snapshots_per_second: float = 0.5
    snapshot_burst: int = 3


class TokenBucket:
    """`rate` tokens a second up to `burst`; a request takes one."""

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float) -> float:
        """0 when allowed (a token is spent), else seconds until it would be."""
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate if self.rate > 0 else math.inf

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


class DecayingRate:
    """Events per minute, averaged with exponential decay (one-minute time
    constant): cheap, one float per address, and it forgets a burst slowly."""

    __slots__ = ("value", "updated")
    TAU = 60.0

    def __init__(self, now: float) -> None:
        self.value = 0.0
        self.updated = now

    def add(self, now: float) -> float:
        self.value = self.read(now) + 1.0
        self.updated = now
        return self.value

    def read(self, now: float) -> float:
        return self.value * math.exp(-max(0.0, now - self.updated) / self.TAU)


# Frames limited by which bucket, besides the all-frames one.
_TEXT = frozenset({"text"})
_JOINS = frozenset({"join", "next"})
_SNAPSHOTS = frozenset({"snapshot"})


@dataclass
class Verdict:
    retry_after: float  # 0: allowed
    notify: bool        # first refusal of a streak: tell the client once


ALLOWED = Verdict(0.0, False)


class SessionLimiter:
    """The buckets of one session. A client over its limit is told once per
    streak of refused frames, so a flood does not turn into a flood of errors."""

    def __init__(self, limits: RateLimits, now: float) -> None:
        self.frames = TokenBucket(limits.frames_per_second, limits.frames_burst, now)
        self.text = TokenBucket(limits.text_per_second, limits.text_burst, now)
        self.joins = TokenBucket(limits.joins_per_minute / 60.0, max(1.0, limits.joins_per_minute / 4), now)
        self.snapshots = TokenBucket(limits.snapshots_per_second, limits.snapshot_burst, now)
        self._limited = False

    def check(self, kind: str, now: float) -> Verdict:
        retry = self.frames.take(now)
        if not retry and kind in _TEXT:
            retry = self.text.take(now)
        if not retry and kind in _JOINS:
            retry = self.joins.take(now)
        if not retry and kind in _SNAPSHOTS:
            retry = self.snapshots.take(now)
        return self._verdict(retry)

    def _verdict(self, retry: float) -> Verdict:
        if not retry:
            self._limited = False
            return ALLOWED
        notify = not self._limited
        self._limited = True
        return Verdict(retry, notify)


@dataclass
class AddressState:
    joins: TokenBucket
    opens: DecayingRate
    open_sessions: int = 0


@dataclass
class AddressLimiter:
    """What one gateway knows of each IP hash it serves."""

    limits: RateLimits
    addresses: dict[str, AddressState] = field(default_factory=dict)

    def _state(self, ip_hash: str, now: float) -> AddressState:
        state = self.addresses.get(ip_hash)
        if state is None:
            rate = self.limits.ip_joins_per_minute / 60.0
            state = AddressState(TokenBucket(rate, max(1.0, self.limits.ip_joins_per_minute / 4), now),
                                 DecayingRate(now))
            self.addresses[ip_hash] = state
        return state

    def open(self, ip_hash: str, now: float) -> float | None:
        """A session from this address wants in: None when it has too many
        open already, else its recent opening rate (sessions per minute)."""
        state = self._state(ip_hash, now)
        if state.open_sessions >= self.limits.sessions_per_ip:
            return None
        state.open_sessions += 1
        return state.opens.add(now)

    def close(self, ip_hash: str) -> None:
        state = self.addresses.get(ip_hash)
        if state is not None and state.open_sessions > 0:
            state.open_sessions -= 1

    def join(self, ip_hash: str, now: float) -> float:
        """0 when a join or next from this address is allowed, else seconds to wait."""
        return self._state(ip_hash, now).joins.take(now)

    def prune(self, now: float) -> None:
        """Forget addresses with nothing open and nothing left to remember."""
        for ip_hash in [key for key, state in self.addresses.items()
                        if state.open_sessions == 0 and state.joins.full(now) and state.opens.read(now) < 0.5]:
            del self.addresses[ip_hash]
