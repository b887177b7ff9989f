"""What the operator tools (parley-banctl, parley-modctl) share: one rule for
durations, one way to print a time and a table, and one shape of main():
call the service, print the answer, turn a failed call into one stderr line
and exit status 1. Each tool keeps its own arguments and domain formatting."""
from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

import grpc

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NUMBER = re.compile(r"[0-9]+")
_DURATION = re.compile(r"([0-9]+)([smhdw])")

Stub = TypeVar("Stub")


def parse_duration(text: str) -> int:
    """A ban length in seconds, for argparse's type=.

    "0" or "permanent" -> 0 (as the APIs spell a permanent ban);
    "90s", "30m", "24h", "7d", "2w" -> seconds. A bare number other than 0 is
    refused ("24" could mean hours or seconds), and so is a zero with a unit
    ("0h" would silently mean permanent)."""
    text = text.strip().lower()
    if text == "permanent" or (_NUMBER.fullmatch(text) and int(text) == 0):
        return 0
    if _NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"bad duration {text!r}: add a unit s, m, h, d or w (e.g. {text}h, {text}d), "
            "or use 0 or permanent for a permanent ban")
    match = _DURATION.fullmatch(text)
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"bad duration {text!r}: use a number with a unit s, m, h, d or w (e.g. 24h, 7d), "
            "or 0 or permanent for a permanent ban")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def format_time(unix_ms: int, *, zero: str = "-") -> str:
    """UTC, to the second: "2024-05-01 12:00:00Z"; *zero* for an unset time (0)."""
    if not unix_ms:
        return zero
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(unix_ms / 1000))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *,
                 right: Collection[int] = ()) -> str:
    """Columns padded to their widest cell and two spaces apart; columns whose
    index is in *right* are right-aligned (numbers). Trailing blanks are cut,
    so the last column is never padded."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = []
    for row in (headers, *rows):
        cells = [str(cell).rjust(width) if index in right else str(cell).ljust(width)
                 for index, (cell, width) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def run_cli(prog: str, args: argparse.Namespace, stub_factory: Callable[[grpc.Channel], Stub],
            run: Callable[[argparse.Namespace, Stub], str]) -> int:
    """The body of a tool's main() once its arguments are parsed and checked:
    open a channel to args.addr, print run(args, stub_factory(channel)) and
    return 0. A failed call prints "<prog>: CODE: details" to stderr and
    returns 1."""
    try:
        with grpc.insecure_channel(args.addr) as channel:
            print(run(args, stub_factory(channel)))
    except grpc.RpcError as exc:
        print(f"{prog}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0
