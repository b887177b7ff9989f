"""Spam and bots: links, promotions, the same text in many conversations,
and typing no person can do.

Rules:

- `spam.link`: a web address, including "name dot com" and shorteners.
- `spam.promo`: free currency, easy money, cam and fan sites, "check my
  profile", "subscribe to my channel", "not a bot".
- `spam.repeated_text`: this device sent the same text (digits and
  punctuation aside) in several conversations; `spam.campaign`: many devices
  send it, and it carries a link or a promotion. Greetings everyone types
  ("hey how are you") are short, carry nothing, and stay below the bar.
- `spam.typing_speed`: more characters a second than a person types, from
  the typing indicator when the gateway sends it, else from the time since
  the sender's previous line.
"""
from __future__ import annotations

import re

from parley.v1 import common_pb2
from services.moderation.detectors import normalize
from services.moderation.detectors.base import SPAM, MessageContext, Signal
from services.moderation.detectors.state import RepeatedTexts

_TLD = (r"(?:com|net|org|io|xyz|club|biz|gg|info|ru|link|site|online|top|me|co|ly|app|live|cc|tk|shop|store|tv|us"
        r"|uk|vip|win|fun|pro|click|one|cam|sex|xxx|ai|to|in|de)")
_LINK = re.compile(
    rf"(?:https?://|www\.)[^\s]+|\b(?:bit\.ly|tinyurl\.com|t\.co|goo\.gl|is\.gd|cutt\.ly|shorturl\.at)/\S+"
    rf"|\b[a-z0-9][a-z0-9\-]{{1,62}}\.{_TLD}\b(?:/\S*)?"
    rf"|\b(?P<name>[a-z0-9][a-z0-9\-]{{2,62}})\s*(?:\(dot\)|\[dot\]|\s+dot\s+)\s*{_TLD}\b")
_INVITE = re.compile(r"discord\.gg|discord(?:app)?\.com/invite|chat\.whatsapp\.com|t\.me/(?:joinchat|\+)")
# "look at that dot on the screen", "the store dot com is a weird name"
_NOT_SITE_NAMES = frozenset("the a an that this my your home store at it dot is was there here what".split())
_PROMO = re.compile(
    r"\bfree\s+(?:robux|v-?bucks|followers|likes|iphone|gift\s?cards?|nitro|skins|money|coins|subs|pics|videos|content)"
    r"|\b(?:earn|make)\s+(?:\$\s?\d+|\d+\s?\$|money|cash|fast\s+cash|\d+\s+(?:dollars|usd))"
    r"|\b(?:\$\s?\d+|\d+\s+dollars)\s+(?:a|per)\s+(?:day|week|hour)|\bearn\s+\w+\s+(?:daily|a\s+day|per\s+day)"
    r"|\bonly\s?fans\b|\bfansly\b|\b\w*cams?\b\s*(?:dot|\.)|\bsexycams|\bhot\s+(?:singles|girls)\s+(?:near|in|waiting)"
    r"|\bprivate\s+(?:photos|pics|videos|vids)\b|\blink\s+in\s+(?:my\s+)?bio\b|\bcheck\s+(?:out\s+)?my\s+(?:profile|bio|page|"
    r"channel|link|site|website|stream)|\b(?:subscribe|sub)\s+to\s+my\b|\bfollow\s+my\s+(?:channel|tiktok|youtube|insta|"
    r"twitch|page)|\bcrypto\b|\bbitcoin\b|\bforex\b|\binvest(?:ment)?\b.*\breturns?\b|\bdouble\s+your\b|\bdm\s+me\s+for\b"
    r"|\bclick\s+(?:the\s+|this\s+|my\s+|on\s+)?link\b|\bclick\s+now\b|\bnot\s+a\s+bot\b|\breal\s+person,?\s+not\b"
    r"|\bgiveaway\b|\bpromo\s+code\b|\bjoin\s+our\s+team\b|\bwork\s+from\s+home\b.*\b(?:earn|\$)|\bshout\s?out\b"
    r"|\benter\s+your\s+(?:username|password|login)|\blog\s+in\s+with\s+your\s+account")
_FINGERPRINT_STRIP = re.compile(r"[^a-z]+")
# The promotion rule needs "$" or one of these words (tests/unit/moderation/detectors/test_gates.py checks it).
TRIGGERS = frozenset("""
free earn make dollars dollar usd day week hour daily only onlyfans fans fansly cams cam sexycams hot private
photos pics videos vids link check subscribe sub follow crypto bitcoin forex invest investment returns double dm
click now bot real person giveaway promo join work shout shoutout enter log login
""".split())
MIN_REPEAT_CHARS = 15
HUMAN_CHARS_PER_SECOND = 25.0


def fingerprint(squashed_text: str) -> int:
    """The same text up to case, digits, punctuation and spacing."""
    return hash(_FINGERPRINT_STRIP.sub(" ", squashed_text).strip())


class SpamDetector:
    name = SPAM

    def __init__(self, repeated: RepeatedTexts) -> None:
        self.repeated = repeated

    def detect(self, ctx: MessageContext, now_ms: int) -> list[Signal]:
        message = ctx.message
        original = message.text
        squashed = ctx.views.squashed
        base = ctx.views.base
        signals: list[Signal] = []

        link = None
        links = "." in base.text or "dot" in ctx.views.words or not normalize.GATES
        # a contact detail (an e-mail, wa.me/<number>) is the contact
        # detector's; a group invitation is spam as well
        details = [f.span for f in ctx.contacts if f.maskable]
        for match in (_LINK.finditer(base.text) if links else ()):
            name = match.group("name")
            if name is not None and (name in _NOT_SITE_NAMES or (len(name) < 6 and not any(c.isdigit() for c in name))):
                continue
            start, end = base.source_span(*match.span())
            if any(s < end and start < e for s, e in details) and not _INVITE.search(match.group(0)):
                continue
            link = match
            break
        if link:
            span = base.source_span(*link.span())
            signals.append(Signal(SPAM, "spam.link", common_pb2.CATEGORY_SPAM, 0.6, span=span,
                                  evidence=original[span[0]:span[1]]))
        promo = (_PROMO.search(squashed.text)
                 if "$" in squashed.text or ctx.views.gate(TRIGGERS) else None)
        if promo:
            span = squashed.source_span(*promo.span())
            signals.append(Signal(SPAM, "spam.promo", common_pb2.CATEGORY_SPAM, 0.6, span=span,
                                  evidence=original[span[0]:span[1]]))

        stripped = _FINGERPRINT_STRIP.sub(" ", squashed.text).strip()
        if len(stripped) >= MIN_REPEAT_CHARS:
            fp = hash(stripped)
            mine = self.repeated.record(fp, message.device_token, message.match_id, now_ms)
            if mine >= 3:
                score = min(0.8, 0.2 + 0.15 * (mine - 2))
                signals.append(Signal(SPAM, "spam.repeated_text", common_pb2.CATEGORY_SPAM, score,
                                      span=(0, len(original)), evidence=original))
            if link or promo or ctx.contacts:
                devices = self.repeated.record_everyone(fp, message.device_token, now_ms)
                if devices >= 5:
                    signals.append(Signal(SPAM, "spam.campaign", common_pb2.CATEGORY_SPAM, 0.8,
                                          span=(0, len(original)), evidence=original))

        started = message.typing_started_at_ms or ctx.previous_sent_at_ms or message.connected_at_ms
        chars = len(original.strip())
        if started and chars >= 20 and message.sent_at_ms >= started:
            seconds = max((message.sent_at_ms - started) / 1000.0, 0.001)
            speed = chars / seconds
            if speed > HUMAN_CHARS_PER_SECOND:
                score = 0.55 if speed > 2 * HUMAN_CHARS_PER_SECOND else 0.45
                signals.append(Signal(SPAM, "spam.typing_speed", common_pb2.CATEGORY_SPAM, score))
        return signals
