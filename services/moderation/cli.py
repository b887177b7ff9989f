"""parley-modctl: the review queue from a terminal, over the moderation gRPC API.

    parley-modctl list [--open | --all] [--limit N]
    parley-modctl show ITEM_ID
    parley-modctl decide ITEM_ID --action ban --duration 24h --moderator alice
                         [--category harassment] [--note TEXT]

The server checks every request; this tool only spells it. Exit status 1
with the server's error on failure, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import os
import sys

from parley.v1 import common_pb2, moderation_pb2, moderation_pb2_grpc
from services.moderation.enums import enum_name
from services.runtime.cli import format_table, format_time, parse_duration, run_cli

DEFAULT_ADDR = "127.0.0.1:50053"

ACTIONS = {"dismiss": moderation_pb2.ACTION_DISMISS, "warn": moderation_pb2.ACTION_WARN,
           "ban": moderation_pb2.ACTION_BAN, "escalate": moderation_pb2.ACTION_ESCALATE}
# "harassment", "child_safety", ...: the enum names without their prefix.
CATEGORIES = {name.removeprefix("CATEGORY_").lower(): number
              for name, number in common_pb2.Category.items() if number != common_pb2.CATEGORY_UNSPECIFIED}

def _category(text: str) -> int:
    key = text.strip().lower().replace("-", "_")
    if key not in CATEGORIES:
        raise argparse.ArgumentTypeError(f"unknown category {text!r}: one of {', '.join(CATEGORIES)}")
    return CATEGORIES[key]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley-modctl", description="Parley review queue")
    parser.add_argument("--addr", default=os.environ.get("PARLEY_MODERATION_ADDR", DEFAULT_ADDR),
                        help="moderation gRPC address (default: $PARLEY_MODERATION_ADDR or %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="review items, highest priority first")
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--open", dest="status", action="store_const", const=moderation_pb2.REVIEW_STATUS_OPEN,
                       help="open items only (the default)")
    which.add_argument("--all", dest="status", action="store_const",
                       const=moderation_pb2.REVIEW_STATUS_UNSPECIFIED, help="open and decided items")
    listing.set_defaults(status=moderation_pb2.REVIEW_STATUS_OPEN)
    listing.add_argument("--limit", type=int, default=50, help="at most this many (server maximum 500)")

    show = commands.add_parser("show", help="one item with its evidence")
    show.add_argument("item_id")

    decide = commands.add_parser("decide", help="decide an open item")
    decide.add_argument("item_id")
    decide.add_argument("--action", required=True, choices=sorted(ACTIONS))
    decide.add_argument("--duration", type=parse_duration,
                        help="ban length: 90s, 30m, 24h, 7d, 2w, or 0 or permanent (required with --action ban)")
    decide.add_argument("--category", type=_category, default=common_pb2.CATEGORY_UNSPECIFIED,
                        help=f"override the report's category: {', '.join(CATEGORIES)}")
    decide.add_argument("--moderator", required=True, help="your name, for the audit log")
    decide.add_argument("--note", default="")
    return parser


# ---------------------------------------------------------------- output

def _printable(text: str) -> str:
    """One transcript line per chat line: newlines and control characters
    escaped, so a user cannot forge "reporter:" lines or send terminal codes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _status(status: int) -> str:
    return enum_name(moderation_pb2.ReviewStatus, status).removeprefix("REVIEW_STATUS_").lower()


def _category_name(category: int) -> str:
    return enum_name(common_pb2.Category, category).removeprefix("CATEGORY_").lower()


def format_list(items) -> str:
    if not items:
        return "no review items"
    rows = []
    for item in items:
        comment = _printable(item.comment)
        comment = comment if len(comment) <= 40 else comment[:39] + "…"
        rows.append((item.item_id, _status(item.status), item.priority, _category_name(item.category),
                     format_time(item.created_at_unix_ms), len(item.evidence) + len(item.snapshot_hashes),
                     comment))
    return format_table(("ITEM", "STATUS", "PRIO", "CATEGORY", "CREATED", "EVID", "COMMENT"), rows, right=(2, 5))


def _identity(identity: common_pb2.Identity) -> str:
    return (f"device {_printable(identity.device_token) or '-'}  ip_hash {identity.ip_hash or '-'}  "
            f"prefix {identity.ip_prefix_hash or '-'}")


def format_item(item: moderation_pb2.ReviewItem) -> str:
    lines = [
        f"item       {item.item_id}",
        f"report     {_printable(item.report_id)}",
        f"status     {_status(item.status)}" + (f" (decision {item.decision_id})" if item.decision_id else ""),
        f"category   {_category_name(item.category)}",
        f"priority   {item.priority}",
        f"created    {format_time(item.created_at_unix_ms)}",
        f"match      {_printable(item.match_id) or '-'}",
        f"reported   {_identity(item.reported)}",
        f"reporter   {_identity(item.reporter)}",
        f"comment    {_printable(item.comment) or '-'}",
        "",
        f"transcript ({len(item.evidence)} lines):",
    ]
    for line in item.evidence:
        speaker = "reporter" if line.from_reporter else "reported"
        lines.append(f"  {format_time(line.sent_at_unix_ms)}  {speaker}: {_printable(line.text)}")
    if item.snapshot_hashes:
        lines.append("")
        lines.append(f"snapshot hashes ({len(item.snapshot_hashes)}):")
        lines.extend(f"  {_printable(value)}" for value in item.snapshot_hashes)
    return "\n".join(lines)


# ---------------------------------------------------------------- commands

def run(args: argparse.Namespace, stub: moderation_pb2_grpc.ModerationStub) -> str:
    if args.command == "list":
        reply = stub.ListReviewItems(
            moderation_pb2.ListReviewItemsRequest(status=args.status, limit=args.limit), timeout=args.timeout)
        return format_list(reply.items)
    if args.command == "show":
        return format_item(stub.GetReviewItem(
            moderation_pb2.GetReviewItemRequest(item_id=args.item_id), timeout=args.timeout))
    reply = stub.Decide(moderation_pb2.DecideRequest(
        item_id=args.item_id, action=ACTIONS[args.action], category=args.category,
        duration_s=args.duration or 0, moderator=args.moderator, note=args.note), timeout=args.timeout)
    return f"decided {args.item_id}: {args.action}, decision {reply.decision_id}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "decide" and args.action == "ban" and args.duration is None:
        # The API reads a missing duration as permanent; make that a choice.
        parser.error("--action ban needs --duration (e.g. 24h, 7d, or permanent)")
    return run_cli("parley-modctl", args, moderation_pb2_grpc.ModerationStub, run)


if __name__ == "__main__":
    sys.exit(main())
