"""Age signals: ages people say they are ("i'm 14", "m15", "14 f", "im in
8th grade", "i'm a grown man") that contradict the pool they joined, and
questions that probe a stranger's age.

What a contradiction means (and the rule it fires):

- an adult in a minors' pool: `age.adult_in_minor_pool`, child safety, severe
  from 20 up (18 and 19 are scored lower: a 17-year-old rounding up is
  common, and human review decides);
- an adult's cues in a minors' pool ("my wife", "i'm in college"):
  `age.adult_cue`, child safety, severe only for the unmistakable ones
  ("i'm a grown man", "in my 30s");
- a minor in the adults' pool: `age.minor_in_adult_pool`, category underage;
- a child under 13 anywhere: `age.under_13`, category underage.

A disclosed age is also remembered for the conversation (`Signal.age`): an
adult who talks sexually to someone who said they are 14 is a child-safety
case even in the adults' pool.
"""
from __future__ import annotations

import re

from parley.v1 import common_pb2
from services.moderation.detectors.base import AGE, MessageContext, Signal

# What may follow a number that is not an age: "im 14 hours into this game".
_NOT_AGE_AFTER = (
    r"(?!\s*(?:%|percent|hours?|hrs?|h\b|mins?|minutes?|secs?|seconds?|days?|weeks?|wks?|months?|mo\b|am\b|pm\b"
    r"|o'?clock|:|\.\d|,\d|km|kms|miles?|mi\b|feet|ft|foot|'|\"|inch|inches|cm|kg|kgs|lbs?|pounds?|points?|pts"
    r"|times?|x\b|dollars?|bucks|euros?|quid|k\b|games?|levels?|lvl|kills?|wins?|people|kids?|children|sons?"
    r"|daughters?|th\b|st\b|nd\b|rd\b|steps?|blocks?|stops?|pages?|episodes?|chapters?|seasons?|spots?|places?"
    r"|drinks?|beers?|shots?|cats?|dogs?|pets?|siblings?|brothers?|sisters?|friends?|followers|subs|[-/]\d"
    r"|years?\s+(?:into|in\b|of\b|away|late|behind|married|together|sober|clean|experience|at\b|on\b|with)"
    r"|yrs?\s+(?:into|of|experience)|and\s+\d|or\s+\d|to\s+\d|out\s+of|more|less|too))")
_SELF = r"(?:i'?m|im|i\s+am|iam|i'?m\s+only|am|ima)"
_FILLER = r"(?:only\s+|just\s+|like\s+|about\s+|almost\s+|nearly\s+|barely\s+|really\s+|actually\s+|a\s+|an\s+|now\s+)*"
_AGE = r"(?P<age>\d{2})"
_DISCLOSURES = [
    # "i'm 14", "im only 13", "i am 45", "i'm a 40 year old guy"
    re.compile(rf"\b{_SELF}\s+{_FILLER}{_AGE}\b{_NOT_AGE_AFTER}"),
    # "i just turned 16", "i'll be 15 next month", "turning 15 tomorrow", "my age is 14", "age: 15"
    re.compile(rf"\b(?:i\s+(?:just\s+)?turned|my\s+age\s+is|my\s+age'?s|age\s*(?:is|:|=|-)|aged)\s+{_FILLER}{_AGE}\b"
               rf"{_NOT_AGE_AFTER}"),
    # "im 9 years old": one digit only with the unit said
    re.compile(rf"\b{_SELF}\s+{_FILLER}(?P<age>\d)\s*(?:years?\s+old|yrs?\s+old|yo|y/o)\b"),
    # "14 yo", "15 y/o", "16 years old" at the start or after "hi/hey/im/,"
    re.compile(rf"(?:^|\b(?:hi|hey|hello|yo|im|i'?m|me|here|just|only|and)\b\W*|[,.!]\s*){_AGE}\s*"
               rf"(?:yo|y/o|y\.o\.?|yrs?\s+old|years?\s+old|yr\s+old|year\s+old)\b"),
]
# ages to come: "i'll be 15 next month" says 14 now
_FUTURE = re.compile(rf"\b(?:i'?ll\s+be|i\s+will\s+be|im\s+turning|i'?m\s+turning|turning|im\s+gonna\s+be|i'?m\s+gonna\s+be"
                     rf"|i'?m\s+going\s+to\s+be|gonna\s+be)\s+{_FILLER}{_AGE}\b{_NOT_AGE_AFTER}")
# a bare answer to "asl?" / "how old are you": "13", "14 u?", "15 f"
_BARE_ANSWER = re.compile(r"^\W*(?:im\s+|i'?m\s+)?(?P<age>\d{1,2})\s*(?:[mf]\b)?\W*(?:u|you|wbu|hbu|and\s+you|lol|why|y)?\W*$")
_GENDER = r"(?:m|f|male|female|boy|girl|guy|dude|man|woman|fem|masc|trans|nb|gay|bi|lesbian)"
_ASL = [
    # "15 f", "16/m/texas", "m15", "f 14 usa", "28m" at the start of a line
    # (or after a greeting), with nothing after but a place, a word or the end
    re.compile(rf"^\W*(?:(?:hi|hey|hello|yo|sup|hii+|heyy+|asl|a/s/l|me|im|i'?m|ok)\W+)?{_AGE}\s*[/\-,.|]?\s*"
               rf"{_GENDER}\b(?!\s*(?:away|tall|long|high|deep|wide|run|views|followers|subs|people|dollars))"),
    re.compile(rf"^\W*(?:(?:hi|hey|hello|yo|sup|asl|a/s/l|me|im|i'?m|ok)\W+)?{_GENDER}\s*[/\-,.|]?\s*{_AGE}\b"
               rf"(?!\s*(?:%|km|miles|mins?|minutes|hours|away|tall))"),
    # "hi 16 m here", "ok 14 f, wbu"
    re.compile(rf"\b{_AGE}\s*[/]?\s*(?:m|f)\b(?=\s*(?:here|from|wbu|hbu|u\b|you\b|asl|lf|looking|bored|$|[,./!?]))"),
]
_GRADE = re.compile(r"\b(?:i'?m|im|i\s+am)\s+(?:only\s+|just\s+|now\s+)?(?:in|a)\s+(?P<grade>\d{1,2})(?:th|st|nd|rd)\s+grade"
                    r"|\b(?:i'?m|im|i\s+am)\s+in\s+(?P<grade2>\d{1,2})(?:th|st|nd|rd)\b(?!\s+(?:place|line|row))")
_SCHOOL = re.compile(r"\b(?:i'?m|im|i\s+am)\s+(?:a\s+)?(?:(?P<hs>freshman|sophomore|junior|senior)\s+(?:in|at)\s+"
                     r"(?:high\s*school|hs)|in\s+(?P<ms>middle\s+school|junior\s+high|elementary(?:\s+school)?)"
                     r"|in\s+(?P<hs2>high\s*school|hs)\b)")
_DECADE = re.compile(r"\b(?:i'?m|im|i\s+am)\s+in\s+my\s+(?:early\s+|mid\s+|late\s+)?(?P<decade>20|30|40|50|60)'?s\b"
                     r"|\b(?:i'?m|im|i\s+am)\s+in\s+my\s+(?:early\s+|mid\s+|late\s+)?"
                     r"(?P<word>twenties|thirties|forties|fifties|sixties)\b")
_DECADE_WORDS = {"twenties": 20, "thirties": 30, "forties": 40, "fifties": 50, "sixties": 60}
_ADULT_CUES = [
    (re.compile(r"\b(?:i'?m|im|i\s+am)\s+(?:a\s+)?(?:grown|older|mature|adult)\s+(?:man|guy|woman|lady|dude|male|female)"
                r"|\b(?:i'?m|im|i\s+am)\s+(?:an?\s+)?adult\b"), 0.9),
    (re.compile(r"\bmy\s+(?:wife|husband|ex-?wife|ex-?husband)\b|\bi'?m\s+married\b|\bim\s+married\b"), 0.6),
    (re.compile(r"\b(?:i'?m|im|i\s+am)\s+(?:in|at)\s+(?:college|uni|university|grad\s+school)\b"
                r"|\bmy\s+(?:job|boss|coworkers?|mortgage)\b|\bolder\s+(?:guy|man)\s+here\b"), 0.45),
]
_PROBES = re.compile(
    r"\bhow\s+old\s+(?:are|r|is)\s+(?:you|u|ya)\b|\bhow\s+old\s*\??$|\bwhat'?s?\s+(?:is\s+)?(?:your|ur|yo)\s+age\b"
    r"|\b(?:ur|your)\s+age\s*\?|(?:^|\s)a\s*/\s*s\s*/\s*l\b|\basl\b|^\W*age\s*\?|^\W*age\W*$|\bage\?|\b(?:are|r)\s+(?:you|u)\s+"
    r"(?:over|under|above|below)\s+\d\d|\b(?:are|r)\s+(?:you|u)\s+(?:a\s+)?(?:minor|kid|teen|adult)\b|\bu\s+18\b"
    r"|\bwhat\s+grade\s+(?:are|r)\s+(?:you|u)\b|\bwhat\s+grade\b|\b(?:are|r)\s+(?:you|u)\s+in\s+(?:middle|high)\s+school"
    r"|\bhow\s+young\b|\b(?:m|f)\s+or\s+(?:m|f)\b.*\bage\b")
_YOUTH_PROBE = re.compile(r"\bgrade\b|\bschool\b|\bminor\b|\bkid\b|\byoung\b")
# "i like younger girls", "age is just a number": said to a minor, a grooming cue
_AGE_DISMISSAL = re.compile(
    r"\bage\s+(?:is\s+)?(?:just\s+a\s+number|doesn'?t\s+matter|does\s+not\s+matter|dont\s+matter|don'?t\s+matter|is\s+nothing)"
    r"|\bi\s+(?:like|love|prefer|dont\s+mind|don'?t\s+mind)\s+(?:talking\s+to\s+)?(?:younger|young)\s+(?:girls|boys|ones|people|kids|teens)"
    r"|\b(?:younger|young)\s+(?:girls|boys)\s+are\s+(?:better|more\s+fun|hotter|cuter)")


_DIGIT = re.compile(r"\d")
# Every rule needs a digit or one of these words (tests/unit/moderation/detectors/test_gates.py checks it).
TRIGGERS = frozenset("""
twenties thirties forties fifties sixties freshman sophomore junior senior middle elementary high hs school grade
grown older mature adult wife husband exwife exhusband ex married college uni university grad job boss coworker
coworkers mortgage old age asl l minor kid teen young younger
""".split())


def disclosed_ages(ctx: MessageContext) -> list[tuple[int, tuple[int, int], float]]:
    """Ages the sender says they are: (age, span in the original, confidence)."""
    numeric = ctx.views.numeric
    text = numeric.text
    found: list[tuple[int, tuple[int, int], float]] = []
    for pattern in _DISCLOSURES:
        for match in pattern.finditer(text):
            found.append((int(match.group("age")), numeric.source_span(*match.span()), 0.95))
    for pattern in _ASL:
        for match in pattern.finditer(text):
            found.append((int(match.group("age")), numeric.source_span(*match.span()), 0.9))
    for match in _FUTURE.finditer(text):
        found.append((int(match.group("age")) - 1, numeric.source_span(*match.span()), 0.9))
    if ctx.asked_age:
        match = _BARE_ANSWER.match(text)
        if match:
            found.append((int(match.group("age")), numeric.source_span(*match.span()), 0.85))
    for match in _GRADE.finditer(text):
        grade = int(match.group("grade") or match.group("grade2"))
        if 1 <= grade <= 12:
            found.append((grade + 5, numeric.source_span(*match.span()), 0.85))
    for match in _SCHOOL.finditer(text):
        age = 15 if (match.group("hs") or match.group("hs2")) else 12
        found.append((age, numeric.source_span(*match.span()), 0.8))
    for match in _DECADE.finditer(text):
        decade = int(match.group("decade")) if match.group("decade") else _DECADE_WORDS[match.group("word")]
        found.append((decade + 5, numeric.source_span(*match.span()), 0.9))
    return [f for f in found if 5 <= f[0] <= 79]


class AgeDetector:
    name = AGE

    def detect(self, ctx: MessageContext) -> list[Signal]:
        original = ctx.message.text
        signals: list[Signal] = []
        if not _DIGIT.search(ctx.views.numeric.text) and not ctx.views.gate(TRIGGERS):
            return signals
        ages = disclosed_ages(ctx)
        if ages:
            # "im nineteen no wait im twenty one" in a minors' pool: the
            # oldest age said; anywhere else the youngest (protecting a child)
            pick = max if ctx.minors_pool and min(a[0] for a in ages) >= 13 else min
            age, span, confidence = pick(ages, key=lambda a: a[0])
            evidence = original[span[0]:span[1]]
            if age < 13:
                signals.append(Signal(AGE, "age.under_13", common_pb2.CATEGORY_UNDERAGE, 0.9 * confidence / 0.95,
                                      span=span, evidence=evidence, age=age))
            elif ctx.minors_pool and age >= 18:
                severe = age >= 20
                score = (0.95 if severe else 0.7) * confidence / 0.95
                signals.append(Signal(AGE, "age.adult_in_minor_pool", common_pb2.CATEGORY_CHILD_SAFETY, score,
                                      severe=severe, span=span, evidence=evidence, cue="adult", age=age))
            elif not ctx.minors_pool and age < 18:
                signals.append(Signal(AGE, "age.minor_in_adult_pool", common_pb2.CATEGORY_UNDERAGE,
                                      0.9 * confidence / 0.95, span=span, evidence=evidence, age=age))
            else:
                # consistent with the pool: remembered, scores nothing
                signals.append(Signal(AGE, "age.disclosed", common_pb2.CATEGORY_UNSPECIFIED, 0.0,
                                      span=span, evidence=evidence, age=age))
        base = ctx.views.numeric
        if ctx.minors_pool and not any(s.rule == "age.adult_in_minor_pool" for s in signals):
            for pattern, score in _ADULT_CUES:
                match = pattern.search(base.text)
                if match:
                    span = base.source_span(*match.span())
                    signals.append(Signal(AGE, "age.adult_cue", common_pb2.CATEGORY_CHILD_SAFETY, score,
                                          severe=score >= 0.9, span=span, evidence=original[span[0]:span[1]],
                                          cue="adult"))
                    break
        probe = _PROBES.search(base.text)
        if probe:
            span = base.source_span(*probe.span())
            youth = bool(_YOUTH_PROBE.search(probe.group(0)))
            signals.append(Signal(AGE, "age.probe", common_pb2.CATEGORY_UNSPECIFIED, 0.0, span=span,
                                  evidence=original[span[0]:span[1]], cue="youth_probe" if youth else "age_probe"))
        dismissal = _AGE_DISMISSAL.search(base.text)
        if dismissal:
            span = base.source_span(*dismissal.span())
            signals.append(Signal(AGE, "age.dismissal", common_pb2.CATEGORY_CHILD_SAFETY, 0.0, span=span,
                                  evidence=original[span[0]:span[1]], cue="age_dismissal"))
        return signals
