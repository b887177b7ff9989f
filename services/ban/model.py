"""What a ban is, when it is in force and whom it refuses: pure values and
rules, no storage, no wire.

Enum fields (scope, category, mode) hold the `parley.v1` enum numbers, so
the store and the wire speak the same values.

Whom a ban refuses (the linked-identifier rule):
  - a ban on a device refuses that device, on any address;
  - a ban on a session refuses that session;
  - a ban on an address (IP hash, IP prefix hash) refuses everyone there only
    when it enforces on the address (a range ban, or a severe case);
    otherwise it *watches* the address: a device that is not itself banned,
    seen there, is let in and flagged once as a suspected evader, for a human
    to look at. Bystanders sharing an address are never refused for another
    person's ban.
"""
from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from parley.v1 import common_pb2

# Milliseconds since the epoch. Injected into the store so tests control time.
Clock = Callable[[], int]

DAY_MS = 24 * 3600 * 1000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class SubjectKind(enum.StrEnum):
    """What a ban applies to; the values are the `parley.v1.Subject` oneof
    fields (and, but for the session, the `parley.v1.Identity` fields of the
    same name)."""

    DEVICE_TOKEN = "device_token"
    IP_HASH = "ip_hash"
    IP_PREFIX_HASH = "ip_prefix_hash"
    SESSION_ID = "session_id"

    @property
    def is_address(self) -> bool:
        return self in (SubjectKind.IP_HASH, SubjectKind.IP_PREFIX_HASH)


@dataclass(frozen=True)
class Subject:
    kind: SubjectKind
    value: str


def identity_subjects(device_token: str = "", ip_hash: str = "", ip_prefix_hash: str = "",
                      session_id: str = "") -> list[Subject]:
    """The subjects a connecting person is checked against: each identity
    field that is set."""
    given = {SubjectKind.DEVICE_TOKEN: device_token, SubjectKind.IP_HASH: ip_hash,
             SubjectKind.IP_PREFIX_HASH: ip_prefix_hash, SubjectKind.SESSION_ID: session_id}
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
    # An address ban that refuses everyone on the address; False for a watch
    # ban and for every other subject.
    enforce_on_address: bool = False
    appealable_until_ms: int = 0    # 0: not appealable

    @property
    def permanent(self) -> bool:
        return self.expires_at_ms == 0

    @property
    def refuses_by_itself(self) -> bool:
        """False for a watch ban: an address ban that only flags the
        devices seen there. Such a ban never ends anyone's session."""
        return not self.subject.kind.is_address or self.enforce_on_address

    def in_force(self, now_ms: int) -> bool:
        """Not lifted and not expired."""
        if self.lifted_at_ms is not None:
            return False
        return self.permanent or self.expires_at_ms > now_ms

    def blocks(self, mode: int, now_ms: int) -> bool:
        """Is this ban in force for a session in `mode` at `now_ms` (before
        the linked-identifier rule: a watch ban "blocks" here, and `judge`
        turns that into a flag)?"""
        return self.in_force(now_ms) and scope_covers(self.scope, mode)


def strongest(bans: Iterable[Ban]) -> Ban | None:
    """The ban to show when several apply: one on everything before a video
    ban, then the one that lasts longest (permanent first), then the newest."""
    def weight(ban: Ban) -> tuple:
        covers_all = normalized_scope(ban.scope) == common_pb2.BAN_SCOPE_ALL
        ends = float("inf") if ban.permanent else ban.expires_at_ms
        return (covers_all, ends, ban.issued_at_ms, ban.ban_id)

    return max(bans, key=weight, default=None)


# ---------------------------------------------------------------- the check


@dataclass(frozen=True)
class Verdict:
    """What CheckBan answers. `ban`: the ban that refuses the identity.
    `watched`: not refused, but the device was seen on an address under a
    watch ban (the strongest such ban): a suspected evader, to flag."""

    ban: Ban | None = None
    watched: Ban | None = None

    @property
    def banned(self) -> bool:
        return self.ban is not None


CLEAR = Verdict()


def judge(candidates: Iterable[Ban], mode: int, now_ms: int, *, device_token: str) -> Verdict:
    """The linked-identifier rule over the bans found on an identity's
    subjects (its device, addresses and session). A ban that refuses by
    itself refuses; a watch ban on one of its addresses flags the device
    (only when there is a device to flag, and only in the modes the ban
    covers); nothing else counts."""
    refusing: list[Ban] = []
    watching: list[Ban] = []
    for ban in candidates:
        if not ban.blocks(mode, now_ms):
            continue
        (refusing if ban.refuses_by_itself else watching).append(ban)
    if refusing:
        return Verdict(ban=strongest(refusing))
    if watching and device_token:
        return Verdict(watched=strongest(watching))
    return CLEAR


# ---------------------------------------------------------------- appeals


def appealable_until_ms(subject: Subject, issued_at_ms: int, window_ms: int) -> int:
    """The end of a ban's appeal window; 0 (none) for a ban on a session,
    which ends one conversation and is over before an appeal could be read."""
    if subject.kind is SubjectKind.SESSION_ID:
        return 0
    return issued_at_ms + window_ms


class AppealRefusal(enum.Enum):
    NOT_APPEALABLE = "this ban cannot be appealed"
    WINDOW_CLOSED = "the appeal window of this ban has closed"
    LIFTED = "this ban is already lifted"
    NOT_YOURS = "the appellant is not who this ban is on"
    NO_DEVICE = "the appellant's device token is required"


def appeal_refusal(ban: Ban, now_ms: int, *, device_token: str, ip_hash: str = "",
                   ip_prefix_hash: str = "") -> AppealRefusal | None:
    """Why this appellant cannot appeal this ban now, or None when they can.
    The appellant must be on the banned identity: the banned device itself,
    or, for a ban on an address, a device on that address (the gateway fills
    in the address hashes of the connection the appeal comes from). One
    appeal per ban is the store's rule (a unique key)."""
    if not device_token:
        return AppealRefusal.NO_DEVICE
    if not ban.appealable_until_ms:
        return AppealRefusal.NOT_APPEALABLE
    if ban.lifted_at_ms is not None:
        return AppealRefusal.LIFTED
    if now_ms > ban.appealable_until_ms:
        return AppealRefusal.WINDOW_CLOSED
    own = {SubjectKind.DEVICE_TOKEN: device_token, SubjectKind.IP_HASH: ip_hash,
           SubjectKind.IP_PREFIX_HASH: ip_prefix_hash}.get(ban.subject.kind, "")
    if own != ban.subject.value:
        return AppealRefusal.NOT_YOURS
    return None


@dataclass(frozen=True)
class Appeal:
    appeal_id: str
    ban_id: str
    device_token: str
    statement: str
    status: str                     # pending | upheld | lifted
    filed_at_ms: int
    decided_by: str | None = None
    decided_at_ms: int | None = None
    decision_note: str | None = None


def session_ban_duration_s(duration_s: int, max_s: int) -> int:
    """A ban on a session lasts at most `max_s` (a session never outlives
    it, and the index need not keep it longer); 0 asks for that maximum."""
    return max_s if duration_s == 0 else min(duration_s, max_s)


def evader_reason(ban: Ban) -> str:
    """Why a device seen on this watch ban's address is suspected."""
    if ban.subject.kind is SubjectKind.IP_HASH:
        return "a device that is not banned, on a banned IP address"
    return "a device that is not banned, in a banned IP range"
