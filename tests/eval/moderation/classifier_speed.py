"""How fast the text classifier runs in one process, without the broker:
`TextModerator.observe_batch` (every detector, the model, conversation
state and policy) at batch sizes 1, 64 and 256, the offensive-language model
alone, the model through scikit-learn as the package ships it (the raw limit
it replaces), and `mask_contacts` in microseconds a call.

The chat lines are every line of the evaluation set (far more of them break
a rule than in real traffic, so this is a pessimistic mix), spread over many
conversations of two speakers each, in both pools; `--benign` uses only the
lines labeled with nothing. Rates are per CPU-second of this process
(`time.process_time`), so other work on the machine does not skew them. The
last line is JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from parley.v1 import common_pb2  # noqa: E402
from services.moderation.detectors import ObservedMessage, mask_contacts  # noqa: E402
from services.moderation.detectors.model import shared_model  # noqa: E402
from services.moderation.detectors.moderator import TextModerator  # noqa: E402
from tests.eval.moderation.eval_moderation import SPLITS, load, messages_of  # noqa: E402


def corpus(benign: bool = False) -> list[str]:
    texts = []
    for split in SPLITS:
        for item in load(split):
            if benign and (item.get("labels") or item.get("severe")):
                continue
            texts.extend(text for _speaker, text, _t, _extra in messages_of(item))
    return texts


def messages(texts: list[str], count: int) -> list[ObservedMessage]:
    out = []
    t = 1_800_000_000_000
    for i in range(count):
        conversation = i // 10  # ten lines a conversation, alternating speakers
        side = i % 2
        band = common_pb2.AGE_BAND_MINOR if conversation % 2 else common_pb2.AGE_BAND_ADULT
        t += 37
        out.append(ObservedMessage(
            match_id=f"m{conversation}", session_id=f"m{conversation}/{side}", device_token=f"d{conversation}/{side}",
            mode=common_pb2.MODE_TEXT, age_band=band, text=texts[i % len(texts)], sent_at_ms=t))
    return out


def rate(fn, items: list, batch: int, seconds: float) -> float:
    """Items per CPU-second through `fn(batch_of_items)`, over at least `seconds` of CPU."""
    done = 0
    start = time.process_time()
    i = 0
    while True:
        chunk = items[i:i + batch]
        if len(chunk) < batch:
            i = 0
            chunk = items[:batch]
        fn(chunk)
        i += batch
        done += batch
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return done / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU time per measurement")
    parser.add_argument("--benign", action="store_true", help="only the lines of items labeled with nothing")
    args = parser.parse_args(argv)
    texts = corpus(args.benign)
    model = shared_model()
    stream = messages(texts, 200_000)
    figures: dict[str, object] = {"corpus": "benign" if args.benign else "evaluation set", "lines_in_corpus": len(texts)}

    classifier = {}
    for batch in (1, 64, 256):
        moderator = TextModerator(model=model)
        per_s = rate(moderator.observe_batch, stream, batch, args.seconds)
        classifier[str(batch)] = round(per_s)
        print(f"TextModerator.observe_batch, batch {batch:>3}: {per_s:>9,.0f} messages/CPU-s")
    figures["classifier_messages_per_s"] = classifier

    model_only = {}
    for batch in (1, 64, 256):
        per_s = rate(model.predict_batch, texts * 4, batch, args.seconds / 2)
        model_only[str(batch)] = round(per_s)
        print(f"model alone (linear, in Python), batch {batch:>3}: {per_s:>9,.0f} texts/CPU-s")
    figures["model_texts_per_s"] = model_only

    from profanity_check import profanity_check
    raw = {}
    for batch in (1, 64, 256):
        per_s = rate(profanity_check.predict_prob, texts * 4, batch, args.seconds / 2)
        raw[str(batch)] = round(per_s)
        print(f"model through scikit-learn (the package's predict_prob), batch {batch:>3}: {per_s:>9,.0f} texts/CPU-s")
    figures["sklearn_model_texts_per_s"] = raw

    calls = 0
    start = time.process_time()
    while time.process_time() - start < args.seconds:
        for text in texts:
            mask_contacts(text)
        calls += len(texts)
    us = (time.process_time() - start) / calls * 1e6
    figures["mask_contacts_us_per_call"] = round(us, 1)
    print(f"mask_contacts: {us:.1f} µs a call (mean over the corpus)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
