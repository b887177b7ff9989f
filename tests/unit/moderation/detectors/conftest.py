"""Helpers for the text detectors' tests: a moderator with a clock the test
moves, and a stand-in for the model where its figure does not matter."""
from __future__ import annotations

import itertools

import pytest

from parley.v1 import common_pb2 as c
from services.moderation.detectors import ObservedMessage
from services.moderation.detectors.model import shared_model
from services.moderation.detectors.moderator import TextModerator
from services.moderation.policy import PolicyConfig

MINOR = c.AGE_BAND_MINOR
ADULT = c.AGE_BAND_ADULT
T0 = 1_800_000_000_000


class FixedModel:
    """P(offensive) = a constant: for tests of rules and policy, not of the model."""

    def __init__(self, p: float = 0.05) -> None:
        self.p = p
        self.version = "fixed"

    def predict(self, text: str) -> float:
        return self.p

    def predict_batch(self, texts):
        return [self.p for _ in texts]


@pytest.fixture(scope="session")
def model():
    return shared_model()


class Chat:
    """A moderator and a conversation to drive through it."""

    _ids = itertools.count()

    def __init__(self, moderator: TextModerator, band: int, match_id: str | None = None) -> None:
        self.moderator = moderator
        self.band = band
        self.match_id = match_id or f"m{next(self._ids)}"
        self.now = T0

    def say(self, speaker: str, text: str, after_s: float = 5.0, *, typing_ms: int | None = None,
            match_id: str | None = None, device: str | None = None):
        self.now += int(after_s * 1000)
        match = match_id or self.match_id
        message = ObservedMessage(
            match_id=match, session_id=f"{match}/{speaker}", device_token=device or f"device-{speaker}",
            mode=c.MODE_TEXT, age_band=self.band, text=text, sent_at_ms=self.now,
            typing_started_at_ms=self.now - typing_ms if typing_ms is not None else 0)
        return self.moderator.observe(message)


@pytest.fixture
def chat(model):
    """chat(band, config=None) -> Chat with the real model and a test clock."""

    def make(band: int = MINOR, config: PolicyConfig | None = None, model_override=None) -> Chat:
        holder: dict[str, Chat] = {}
        moderator = TextModerator(config or PolicyConfig(), model=model_override or model,
                                  clock=lambda: holder["chat"].now)
        holder["chat"] = Chat(moderator, band)
        return holder["chat"]

    return make
