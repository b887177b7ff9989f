"""What a ban is and when it is in force: pure values and rules, no storage.

Enum fields (scope, category, mode) hold the `parley.v1` enum numbers, so
the store and the wire speak the same values.
"""
from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from parley.v1 import common_pb2

# Milliseconds since the epoch. Injected into the store so tests control time.
Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class SubjectKind(enum.StrEnum):
    """What a ban applies to; the values are the `parley.v1.Subject` oneof
    fields and the `parley.v1.Identity` fields of the same name."""

    DEVICE_TOKEN = "device_token"
    IP_HASH = "ip_hash"
    IP_PREFIX_HASH = "ip_prefix_hash"


@dataclass(frozen=True)
class Subject:
    kind: SubjectKind
    value: str


def identity_subjects(device_token: str = "", ip_hash: str = "", ip_prefix_hash: str = "") -> list[Subject]:
    """The subjects a connecting person is checked against: each identity
    field that is set."""
    given = {SubjectKind.DEVICE_TOKEN: device_token, SubjectKind.IP_HASH: ip_hash,
             SubjectKind.IP_PREFIX_HASH: ip_prefix_hash}
    return [Subject(kind, value) for kind, value in given.items() if value]


def normalized_scope(scope: int) -> int:
    # The contract: BAN_SCOPE_UNSPECIFIED is treated as BAN_SCOPE_ALL. It is
    # stored as ALL so that nothing downstream has to remember that.
    return common_pb2.BAN_SCOPE_ALL if scope == common_pb2.BAN_SCOPE_UNSPECIFIED else scope


def scope_covers(scope: int, mode: int) -> bool:
    """Does a ban of this scope shut someone out of this mode? A ban on
    everything always does; a video ban only for video (a check without a mode
    is the connect check, which only bans on everything fail)."""
    if normalized_scope(scope) == common_pb2.BAN_SCOPE_ALL:
        return True
    return scope == common_pb2.BAN_SCOPE_VIDEO and mode == common_pb2.MODE_VIDEO


def expiry_ms(issued_at_ms: int, duration_s: int) -> int:
    """0 (permanent) for a zero duration, else the moment the ban ends."""
    if duration_s < 0:
        raise ValueError("a ban duration cannot be negative")
    return 0 if duration_s == 0 else issued_at_ms + duration_s * 1000


@dataclass(frozen=True)
class Ban:
    ban_id: str
    subject: Subject
    scope: int
    category: int
    reason: str
    issued_by: str
    issued_at_ms: int
    expires_at_ms: int             # 0: permanent
    lifted_at_ms: int | None = None
    lifted_by: str | None = None
    lift_reason: str | None = None
    decision_id: str | None = None  # the moderation decision that caused it

    @property
    def permanent(self) -> bool:
        return self.expires_at_ms == 0

    def in_force(self, now_ms: int) -> bool:
        """Not lifted and not expired."""
        if self.lifted_at_ms is not None:
            return False
        return self.permanent or self.expires_at_ms > now_ms

    def blocks(self, mode: int, now_ms: int) -> bool:
        """Does this ban refuse a session in `mode` at `now_ms`?"""
        return self.in_force(now_ms) and scope_covers(self.scope, mode)


def strongest(bans: Iterable[Ban]) -> Ban | None:
    """The ban to show when several apply: one on everything before a video
    ban, then the one that lasts longest (permanent first), then the newest."""
    def weight(ban: Ban) -> tuple:
        covers_all = normalized_scope(ban.scope) == common_pb2.BAN_SCOPE_ALL
        ends = float("inf") if ban.permanent else ban.expires_at_ms
        return (covers_all, ends, ban.issued_at_ms, ban.ban_id)

    return max(bans, key=weight, default=None)
