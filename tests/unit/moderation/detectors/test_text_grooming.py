"""Grooming: cues over the whole conversation, with decay."""
from services.moderation.policy import ActionKind, PolicyConfig

from conftest import ADULT, MINOR


def grooming(verdict) -> float:
    return verdict.risk.by_detector["grooming"]


def test_one_cue_is_never_grooming(chat):
    for line in ["are you home alone?", "dont tell anyone but i failed my test", "you look pretty in your pfp",
                 "what school do you go to", "wanna hang out at the mall saturday"]:
        assert grooming(chat(MINOR).say("a", line)) < 0.5, line


def test_cues_add_up_over_the_conversation_to_the_severe_path(chat):
    conversation = chat(MINOR)
    conversation.say("a", "how old are you")
    conversation.say("b", "14")
    first = conversation.say("a", "you seem really mature for your age")
    second = conversation.say("a", "are you home alone right now?")
    third = conversation.say("a", "dont tell your parents about me, its our secret")
    assert grooming(first) < grooming(second) < grooming(third)
    assert not first.severe and third.severe
    assert "grooming.pattern" in third.action(ActionKind.REQUEST_BAN).rules
    assert third.action(ActionKind.REQUEST_BAN).permanent


def test_the_same_cues_far_apart_decay(chat):
    close, far = chat(MINOR), chat(MINOR)
    close.say("a", "are you home alone?")
    far.say("a", "are you home alone?")
    near_verdict = close.say("a", "can we meet up sometime", after_s=30)
    far_verdict = far.say("a", "can we meet up sometime", after_s=3 * 3600)
    assert grooming(far_verdict) < grooming(near_verdict)
    half_life = PolicyConfig().half_life_s["grooming"]
    assert far.now - far.now + 3 * 3600 > 5 * half_life  # three hours is many half-lives


def test_cues_of_one_speaker_do_not_add_to_the_other(chat):
    conversation = chat(MINOR)
    conversation.say("a", "are you home alone?")
    other = conversation.say("b", "dont tell anyone but my parents are out")
    assert grooming(other) < 0.5


def test_in_the_adults_pool_grooming_counts_toward_a_disclosed_minor_only(chat):
    adults = chat(ADULT)
    adults.say("a", "are you alone? dont tell anyone we talk")
    flirting = adults.say("a", "send me a pic")
    toward_minor = chat(ADULT)
    toward_minor.say("b", "im 14")
    grooming_minor = toward_minor.say("a", "are you alone? dont tell anyone we talk")
    assert grooming(flirting) < 0.5 <= grooming(grooming_minor)
    assert grooming_minor.severe
