"""The word gates only skip rules that could not have matched: with the
gates off, every line of the evaluation set and of these tests gives the
same findings."""
import json
from pathlib import Path

from parley.v1 import common_pb2 as c
from services.moderation.detectors import normalize
from services.moderation.detectors.base import MessageContext, ObservedMessage
from services.moderation.detectors.contact import find_contacts
from services.moderation.detectors.moderator import TextModerator
from services.moderation.detectors.normalize import Views

from conftest import T0, FixedModel

EVAL = Path(__file__).resolve().parents[4] / "tests" / "eval" / "moderation"


def corpus() -> list[str]:
    texts = []
    for name in ("dev.jsonl", "heldout.jsonl"):
        for line in (EVAL / name).read_text().splitlines():
            item = json.loads(line)
            texts.extend([item["text"]] if "text" in item else [m[1] for m in item["messages"]])
    here = Path(__file__).parent
    for path in here.glob("test_text_*.py"):
        for line in path.read_text().splitlines():
            for quoted in line.split('"')[1::2]:
                if 2 < len(quoted) < 200:
                    texts.append(quoted)
    return texts


def findings(texts, p: float, asked_age: bool):
    moderator = TextModerator(model=FixedModel(p), clock=lambda: T0)
    out = []
    for band in (c.AGE_BAND_MINOR, c.AGE_BAND_ADULT):
        for text in texts:
            views = Views(text)
            message = ObservedMessage("m", "s", "d", c.MODE_TEXT, band, text, T0)
            ctx = MessageContext(message=message, views=views, offensive_probability=p,
                                 contacts=find_contacts(views), asked_age=asked_age)
            row = []
            for detector in (moderator.contact, moderator.age, moderator.grooming, moderator.sexual,
                             moderator.harassment):
                row.extend(detector.detect(ctx))
            row.extend(s for s in moderator.spam.detect(ctx, T0) if s.rule in ("spam.link", "spam.promo"))
            out.append(row)
    return out


def test_gates_change_no_finding(monkeypatch):
    texts = corpus()
    assert len(texts) > 1000
    for p, asked in ((0.05, False), (0.95, True)):
        gated = findings(texts, p, asked)
        monkeypatch.setattr(normalize, "GATES", False)
        ungated = findings(texts, p, asked)
        monkeypatch.setattr(normalize, "GATES", True)
        differ = [(t, g, u) for t, g, u in zip(texts * 2, gated, ungated) if g != u]
        assert not differ, differ[:3]
