"""Sexual content and harassment: rules and the offensive-language model."""
import pytest

from parley.v1 import common_pb2 as c
from services.moderation.policy import ActionKind

from conftest import ADULT, MINOR


def detected(verdict) -> set[str]:
    return set(verdict.detected(0.5))


@pytest.mark.parametrize("text", ["send nudes", "show me your boobs", "wanna sext", "n u d e s?", "lets have s3x",
                                  "take off your shirt for me", "wanna see my d1ck"])
def test_sexual_requests_toward_minors_are_child_safety(chat, text):
    verdict = chat(MINOR).say("a", text)
    assert "sexual" in detected(verdict)
    assert verdict.severe
    assert verdict.action(ActionKind.REQUEST_BAN).category == c.CATEGORY_CHILD_SAFETY


def test_between_adults_the_same_request_is_sexual_content_not_severe(chat):
    verdict = chat(ADULT).say("a", "send nudes")
    assert "sexual" in detected(verdict) and not verdict.severe


@pytest.mark.parametrize("text", ["what is your sex? male or female", "this game sucks so hard", "I'm hot, the AC broke",
                                  "we had a sex ed class today it was so awkward", "that cocktail was amazing"])
def test_sexual_hard_negatives(chat, text):
    assert "sexual" not in detected(chat(ADULT).say("a", text))


@pytest.mark.parametrize("text", ["you are a fucking idiot", "kys", "k y s", "i know where you live",
                                  "i will find you and beat you", "go die in a hole", "retard", "shut the fuck up"])
def test_harassment(chat, text):
    assert "harassment" in detected(chat(ADULT).say("a", text))


@pytest.mark.parametrize("text", ["this fucking game keeps crashing", "holy shit that was close",
                                  "damn you're good at this", "youre killing it!", "I'm so stupid I forgot my keys",
                                  "i could kill for a pizza right now"])
def test_swearing_is_not_harassment(chat, text):
    assert "harassment" not in detected(chat(ADULT).say("a", text))


def test_a_sexual_request_is_not_also_an_insult(chat):
    verdict = chat(ADULT).say("a", "i wanna fuck you")
    assert detected(verdict) == {"sexual"}


def test_repeated_insults_climb_the_ladder(chat):
    conversation = chat(ADULT)
    first = conversation.say("a", "you're an idiot")
    second = conversation.say("a", "ur so stupid")
    third = conversation.say("a", "shut up bitch")
    assert first.risk.by_detector["harassment"] < third.risk.by_detector["harassment"]
    assert first.action(ActionKind.WARN) is not None
    assert first.action(ActionKind.END_CONVERSATION) is None
    # ended once, when the insults added up; never warned twice
    ends = [v for v in (second, third) if v.action(ActionKind.END_CONVERSATION)]
    assert len(ends) == 1
    assert second.action(ActionKind.WARN) is None and third.action(ActionKind.WARN) is None
