"""Contact details and requests to move elsewhere: phone numbers, e-mail
addresses, social handles, invitation links, and "do you have snap?".

`find_contacts` is the one place this is detected. `mask_contacts` (the
gateway's inline call in minors' pools) and the `contact` detector (the
moderation service's) both use it, so what the gateway hides and what
moderation scores never drift apart.

Details (phone, e-mail, handle, link) are `maskable`: in a minors' pool they
never reach the other side. A request alone ("add me on discord") is scored,
not masked: there is nothing in it to hide, and the answer that would carry
a handle is masked in its turn.
"""
from __future__ import annotations

import re

from parley.v1 import common_pb2
from services.moderation.detectors.base import CONTACT, ContactFinding, MessageContext, Signal
from services.moderation.detectors import normalize
from services.moderation.detectors.normalize import Mapped, Views

MASK = "[hidden]"

# ---------------------------------------------------------------- platforms

# Messaging apps: "do you have X?" is a request to move there.
MESSAGING = (r"snap\s?chat|snapchat|snapch|snp|snapp?|insta\s?gram|instagram|insta|instaa|discord|discrd|dscrd"
             r"|telegram|telegrm|tele|whats\s?app|whatsap|watsapp?|kik|skype|wickr|signal\s+app|viber|we\s?chat"
             r"|facebook|messenger|tiktok|tik\s?tok|twitter|threema|imessage|facetime|line\s+app|session\s+app"
             r"|sc|ig|dc|tg|wa|fb|disc")
# Gaming networks: only "add me on X" / "my X is name" count ("do you have an
# xbox" is about the console).
GAMING = r"roblox|steam|xbox|xbl|psn|playstation|epic|epic\s+games|fortnite|minecraft|twitch|valorant|reddit"
# Names that are other words too ("sc", "ig" is also "i guess", "dc", "wa",
# "disc", "steam", "epic", "signal"): they count only in a strong form
# (`_strong_context`).
AMBIGUOUS = frozenset({"sc", "ig", "dc", "tg", "wa", "fb", "disc", "steam", "epic", "line", "snp"})
_ANY = f"(?:{MESSAGING}|{GAMING})"
# what follows "snap" when it is not the app
_NOT_APP_AFTER = (r"(?!\s*(?:peas?|shots?|judge?ments?|back|out|decisions?|crackle|of\b|at\b|into|"
                  r"a\s+(?:pic|photo|picture|selfie)|pics?|photos?|pictures?|fingers?|it\b|your\s+fingers))")

_PLATFORM = re.compile(rf"(?<![a-z0-9.\-])(?P<name>{_ANY})(?![a-z0-9]|[\-.][a-z0-9]){_NOT_APP_AFTER}")

# ---------------------------------------------------------------- requests

_VERB = (r"add|hmu|hit\s+me\s+up|dm|pm|message|messaging|msg|text|texting|txt|talk|talking|chat|chatting|continue"
         r"|move|switch|go|come|hop|join|contact|reach|find|follow|speak|friend|send\s+me\s+a\s+request|hit\s+me"
         r"|find\s+me|talk\s+more|keep\s+talking|keep\s+chatting")
_YOU = r"(?:you|u|ya|yu|yall)"
_REQUESTS = [
    # "add me on discord", "lets move to telegram", "continue on whatsapp?"
    re.compile(rf"\b(?:{_VERB})\b(?:\s+[a-z']+){{0,4}}?\s+(?:on|to|in|over|via|onto|at)\s+"
               rf"(?:my\s+|the\s+|ur\s+|your\s+)?(?P<name>{_ANY})(?![a-z0-9]){_NOT_APP_AFTER}"),
    # "do you have snap", "u got insta?", "you on kik?"
    re.compile(rf"\b(?:do|d|does|did)\s+{_YOU}\s+(?:still\s+)?(?:have|hav|hv|got|use|get\s+on|go\s+on)\s+"
               rf"(?:a\s+|an\s+)?(?P<name>{MESSAGING})(?![a-z0-9]){_NOT_APP_AFTER}"),
    re.compile(rf"\b{_YOU}\s+(?:have|hav|hv|got|use|on)\s+(?:a\s+|an\s+)?(?P<name>{MESSAGING})(?![a-z0-9])"
               rf"{_NOT_APP_AFTER}"),
    re.compile(rf"^\W*(?:have|hav|got|use|any)\s+(?:a\s+|an\s+)?(?P<name>{MESSAGING})(?![a-z0-9]){_NOT_APP_AFTER}"),
    # "whats your snap", "send me your insta", "can i get ur discord"
    re.compile(rf"\b(?:what'?s|whats|wats|wat|what\s+is|what\s+s|wuts|whts|(?:send|give|drop|share|tell|gimme)"
               rf"\s+me|can\s+i\s+(?:have|get)|lemme\s+get|let\s+me\s+get)\s+(?:your|ur|yo|ure)\s+"
               rf"(?P<name>{_ANY})(?![a-z0-9])"),
    # "kik?", "snap??", "discord or telegram?" as the whole line
    re.compile(rf"^\W*(?P<name>{MESSAGING})(?:\s*(?:or|/)\s*(?:{MESSAGING}))?\s*\?+\W*$"),
]
# Leaving for elsewhere without naming where.
_ELSEWHERE = re.compile(
    r"\b(?:(?:go|move|talk|switch|chat|continue|take\s+(?:this|it))\b(?:\s+[a-z']+){0,3}?\s+"
    r"(?:to\s+|on\s+)?(?:another|other|a\s+different|different|better|more\s+private|a\s+private|private)\s+"
    r"(?:app|site|platform|chat|place)"
    r"|(?:go|move|talk|chat|continue|take\s+(?:this|it))\s+(?:somewhere|some\s+where)\s+(?:else|more\s+private|private)"
    r"|(?:another|other)\s+app\b"
    r"|take\s+(?:this|it)\s+(?:elsewhere|offline|private))")
_CALL_ME = re.compile(r"\b(?:call|text|txt|facetime|ring|phone)\s+(?:me|u|you)\b(?=\s*(?:$|[?.!,]|at\b|on\b|pls|please|plz"
                      r"|sometime|tonight|now|rn|whenever|\d))|\bcan\s+i\s+(?:call|text|phone|facetime)\s+(?:you|u)\b"
                      r"|\b(?:what'?s|whats|wats|what\s+is|can\s+i\s+(?:have|get)|give\s+me|send\s+me|gimme|drop)\s+(?:your|ur)\s+"
                      r"(?:phone\s+)?(?:number|digits|phone|cell|#|email|e-mail|addy|address)\b")

# ---------------------------------------------------------------- details

# A handle after a platform name: "snap: lily.rose09", "my insta is @zoe",
# "kik me at hotboy_4u", "roblox is xX_Destroyer_Xx"
_HANDLE_LEAD = re.compile(r"(?:\s*(?:(?:user\s?name|username|user|name|id|handle|tag|acc|account|is|its|it's|me\s+at"
                          r"|me|at|here|add|my|mine)\b|=>|->|-+|=|:|@(?=\s)))*\s*")
# leads after which a plain word ("lexi") is taken for a handle
_STRONG_LEAD = re.compile(r"[:=@>\-]|\bme\b|\bat\b|\bid\b|\bname\b|\btag\b")
_HANDLE = re.compile(r"@?[a-z0-9][a-z0-9_.\-#]{2,31}")
_AT_HANDLE = re.compile(r"(?<![\w.@])@(?P<h>[a-z0-9_][a-z0-9_.]{2,29})(?![\w@]|\.[a-z]{2,}\b)")
_DISCORD_TAG = re.compile(r"(?<![\w#])[a-z0-9_.]{2,32}#\d{4}\b")
# "add jenny_k on snap", "im lexi.xo on insta"
_HANDLE_BEFORE = re.compile(rf"\b(?:add|follow|i'?m|i\s+am|find\s+me|look\s+up|search)\s+(?P<h>@?[a-z0-9][a-z0-9_.]{{2,31}})"
                            rf"\s+(?:on|in|at)\s+(?P<name>{_ANY})(?![a-z0-9])")
_DOT = r"(?:\s*\.\s*|\s*[\(\[\{]\s*dot\s*[\)\]\}]\s*|\s+dot\s+)"
_TLD = r"(?:com|net|org|edu|gov|io|co|uk|de|fr|es|it|nl|me|info|biz|ru|us|ca|au|in|br|mx|xyz|app|dev|tv|gg|club|online)"
_PROVIDERS = r"(?:gmail|googlemail|yahoo|ymail|hotmail|outlook|icloud|proton|protonmail|pm|aol|live|mail|gmx|yandex|msn|me)"
_EMAIL = re.compile(
    rf"(?<![\w.])[a-z0-9][a-z0-9_%+\-]*(?:{_DOT}[a-z0-9_%+\-]+)*"
    rf"(?:\s*@\s*[a-z0-9\-]+(?:{_DOT}[a-z0-9\-]+)*{_DOT}{_TLD}\b"
    rf"|(?:\s*[\(\[\{{]\s*at\s*[\)\]\}}]\s*|\s+at\s+){_PROVIDERS}{_DOT}{_TLD}(?:{_DOT}{_TLD})?\b"
    rf"|(?:\s*[\(\[\{{]\s*at\s*[\)\]\}}]\s*)[a-z0-9\-]+{_DOT}{_TLD}\b)")
_CONTACT_URL = re.compile(
    r"(?:https?://)?(?:www\.)?(?:t\.me|telegram\.me|wa\.me|chat\.whatsapp\.com|discord\.gg|discord(?:app)?\.com/invite"
    r"|snapchat\.com/add|instagram\.com|kik\.me|m\.me|facebook\.com|fb\.com|tiktok\.com|twitter\.com|x\.com"
    r"|linktr\.ee|onlyfans\.com|fansly\.com)/[\w.\-@]+")

# phone numbers, read from the `numeric` view
_PHONE = re.compile(r"(?<![\w$€£#.,/:])\+?\(?\d(?:[ \t\-.()/]{0,3}\d){6,16}(?![\w%])")
_PHONE_CONTEXT = re.compile(r"(?:call|text|txt|number|num|#|digits|phone|cell|mobile|whatsapp|wa|hmu|reach|ring|"
                            r"contact|signal|telegram|viber|sms|imessage|facetime)\W*(?:me\W*)?(?:is|at|on|:)?\W*$")
_NOT_PHONE_BEFORE = re.compile(r"(?:score|points?|level|lvl|rank|id|order|tracking|zip|postcode|year|price|cost|"
                               r"population|views|followers|subs|balance|\$|€|£|worth|paid|pay|salary|steps|miles|"
                               r"km|xp|robux|vbucks|coins|gold|bucks|flight|isbn|account\s+number)\W{0,3}(?:\w+\W+){0,4}$")
_NOT_PHONE_AFTER = re.compile(r"\s*(?:%|percent|points?|pts|followers|views|likes|subs|subscribers|dollars?|usd|euros?"
                              r"|k\b|xp|hours?|hrs|mins?|minutes|years?|days|robux|vbucks|coins|km|miles|lbs|kg|people"
                              r"|times|steps|times|downloads|members|users|players|kills|damage|dmg|gold|bucks)\b")
_DATE = re.compile(r"^(?:(?:19|20)\d\d[-./]\d\d?[-./]\d\d?|\d\d?[-./]\d\d?[-./](?:19|20)?\d\d)$")
_IP = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")

# Words that are not handles ("my snap is private", "add me on insta please").
COMMON_WORDS = frozenset("""
a about after again all also always am an and any anymore anyone are around as at away back bad banned be because
been before being best better boring both but by can cant can't come cool could dead deleted did didnt do does dont
don't down dumb each else even ever every fine first for from fun funny get gets go going gone good got had has have
he her here hers him his how i if im in into is isnt it its it's just kinda know later let lets like lol lmao login
me mine more most much my name never new nice no none nope not now of off ok okay old on once one only or other our
out over please pls plz private probably pretty real really same see she should so some still stuff sure than thanks
that the their them then there these they thing this those though thx time to too u ugh under up ur us used very
want was wbu we weird well were what when where which who why will with without would ya yah yea yeah yes yet you
your yours broken hacked dry empty later tmrw tomorrow tonight either account acc username user handle tag id add
chat app talk text message msg there more much hmu dm rn bro sis girl boy guy lmao haha right instead
""".split())

_SCORE = {"contact.phone": 0.9, "contact.email": 0.9, "contact.handle": 0.85, "contact.link": 0.9,
          "contact.app_request": 0.6, "contact.elsewhere": 0.55, "contact.call_request": 0.5}


def _strong_context(text: str, start: int, end: int) -> bool:
    """An ambiguous platform name counts only when said like one: "my sc is",
    "on ig", "your dc", "sc: name", "tele?" alone."""
    before = text[max(0, start - 12):start]
    after = text[end:end + 4]
    if re.search(r"(?:\bmy|\byour|\bur|\bon|\bme\s+on|\bthe)\s*$", before):
        return True
    if re.match(r"\s*(?::|=|-|->|\?)", after):
        return True
    return False


def _is_handle(token: str) -> bool:
    bare = token.lstrip("@").rstrip(".-#")
    if len(bare) < 3:
        return False
    if bare in COMMON_WORDS:
        return False
    if token.startswith("@") or any(c.isdigit() or c in "_.#" for c in bare):
        return True
    # a plain word: a name such as "lexi" is a handle too, unless it is English
    return bare.isalpha() and len(bare) >= 4


def _finding(rule: str, span: tuple[int, int], maskable: bool, score: float | None = None) -> ContactFinding:
    return ContactFinding(rule=rule, score=_SCORE[rule] if score is None else score, span=span, maskable=maskable)


def _handle_after(views: Views, squashed_start: int, squashed_end: int) -> tuple[int, int] | None:
    """The handle right after a platform name at [squashed_start,
    squashed_end) of the squashed view, as a span of the original text."""
    squashed = views.squashed
    source = squashed.source_offset(squashed_end) if squashed_end < len(squashed.text) else len(views.original)
    base = views.base
    pos = base.view_offset(source)
    lead = _HANDLE_LEAD.match(base.text, pos)
    lead_text = lead.group(0) if lead else ""
    pos = lead.end() if lead else pos
    match = _HANDLE.match(base.text, pos)
    if not match:
        return None
    token = match.group(0).rstrip(".-")
    if not _is_handle(token):
        return None
    if token.isalpha():
        # a plain word is a handle only when said like one: "snap: lexi",
        # "snap me lexi", "my snap is lexi" (not "insta is full of fakes")
        possessive = re.search(r"\b(?:my|mine)\s*$", squashed.text[max(0, squashed_start - 8):squashed_start])
        if not (_STRONG_LEAD.search(lead_text) or (possessive and lead_text.strip())):
            return None
    end = match.start() + len(token)
    return base.source_span(match.start(), end)


# Requests and handles need one of these words (tests/unit/moderation/detectors/test_gates.py checks it).
TRIGGERS = frozenset("""
snap snapchat snapch snp snapp chat insta gram instagram instaa discord discrd dscrd telegram telegrm tele whats app
whatsapp whatsap watsapp watsap kik skype wickr signal viber we wechat facebook messenger tiktok tik tok twitter
threema imessage facetime line session sc ig dc tg wa fb disc roblox steam xbox xbl psn playstation epic games
fortnite minecraft twitch valorant reddit another other different better private somewhere some elsewhere offline
call text txt ring phone number digits cell email mail addy address at
""".split())
_DIGITS = re.compile(r"\d")


def find_contacts(views: Views) -> list[ContactFinding]:
    """Every contact detail and request in a message, as spans of the original text."""
    found: list[ContactFinding] = []
    base = views.base
    text = base.text
    if (normalize.GATES and "@" not in text and "/" not in text and "#" not in text and len(_DIGITS.findall(views.numeric.text)) < 7
            and not views.gate(TRIGGERS)):
        return found
    # e-mail addresses and invitation links first: their parts are not handles or phones
    taken: list[tuple[int, int]] = []
    for match in _EMAIL.finditer(text):
        span = base.source_span(*match.span())
        found.append(_finding("contact.email", span, True))
        taken.append(span)
    for match in _CONTACT_URL.finditer(text):
        span = base.source_span(*match.span())
        found.append(_finding("contact.link", span, True))
        taken.append(span)

    def free(span: tuple[int, int]) -> bool:
        return not any(span[0] < t_end and t_start < span[1] for t_start, t_end in taken)

    for match in _AT_HANDLE.finditer(text):
        span = base.source_span(*match.span())
        if free(span) and match.group("h") not in COMMON_WORDS:
            found.append(_finding("contact.handle", span, True, 0.75))
            taken.append(span)
    for match in _DISCORD_TAG.finditer(text):
        span = base.source_span(*match.span())
        if free(span):
            found.append(_finding("contact.handle", span, True))
            taken.append(span)
    _phones(views, found, taken, free)

    squashed = views.squashed
    stext = squashed.text
    requested = False
    for i, pattern in enumerate(_REQUESTS):
        match = None
        for candidate in pattern.finditer(stext):
            name = candidate.group("name").replace(" ", "")
            if name in AMBIGUOUS and i == len(_REQUESTS) - 1:
                continue  # "ig?" alone may be "i guess?"
            if name in ("disc", "line", "snp") and i in (1, 2, 3):
                continue  # "do you have a disc"
            match = candidate
            break
        if match:
            found.append(_finding("contact.app_request", squashed.source_span(*match.span()), False))
            requested = True
            break
    # handles after a platform name
    for match in _PLATFORM.finditer(stext):
        name = match.group("name").replace(" ", "")
        if name in AMBIGUOUS and not _strong_context(stext, match.start(), match.end()):
            continue
        span = _handle_after(views, match.start(), match.end())
        if span and free(span):
            found.append(_finding("contact.handle", span, True))
            taken.append(span)
    for match in _HANDLE_BEFORE.finditer(text):
        if not _is_handle(match.group("h")):
            continue
        span = base.source_span(*match.span("h"))
        if free(span):
            found.append(_finding("contact.handle", span, True))
            taken.append(span)
    if not requested:
        match = _ELSEWHERE.search(stext)
        if match:
            found.append(_finding("contact.elsewhere", squashed.source_span(*match.span()), False))
        else:
            match = _CALL_ME.search(stext)
            if match:
                found.append(_finding("contact.call_request", squashed.source_span(*match.span()), False))
    return found


def _phones(views: Views, found: list[ContactFinding], taken: list[tuple[int, int]], free) -> None:
    numeric: Mapped = views.numeric
    text = numeric.text
    for match in _PHONE.finditer(text):
        run = match.group(0)
        digits = sum(c.isdigit() for c in run)
        if not 7 <= digits <= 15:
            continue
        stripped = run.strip("()")
        if _DATE.match(stripped) or _IP.match(stripped):
            continue
        only_digits = "".join(c for c in run if c.isdigit())
        if len(set(only_digits)) == 1 or only_digits.endswith("0000"):
            continue  # 1111111, 2500000: not a phone number
        if re.search(r"\d\.\d{1,2}$", run) and run.count(".") == 1:
            continue  # a decimal
        before = text[max(0, match.start() - 30):match.start()]
        if _NOT_PHONE_BEFORE.search(before) or _NOT_PHONE_AFTER.match(text, match.end()):
            continue
        if _PHONE_CONTEXT.search(before):
            score = 0.9
        elif run.startswith(("+", "(", "0")) or re.search(r"\d{3}[ \-.)]+\d{3}[ \-.]+\d{4}", run) or digits >= 10:
            score = 0.85
        else:
            score = 0.6
        span = numeric.source_span(*match.span())
        if free(span):
            found.append(_finding("contact.phone", span, True, score))
            taken.append(span)


def mask_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each span replaced by MASK (overlapping spans merged)."""
    if not spans:
        return text
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out = []
    pos = 0
    for start, end in merged:
        out.append(text[pos:start])
        out.append(MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def mask_contacts(text: str) -> tuple[str, bool]:
    """The gateway's inline call in minors' pools, before it relays a line:
    the text with every contact detail (phone, e-mail, handle, invitation
    link) replaced by "[hidden]", and whether any was found. Pure and cheap
    (tens of microseconds for a chat line)."""
    spans = [f.span for f in find_contacts(Views(text)) if f.maskable]
    if not spans:
        return text, False
    return mask_spans(text, spans), True


class ContactDetector:
    name = CONTACT

    def detect(self, ctx: MessageContext) -> list[Signal]:
        original = ctx.message.text
        signals = []
        for finding in ctx.contacts:
            start, end = finding.span
            signals.append(Signal(
                detector=CONTACT, rule=finding.rule, category=common_pb2.CATEGORY_CONTACT_SOLICITATION,
                score=finding.score, span=finding.span, evidence=original[start:end], cue="off_platform"))
        return signals
