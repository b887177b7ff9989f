"""Ages people say, against the pool they joined."""
import pytest

from parley.v1 import common_pb2 as c
from services.moderation.policy import ActionKind

from conftest import ADULT, MINOR


def age_rules(verdict) -> set[str]:
    return {s.rule for s in verdict.signals if s.detector == "age" and s.score > 0}


@pytest.mark.parametrize("text", ["im 14", "15 f", "m15", "i'm only 13 lol", "16/m/texas", "im fifteen",
                                  "im in 8th grade", "i just turned 16 yesterday", "14 m here wbu",
                                  "i'll be 15 next month", "im a freshman in high school"])
def test_a_minor_in_the_adults_pool_is_underage(chat, text):
    verdict = chat(ADULT).say("a", text)
    assert age_rules(verdict) == {"age.minor_in_adult_pool"}
    kinds = {a.kind for a in verdict.actions}
    # protect the minor: end and escalate, but no ban and nothing severe
    assert {ActionKind.END_CONVERSATION, ActionKind.ESCALATE} <= kinds
    assert ActionKind.REQUEST_BAN not in kinds and not verdict.severe
    assert verdict.action(ActionKind.END_CONVERSATION).category == c.CATEGORY_UNDERAGE


@pytest.mark.parametrize("text", ["im 25", "m 32 here", "i'm a 40 year old guy", "28m", "hi im twenty six",
                                  "im in my 30s", "i am 45", "im a grown man", "im nineteen no wait im twenty one"])
def test_an_adult_in_the_minors_pool_is_severe(chat, text):
    verdict = chat(MINOR).say("a", text)
    assert verdict.severe
    ban = verdict.action(ActionKind.REQUEST_BAN)
    assert ban.permanent and ban.category == c.CATEGORY_CHILD_SAFETY
    assert verdict.action(ActionKind.ESCALATE).priority >= verdict.action(ActionKind.ESCALATE).priority


def test_eighteen_in_the_minors_pool_ends_and_escalates_without_the_severe_path(chat):
    verdict = chat(MINOR).say("a", "im 18")
    assert not verdict.severe
    assert {ActionKind.END_CONVERSATION, ActionKind.ESCALATE} <= {a.kind for a in verdict.actions}


@pytest.mark.parametrize("band, text", [
    (ADULT, "im 14 hours into this game"), (ADULT, "my son is 14 and he loves minecraft"),
    (ADULT, "when i was 15 i had the worst haircut"), (ADULT, "i'm 30 minutes away from home"),
    (ADULT, "my daughter turns 13 next week"), (ADULT, "im 100% sure"), (ADULT, "im 25"),
    (MINOR, "im 15"), (MINOR, "my brother is 22"), (MINOR, "im 5'4 is that short"),
    (MINOR, "im 17 turning 18 in june"), (MINOR, "i have 14 cats"), (ADULT, "im 14 days sober"),
])
def test_hard_negatives(chat, band, text):
    assert not age_rules(chat(band).say("a", text))


def test_under_13_is_underage_in_any_pool(chat):
    assert age_rules(chat(MINOR).say("a", "im 12")) == {"age.under_13"}
    assert age_rules(chat(MINOR).say("a", "im 9 years old")) == {"age.under_13"}


def test_a_bare_number_answering_an_age_question_is_an_age(chat):
    conversation = chat(ADULT)
    conversation.say("a", "asl?")
    assert age_rules(conversation.say("b", "13")) == {"age.minor_in_adult_pool"}
    # without the question, a bare number is nothing
    assert not age_rules(chat(ADULT).say("b", "13"))
