"""Memory stays bounded however many conversations go by."""
from parley.v1 import common_pb2 as c
from services.moderation.detectors import ObservedMessage
from services.moderation.detectors.moderator import TextModerator
from services.moderation.detectors.state import BoundedLRU, RepeatedTexts
from services.moderation.policy import Limits, PolicyConfig

from conftest import T0, FixedModel


def test_lru_keeps_at_most_capacity_and_drops_the_least_recent():
    lru = BoundedLRU(capacity=3, ttl_ms=10_000)
    for key in "abc":
        lru.get_or_create(key, 0, list)
    lru.get("a", 1)                      # a is recent again
    lru.get_or_create("d", 2, list)      # b, the least recent, goes
    assert len(lru) == 3 and "b" not in lru and "a" in lru
    assert lru.evicted == 1


def test_lru_forgets_what_was_idle_past_its_ttl():
    lru = BoundedLRU(capacity=100, ttl_ms=1_000)
    lru.get_or_create("old", 0, list)
    lru.get_or_create("new", 900, list)
    assert lru.get("old", 1_500) is None       # idle 1.5 s
    assert lru.get("new", 1_500) is not None   # idle 0.6 s
    lru.get_or_create("x", 5_000, list)         # expiry happens as new entries come
    assert len(lru) == 1


def test_repeated_texts_count_distinct_conversations_up_to_a_cap():
    texts = RepeatedTexts(capacity=10, ttl_ms=60_000, cap=4)
    assert texts.record(42, "bot", "m0", 0) == 1
    assert texts.record(42, "bot", "m0", 1) == 1       # the same conversation again
    for i in range(10):
        mine = texts.record(42, "bot", f"m{i}", i)
    assert mine == 4                                   # capped
    assert texts.record(42, "other", "m99", 12) == 1   # another device's count is its own
    for device in "abcdef":
        devices = texts.record_everyone(42, device, 13)
    assert devices == 4


def test_many_conversations_leave_a_bounded_footprint():
    limits = Limits(max_conversations=100, max_repeated_texts=60)
    clock = {"now": T0}
    moderator = TextModerator(PolicyConfig(limits=limits), model=FixedModel(), clock=lambda: clock["now"])
    for i in range(3_000):  # each a new conversation; one line each is enough to create state
        clock["now"] += 1
        moderator.observe(ObservedMessage(f"m{i}", f"s{i}", f"d{i}", c.MODE_TEXT, c.AGE_BAND_MINOR,
                                          f"are you alone {i} my snap is x{i}", clock["now"]))
    sizes = moderator.memory_entries()
    assert sizes["conversations"] <= 100
    assert sizes["repeated_texts"] <= 2 * 60
    assert moderator.conversations.evicted >= 2_900


def test_forget_drops_a_conversation():
    moderator = TextModerator(model=FixedModel(), clock=lambda: T0)
    moderator.observe(ObservedMessage("m1", "s1", "d1", c.MODE_TEXT, c.AGE_BAND_MINOR, "are you alone", T0))
    moderator.forget("m1")
    assert moderator.memory_entries()["conversations"] == 0


def test_a_batch_gives_the_verdicts_one_by_one_would(model):
    lines = [("a", "hey"), ("b", "hi"), ("a", "asl"), ("b", "14 f"), ("a", "are you home alone?"),
             ("a", "dont tell your parents about me"), ("b", "my snap is lily.rose09")]

    def messages():
        return [ObservedMessage("m1", f"m1/{s}", f"d-{s}", c.MODE_TEXT, c.AGE_BAND_MINOR, text, T0 + i * 5000)
                for i, (s, text) in enumerate(lines)]

    one_by_one = TextModerator(model=model, clock=lambda: T0)
    batched = TextModerator(model=model, clock=lambda: T0)
    expected = [one_by_one.observe(m) for m in messages()]
    assert batched.observe_batch(messages()) == expected
    assert expected[5].severe and expected[6].actions[0].masked_text == "my snap is [hidden]"
