"""Spam and bots: links, promotions, the same text in many conversations, typing speed."""
from conftest import ADULT


def spam(verdict) -> float:
    return verdict.risk.by_detector["spam"]


def rules(verdict) -> set[str]:
    return {s.rule for s in verdict.signals}


def test_links_and_promotions(chat):
    assert "spam.link" in rules(chat(ADULT).say("a", "check out www.hotcams4u.com"))
    assert "spam.link" in rules(chat(ADULT).say("a", "go to robux4kids dot com"))
    assert "spam.promo" in rules(chat(ADULT).say("a", "earn $500 a day from home"))
    # an e-mail address is a contact detail, not a link
    assert "spam.link" not in rules(chat(ADULT).say("a", "email me at mark_davies@outlook.com"))


def test_the_same_text_in_many_conversations_by_one_device(chat):
    conversation = chat(ADULT)
    line = "hi dear im anna, see my private photos free on my page"
    scores = [spam(conversation.say("a", line, match_id=f"bot-{i}", device="bot")) for i in range(6)]
    assert scores[-1] > scores[0]
    assert scores[-1] >= 0.8


def test_a_person_repeating_a_greeting_is_not_a_bot(chat):
    conversation = chat(ADULT)
    for i in range(3):
        verdict = conversation.say("a", "hey how are you doing today?", after_s=60, typing_ms=3000,
                                   match_id=f"human-{i}", device="human")
    assert spam(verdict) < 0.5


def test_typing_no_person_can_do(chat):
    text = "Make money online! Join our team and earn $300 daily, message me"
    fast = chat(ADULT).say("a", text, typing_ms=100)
    assert "spam.typing_speed" in rules(fast)
    slow = chat(ADULT).say("a", "this is a normal sentence i typed myself", typing_ms=6000)
    assert "spam.typing_speed" not in rules(slow)
