"""Undoing the spellings people use to slip past filters, while remembering
where each character came from so that a match can be masked, and quoted as
evidence, in the text that was actually sent.

Views of one message (all lowercase):

- `base`: NFKD with accents and invisible characters dropped, a small map of
  look-alike letters (Cyrillic and Greek confusables, regional-indicator and
  circled letters), emoji keycap digits as digits. "ѕnар" -> "snap",
  "5️⃣5️⃣" -> "55".
- `numeric`: `base` with number words as digits: "twenty six" -> "26",
  "five five five one" -> "5 5 5 1".
- `squashed`: `base` with spaced-out letters joined and leetspeak undone inside
  words: "s n a p" -> "snap", "sn4pch4t" -> "snapchat", "k1k" -> "kik",
  "hornyyyy" -> "horny". Only for keyword rules: it also turns "m15" into
  "mis", so ages and numbers are read from `numeric`.

Every view is a `Mapped` text: for each of its characters, the span of the
original text it came from.
"""
from __future__ import annotations

import re
import unicodedata
from functools import cached_property
from typing import Callable

# Look-alikes that NFKD leaves alone: Cyrillic and Greek letters shaped like
# Latin ones, and a few symbols. (NFKD already folds fullwidth, circled,
# mathematical and superscript letters and digits.)
CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԛ": "q",
    "ԝ": "w", "һ": "h", "ӏ": "l", "ɡ": "g", "г": "r", "п": "n", "д": "d", "ь": "b", "з": "3",
    # Greek
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "η": "n", "μ": "u", "γ": "y", "σ": "o", "ς": "s",
    # Latin extensions and symbols
    "ɑ": "a", "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ß": "ss", "æ": "ae", "œ": "oe",
    "ⅰ": "i", "∂": "d", "€": "e", "£": "l", "¥": "y", "®": "r", "©": "c", "℮": "e",
    "’": "'", "‘": "'", "‛": "'", "´": "'", "`": "'", "＂": '"', "“": '"', "”": '"',
    "–": "-", "—": "-", "‐": "-", "‑": "-", "−": "-", "﹫": "@",
    "🔟": "10", "💯": "100",
}
# Regional indicator letters, used as letters: 🇸🇳🇦🇵
for _i in range(26):
    CONFUSABLES[chr(0x1F1E6 + _i)] = chr(ord("a") + _i)
# Dropped entirely: zero-width and formatting characters, variation selectors,
# the combining keycap, soft hyphen.
INVISIBLE = frozenset("\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f"
                      "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\ufeff\u20e3"
                      + "".join(chr(c) for c in range(0xFE00, 0xFE10)))


class Mapped:
    """A text and, for each character, the [start, end) span of the original
    text it stands for."""

    __slots__ = ("text", "starts", "ends")

    def __init__(self, text: str, starts: list[int], ends: list[int]) -> None:
        self.text = text
        self.starts = starts
        self.ends = ends

    @classmethod
    def identity(cls, text: str) -> "Mapped":
        n = len(text)
        return cls(text, list(range(n)), list(range(1, n + 1)))

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text behind [start, end) of this view."""
        if end <= start:
            at = self.starts[start] if start < len(self.starts) else (self.ends[-1] if self.ends else 0)
            return at, at
        return self.starts[start], self.ends[end - 1]

    def source_offset(self, index: int) -> int:
        """Where in the original text this view's position `index` falls."""
        if index < len(self.starts):
            return self.starts[index]
        return self.ends[-1] if self.ends else 0

    def view_offset(self, source_index: int) -> int:
        """The first position of this view at or after `source_index` of the original."""
        for i, start in enumerate(self.starts):
            if start >= source_index:
                return i
        return len(self.text)

    def sub(self, pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str | None]) -> "Mapped":
        """Like `pattern.sub`, keeping the map: the characters of a
        replacement all stand for the whole span of the original it replaced.
        `repl` returning None keeps the match as it is."""
        pieces: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        pos = 0
        text = self.text
        changed = False
        for match in pattern.finditer(text):
            new = repl(match)
            if new is None:
                continue
            a, b = match.span()
            pieces.append(text[pos:a])
            starts.extend(self.starts[pos:a])
            ends.extend(self.ends[pos:a])
            if new:
                s, e = self.source_span(a, b)
                pieces.append(new)
                starts.extend([s] * len(new))
                ends.extend([e] * len(new))
            pos = b
            changed = True
        if not changed:
            return self
        pieces.append(text[pos:])
        starts.extend(self.starts[pos:])
        ends.extend(self.ends[pos:])
        return Mapped("".join(pieces), starts, ends)


def _fold_char(ch: str) -> str:
    """One original character as it reads in `base`: possibly empty, possibly several."""
    if ch in INVISIBLE:
        return ""
    mapped = CONFUSABLES.get(ch) or CONFUSABLES.get(ch.lower())
    if mapped is not None:
        return mapped
    out = []
    for part in unicodedata.normalize("NFKD", ch):
        if part in INVISIBLE or unicodedata.combining(part):
            continue
        for lower in part.lower():
            out.append(CONFUSABLES.get(lower, lower))
    return "".join(out)


_FOLD_CACHE: dict[str, str] = {}


def fold(text: str) -> Mapped:
    """The `base` view."""
    if text.isascii():
        return Mapped.identity(text.lower())
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    cache = _FOLD_CACHE
    for i, ch in enumerate(text):
        if ch.isascii():
            out = ch.lower()
        else:
            out = cache.get(ch)
            if out is None:
                out = _fold_char(ch)
                if len(cache) < 50_000:
                    cache[ch] = out
        if out:
            pieces.append(out)
            starts.extend([i] * len(out))
            ends.extend([i + 1] * len(out))
        elif ends:
            # a dropped character (a keycap's marks, a zero-width space)
            # belongs to the one before it: masking "5️⃣" hides all of it
            ends[-1] = i + 1
    return Mapped("".join(pieces), starts, ends)


# ---------------------------------------------------------------- numbers

UNITS = {"zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
         "seven": 7, "eight": 8, "nine": 9, "niner": 9}
TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
         "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
        "seventy": 70, "eighty": 80, "ninety": 90}
_UNIT_WORDS = "|".join(sorted((w for w in UNITS if w != "oh"), key=len, reverse=True))
_NUMBER_WORD = re.compile(
    r"\b(?:(?P<tens>" + "|".join(TENS) + r")(?:[\s-]+(?P<unit>" + _UNIT_WORDS + r"))?"
    r"|(?P<teen>" + "|".join(TEENS) + r")|(?P<single>" + _UNIT_WORDS + r"|oh))\b")


def _number_word(match: re.Match[str]) -> str | None:
    if match.group("tens"):
        value = TENS[match.group("tens")] + (UNITS[match.group("unit")] if match.group("unit") else 0)
        return str(value)
    if match.group("teen"):
        return str(TEENS[match.group("teen")])
    word = match.group("single")
    if word == "oh":
        # "oh" is a zero only among other digits: "five oh five", not "oh snap"
        text = match.string
        before = text[max(0, match.start() - 8):match.start()]
        after = text[match.end():match.end() + 8]
        if not (re.search(r"(?:\d|" + _UNIT_WORDS + r")[\s-]*$", before)
                and re.match(r"[\s-]*(?:\d|" + _UNIT_WORDS + r"|oh)\b", after)):
            return None
    return str(UNITS[word])


# ---------------------------------------------------------------- squashing

# two or more single letters or digits separated by one or two of these:
# "s n a p", "s.n.a.p", "n-u-d-e-s", "k . y . s"
_SPACED = re.compile(r"(?<![a-z0-9])(?:[a-z0-9@$](?:[ .\-_*|/\\,~+]{1,3})){1,}[a-z0-9@$](?![a-z0-9])")
_SEPARATORS = re.compile(r"[ .\-_*|/\\,~+]")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b",
                       "@": "a", "$": "s", "!": "i", "|": "l", "9": "g"})
# a word with at least one letter and at least one of the leet characters
_LEET_WORD = re.compile(r"(?<![a-z0-9@$!|])(?=[a-z0-9@$!|]*[a-z])(?=[a-z0-9@$!|]*[0-9@$!|])[a-z0-9@$!|]+")
_REPEATS = re.compile(r"([a-z])\1{2,}")
_LEET_CHAR = re.compile(r"[0-9@$!|]")


# Joined only when the letters spell a word a rule looks for: "r u a boy"
# stays as it is, "s n a p" becomes "snap".
_SPACED_WORD = (
    r"(?:snap|snapchat|sc|insta|instagram|ig|kik|discord|telegram|tele|whatsapp|skype|tiktok|roblox|nudes?|naked|nude"
    r"|sex|sext|sexy|horny|dick|cock|pussy|boobs|tits|fuck|fck|fuk|kys|kms|kill|die|bitch|slut|whore|cum|click|link"
    r"|free|robux|vbucks|porn|cam|cams|gmail|com|dm|add|text|call|secret|alone|pics?|send|retard|loser|idiot"
    r"|ugly|fat|stupid|dumb|shit|cunt|fag|nigga|nigger|rape|suck|me|my|ur|your|you|u)s?")
# up to three such words run together: "s e n d n u d e s" -> "send nudes"
_SPACED_WORDS = re.compile(f"({_SPACED_WORD})({_SPACED_WORD})?({_SPACED_WORD})?")


def _join_spaced(match: re.Match[str]) -> str | None:
    joined = _SEPARATORS.sub("", match.group(0))
    words = _SPACED_WORDS.fullmatch(joined.translate(_LEET))
    if not words:
        return None
    if len([g for g in words.groups() if g]) == 1:
        return joined
    # the original characters (leet and all), split where the words split
    out, pos = [], 0
    for group in words.groups():
        if group:
            out.append(joined[pos:pos + len(group)])
            pos += len(group)
    return " ".join(out)


def _unleet(match: re.Match[str]) -> str | None:
    word = match.group(0)
    # a handle marker or an e-mail's @ stays: "@sunny", "a@b"
    if word.startswith("@") and len(word) > 1:
        return "@" + word[1:].translate(_LEET)
    if word[-1] in "!" and word[:-1].isalpha():
        return None  # "wow!" is not leet
    return word.translate(_LEET)


_WORD = re.compile(r"[a-z0-9]+")
# Set False to run every rule on every line (the gates' own test does).
GATES = True


class Views:
    """The views of one message, each made on first use."""

    __slots__ = ("original", "base", "__dict__")

    def __init__(self, text: str) -> None:
        self.original = text
        self.base: Mapped = fold(text)

    @cached_property
    def numeric(self) -> Mapped:
        return self.base.sub(_NUMBER_WORD, _number_word)

    @cached_property
    def words(self) -> frozenset[str]:
        """The words of `squashed` and `numeric`: rules skip a line that
        has none of their trigger words (`gate`)."""
        return frozenset(_WORD.findall(self.squashed.text)) | frozenset(_WORD.findall(self.numeric.text))

    def gate(self, triggers: frozenset[str]) -> bool:
        """False when the line has none of `triggers`: the rules behind
        them cannot match, so they need not run."""
        return not GATES or not self.words.isdisjoint(triggers)

    @cached_property
    def squashed(self) -> Mapped:
        view = self.base.sub(_SPACED, _join_spaced)
        if _LEET_CHAR.search(view.text):
            view = view.sub(_LEET_WORD, _unleet)
        return view.sub(_REPEATS, lambda m: m.group(1))
