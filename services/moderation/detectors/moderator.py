"""The one call the moderation service makes for each chat line:
`TextModerator(config).observe(message) -> Verdict`, or `observe_batch`
for many (the model runs once per batch).

It keeps, within bounds, what a verdict needs beyond the line itself: each
conversation's risk per speaker (with decay), the ages people said, and
which texts went to many conversations. No I/O: the service publishes what
the verdict says (session actions, review items, ban requests) and counts
it in metrics.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from parley.v1 import common_pb2
from services.moderation.detectors.age import AgeDetector
from services.moderation.detectors.base import (CONTACT, DETECTORS, GROOMING, HARASSMENT, SEXUAL, MessageContext,
                                                ObservedMessage, Signal)
from services.moderation.detectors.contact import ContactDetector, find_contacts, mask_spans
from services.moderation.detectors.grooming import GroomingDetector
from services.moderation.detectors.harassment import HarassmentDetector
from services.moderation.detectors.model import OffensiveLanguageModel, shared_model
from services.moderation.detectors.normalize import Views
from services.moderation.detectors.risk import ConversationRisk, age_of
from services.moderation.detectors.sexual import SexualDetector
from services.moderation.detectors.spam import SpamDetector
from services.moderation.detectors.state import BoundedLRU, RepeatedTexts
from services.moderation.policy import Action, ActionKind, PolicyConfig, RiskSnapshot, decide, merge_actions

NO_RISK = RiskSnapshot(total=0.0, by_detector={d: 0.0 for d in DETECTORS}, message={}, categories={}, rules={})
MAX_TEXT_CHARS = 4_000  # the gateway caps lines at 2,000 bytes; anything longer is cut before the rules
MAX_SPEAKERS = 4        # a conversation has two; more is a confused producer, not a reason to grow


@dataclass(frozen=True)
class Verdict:
    """What moderation makes of one line."""
    match_id: str
    session_id: str
    device_token: str
    age_band: int
    signals: tuple[Signal, ...]            # live rules' findings (scored 0: cues and remembered ages)
    shadow_signals: tuple[Signal, ...]     # shadow rules' findings: counted, acting on nothing
    risk: RiskSnapshot                     # the sender's risk in this conversation after this line
    actions: tuple[Action, ...]            # what to do now (each kind at most once a conversation, MASK/HOLD per line)
    shadow_actions: tuple[Action, ...]     # what the shadow rules would have added

    @property
    def severe(self) -> bool:
        return any(a.severe for a in self.actions)

    def action(self, kind: ActionKind) -> Action | None:
        for action in self.actions:
            if action.kind is kind:
                return action
        return None

    def detected(self, threshold: float) -> list[str]:
        """The detectors whose conversation score is at or above `threshold`."""
        return [d for d in DETECTORS if self.risk.by_detector.get(d, 0.0) >= threshold]


class _Speaker:
    __slots__ = ("risk", "whatif", "age", "last_sent_ms", "acted")

    def __init__(self) -> None:
        # made on the speaker's first finding: most people never have one,
        # and a conversation of theirs costs a few hundred bytes
        self.risk: ConversationRisk | None = None
        self.whatif: ConversationRisk | None = None  # with the shadow rules' findings, once there are any
        self.age: int | None = None
        self.last_sent_ms = 0
        self.acted: set[tuple[ActionKind, int, bool]] | None = None


class _Conversation:
    __slots__ = ("speakers", "last_speaker", "last_asked_age")

    def __init__(self) -> None:
        self.speakers: dict[str, _Speaker] = {}
        self.last_speaker = ""        # who sent the latest line
        self.last_asked_age = False   # and whether it asked the other's age

    def partner_age(self, session_id: str) -> int | None:
        ages = [s.age for sid, s in self.speakers.items() if sid != session_id and s.age is not None]
        return min(ages) if ages else None


@dataclass
class ModeratorStats:
    """Counters for the service's metrics; every key is from a bounded set."""
    messages: int = 0
    signals: Counter = field(default_factory=Counter)         # (detector, rule) -> count, live
    shadow_signals: Counter = field(default_factory=Counter)  # (detector, rule) -> count
    actions: Counter = field(default_factory=Counter)         # (kind value, category) -> count
    shadow_actions: Counter = field(default_factory=Counter)  # (kind value, category) -> count
    detected: Counter = field(default_factory=Counter)        # detector -> lines at or above detect_threshold


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class TextModerator:
    """Detectors, conversation risk and policy for text. Not thread-safe:
    one per consumer (it is pure CPU; run replicas for more)."""

    def __init__(self, config: PolicyConfig | None = None, *, model: OffensiveLanguageModel | None = None,
                 clock: Callable[[], int] = _wall_clock_ms) -> None:
        self.config = config or PolicyConfig()
        self.model = model if model is not None else shared_model()
        self.clock = clock
        limits = self.config.limits
        self.conversations: BoundedLRU[str, _Conversation] = BoundedLRU(
            limits.max_conversations, int(limits.conversation_idle_s * 1000))
        self.repeated = RepeatedTexts(limits.max_repeated_texts, int(limits.repeated_text_window_s * 1000))
        self.contact = ContactDetector()
        self.age = AgeDetector()
        self.grooming = GroomingDetector()
        self.sexual = SexualDetector()
        self.harassment = HarassmentDetector()
        self.spam = SpamDetector(self.repeated)
        self.stats = ModeratorStats()

    # ------------------------------------------------------------ API

    def observe(self, message: ObservedMessage) -> Verdict:
        return self.observe_batch([message])[0]

    def observe_batch(self, messages: Sequence[ObservedMessage]) -> list[Verdict]:
        """Verdicts in the order of `messages` (lines of one conversation
        must come in the order they were sent)."""
        views = [Views(m.text[:MAX_TEXT_CHARS]) for m in messages]
        probabilities = self.model.predict_batch([v.squashed.text for v in views])
        now = self.clock()
        return [self._observe(m, v, p, now) for m, v, p in zip(messages, views, probabilities)]

    def forget(self, match_id: str) -> None:
        """Drop a conversation's state (when it is known to have ended)."""
        self.conversations.pop(match_id)

    def memory_entries(self) -> Mapping[str, int]:
        return {"conversations": len(self.conversations), "repeated_texts": len(self.repeated)}

    # ------------------------------------------------------------ one line

    def _observe(self, message: ObservedMessage, views: Views, probability: float, now_ms: int) -> Verdict:
        config = self.config
        conversation = self.conversations.get_or_create(message.match_id, now_ms, _Conversation)
        speaker = conversation.speakers.get(message.session_id)
        if speaker is None:
            speaker = _Speaker()
            if len(conversation.speakers) < MAX_SPEAKERS:
                conversation.speakers[message.session_id] = speaker
        ctx = MessageContext(
            message=message, views=views, offensive_probability=probability,
            partner_age=conversation.partner_age(message.session_id), own_age=speaker.age,
            previous_sent_at_ms=speaker.last_sent_ms, contacts=find_contacts(views),
            asked_age=conversation.last_asked_age and conversation.last_speaker != message.session_id,
            rescore=self.model.predict)

        found: list[Signal] = []
        for detector in (self.contact, self.age, self.grooming, self.sexual, self.harassment):
            found.extend(detector.detect(ctx))
        found.extend(self.spam.detect(ctx, now_ms))
        found = _explain_away(found)

        live: list[Signal] = []
        shadow: list[Signal] = []
        for signal in found:
            if config.is_disabled(signal.rule):
                continue
            (shadow if config.is_shadow(signal.rule) else live).append(signal)

        conversation.last_speaker = message.session_id
        conversation.last_asked_age = any(s.rule == "age.probe" for s in found)
        age = age_of(live)
        if age is not None:
            speaker.age = age if speaker.age is None else min(speaker.age, age)
        sent_at = message.sent_at_ms
        if sent_at > speaker.last_sent_ms:
            speaker.last_sent_ms = sent_at
        toward_minor = ctx.toward_minor

        if not live and not shadow and speaker.whatif is None and speaker.risk is None:
            # the common case: nothing found, nothing before (no decay to
            # compute, no policy to ask)
            verdict = Verdict(match_id=message.match_id, session_id=message.session_id,
                              device_token=message.device_token, age_band=message.age_band, signals=(),
                              shadow_signals=(), risk=NO_RISK, actions=(), shadow_actions=())
            self.stats.messages += 1
            return verdict
        if speaker.risk is None:
            speaker.risk = ConversationRisk()
        line = speaker.risk.add(live, sent_at, config)
        risk = speaker.risk.snapshot(sent_at, line, toward_minor, config)
        pattern = self._grooming_pattern(live, risk, toward_minor, message.age_band)
        if pattern and config.is_disabled("grooming.pattern"):
            pattern = []
        elif pattern and config.is_shadow("grooming.pattern"):
            shadow, pattern = shadow + pattern, []
        signals = live + pattern
        actions = self._actions(message, signals, risk)

        shadow_actions: list[Action] = []
        if shadow or speaker.whatif is not None:
            if speaker.whatif is None:
                # the conversation so far, as it would have been with the shadow rules live
                speaker.whatif = speaker.risk.copy()
                whatif_line = speaker.whatif.add(shadow, sent_at, config)
            else:
                whatif_line = speaker.whatif.add(live + shadow, sent_at, config)
            whatif = speaker.whatif.snapshot(sent_at, whatif_line, toward_minor, config)
            shadow_signals = shadow + self._grooming_pattern(shadow, whatif, toward_minor, message.age_band)
            would = self._actions(message, live + shadow_signals, whatif)
            live_kinds = {(a.kind, a.category) for a in actions}
            shadow_actions = [a for a in would if (a.kind, a.category) not in live_kinds]
            shadow = shadow_signals

        actions = self._once(speaker, actions)
        verdict = Verdict(match_id=message.match_id, session_id=message.session_id,
                          device_token=message.device_token, age_band=message.age_band,
                          signals=tuple(signals), shadow_signals=tuple(shadow), risk=risk,
                          actions=tuple(actions), shadow_actions=tuple(shadow_actions))
        self._count(verdict)
        return verdict

    def _grooming_pattern(self, signals: list[Signal], risk: RiskSnapshot, toward_minor: bool,
                          age_band: int) -> list[Signal]:
        """The conversation's grooming score as a signal, on a line that added a cue."""
        score = risk.by_detector.get(GROOMING, 0.0)
        if score <= 0.0 or not any(s.cue for s in signals):
            return []
        severe = toward_minor and score >= self.config.pool(age_band).grooming_severe
        # a severe grooming score is child safety at the severe threshold's strength
        return [Signal(GROOMING, "grooming.pattern", common_pb2.CATEGORY_CHILD_SAFETY,
                       max(score, self.config.severe_threshold) if severe else score, severe=severe)]

    def _actions(self, message: ObservedMessage, signals: list[Signal], risk: RiskSnapshot) -> list[Action]:
        config = self.config
        if risk.total <= 0.0 and not any(s.severe or s.detector == CONTACT for s in signals):
            return []
        severe_rules = [s.rule for s in signals if s.severe and s.score >= config.severe_threshold]
        maskable = [s for s in signals if s.detector == CONTACT and s.span is not None and s.rule in _MASKABLE]
        masked = mask_spans(message.text, [s.span for s in maskable]) if maskable else None
        return decide(config, message.age_band, risk, severe_rules, masked, [s.rule for s in maskable])

    @staticmethod
    def _once(speaker: _Speaker, actions: list[Action]) -> list[Action]:
        """MASK and HOLD apply to each line; the others once per conversation
        and category (a user is warned once, not on every line after); a
        severe action still goes out after a milder one of its kind."""
        kept = []
        if not actions:
            return actions
        if speaker.acted is None:
            speaker.acted = set()
        for action in actions:
            if action.kind in (ActionKind.MASK, ActionKind.HOLD):
                kept.append(action)
                continue
            key = (action.kind, action.category, action.severe)
            if key in speaker.acted:
                continue
            speaker.acted.add(key)
            kept.append(action)
        return merge_actions(kept)

    def _count(self, verdict: Verdict) -> None:
        stats = self.stats
        stats.messages += 1
        for signal in verdict.signals:
            if signal.score > 0:
                stats.signals[(signal.detector, signal.rule)] += 1
        for signal in verdict.shadow_signals:
            stats.shadow_signals[(signal.detector, signal.rule)] += 1
        for action in verdict.actions:
            stats.actions[(action.kind.value, action.category)] += 1
        for action in verdict.shadow_actions:
            stats.shadow_actions[(action.kind.value, action.category)] += 1
        for detector in verdict.detected(self.config.detect_threshold):
            stats.detected[detector] += 1


_MASKABLE = frozenset({"contact.phone", "contact.email", "contact.handle", "contact.link"})


def _explain_away(signals: list[Signal]) -> list[Signal]:
    """The model's offensiveness is explained by a sexual request when no
    harassment rule fired: "i want to fuck you" is sexual, not an insult."""
    sexual_rule = any(s.detector == SEXUAL and s.rule != "sexual.explicit" for s in signals)
    harassment_rule = any(s.detector == HARASSMENT and s.rule != "harassment.model" for s in signals)
    if sexual_rule and not harassment_rule:
        return [s for s in signals if s.rule != "harassment.model"]
    return signals
