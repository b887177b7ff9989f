"""parley-banctl: issue, lift, list and check bans through the ban service's
gRPC API (never the database directly, so every change is audited and
announced to the gateways like any other).

  parley-banctl issue --device TOKEN --category spam --reason "link spam" --duration 24h
  parley-banctl lift BAN_ID --reason "appeal upheld"
  parley-banctl list --active
  parley-banctl check --device TOKEN

The service address is --addr, else $PARLEY_BAN_ADDR, else 127.0.0.1:50054.
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Sequence

from parley.v1 import ban_pb2, ban_pb2_grpc, common_pb2
from services.ban.wire import category_name, scope_name
from services.runtime.cli import format_table, format_time, parse_duration, run_cli

DEFAULT_ADDR = "127.0.0.1:50054"
RPC_TIMEOUT_S = 10.0

CATEGORIES = {category_name(value): value for value in common_pb2.Category.values()
              if value != common_pb2.CATEGORY_UNSPECIFIED}
SCOPES = {"all": common_pb2.BAN_SCOPE_ALL, "video": common_pb2.BAN_SCOPE_VIDEO}
MODES = {"any": common_pb2.MODE_UNSPECIFIED, "text": common_pb2.MODE_TEXT, "video": common_pb2.MODE_VIDEO}


# ------------------------------------------------------------ parsing

def _subject_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--device", metavar="TOKEN", help="device token")
    group.add_argument("--ip-hash", metavar="H", help="HMAC of the IP address (hex)")
    group.add_argument("--ip-prefix-hash", metavar="H", help="HMAC of the /24 or /48 prefix (hex)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley-banctl", description="Manage Parley bans.")
    parser.add_argument("--addr", default=os.environ.get("PARLEY_BAN_ADDR", DEFAULT_ADDR),
                        help="ban service gRPC address (default: $PARLEY_BAN_ADDR or %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    issue = commands.add_parser("issue", help="ban a device, an IP hash or an IP prefix hash")
    _subject_arguments(issue, required=True)
    issue.add_argument("--scope", choices=sorted(SCOPES), default="all",
                       help="all: cannot connect; video: text chat only (default: all)")
    issue.add_argument("--duration", type=parse_duration, default=0, metavar="D",
                       help="e.g. 1h, 24h, 7d; 0 for permanent (default: 0, permanent)")
    issue.add_argument("--category", choices=sorted(CATEGORIES), required=True)
    issue.add_argument("--reason", required=True)
    issue.add_argument("--by", default=None, help="who issues it, for the audit log (default: your user name)")

    lift = commands.add_parser("lift", help="lift a ban")
    lift.add_argument("ban_id")
    lift.add_argument("--reason", required=True)
    lift.add_argument("--by", default=None, help="who lifts it (default: your user name)")

    listing = commands.add_parser("list", help="list bans, newest first")
    listing.add_argument("--active", action="store_true", help="only bans in force now")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1 to 1000)")

    check = commands.add_parser("check", help="is this identity banned?")
    _subject_arguments(check, required=True)
    check.add_argument("--mode", choices=list(MODES), default="any",
                       help="any: the connect check (bans on everything); video: video bans too")
    return parser


def _operator(name: str | None) -> str:
    return name or f"banctl:{getpass.getuser()}"


# ------------------------------------------------------------ output

def status_of(ban: ban_pb2.BanRecord, now_ms: int) -> str:
    if ban.lifted_at_unix_ms:
        return "lifted"
    if ban.expires_at_unix_ms and ban.expires_at_unix_ms <= now_ms:
        return "expired"
    return "active"


def subject_text(subject: ban_pb2.Subject) -> str:
    kind = subject.WhichOneof("kind")
    return f"{kind}:{getattr(subject, kind)}" if kind else "-"


def ban_rows(bans: Sequence[ban_pb2.BanRecord], now_ms: int) -> str:
    headers = ("BAN ID", "STATUS", "SUBJECT", "SCOPE", "CATEGORY", "ISSUED", "EXPIRES", "BY", "REASON")
    rows = [(ban.ban_id, status_of(ban, now_ms), subject_text(ban.subject), scope_name(ban.scope),
             category_name(ban.category), format_time(ban.issued_at_unix_ms),
             format_time(ban.expires_at_unix_ms, zero="never"), ban.issued_by, ban.reason)
            for ban in bans]
    return format_table(headers, rows)


def ban_details(ban: ban_pb2.BanRecord, now_ms: int) -> str:
    rows = [
        ("ban id", ban.ban_id),
        ("status", status_of(ban, now_ms)),
        ("subject", subject_text(ban.subject)),
        ("scope", scope_name(ban.scope)),
        ("category", category_name(ban.category)),
        ("reason", ban.reason),
        ("issued by", ban.issued_by),
        ("issued", format_time(ban.issued_at_unix_ms)),
        ("expires", format_time(ban.expires_at_unix_ms, zero="never (permanent)")),
        ("lifted", format_time(ban.lifted_at_unix_ms)),
        ("decision", ban.decision_id or "-"),
    ]
    return format_table(("FIELD", "VALUE"), rows)


# ------------------------------------------------------------ commands

def _subject(args: argparse.Namespace) -> ban_pb2.Subject:
    if args.device:
        return ban_pb2.Subject(device_token=args.device)
    if args.ip_hash:
        return ban_pb2.Subject(ip_hash=args.ip_hash)
    return ban_pb2.Subject(ip_prefix_hash=args.ip_prefix_hash)


def run(args: argparse.Namespace, stub: ban_pb2_grpc.BanStub) -> str:
    now_ms = time.time_ns() // 1_000_000
    if args.command == "issue":
        ban = stub.IssueBan(ban_pb2.IssueBanRequest(
            subject=_subject(args), scope=SCOPES[args.scope], category=CATEGORIES[args.category],
            duration_s=args.duration, reason=args.reason, issued_by=_operator(args.by)),
            timeout=RPC_TIMEOUT_S)
        return "ban issued\n" + ban_details(ban, now_ms)
    if args.command == "lift":
        ban = stub.LiftBan(ban_pb2.LiftBanRequest(ban_id=args.ban_id, reason=args.reason,
                                                  lifted_by=_operator(args.by)), timeout=RPC_TIMEOUT_S)
        return "ban lifted\n" + ban_details(ban, now_ms)
    if args.command == "list":
        reply = stub.ListBans(ban_pb2.ListBansRequest(active_only=args.active, limit=args.limit),
                              timeout=RPC_TIMEOUT_S)
        if not reply.bans:
            return "no bans"
        return ban_rows(reply.bans, now_ms)
    if args.command == "check":
        # A Subject's oneof fields and an Identity's fields share their names.
        subject = _subject(args)
        kind = subject.WhichOneof("kind")
        identity = common_pb2.Identity(**{kind: getattr(subject, kind)})
        reply = stub.CheckBan(ban_pb2.CheckBanRequest(identity=identity, mode=MODES[args.mode]),
                              timeout=RPC_TIMEOUT_S)
        if not reply.banned:
            return "clear: not banned"
        return "BANNED\n" + ban_details(reply.ban, now_ms)
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list" and not 1 <= args.limit <= 1000:
        print("parley-banctl: --limit must be between 1 and 1000", file=sys.stderr)
        return 2
    return run_cli("parley-banctl", args, ban_pb2_grpc.BanStub, run)


if __name__ == "__main__":
    sys.exit(main())
