"""The policy: stricter in minors' pools, the severe paths, shadow mode,
configuration from files."""
import json

import pytest

from parley.v1 import common_pb2 as c
from services.moderation import review
from services.moderation.policy import (ActionKind, Ladder, PolicyConfig, PolicyError, RiskSnapshot, TOP_PRIORITY,
                                        decide, load_policy, policy_from_dict)

from conftest import ADULT, MINOR


def kinds(verdict_or_actions) -> set[ActionKind]:
    actions = getattr(verdict_or_actions, "actions", verdict_or_actions)
    return {a.kind for a in actions}


def risk(**scores: float) -> RiskSnapshot:
    by_detector = {d: 0.0 for d in ("contact", "age", "grooming", "sexual", "harassment", "spam")}
    by_detector.update(scores)
    return RiskSnapshot(total=max(scores.values(), default=0.0), by_detector=by_detector, message=dict(scores),
                        categories={}, rules={d: (f"{d}.rule",) for d in scores})


def test_minors_pools_are_stricter_for_every_detector():
    config = PolicyConfig()
    for detector in ("contact", "grooming", "sexual", "harassment", "spam"):
        for score in (0.45, 0.65, 0.85, 0.99):
            minor = kinds(decide(config, MINOR, risk(**{detector: score})))
            adult = kinds(decide(config, ADULT, risk(**{detector: score})))
            assert adult <= minor, (detector, score, adult, minor)
    assert kinds(decide(config, MINOR, risk(sexual=0.65))) > kinds(decide(config, ADULT, risk(sexual=0.65)))


def test_contact_details_never_reach_the_other_side_in_a_minors_pool(chat):
    minor = chat(MINOR).say("a", "my snap is lily.rose09")
    mask = minor.action(ActionKind.MASK)
    assert mask.masked_text == "my snap is [hidden]" and mask.rules == ("contact.handle",)
    assert chat(ADULT).say("a", "my snap is lily.rose09").action(ActionKind.MASK) is None


def test_the_severe_path():
    actions = decide(PolicyConfig(), MINOR, risk(age=0.95), severe_rules=["age.adult_in_minor_pool"])
    by_kind = {a.kind: a for a in actions}
    assert {ActionKind.HOLD, ActionKind.END_CONVERSATION, ActionKind.ESCALATE, ActionKind.REQUEST_BAN} <= set(by_kind)
    assert all(a.severe and a.category == c.CATEGORY_CHILD_SAFETY for a in by_kind.values())
    assert by_kind[ActionKind.REQUEST_BAN].permanent
    assert by_kind[ActionKind.ESCALATE].priority == TOP_PRIORITY
    assert TOP_PRIORITY >= review.priority(c.CATEGORY_KNOWN_BAD_HASH, risk_score=1.0, evidence=99)
    assert by_kind[ActionKind.ESCALATE].rules[0] == "age.adult_in_minor_pool"


def test_actions_carry_the_rules_that_caused_them(chat):
    verdict = chat(ADULT).say("a", "kys")
    assert "harassment.self_harm" in verdict.action(ActionKind.WARN).rules


def test_a_shadow_rule_is_scored_and_counted_but_acts_on_nothing(chat):
    config = PolicyConfig(shadow_rules=frozenset({"harassment.*"}))
    conversation = chat(ADULT, config)
    verdict = conversation.say("a", "kill yourself loser")
    assert verdict.actions == ()
    assert {s.rule for s in verdict.shadow_signals} >= {"harassment.self_harm"}
    assert ActionKind.WARN in kinds(verdict.shadow_actions)
    assert verdict.risk.by_detector["harassment"] == 0.0
    stats = conversation.moderator.stats
    assert stats.shadow_signals[("harassment", "harassment.self_harm")] == 1
    assert not any(key[0] == "harassment" for key in stats.signals)


def test_a_shadow_grooming_cue_does_not_add_to_the_live_score(chat):
    config = PolicyConfig(shadow_rules=frozenset({"grooming.secrecy"}))
    conversation = chat(MINOR, config)
    conversation.say("a", "are you home alone?")
    verdict = conversation.say("a", "dont tell your parents about me")
    assert not verdict.severe
    assert any(a.severe for a in verdict.shadow_actions)  # what the rule would have done


def test_a_disabled_rule_does_not_run(chat):
    verdict = chat(ADULT, PolicyConfig(disabled_rules=frozenset({"harassment.self_harm", "harassment.model"}))).say(
        "a", "kys")
    assert not verdict.signals and not verdict.shadow_signals


def test_warnings_are_given_once_a_conversation(chat):
    conversation = chat(MINOR)
    first = conversation.say("a", "do you have snap")
    second = conversation.say("a", "do u have kik then")
    assert ActionKind.WARN in kinds(first)
    assert ActionKind.WARN not in kinds(second)


def test_load_policy_from_json_toml_and_yaml(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({
        "severe_threshold": 0.9, "shadow_rules": ["spam.typing_speed"], "minor": {"sexual": {"warn": 0.3}}}))
    (tmp_path / "p.toml").write_text('severe_threshold = 0.9\nshadow_rules = ["spam.typing_speed"]\n'
                                     '[minor.sexual]\nwarn = 0.3\n[limits]\nmax_conversations = 10\n')
    (tmp_path / "p.yaml").write_text("severe_threshold: 0.9\nshadow_rules: [spam.typing_speed]\n"
                                     "minor:\n  sexual:\n    warn: 0.3\n    ban: null\n")
    for name in ("p.json", "p.toml", "p.yaml"):
        config = load_policy(tmp_path / name)
        assert config.severe_threshold == 0.9
        assert config.is_shadow("spam.typing_speed") and not config.is_shadow("spam.link")
        assert config.minor.sexual.warn == 0.3
        assert config.minor.sexual.end == PolicyConfig().minor.sexual.end  # the rest stays default
        assert config.adult == PolicyConfig().adult
    assert load_policy(tmp_path / "p.toml").limits.max_conversations == 10
    assert load_policy(tmp_path / "p.yaml").minor.sexual.ban is None


@pytest.mark.parametrize("data, message", [
    ({"severe_treshold": 0.9}, "unknown setting"),
    ({"minor": {"sexual": {"warn": 1.5}}}, "from 0 to 1"),
    ({"minor": {"sexual": {"warn": "high"}}}, "expected a number"),
    ({"minor": {"mask_contacts": "yes"}}, "true or false"),
    ({"shadow_rules": "spam.link"}, "list of names"),
    ({"half_life_s": {"grooming": 0}}, "above 0"),
    ({"half_life_s": {"groming": 10}}, "unknown key"),
    ({"limits": {"max_conversations": 0}}, "whole number"),
])
def test_bad_policies_fail_with_a_clear_message(data, message):
    with pytest.raises(PolicyError, match=message):
        policy_from_dict(data)


def test_a_policy_file_that_does_not_parse(tmp_path):
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(PolicyError, match="does not parse"):
        load_policy(tmp_path / "p.json")
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    (tmp_path / "p.ini").write_text("")
    with pytest.raises(PolicyError, match="use .json"):
        load_policy(tmp_path / "p.ini")


def test_ladders_in_a_custom_policy_act(chat):
    config = policy_from_dict({"adult": {"contact": {"warn": 0.5}}})
    assert config.adult.contact == Ladder(warn=0.5)
    assert ActionKind.WARN in kinds(chat(ADULT, config).say("a", "add me on snap"))
