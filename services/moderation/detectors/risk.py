"""A speaker's risk over a whole conversation, with decay.

Per detector, a line's findings combine by noisy-or (1 - prod(1 - score)),
and lines add up over the conversation the same way, but only findings at
or above `accumulate_floor`: two insults make more than one, a hundred mild
swear words make no more than one. Scores fade with a half-life per detector,
so what was said long ago weighs less.

Grooming is scored from cues (`grooming.py` and a few other rules' `cue`),
per kind of cue: each kind keeps its strongest decayed weight, core kinds
combine by noisy-or, amplifying kinds add at most `grooming_amplifier_cap`,
and three kinds of core cue together (or secrecy with a cue of access:
alone, meeting, photos, gifts...) shrink what is left to 1 by
`grooming_pattern_factor`. Toward someone not known to be a minor (the
adults' pool, no age said) the result is scaled by
`grooming_adult_pool_factor`.

The total is the noisy-or of every detector's score times its weight.
"""
from __future__ import annotations

from services.moderation.detectors.base import AGE, DETECTOR_CATEGORY, DETECTORS, GROOMING, Signal
from services.moderation.policy import PolicyConfig, RiskSnapshot

_MAX_RULES = 8  # rule names remembered per detector, for the actions' tags


def _decay(value: float, since_ms: int, now_ms: int, half_life_s: float) -> float:
    if value <= 0.0 or now_ms <= since_ms:
        return value
    return value * 0.5 ** ((now_ms - since_ms) / (half_life_s * 1000.0))


class ConversationRisk:
    """One speaker's accumulated risk in one conversation. Small: a few
    floats per detector and per cue kind seen."""

    __slots__ = ("scores", "cues", "categories", "rules")

    def __init__(self) -> None:
        self.scores: dict[str, tuple[float, int]] = {}     # detector -> (score, at_ms)
        self.cues: dict[str, tuple[float, int]] = {}       # cue kind -> (weight, at_ms)
        self.categories: dict[str, tuple[int, float]] = {}  # detector -> (category, the score that set it)
        self.rules: dict[str, list[str]] = {}

    @property
    def empty(self) -> bool:
        return not self.scores and not self.cues

    def copy(self) -> "ConversationRisk":
        other = ConversationRisk()
        other.scores = dict(self.scores)
        other.cues = dict(self.cues)
        other.categories = dict(self.categories)
        other.rules = {k: list(v) for k, v in self.rules.items()}
        return other

    def add(self, signals: list[Signal], now_ms: int, config: PolicyConfig) -> dict[str, float]:
        """Add one line's signals; returns the line's own score per detector."""
        line: dict[str, float] = {}
        # a sexual request is also a photo request or a sexual question: one
        # finding, not two cues
        sexual_request = any(s.cue == "sexual_request" for s in signals)
        for signal in signals:
            if signal.cue is not None and not (sexual_request and signal.cue in ("photo", "sexual_probe")):
                weight = config.grooming_cues.get(signal.cue, 0.0)
                if weight > 0:
                    old = self.cues.get(signal.cue)
                    value = _decay(old[0], old[1], now_ms, config.half_life_s[GROOMING]) if old else 0.0
                    self.cues[signal.cue] = (max(value, weight), now_ms)
                    self._remember_rule(GROOMING, signal.rule)
            if signal.score <= 0.0 or signal.detector == GROOMING:
                continue
            detector = signal.detector
            line[detector] = 1.0 - (1.0 - line.get(detector, 0.0)) * (1.0 - signal.score)
            category, at = self.categories.get(detector, (0, -1.0))
            if signal.score >= at or signal.severe:
                self.categories[detector] = (signal.category, signal.score)
            self._remember_rule(detector, signal.rule)
        floor = config.accumulate_floor
        for detector, score in line.items():
            old = self.scores.get(detector)
            value = _decay(old[0], old[1], now_ms, config.half_life_s[detector]) if old else 0.0
            if score >= floor:
                value = 1.0 - (1.0 - value) * (1.0 - score)
            else:
                value = max(value, score)
            self.scores[detector] = (value, now_ms)
        return line

    def _remember_rule(self, detector: str, rule: str) -> None:
        rules = self.rules.setdefault(detector, [])
        if rule not in rules:
            rules.append(rule)
            if len(rules) > _MAX_RULES:
                del rules[0]

    def grooming(self, now_ms: int, toward_minor: bool, config: PolicyConfig) -> float:
        if not self.cues:
            return 0.0
        half_life = config.half_life_s[GROOMING]
        core_left = 1.0
        amp_left = 1.0
        core_kinds = 0
        for cue, (weight, at) in self.cues.items():
            value = _decay(weight, at, now_ms, half_life)
            if cue in config.grooming_core:
                core_left *= 1.0 - value
                core_kinds += 1
            else:
                amp_left *= 1.0 - value
        amplifier = min(1.0 - amp_left, config.grooming_amplifier_cap)
        left = core_left * (1.0 - amplifier)
        if core_kinds >= 3 or ("secrecy" in self.cues and any(c in self.cues for c in config.grooming_secrecy_pairs)):
            left *= config.grooming_pattern_factor
        score = 1.0 - left
        if not toward_minor:
            score *= config.grooming_adult_pool_factor
        return score

    def snapshot(self, now_ms: int, line: dict[str, float], toward_minor: bool, config: PolicyConfig) -> RiskSnapshot:
        by_detector = {}
        for detector in DETECTORS:
            if detector == GROOMING:
                by_detector[detector] = self.grooming(now_ms, toward_minor, config)
                continue
            entry = self.scores.get(detector)
            by_detector[detector] = _decay(entry[0], entry[1], now_ms, config.half_life_s[detector]) if entry else 0.0
        categories = {d: c for d, (c, _s) in self.categories.items()}
        if by_detector[GROOMING] > 0:
            categories[GROOMING] = DETECTOR_CATEGORY[GROOMING]
        left = 1.0
        for detector, score in by_detector.items():
            left *= 1.0 - config.detector_weights.get(detector, 0.0) * score
        line = dict(line)
        return RiskSnapshot(total=1.0 - left, by_detector=by_detector, message=line, categories=categories,
                            rules={d: tuple(r) for d, r in self.rules.items()})


def age_of(signals: list[Signal]) -> int | None:
    ages = [s.age for s in signals if s.detector == AGE and s.age is not None]
    return min(ages) if ages else None
