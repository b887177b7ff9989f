"""`make eval-moderation`: precision and recall of the text detectors on the
hand-written evaluation set (tests/eval/moderation/*.jsonl, see its README),
per detector and for the severe (child-safety) path, on the dev split (tuned
on) and the held-out split (never tuned on).

Each item runs through its own `TextModerator` with the default policy (or
--policy FILE), its clock following the items' timestamps. A detector fires
on an item when the conversation score of any speaker reaches the policy's
`detect_threshold`; `mask` fires when `mask_contacts` hides something in any
line. An item is severe when a verdict takes the severe path against its
offender; a severe verdict against anyone else is a false alarm.

The last line printed is JSON: `severe_recall` and `severe_precision` are
the held-out split's; per-detector figures of both splits follow.
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
from services.moderation.detectors import DETECTORS, ObservedMessage, mask_contacts  # noqa: E402
from services.moderation.detectors.model import shared_model  # noqa: E402
from services.moderation.detectors.moderator import TextModerator  # noqa: E402
from services.moderation.policy import PolicyConfig, load_policy  # noqa: E402

HERE = Path(__file__).resolve().parent
SPLITS = ("dev", "heldout")
LABELS = (*DETECTORS, "mask")
POOLS = {"minor": common_pb2.AGE_BAND_MINOR, "adult": common_pb2.AGE_BAND_ADULT}
START_MS = 1_800_000_000_000


def load(split: str) -> list[dict]:
    items = []
    with open(HERE / f"{split}.jsonl", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                item = json.loads(line)
                unknown = set(item.get("labels", ())) - set(LABELS)
                if unknown:
                    raise SystemExit(f"{split}.jsonl line {number}: unknown labels {sorted(unknown)}")
                items.append(item)
    return items


def messages_of(item: dict) -> list[tuple[str, str, int, dict]]:
    if "text" in item:
        return [("a", item["text"], 0, {})]
    return [(m[0], m[1], m[2], m[3] if len(m) > 3 else {}) for m in item["messages"]]


def run_item(item: dict, config: PolicyConfig, model) -> dict:
    clock = {"now": START_MS}
    moderator = TextModerator(config, model=model, clock=lambda: clock["now"])
    band = POOLS[item["pool"]]
    fired: set[str] = set()
    severe_against: set[str] = set()
    severe_rules: set[str] = set()
    for speaker, text, seconds, extra in messages_of(item):
        sent = START_MS + seconds * 1000
        clock["now"] = sent
        match = f"{item['id']}#{extra.get('match', 1)}"
        typing = extra.get("typing_ms")
        message = ObservedMessage(
            match_id=match, session_id=f"{match}/{speaker}", device_token=f"{item['id']}/{speaker}",
            mode=common_pb2.MODE_TEXT, age_band=band, text=text, sent_at_ms=sent,
            typing_started_at_ms=sent - typing if typing is not None else 0)
        verdict = moderator.observe(message)
        fired.update(verdict.detected(config.detect_threshold))
        if verdict.severe:
            severe_against.add(speaker)
            for action in verdict.actions:
                if action.severe:
                    severe_rules.update(action.rules)
        if mask_contacts(text)[1]:
            fired.add("mask")
    return {"fired": fired, "severe_against": severe_against, "severe_rules": severe_rules}


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def evaluate(items: list[dict], config: PolicyConfig, model) -> dict:
    counts = {label: {"tp": 0, "fp": 0, "fn": 0} for label in LABELS}
    severe = {"tp": 0, "fp": 0, "fn": 0}
    errors = []
    for item in items:
        result = run_item(item, config, model)
        labels = set(item.get("labels", ()))
        for label in LABELS:
            want, got = label in labels, label in result["fired"]
            if want and got:
                counts[label]["tp"] += 1
            elif got:
                counts[label]["fp"] += 1
                errors.append((item, f"false {label}"))
            elif want:
                counts[label]["fn"] += 1
                errors.append((item, f"missed {label}"))
        offender = item.get("offender", "a")
        against = result["severe_against"]
        if item.get("severe"):
            if offender in against:
                severe["tp"] += 1
            else:
                severe["fn"] += 1
                errors.append((item, "missed severe"))
            if against - {offender}:
                severe["fp"] += 1
                errors.append((item, f"severe against the wrong side {sorted(against)}"))
        elif against:
            severe["fp"] += 1
            errors.append((item, f"false severe ({', '.join(sorted(result['severe_rules']))})"))
    detectors = {}
    for label, c in counts.items():
        detectors[label] = {"precision": _ratio(c["tp"], c["tp"] + c["fp"]),
                            "recall": _ratio(c["tp"], c["tp"] + c["fn"]),
                            "positives": c["tp"] + c["fn"], **c}
    return {
        "items": len(items),
        "lines": sum(1 for i in items if "text" in i),
        "conversations": sum(1 for i in items if "messages" in i),
        "severe": {"precision": _ratio(severe["tp"], severe["tp"] + severe["fp"]),
                   "recall": _ratio(severe["tp"], severe["tp"] + severe["fn"]),
                   "positives": severe["tp"] + severe["fn"], **severe},
        "detectors": detectors,
        "errors": errors,
    }


def _fmt(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def print_table(split: str, result: dict) -> None:
    print(f"\n{split}: {result['items']} items ({result['lines']} lines, {result['conversations']} conversations)")
    print(f"  {'detector':<12} {'precision':>9} {'recall':>7} {'positives':>9} {'tp':>4} {'fp':>4} {'fn':>4}")
    rows = [*result["detectors"].items(), ("SEVERE", result["severe"])]
    for name, r in rows:
        print(f"  {name:<12} {_fmt(r['precision']):>9} {_fmt(r['recall']):>7} {r['positives']:>9} "
              f"{r['tp']:>4} {r['fp']:>4} {r['fn']:>4}")


def print_errors(split: str, result: dict) -> None:
    for item, what in result["errors"]:
        text = item.get("text") or " / ".join(f"{m[0]}: {m[1]}" for m in item["messages"])
        print(f"  [{split}] {item['id']} {item['pool']}: {what}: {text[:160]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", help="a policy file (JSON, TOML or YAML) instead of the defaults")
    parser.add_argument("--split", choices=SPLITS, help="run one split only (tune with --split dev)")
    parser.add_argument("--errors", choices=("dev", "heldout", "both"),
                        help="list the items each split gets wrong (dev is for tuning; look at heldout only to report)")
    args = parser.parse_args(argv)
    config = load_policy(args.policy) if args.policy else PolicyConfig()
    started = time.perf_counter()
    model = shared_model()
    splits = (args.split,) if args.split else SPLITS
    results = {split: evaluate(load(split), config, model) for split in splits}
    for split in splits:
        print_table(split, results[split])
    if args.errors:
        print()
        for split in splits:
            if args.errors in (split, "both"):
                print_errors(split, results[split])
    if args.split:
        return 0
    held = results["heldout"]

    def figures(result: dict) -> dict:
        return {"severe_recall": result["severe"]["recall"], "severe_precision": result["severe"]["precision"],
                "severe_positives": result["severe"]["positives"],
                "detectors": {name: {"precision": r["precision"], "recall": r["recall"], "positives": r["positives"]}
                              for name, r in result["detectors"].items()},
                "items": result["items"], "lines": result["lines"], "conversations": result["conversations"]}

    summary = {"split": "heldout", **figures(held), "dev": figures(results["dev"]),
               "model": f"alt-profanity-check {model.version}", "seconds": round(time.perf_counter() - started, 2)}
    print()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
