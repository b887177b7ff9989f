"""Grooming cues in one message. Each cue is weak alone ("are you alone?" is
asked for innocent reasons every minute); the grooming score is made over the
whole conversation from the cues of one speaker, with decay
(`risk.ConversationRisk`), and it is high only when several kinds of cue come
together: isolation, secrecy, photos, meeting, gifts, flattery, probing.

Cue kinds (the weights are policy: `PolicyConfig.grooming_cues`):

- core cues, which make a conversation grooming: `alone`, `secrecy`,
  `isolation`, `gifts`, `meet`, `sexual_probe`, `photo`, `age_dismissal`,
  `adult` (an adult's age or cues in a minors' pool), `sexual_request`;
- amplifying cues, which never act alone, whatever their number:
  `flattery`, `age_probe`, `youth_probe`, `personal_info`, `relationship`,
  `off_platform`.
"""
from __future__ import annotations

import re

from parley.v1 import common_pb2
from services.moderation.detectors.base import GROOMING, MessageContext, Signal

_YOU = r"(?:you|u|ya|yu)"
_YOUR = r"(?:your|ur|yo|you'?re|youre)"
_PARENTS = r"(?:parents|parent|mom|mum|mommy|mother|dad|daddy|father|family|folks|sister|brother|guardian|step\s?dad|step\s?mom)"

CUES: list[tuple[str, re.Pattern[str]]] = [
    ("alone", re.compile(
        rf"\b(?:are|r)\s+{_YOU}\s+(?:home\s+)?(?:all\s+)?alone\b|\b{_YOU}\s+alone\s*\?|\b(?:are|r)\s+{_YOU}\s+by\s+"
        rf"(?:yourself|urself)|\b(?:is|are|r)\s+(?:any\s?(?:one|body|1)|some\s?(?:one|body)|{_YOUR}\s+{_PARENTS})\s+"
        rf"(?:else\s+)?(?:home|around|there|with\s+{_YOU}|awake|asleep|nearby|in\s+the\s+room)\b"
        rf"|\bwhen\s+(?:do|does|will)\s+{_YOUR}\s+{_PARENTS}\s+(?:get\s+home|come\s+home|leave|go\s+to\s+(?:bed|sleep)|sleep)"
        rf"|\bwhat\s+time\s+(?:do|does)\s+{_YOUR}\s+{_PARENTS}\s+(?:get\s+home|come\s+home|leave|go\s+to\s+(?:bed|sleep)|sleep)"
        rf"|\b(?:in|are\s+you\s+in)\s+{_YOUR}\s+(?:room|bedroom|bed)\s+alone|\bis\s+{_YOUR}\s+door\s+(?:locked|closed)"
        rf"|\b(?:does|do|will)\s+(?:any\s?one|any\s?body|{_YOUR}\s+{_PARENTS})\s+(?:check|look\s+at|see|read|go\s+through)\s+"
        rf"{_YOUR}\s+(?:phone|messages|chats|texts|screen)|\bcan\s+(?:any\s?one|any\s?body|{_YOUR}\s+{_PARENTS})\s+see\s+"
        rf"(?:{_YOU}|{_YOUR}\s+screen)|\b{_YOUR}\s+{_PARENTS}\s+(?:home|asleep|awake|around|out|gone|at\s+work)\s*\?"
        r"|\bhome\s+alone\b")),
    ("secrecy", re.compile(
        rf"\b(?:don'?t|dont|do\s+not|never|dnt|no\s+need\s+to)\s+tell\s+(?:any\s?(?:one|body|1)|nobody|{_YOUR}\s+"
        rf"(?:{_PARENTS}|friends?|teachers?)|them|ur\s+\w+)\b|\b(?:our|a|this\s+is\s+our|its\s+our|it'?s\s+our)\s+"
        rf"(?:little\s+)?secret\b|\bkeep\s+(?:this|it|us|that)\s+(?:between\s+us|a\s+secret|secret|to\s+{_YOU}rself|"
        rf"private|quiet|on\s+the\s+down\s*low)|\bkeep\s+(?:our|this|these|the|it|ur|your)\s+(?:chats?|messages|convo|talks?|"
        rf"texts|pics|friendship|relationship)?\s*(?:a\s+)?(?:secret|private|between\s+us|hidden)|\bbetween\s+(?:us|{_YOU}\s+and\s+me|me\s+and\s+{_YOU})\b"
        rf"|\bdelete\s+(?:this|the|our|these|all|every\s?thing|{_YOUR})\s*(?:chats?|messages|convo|conversation|"
        rf"texts|pics?|after)?|\bno\s?(?:one|body)\s+(?:has|needs|have|will|would)\s+(?:to\s+)?know"
        rf"|\b(?:stays?|stay)\s+between\s+us|\b(?:they|{_YOUR}\s+{_PARENTS})\s+(?:wouldn'?t|won'?t|wont|dont|don'?t)\s+"
        rf"(?:understand|get\s+it|approve|like\s+it)|\bsecret\s+(?:friend|chat|relationship)")),
    ("isolation", re.compile(
        rf"\b{_YOUR}\s+{_PARENTS}\s+(?:don'?t|dont|doesn'?t|never|can'?t)\s+(?:get|understand|deserve|care\s+about|"
        rf"listen\s+to|love|appreciate)\s+{_YOU}|\b(?:i'?m|i\s+am|im)\s+the\s+only\s+one\s+(?:who|that)\s+"
        rf"(?:really\s+)?(?:understands|gets|cares|loves)|\b{_YOU}\s+can\s+(?:trust|tell)\s+me\s*(?:anything|every\s?thing)?"
        rf"|\bno\s?(?:one|body)\s+(?:understands|gets|loves)\s+{_YOU}\s+like\s+(?:i\s+do|me)|\b(?:i'?m|im)\s+{_YOUR}\s+"
        rf"(?:only\s+|real\s+|true\s+)friend|\b(?:they|{_YOUR}\s+friends)\s+(?:don'?t|dont)\s+(?:deserve|get)\s+{_YOU}"
        rf"|\b(?:you|u)\s+(?:seem|look|sound)\s+(?:lonely|sad|alone)")),
    ("gifts", re.compile(
        rf"\b(?:i'?ll|i\s+will|i\s+can|i\s+could|ill|lemme|let\s+me)\s+(?:buy|get|give|send|pay)\s+{_YOU}\s+(?:a\s+|some\s+)?"
        rf"(?:gifts?|money|cash|robux|v-?bucks|gift\s?cards?|presents?|phone|clothes|skins|nitro|stuff|something)"
        rf"|\b(?:want|wanna)\s+(?:some\s+)?(?:free\s+)?(?:robux|v-?bucks|money|a\s+gift\s?card|nitro)\b(?!.*\b(?:lol|haha)\b)"
        rf"|\bi\s+(?:can|could|will|'ll)\s+pay\s+{_YOU}|\b(?:get|buy|give)\s+{_YOU}\s+(?:some\s+)?(?:robux|v-?bucks|"
        rf"gift\s?cards?|nitro)")),
    ("meet", re.compile(
        rf"\b(?:want|wanna|we\s+should|let'?s|lets|could\s+we|can\s+we|we\s+could|we\s+can)\s+(?:to\s+)?"
        rf"(?:meet|hang\s?out|meet\s?up|see\s+each\s+other|get\s+together)\b|\bmeet\s+(?:me|up|irl|in\s+person|in\s+real\s+life)"
        rf"|\bi\s+(?:can|could|will|'ll)\s+(?:pick\s+{_YOU}\s+up|come\s+(?:get|pick\s+up|to)\s+{_YOU}|drive\s+to\s+{_YOU}"
        rf"|come\s+see\s+{_YOU}|come\s+get\s+{_YOU})|\b(?:come|should\s+come)\s+(?:stay|live|over)\s+(?:with|to)\s+me"
        rf"|\bsend\s+(?:me\s+)?{_YOUR}\s+(?:address|location|addy)")),
    ("personal_info", re.compile(
        rf"\bwhere\s+(?:do|d)\s+{_YOU}\s+live|\bwhat\s+(?:city|town|state|street|neighbou?rhood)\s+(?:do|r|are)\s+{_YOU}"
        rf"|\bwhat\s+(?:city|town)\s+(?:do\s+)?{_YOU}\s+live|\bwhat\s+(?:school|town|city)\b|\bwhich\s+school"
        rf"|\bwhere\s+(?:do|d)\s+{_YOU}\s+go\s+to\s+school|\b{_YOUR}\s+(?:address|school\s+name)")),
    ("photo", re.compile(
        rf"\bsend\s+(?:me\s+)?(?:a\s+|some\s+|more\s+|another\s+)?(?:pic|pics|picture|pictures|photo|photos|selfie|selfies|vid|"
        rf"video|snap)\b|\b(?:show|let)\s+me\s+(?:see\s+)?(?:{_YOU}|{_YOUR}self|{_YOU}rself|{_YOUR}\s+face)\b"
        rf"|\bwhat\s+(?:do|d)\s+{_YOU}\s+look\s+like|\bcan\s+i\s+see\s+(?:{_YOU}|a\s+pic|{_YOUR}\s+face)"
        rf"|\b(?:turn\s+on|open)\s+{_YOUR}\s+(?:cam|camera)|\bon\s+cam\b|\bsend\s+(?:me\s+)?something|"
        rf"i'?ll\s+send\s+{_YOU}\s+(?:something|one|a\s+pic)\s+if")),
    ("flattery", re.compile(
        rf"\b(?:{_YOUR}|{_YOU}\s+are|{_YOU}\s+r|{_YOU}\s+look|{_YOU}\s+seem|{_YOU}\s+sound|i\s+bet\s+{_YOU}'?r?e?|"
        rf"i\s+bet\s+{_YOUR})\s+(?:so\s+|really\s+|very\s+|super\s+|such\s+a\s+|rly\s+)?(?:pretty|beautiful|cute|hot|sexy|"
        rf"gorgeous|mature|special|perfect|adorable|stunning|handsome|cutie)|\bhey\s+(?:cutie|beautiful|gorgeous|sexy|pretty)"
        rf"|\b(?:ur|you'?re|youre|you\s+are)\s+(?:not\s+like|different\s+from)\s+(?:other|the\s+other)")),
    ("maturity", re.compile(
        rf"\bmature\s+for\s+{_YOUR}\s+age|\b{_YOU}\s+(?:seem|sound|act|look)\s+(?:so\s+|really\s+)?(?:older|mature)"
        rf"|\bold\s+soul\b|\b(?:ur|you'?re|youre|you\s+are)\s+(?:so\s+|really\s+)?mature\b|\bthat'?s\s+a\s+good\s+age")),
    ("relationship", re.compile(
        rf"\b(?:do|d)\s+{_YOU}\s+have\s+a\s+(?:bf|boyfriend|gf|girlfriend)|\bhave\s+{_YOU}\s+(?:ever\s+)?had\s+a\s+"
        rf"(?:bf|boyfriend|gf|girlfriend)|\b(?:are|r)\s+{_YOU}\s+single|\bbe\s+my\s+(?:gf|girlfriend|bf|boyfriend)")),
    ("sexual_probe", re.compile(
        rf"\b(?:are|r)\s+{_YOU}\s+(?:a\s+)?virgin|\bhave\s+{_YOU}\s+(?:ever\s+)?(?:been\s+kissed|kissed\s+(?:any|some)\s?(?:one|body)"
        rf"|had\s+sex|done\s+it|touched|been\s+touched|masturbated|seen\s+a)|\b(?:do|d)\s+{_YOU}\s+(?:ever\s+)?(?:touch|play\s+with)\s+"
        rf"(?:{_YOU}rself|{_YOUR}self)|\bwhat'?s?\s+(?:is\s+)?{_YOUR}\s+(?:bra|cup)\s+size|\b(?:bra|cup)\s+size"
        rf"|\bhave\s+{_YOU}\s+started\s+(?:puberty|{_YOUR}\s+period)|\b(?:are|r)\s+{_YOU}\s+developed"
        rf"|\bi\s+can\s+teach\s+{_YOU}|\bwhat\s+are\s+{_YOU}\s+wearing|\bwhat\s+r\s+u\s+wearing")),
]
CUE_NAMES = tuple(name for name, _ in CUES)
# Every cue pattern needs one of these words (tests/unit/moderation/detectors/test_gates.py checks it).
TRIGGERS = frozenset("""
alone yourself urself anyone anybody any any1 someone somebody some else parents parent mom mum mommy mother dad
daddy father family folks sister brother guardian step stepdad stepmom door home tell secret keep between delete
know stay stays understand approve only trust friend friends buy get give send pay robux vbucks bucks v nitro gift
giftcard giftcards money cash present presents phone clothes skins stuff something meet meetup hang hangout see
together pick come drive stay live over address location addy where what which city town state street neighborhood
neighbourhood school pic pics picture pictures photo photos selfie selfies vid video snap show let lemme cam camera
look pretty beautiful cute hot sexy gorgeous mature special perfect adorable stunning handsome cutie different
older soul age bf boyfriend gf girlfriend single virgin kissed touched touch masturbated play bra cup puberty
period developed teach wearing lonely sad deserve care listen love appreciate gets cares loves understands seem
sound act private quiet low down hidden between messages chats texts screen check read asleep awake around there
nearby room bedroom bed sleep leave work out gone nobody noone one body want wanna
""".split())


class GroomingDetector:
    """Emits one signal per cue kind found in a message, scored 0: the score
    is the conversation's (`risk.ConversationRisk.grooming`)."""
    name = GROOMING

    def detect(self, ctx: MessageContext) -> list[Signal]:
        if not ctx.views.gate(TRIGGERS):
            return []
        squashed = ctx.views.squashed
        text = squashed.text
        original = ctx.message.text
        signals = []
        for cue, pattern in CUES:
            match = pattern.search(text)
            if match:
                span = squashed.source_span(*match.span())
                signals.append(Signal(GROOMING, f"grooming.{cue}", common_pb2.CATEGORY_CHILD_SAFETY, 0.0,
                                      span=span, evidence=original[span[0]:span[1]], cue=cue))
        return signals
