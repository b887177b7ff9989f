"""Sexual content: rules for sexual requests and explicit words, and the
offensive-language model (`model.py`) to weigh ambiguous words ("what is
your sex?" is not "wanna have sex").

Rules:

- `sexual.image_request`: asking for nude or sexual images, or to undress
  ("send nudes", "show me your boobs", "take off your shirt").
- `sexual.solicitation`: asking for sexual acts or talk ("wanna sext", "r u
  horny", "touch yourself", "wanna see my dick").
- `sexual.explicit`: explicit words, weighed by the model.

Toward a minor (a minors' pool, or a partner who said they are under 18),
the first two are child safety and severe: asking a minor for nude images
or sexual acts is exploitation whoever asks. Explicit words alone in a
minors' pool stay sexual content, judged on the stricter ladder.
"""
from __future__ import annotations

import re

from parley.v1 import common_pb2
from services.moderation.detectors.base import SEXUAL, MessageContext, Signal

_YOU = r"(?:you|u|ya|yu)"
_YOUR = r"(?:your|ur|yo|youre|you're)"
_BODY = (r"(?:boobs?|tits?|titties|breasts?|nipples?|pussy|vagina|dick|cock|penis|ass|butt|booty|bum|body|chest|"
         r"underwear|panties|bra|thong|privates|private\s+parts|feet|legs|naked\s+body|bits|pussies)")
_IMAGE_REQUEST = re.compile(
    rf"\b(?:send|sending|snd|sen)\s+(?:me\s+)?(?:some\s+|ur\s+|your\s+|a\s+|more\s+)?(?:nudes?|naked\s+pics?|noods|nudez|"
    rf"n00ds|lewds|sexy\s+pics?|hot\s+pics?|dirty\s+pics?|pics?\s+of\s+(?:{_YOUR}\s+)?{_BODY}|(?:a\s+)?pics?\s+"
    rf"(?:of\s+{_YOU}\s+)?(?:without|with\s+no|w/?o)\s+(?:clothes|a\s+shirt|shirt|pants|bra)|(?:a\s+)?pics?\s+of\s+{_YOU}\s+"
    rf"(?:in\s+{_YOUR}\s+{_BODY}|naked|nude|topless)|{_BODY}\s+pics?)"
    rf"|^\W*nudes?\s*\?+|\bnudes\s*\?|\bsend\s+nudes|\bwanna\s+trade\s+(?:pics|nudes)"
    rf"|\b(?:show|flash|let\s+me\s+see|lemme\s+see|can\s+i\s+see)\s+(?:me\s+)?(?:{_YOUR}|{_YOU}r|the|them)\s+{_BODY}"
    rf"|\bshow\s+me\s+(?:{_YOUR}\s+)?(?:body|everything|more)\b|\b(?:take|takes|taking)\s+(?:off\s+)?(?:{_YOUR}|the|them|it)\s*"
    rf"(?:clothes|shirt|top|pants|bra|panties|underwear|off)\b|\btake\s+(?:{_YOUR}|them)\s+\w+\s+off|\btake\s+them\s+off"
    rf"|\bstrip\s+(?:for\s+me|naked|down|on\s+cam)|\b(?:get|be)\s+naked\s+(?:on\s+cam|for\s+me)|\bon\s+cam\s+naked"
    rf"|\bpic\s+of\s+{_YOU}\s+(?:naked|nude|topless)|\bsend\s+(?:a\s+)?pic\s+of\s+{_YOU}\s+(?:naked|nude|in\s+{_YOUR}\s+{_BODY})"
    rf"|\b(?:wanna|want\s+to)\s+see\s+{_YOU}\s+(?:naked|nude|topless)|\bdare\s+{_YOU}\s+to\s+(?:take\s+off|strip|flash|show)"
    rf"|\b(?:can|could|may)\s+i\s+see\s+{_YOU}\s+(?:naked|nude|topless|without\s+(?:clothes|a\s+shirt))"
    rf"|\bstrip\s+(?:poker|truth\s+or\s+dare|game|dare)|\b(?:sexy|hot|horny)\b.*\bsend\s+(?:me\s+)?(?:some\s+|a\s+|more\s+)?"
    rf"(?:pics?|photos?|nudes)|\bsend\s+(?:me\s+)?(?:some\s+|a\s+|more\s+)?(?:pics?|photos?)\b.*\b(?:sexy|horny)\b")
_SOLICITATION = re.compile(
    rf"\b(?:wanna|want\s+to|lets|let'?s|we\s+should|u\s+want\s+to|do\s+{_YOU}\s+(?:wanna|want\s+to)|can\s+we)\s+"
    rf"(?:sext|have\s+sex|fuck|cyber|do\s+it|make\s+out|hook\s+up|get\s+naked|sex\s+chat|roleplay\s+sex|jerk\s+off|"
    rf"touch\s+each\s+other|69|bang|smash)\b|\bsexting\b|\bsext\b|^\W*sext\w*\s*\?"
    rf"|\b(?:are|r)\s+{_YOU}\s+(?:\w+\s+)?(?:horny|wet|hard|naked|turned\s+on)\b|\bhorny\s*\?|\bim\s+(?:so\s+)?(?:horny|hard|wet)\b"
    rf"|\bi'?m\s+(?:so\s+|really\s+)?(?:horny|hard\s+(?:right\s+now|for\s+{_YOU})|wet)\b|\bmake\s+me\s+(?:so\s+)?(?:wet|hard|horny)"
    rf"|\b(?:touch|rub|finger|play\s+with)\s+(?:{_YOU}rself|{_YOUR}self)|\bi\s+(?:want|wanna|would|will|'?d|'?ll)\s+"
    rf"(?:to\s+)?(?:fuck|lick|suck|finger|ride|eat\s+out|cum\s+on|touch)\s+{_YOU}|\bi\s+want\s+to\s+lick\b"
    rf"|\b(?:wanna|want\s+to|do\s+{_YOU}\s+(?:wanna|want\s+to))\s+see\s+my\s+(?:dick|cock|penis|boobs|tits|pussy|"
    rf"body|thing|junk)|\bdick\s+pic|\bsuck\s+(?:my|{_YOUR})\s+(?:dick|cock)|\bi\s+want\s+to\s+suck"
    rf"|\bwhat\s+would\s+{_YOU}\s+do\s+to\s+me\s+in\s+bed|\bdescribe\s+what\s+{_YOU}\s+would\s+do\s+to\s+me"
    rf"|\b(?:wanna|want\s+to|lets|let'?s)\s+get\s+naked|\bwhat\s+(?:are|r)\s+{_YOU}\s+wearing\b.*\b(?:take|off)\b"
    rf"|\bsexy\s+time\b|\b(?:bra|cup)\s+size|\bwhat\s+size\s+(?:are|r)\s+(?:your|ur)\s+(?:boobs|tits|breasts|dick)"
    rf"|\b(?:rock\s+)?hard\s+(?:thinking\s+(?:about|of)\s+{_YOU}|for\s+{_YOU})|\bi'?m\s+(?:so\s+)?rock\s+hard")
# explicit words (after the leetspeak is undone): scored with the model
_EXPLICIT = re.compile(
    r"\b(?:sex|sexy|sexual|horny|nudes?|naked|nude|porn|porno|cock|cocks|dick|dicks|pussy|tits|titties|boobs|cum|cumming"
    r"|orgasm|masturbat\w*|jerk\s+off|blowjob|bj|handjob|anal|boner|erection|clit|dildo"
    r"|vibrator|kinky|bdsm|threesome|milf|daddy|lick|suck|wet|hard|naughty|lewd|onlyfans|xxx|nsfw|69)\b")
_STRONG = re.compile(
    r"\b(?:horny|nudes|porn|porno|cock|pussy|tits|titties|boobs|cum|cumming|orgasm|masturbat\w*|blowjob|handjob|boner"
    r"|erection|clit|dildo|vibrator|threesome|lewd|nsfw|xxx)\b")


# Every rule needs one of these words (tests/unit/moderation/detectors/test_gates.py checks it).
TRIGGERS = frozenset("""
send sending snd sen nude nudes naked noods nudez n00ds lewds lewd sexy hot dirty pic pics pics photo photos show
flash see lemme trade take takes taking strip get be cam dare sext sex sexting fuck cyber do make hook naked chat
roleplay jerk touch 69 bang smash horny wet hard turned rub finger play lick suck ride eat cum dick pic cock penis
boobs tits pussy body thing junk bed describe wearing time bra cup size rock boob breasts nipples vagina ass butt
booty bum chest underwear panties thong privates feet legs bits titties sexual porn porno cocks dicks cumming
orgasm masturbate masturbating masturbation bj blowjob handjob anal boner erection clit dildo vibrator kinky bdsm
threesome milf daddy naughty onlyfans xxx nsfw off clothes shirt top pants
""".split())


class SexualDetector:
    name = SEXUAL

    def detect(self, ctx: MessageContext) -> list[Signal]:
        if not ctx.views.gate(TRIGGERS):
            return []
        squashed = ctx.views.squashed
        text = squashed.text
        original = ctx.message.text
        toward_minor = ctx.toward_minor
        signals: list[Signal] = []
        for rule, pattern, score, cue in (("sexual.image_request", _IMAGE_REQUEST, 0.9, "sexual_request"),
                                          ("sexual.solicitation", _SOLICITATION, 0.85, "sexual_request")):
            match = pattern.search(text)
            if match:
                span = squashed.source_span(*match.span())
                category = common_pb2.CATEGORY_CHILD_SAFETY if toward_minor else common_pb2.CATEGORY_SEXUAL_CONTENT
                signals.append(Signal(SEXUAL, rule, category, score, severe=toward_minor, span=span,
                                      evidence=original[span[0]:span[1]], cue=cue))
        if not signals:
            match = _EXPLICIT.search(text)
            if match:
                p = ctx.offensive_probability
                score = 0.45 * p if not _STRONG.search(text) else max(0.55, 0.8 * p)
                if score >= 0.2:
                    span = squashed.source_span(*match.span())
                    signals.append(Signal(SEXUAL, "sexual.explicit", common_pb2.CATEGORY_SEXUAL_CONTENT, score,
                                          span=span, evidence=original[span[0]:span[1]], cue="sexual_talk"))
        return signals
