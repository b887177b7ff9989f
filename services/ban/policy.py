"""What a moderation decision does: strikes, the escalation ladder and the
severe categories, as pure functions. The store reads the device's strikes,
asks `plan_decision` what to do, and carries the plan out in one
transaction.

- Every decision against a person (warn, ban, escalate) is one strike on the
  device. Strikes stop counting after the strike expiry (90 days by
  default), and an appeal that lifts a decision's ban voids its strike.
- The ladder (configuration, e.g. "warn,1h,24h,7d,30d,permanent") gives the
  penalty of the n-th strike that counts: the first a warning, then timed
  bans that grow, then permanent; past its end, its last rung.
- ACTION_WARN takes the ladder's penalty (a first offence is a warning, a
  repeated one a ban). ACTION_BAN takes the stronger of the moderator's
  duration and the ladder's penalty: a repeat offender is not let off lightly
  by a short ban.
- A severe category (child safety, a known-bad hash), or ACTION_ESCALATE,
  is permanent at once on every identifier the decision names: the device,
  and the IP hash and IP prefix hash enforcing on the address.
- Any other ban of a device comes with *watch* bans (same length) on the
  IP hash and IP prefix hash the decision names: a new device there is
  flagged as a suspected evader, not refused (see model.judge).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from parley.v1 import common_pb2, events_pb2, moderation_pb2
from services.ban.model import DAY_MS, Subject, SubjectKind

SEVERE_CATEGORIES = frozenset({common_pb2.CATEGORY_CHILD_SAFETY, common_pb2.CATEGORY_KNOWN_BAD_HASH})

DEFAULT_LADDER = ("warn", "1h", "24h", "7d", "30d", "permanent")


class InvalidDecision(ValueError):
    """A decision that cannot be carried out as sent; no retry changes that."""


# ---------------------------------------------------------------- the ladder

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([1-9][0-9]*)([smhdw])")


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: a warning (no ban), or a ban of `duration_s`
    seconds (0: permanent)."""

    ban: bool
    duration_s: int = 0

    def describe(self) -> str:
        if not self.ban:
            return "warning"
        if self.duration_s == 0:
            return "permanent ban"
        return f"ban {_duration_text(self.duration_s)}"


WARNING = Rung(ban=False)


def _duration_text(seconds: int) -> str:
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_rung(text: str) -> Rung:
    word = text.strip().lower()
    if word in ("warn", "warning"):
        return WARNING
    if word in ("permanent", "perm"):
        return Rung(ban=True, duration_s=0)
    match = _DURATION.fullmatch(word)
    if not match:
        raise ValueError(f"bad ladder step {text!r}: use warn, permanent, or a duration "
                         "such as 1h, 24h, 7d")
    return Rung(ban=True, duration_s=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@dataclass(frozen=True)
class Ladder:
    rungs: tuple[Rung, ...]

    @classmethod
    def parse(cls, steps: Iterable[str]) -> "Ladder":
        """From the setting's steps ("warn", "1h", ..., "permanent")."""
        rungs = tuple(parse_rung(step) for step in steps)
        if not rungs:
            raise ValueError("the ladder needs at least one step")
        for earlier, later in zip(rungs, rungs[1:]):
            if _weight(later) < _weight(earlier):
                raise ValueError(f"the ladder must not go down: {earlier.describe()} "
                                 f"then {later.describe()}")
        return cls(rungs)

    def rung(self, strike_number: int) -> Rung:
        """The penalty of the n-th strike that counts (1 for the first)."""
        if strike_number < 1:
            raise ValueError("strikes are counted from 1")
        return self.rungs[min(strike_number, len(self.rungs)) - 1]


def _weight(rung: Rung) -> float:
    """Orders penalties: a warning, then longer bans, then permanent."""
    if not rung.ban:
        return -1
    return float("inf") if rung.duration_s == 0 else rung.duration_s


def stronger(a: Rung, b: Rung) -> Rung:
    return a if _weight(a) >= _weight(b) else b


# ---------------------------------------------------------------- strikes


@dataclass(frozen=True)
class StrikeView:
    """What the ladder needs to know of a recorded strike."""

    at_ms: int
    voided: bool = False


def strike_counts(strike: StrikeView, now_ms: int, expiry_ms: int) -> bool:
    """A strike counts until it expires (`expiry_ms` after it was given) or
    is voided by an appeal."""
    return not strike.voided and now_ms < strike.at_ms + expiry_ms


def active_strikes(strikes: Iterable[StrikeView], now_ms: int, expiry_ms: int) -> int:
    return sum(1 for strike in strikes if strike_counts(strike, now_ms, expiry_ms))


@dataclass(frozen=True)
class Rules:
    """The configured policy (from BanSettings)."""

    ladder: Ladder
    strike_expiry_ms: int = 90 * DAY_MS
    appeal_window_ms: int = 20 * DAY_MS
    session_ban_max_s: int = 24 * 3600

    @classmethod
    def default(cls) -> "Rules":
        return cls(Ladder.parse(DEFAULT_LADDER))


def next_penalty(active: int, rules: Rules) -> Rung:
    """What the next strike of a device with `active` counting strikes brings."""
    return rules.ladder.rung(active + 1)


# ---------------------------------------------------------------- decisions


@dataclass(frozen=True)
class BanOrder:
    subject: Subject
    scope: int
    category: int
    duration_s: int  # 0: permanent
    enforce_on_address: bool = False


@dataclass(frozen=True)
class StrikeOrder:
    device_token: str
    category: int


@dataclass(frozen=True)
class DecisionPlan:
    decision_id: str
    action: str                    # short action name, for logs, metrics and the audit log
    bans: tuple[BanOrder, ...] = ()
    strike: StrikeOrder | None = None
    penalty: str = ""              # what it came to: "warning", "ban 24h", "permanent ban"
    strike_number: int = 0         # which counting strike this is (0: none given)
    severe: bool = False


ACTION_NAMES = {
    moderation_pb2.ACTION_DISMISS: "dismiss",
    moderation_pb2.ACTION_WARN: "warn",
    moderation_pb2.ACTION_BAN: "ban",
    moderation_pb2.ACTION_ESCALATE: "escalate",
}


def check_decision(decision: events_pb2.DecisionMade) -> str:
    """The decision's action name; raise InvalidDecision for a decision
    without an id, with an unknown action, or one that acts on nobody."""
    if not decision.decision_id:
        raise InvalidDecision("decision without decision_id")
    action = ACTION_NAMES.get(decision.action)
    if action is None:
        raise InvalidDecision(f"decision {decision.decision_id}: unknown action {decision.action}")
    if action == "dismiss":
        return action
    # Every action against a person needs the device token: the gateway gives
    # one to every session, so a decision without it was built wrong.
    if not decision.subject.device_token:
        raise InvalidDecision(f"decision {decision.decision_id} ({action}) has no subject device_token")
    if action == "ban" and decision.duration_s < 0:
        raise InvalidDecision(f"decision {decision.decision_id}: negative duration_s {decision.duration_s}")
    return action


def plan_decision(decision: events_pb2.DecisionMade, active: int = 0,
                  rules: Rules | None = None) -> DecisionPlan:
    """What carrying out `decision` means, for a device that has `active`
    counting strikes before it. Raises InvalidDecision (see check_decision)."""
    rules = rules or Rules.default()
    action = check_decision(decision)
    if action == "dismiss":
        return DecisionPlan(decision.decision_id, action)

    identity = decision.subject
    device = Subject(SubjectKind.DEVICE_TOKEN, identity.device_token)
    addresses = [Subject(kind, value) for kind, value in (
        (SubjectKind.IP_HASH, identity.ip_hash), (SubjectKind.IP_PREFIX_HASH, identity.ip_prefix_hash))
        if value]
    # An unknown category from a newer moderation is kept as sent: dropping
    # the decision would drop the enforcement.
    category = decision.category
    if action == "escalate" and category == common_pb2.CATEGORY_UNSPECIFIED:
        category = common_pb2.CATEGORY_CHILD_SAFETY
    strike = StrikeOrder(identity.device_token, category)
    number = active + 1

    if action == "escalate" or category in SEVERE_CATEGORIES:
        bans = tuple(BanOrder(subject, common_pb2.BAN_SCOPE_ALL, category, 0,
                              enforce_on_address=subject.kind.is_address)
                     for subject in (device, *addresses))
        return DecisionPlan(decision.decision_id, action, bans, strike, "permanent ban", number, severe=True)

    penalty = rules.ladder.rung(number)
    if action == "ban":
        penalty = stronger(Rung(ban=True, duration_s=decision.duration_s), penalty)
    if not penalty.ban:
        return DecisionPlan(decision.decision_id, action, (), strike, penalty.describe(), number)
    bans = tuple(BanOrder(subject, common_pb2.BAN_SCOPE_ALL, category, penalty.duration_s)
                 for subject in (device, *addresses))
    return DecisionPlan(decision.decision_id, action, bans, strike, penalty.describe(), number)
