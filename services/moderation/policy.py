"""What moderation does about what the text detectors find: thresholds and
actions per pool (stricter where minors are), severe paths, shadow rules.

Pure: `decide` turns a speaker's conversation risk into actions; the
thresholds are a `PolicyConfig` (defaults here, overrides from a JSON, TOML
or YAML file through `load_policy`).

Actions, each tagged with the rules that caused it:

- MASK: the line with its contact details hidden (minors' pools: contact
  details never reach the other side; the gateway masks inline with
  `detectors.mask_contacts`, this is the same result for the record).
- HOLD: the line should not be relayed (where the relay waits for a verdict).
- WARN: tell the sender which rule they are breaking.
- END_CONVERSATION: end the sender's conversation (they may join again).
- ESCALATE: open a review item, with a priority on `review.priority`'s scale.
- REQUEST_BAN: ask for a ban in a category, permanent or by the ban
  service's ladder of strikes.

Severe paths (text): child safety at or above `severe_threshold` (an adult
in a minors' pool, sexual requests toward a minor, grooming of a minor) ends
the conversation at once, escalates at the top priority and asks for a
permanent ban. A minor in the adults' pool (category underage) ends the
conversation and escalates to protect them, with no ban: the person at
risk is the one who would be banned, and a human decides.

Shadow mode: a rule in `shadow_rules` is scored and counted
(`Verdict.shadow_signals`, `Verdict.shadow_actions`: what it would have
done) but acts on nothing, so a new rule can be measured before it acts.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

from parley.v1 import common_pb2
from services.moderation import review
from services.moderation.detectors.base import (AGE, CONTACT, DETECTOR_CATEGORY, DETECTORS, GROOMING, HARASSMENT,
                                                SEXUAL, SPAM)


class ActionKind(enum.Enum):
    MASK = "mask"
    HOLD = "hold"
    WARN = "warn"
    END_CONVERSATION = "end_conversation"
    ESCALATE = "escalate"
    REQUEST_BAN = "request_ban"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    category: int                       # parley.v1.Category
    rules: tuple[str, ...]              # the rules that caused it
    severe: bool = False
    masked_text: str | None = None      # MASK
    priority: int = 0                   # ESCALATE: review.priority's scale, higher first (an Escalation's priority_floor)
    permanent: bool = False             # REQUEST_BAN: permanent, else the ban service's ladder
    notice: str = ""                    # WARN, END_CONVERSATION: what the user is told
    risk_score: float = 0.0             # the score behind it, 0..1 (an Escalation's risk_score)

    @property
    def detector(self) -> str:
        """"text.<detector>" of the first rule: an Escalation's `detector`."""
        return "text." + (self.rules[0].split(".", 1)[0] if self.rules else "risk")


@dataclass(frozen=True)
class Ladder:
    """Thresholds on a detector's conversation score in [0, 1] (HOLD: on this
    line's own score). None: never."""
    warn: float | None = None
    hold: float | None = None
    end: float | None = None
    escalate: float | None = None
    ban: float | None = None


@dataclass(frozen=True)
class PoolPolicy:
    mask_contacts: bool
    contact: Ladder
    age: Ladder
    grooming: Ladder
    sexual: Ladder
    harassment: Ladder
    spam: Ladder
    total: Ladder
    # grooming at or above this, toward a minor: child safety, severe
    grooming_severe: float

    def ladder(self, detector: str) -> Ladder:
        return getattr(self, detector)

    @cached_property
    def floors(self) -> dict[str, float]:
        """The lowest threshold of each ladder ("total" too): below all of
        them, a line needs no look at the policy."""
        out = {}
        for name in (*DETECTORS, "total"):
            ladder = getattr(self, name)
            values = [v for v in (ladder.warn, ladder.hold, ladder.end, ladder.escalate, ladder.ban) if v is not None]
            out[name] = min(values) if values else 2.0
        return out


MINORS_POOL = PoolPolicy(
    mask_contacts=True,
    contact=Ladder(warn=0.5, end=0.97),
    age=Ladder(end=0.6, escalate=0.6),
    grooming=Ladder(warn=0.4, end=0.6, escalate=0.6),
    sexual=Ladder(warn=0.4, hold=0.6, end=0.7, escalate=0.8, ban=0.95),
    harassment=Ladder(warn=0.5, hold=0.8, end=0.8, escalate=0.95, ban=0.99),
    spam=Ladder(hold=0.8, end=0.8, ban=0.95),
    total=Ladder(end=0.85, escalate=0.9),
    grooming_severe=0.7,
)
ADULTS_POOL = PoolPolicy(
    mask_contacts=False,
    contact=Ladder(),  # scored and counted: adults may swap handles
    age=Ladder(end=0.6, escalate=0.6),
    grooming=Ladder(warn=0.7, end=0.85, escalate=0.9),
    sexual=Ladder(warn=0.7, end=0.9, escalate=0.97),
    harassment=Ladder(warn=0.6, hold=0.9, end=0.9, escalate=0.97, ban=0.99),
    spam=Ladder(end=0.85, ban=0.95),
    total=Ladder(end=0.95, escalate=0.98),
    grooming_severe=0.7,
)

DEFAULT_GROOMING_CUES: dict[str, float] = {
    # core: these make a conversation grooming
    # (no single kind reaches 0.5: one cue is never grooming by itself)
    "alone": 0.35, "secrecy": 0.4, "isolation": 0.4, "gifts": 0.4, "meet": 0.35, "sexual_probe": 0.45,
    "age_dismissal": 0.45, "photo": 0.3, "maturity": 0.35,
    # amplifying: never act alone (other detectors' findings among them: an
    # adult's age in a minors' pool, a sexual request, a move to another app)
    "adult": 0.35, "sexual_request": 0.4, "flattery": 0.15, "age_probe": 0.1, "youth_probe": 0.15,
    "personal_info": 0.15, "relationship": 0.15, "off_platform": 0.25, "sexual_talk": 0.2,
}
DEFAULT_CORE_CUES = frozenset({"alone", "secrecy", "isolation", "gifts", "meet", "sexual_probe", "age_dismissal",
                               "photo", "maturity"})
# secrecy together with one of these is the pattern too: "are you alone? dont tell anyone"
DEFAULT_SECRECY_PAIRS = frozenset({"alone", "meet", "photo", "gifts", "sexual_probe", "isolation", "sexual_request"})

NOTICES: dict[int, str] = {
    common_pb2.CATEGORY_CONTACT_SOLICITATION: "Sharing contact details or moving strangers to other apps is not allowed here.",
    common_pb2.CATEGORY_SEXUAL_CONTENT: "Sexual messages are not allowed here.",
    common_pb2.CATEGORY_HARASSMENT: "Abuse, threats and insults are not allowed here.",
    common_pb2.CATEGORY_SPAM: "Links, ads and automated messages are not allowed here.",
    common_pb2.CATEGORY_UNDERAGE: "This conversation was ended: this part of Parley is not for your age.",
    common_pb2.CATEGORY_CHILD_SAFETY: "This conversation was ended for the safety of a young person.",
}


@dataclass(frozen=True)
class Limits:
    """How much the detectors remember (bounded memory)."""
    max_conversations: int = 100_000
    conversation_idle_s: float = 1800.0
    max_repeated_texts: int = 200_000
    repeated_text_window_s: float = 3600.0


@dataclass(frozen=True)
class PolicyConfig:
    minor: PoolPolicy = MINORS_POOL
    adult: PoolPolicy = ADULTS_POOL
    # a severe signal at or above this takes the severe path
    severe_threshold: float = 0.8
    # a detector "detects" at or above this (metrics and the evaluation set)
    detect_threshold: float = 0.5
    # rules scored and counted but acting on nothing; "spam.*" names a detector's rules, "*" all
    shadow_rules: frozenset[str] = frozenset()
    # rules not run at all
    disabled_rules: frozenset[str] = frozenset()
    # a detector's conversation score halves after this many seconds without new findings
    half_life_s: Mapping[str, float] = field(default_factory=lambda: {
        CONTACT: 600.0, AGE: 3600.0, GROOMING: 1200.0, SEXUAL: 600.0, HARASSMENT: 600.0, SPAM: 600.0})
    # findings at or above this add up over a conversation (noisy-or); below, only the highest counts
    accumulate_floor: float = 0.4
    grooming_cues: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_GROOMING_CUES))
    grooming_core: frozenset[str] = DEFAULT_CORE_CUES
    # amplifying cues together count at most this much
    grooming_amplifier_cap: float = 0.35
    # three or more kinds of core cue, or secrecy with one of `grooming_secrecy_pairs`:
    # what is left to 1 shrinks by this factor
    grooming_pattern_factor: float = 0.7
    grooming_secrecy_pairs: frozenset[str] = DEFAULT_SECRECY_PAIRS
    # in the adults' pool, toward someone who has not said they are a minor
    grooming_adult_pool_factor: float = 0.5
    # each detector's weight in the conversation's total risk
    detector_weights: Mapping[str, float] = field(default_factory=lambda: {
        CONTACT: 0.5, AGE: 1.0, GROOMING: 1.0, SEXUAL: 0.8, HARASSMENT: 0.7, SPAM: 0.6})
    limits: Limits = Limits()

    def pool(self, age_band: int) -> PoolPolicy:
        """An unknown band gets the minors' pool: the stricter one."""
        return self.adult if age_band == common_pb2.AGE_BAND_ADULT else self.minor

    def is_shadow(self, rule: str) -> bool:
        return _named(rule, self.shadow_rules)

    def is_disabled(self, rule: str) -> bool:
        return _named(rule, self.disabled_rules)


def _named(rule: str, names: frozenset[str]) -> bool:
    if not names:
        return False
    return rule in names or "*" in names or f"{rule.split('.', 1)[0]}.*" in names


# ---------------------------------------------------------------- loading


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names what is wrong."""


def load_policy(path: str | Path) -> PolicyConfig:
    """A PolicyConfig from a file (.json, .toml, .yaml or .yml): the defaults
    with what the file sets. Unknown keys and bad values are errors, so a
    typo fails at start instead of silently keeping a default.

    ```toml
    severe_threshold = 0.8
    shadow_rules = ["spam.typing_speed"]
    [minor.sexual]
    warn = 0.3
    [adult]
    mask_contacts = false
    ```
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(raw)
        elif suffix == ".toml":
            data = tomllib.loads(raw.decode())
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise PolicyError("a YAML policy needs PyYAML installed; use JSON or TOML") from None
            data = yaml.safe_load(raw) or {}
        else:
            raise PolicyError(f"policy file {path}: use .json, .toml, .yaml or .yml")
    except (ValueError, UnicodeDecodeError) as exc:
        raise PolicyError(f"policy file {path} does not parse: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        if type(exc).__module__.startswith("yaml"):
            raise PolicyError(f"policy file {path} does not parse: {exc}") from None
        raise
    if not isinstance(data, dict):
        raise PolicyError(f"policy file {path}: the top level must be a table/object")
    return policy_from_dict(data)


def policy_from_dict(data: Mapping[str, Any]) -> PolicyConfig:
    return _merge(PolicyConfig(), data, "policy")


def _merge(default: Any, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise PolicyError(f"{where}: expected a table/object")
    fields = {f.name: f for f in dataclasses.fields(default)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise PolicyError(f"{where}: unknown setting(s) {unknown}; known: {sorted(fields)}")
    changes = {}
    for name, value in data.items():
        current = getattr(default, name)
        here = f"{where}.{name}"
        if dataclasses.is_dataclass(current):
            changes[name] = _merge(current, value, here)
        elif isinstance(current, frozenset):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PolicyError(f"{here}: expected a list of names")
            changes[name] = frozenset(value)
        elif isinstance(current, Mapping):
            if not isinstance(value, Mapping):
                raise PolicyError(f"{here}: expected a table/object")
            merged = dict(current)
            for key, number in value.items():
                if name != "grooming_cues" and key not in current:
                    raise PolicyError(f"{here}: unknown key {key!r}; known: {sorted(current)}")
                merged[key] = _number(number, f"{here}.{key}", name == "half_life_s")
            changes[name] = merged
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise PolicyError(f"{here}: expected true or false")
            changes[name] = value
        elif isinstance(current, int) and not isinstance(current, bool) and name.startswith("max_"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PolicyError(f"{here}: expected a whole number >= 1")
            changes[name] = value
        elif current is None or isinstance(current, (int, float)):
            if value is None:
                changes[name] = None
            else:
                changes[name] = _number(value, here, name.endswith("_s"))
        else:
            raise PolicyError(f"{here}: cannot be set from a file")
    return dataclasses.replace(default, **changes)


def _number(value: Any, where: str, unbounded: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(f"{where}: expected a number")
    if unbounded:
        if value <= 0:
            raise PolicyError(f"{where}: expected a number above 0")
    elif not 0.0 <= value <= 1.0:
        raise PolicyError(f"{where}: expected a number from 0 to 1")
    return float(value)


# ---------------------------------------------------------------- deciding


@dataclass(frozen=True)
class RiskSnapshot:
    """One speaker's risk in one conversation, right after a line."""
    total: float
    by_detector: Mapping[str, float]     # conversation score per detector
    message: Mapping[str, float]         # this line's own score per detector
    categories: Mapping[str, int]        # the category each detector's score is about
    rules: Mapping[str, tuple[str, ...]]  # the rules behind each detector's score


def decide(config: PolicyConfig, age_band: int, risk: RiskSnapshot, severe_rules: Iterable[str] = (),
           masked_text: str | None = None, mask_rules: Iterable[str] = ()) -> list[Action]:
    """The actions for one line, one per kind at most."""
    pool = config.pool(age_band)
    actions: list[Action] = []
    severe_rules = tuple(dict.fromkeys(severe_rules))
    floors = pool.floors
    if (not severe_rules and (masked_text is None or not pool.mask_contacts) and risk.total < floors["total"]
            and all(risk.by_detector.get(d, 0.0) < floors[d] and risk.message.get(d, 0.0) < floors[d]
                    for d in DETECTORS)):
        return actions
    if severe_rules:
        child = common_pb2.CATEGORY_CHILD_SAFETY
        notice = NOTICES[child]
        actions += [Action(ActionKind.HOLD, child, severe_rules, severe=True, risk_score=1.0),
                    Action(ActionKind.END_CONVERSATION, child, severe_rules, severe=True, notice=notice, risk_score=1.0),
                    Action(ActionKind.ESCALATE, child, severe_rules, severe=True, priority=TOP_PRIORITY, risk_score=1.0),
                    Action(ActionKind.REQUEST_BAN, child, severe_rules, severe=True, permanent=True, risk_score=1.0)]
    if masked_text is not None and pool.mask_contacts:
        actions.append(Action(ActionKind.MASK, common_pb2.CATEGORY_CONTACT_SOLICITATION, tuple(mask_rules),
                              masked_text=masked_text))

    def ladder_actions(ladder: Ladder, score: float, line_score: float, category: int, rules: tuple[str, ...]) -> None:
        notice = NOTICES.get(category, "")
        score = round(score, 4)
        if ladder.hold is not None and line_score >= ladder.hold:
            actions.append(Action(ActionKind.HOLD, category, rules, risk_score=round(line_score, 4)))
        if ladder.warn is not None and score >= ladder.warn:
            actions.append(Action(ActionKind.WARN, category, rules, notice=notice, risk_score=score))
        if ladder.end is not None and score >= ladder.end:
            actions.append(Action(ActionKind.END_CONVERSATION, category, rules, notice=notice, risk_score=score))
        if ladder.escalate is not None and score >= ladder.escalate:
            actions.append(Action(ActionKind.ESCALATE, category, rules, risk_score=score,
                                  priority=review.priority(category, risk_score=score, evidence=len(rules))))
        if ladder.ban is not None and score >= ladder.ban:
            actions.append(Action(ActionKind.REQUEST_BAN, category, rules, risk_score=score))

    for detector in DETECTORS:
        score = risk.by_detector.get(detector, 0.0)
        line = risk.message.get(detector, 0.0)
        if score <= 0.0 and line <= 0.0:
            continue
        ladder_actions(pool.ladder(detector), score, line,
                       risk.categories.get(detector, DETECTOR_CATEGORY[detector]), risk.rules.get(detector, ()))
    if risk.total > 0:
        weights = config.detector_weights
        top_detector = max(DETECTORS, key=lambda d: weights.get(d, 0.0) * risk.by_detector.get(d, 0.0))
        ladder_actions(pool.total, risk.total, 0.0,
                       risk.categories.get(top_detector, DETECTOR_CATEGORY[top_detector]),
                       tuple(r for d in DETECTORS for r in risk.rules.get(d, ()) if risk.by_detector.get(d, 0) > 0.2))
    return merge_actions(actions)


def merge_actions(actions: Iterable[Action]) -> list[Action]:
    """One action per kind: the rules of all, the most urgent category,
    severe if any was, the highest priority, permanent if any was."""
    actions = list(actions)
    if len(actions) <= 1:
        return actions
    merged: dict[ActionKind, Action] = {}
    for action in actions:
        have = merged.get(action.kind)
        if have is None:
            merged[action.kind] = action
            continue
        first = have if _rank(have) >= _rank(action) else action
        merged[action.kind] = dataclasses.replace(
            first,
            rules=tuple(dict.fromkeys(have.rules + action.rules)),
            severe=have.severe or action.severe,
            priority=max(have.priority, action.priority),
            permanent=have.permanent or action.permanent,
            risk_score=max(have.risk_score, action.risk_score),
            masked_text=have.masked_text if have.masked_text is not None else action.masked_text)
    return sorted(merged.values(), key=lambda a: _ORDER[a.kind])


_ORDER = {kind: i for i, kind in enumerate(ActionKind)}


def _rank(action: Action) -> tuple[int, int]:
    return (1 if action.severe else 0, review.CATEGORY_RANK.get(action.category, review.LOWEST_RANK))


# The highest priority review.priority gives: the severe path's escalations.
TOP_PRIORITY = review.priority(common_pb2.CATEGORY_CHILD_SAFETY, risk_score=1.0,
                               reporter_weight=review.FULL_REPORTER_WEIGHT, evidence=review.MAX_EVIDENCE_BONUS)
