"""parley-banctl: the ban service's admin API from a terminal, through its
gRPC API (never the database directly, so every change is audited and
announced to the gateways like any other).

  parley-banctl issue --device TOKEN --category spam --reason "link spam" --duration 24h
  parley-banctl issue --ip-prefix-hash H --enforce-on-address --category spam --reason "bot farm"
  parley-banctl lift BAN_ID --reason "mistake"
  parley-banctl list --active
  parley-banctl show BAN_ID
  parley-banctl history --device TOKEN
  parley-banctl check --device TOKEN --ip-hash H --mode video
  parley-banctl appeals --status pending
  parley-banctl appeal BAN_ID --device TOKEN --statement "it was my brother"
  parley-banctl decide APPEAL_ID --lift --note "credible" --by alice

The service address is --addr, else $PARLEY_BAN_ADDR, else 127.0.0.1:50054.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Sequence

from parley.v1 import ban_pb2, ban_pb2_grpc, common_pb2
from services.ban.wire import APPEAL_STATUS, APPEAL_STATUS_NAMES, category_name, scope_name
from services.runtime.cli import format_table, format_time, parse_duration, run_cli

DEFAULT_ADDR = "127.0.0.1:50054"
RPC_TIMEOUT_S = 10.0

CATEGORIES = {category_name(value): value for value in common_pb2.Category.values()
              if value != common_pb2.CATEGORY_UNSPECIFIED}
SCOPES = {"all": common_pb2.BAN_SCOPE_ALL, "video": common_pb2.BAN_SCOPE_VIDEO}
MODES = {"any": common_pb2.MODE_UNSPECIFIED, "text": common_pb2.MODE_TEXT, "video": common_pb2.MODE_VIDEO}
APPEAL_FILTERS = {"all": ban_pb2.APPEAL_STATUS_UNSPECIFIED, **APPEAL_STATUS}
SUBJECT_FLAGS = (("device", "device_token", "TOKEN", "device token"),
                 ("ip_hash", "ip_hash", "H", "HMAC of the IP address (hex)"),
                 ("ip_prefix_hash", "ip_prefix_hash", "H", "HMAC of the /24 or /48 prefix (hex)"),
                 ("session", "session_id", "ID", "one live session (its session id)"))


# ------------------------------------------------------------ parsing

def _subject_arguments(parser: argparse.ArgumentParser) -> None:
    """Exactly one subject."""
    group = parser.add_mutually_exclusive_group(required=True)
    for dest, _field, metavar, text in SUBJECT_FLAGS:
        group.add_argument("--" + dest.replace("_", "-"), dest=dest, metavar=metavar, help=text)


def _identity_arguments(parser: argparse.ArgumentParser) -> None:
    """Any of the identity's parts, at least one (checked in main)."""
    for dest, _field, metavar, text in SUBJECT_FLAGS:
        parser.add_argument("--" + dest.replace("_", "-"), dest=dest, metavar=metavar, default="", help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley-banctl", description="Manage Parley bans and appeals.")
    parser.add_argument("--addr", default=os.environ.get("PARLEY_BAN_ADDR", DEFAULT_ADDR),
                        help="ban service gRPC address (default: $PARLEY_BAN_ADDR or %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    issue = commands.add_parser("issue", help="ban a device, an IP hash, an IP prefix hash or a session")
    _subject_arguments(issue)
    issue.add_argument("--scope", choices=sorted(SCOPES), default="all",
                       help="all: cannot connect; video: text chat only (default: all)")
    issue.add_argument("--duration", type=parse_duration, default=0, metavar="D",
                       help="e.g. 1h, 24h, 7d; 0 for permanent (default: 0, permanent)")
    issue.add_argument("--category", choices=sorted(CATEGORIES), required=True)
    issue.add_argument("--reason", required=True)
    issue.add_argument("--enforce-on-address", action="store_true",
                       help="for --ip-hash/--ip-prefix-hash: refuse everyone on the address (a range "
                            "ban); without it the address is watched and new devices there are "
                            "flagged for review")
    issue.add_argument("--by", default=None, help="who issues it, for the audit log (default: your user name)")

    lift = commands.add_parser("lift", help="lift a ban")
    lift.add_argument("ban_id")
    lift.add_argument("--reason", required=True)
    lift.add_argument("--by", default=None, help="who lifts it (default: your user name)")

    listing = commands.add_parser("list", help="list bans, newest first")
    listing.add_argument("--active", action="store_true", help="only bans in force now")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1 to 1000)")

    show = commands.add_parser("show", help="one ban, with its audit trail and appeal")
    show.add_argument("ban_id")

    history = commands.add_parser("history", help="a subject's bans, strikes, appeals and audit trail")
    _subject_arguments(history)
    history.add_argument("--limit", type=int, default=100, help="at most this many bans and strikes (1 to 1000)")

    check = commands.add_parser("check", help="is this identity banned?")
    _identity_arguments(check)
    check.add_argument("--mode", choices=list(MODES), default="any",
                       help="any: the connect check (bans on everything); video: video bans too")

    appeals = commands.add_parser("appeals", help="list appeals, oldest first")
    appeals.add_argument("--status", choices=list(APPEAL_FILTERS), default="pending",
                         help="which appeals (default: pending)")
    appeals.add_argument("--limit", type=int, default=50, help="at most this many (1 to 1000)")

    appeal = commands.add_parser("appeal", help="file an appeal on a banned person's behalf")
    appeal.add_argument("ban_id")
    appeal.add_argument("--device", required=True, metavar="TOKEN", help="the appellant's device token")
    appeal.add_argument("--ip-hash", dest="ip_hash", default="", metavar="H",
                        help="the appellant's IP hash (for a ban on an address)")
    appeal.add_argument("--ip-prefix-hash", dest="ip_prefix_hash", default="", metavar="H",
                        help="the appellant's IP prefix hash (for a ban on a range)")
    appeal.add_argument("--statement", required=True, help="why the ban should be lifted (at most 2000 characters)")

    decide = commands.add_parser("decide", help="decide an appeal: uphold the ban or lift it")
    decide.add_argument("appeal_id")
    outcome = decide.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--uphold", action="store_true", help="the ban stands")
    outcome.add_argument("--lift", action="store_true",
                         help="lift the ban (and every ban of its decision), void its strike")
    decide.add_argument("--note", default="", help="why, for the audit log and the appellant")
    decide.add_argument("--by", default=None, help="who decides (default: your user name)")
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


def effect_of(ban: ban_pb2.BanRecord) -> str:
    """What the ban does to whom: refuses the subject, or watches an address."""
    kind = ban.subject.WhichOneof("kind")
    if kind in ("ip_hash", "ip_prefix_hash") and not ban.enforce_on_address:
        return "watch"
    return "refuse"


def ban_rows(bans: Sequence[ban_pb2.BanRecord], now_ms: int) -> str:
    headers = ("BAN ID", "STATUS", "SUBJECT", "EFFECT", "SCOPE", "CATEGORY", "ISSUED", "EXPIRES", "BY", "REASON")
    rows = [(ban.ban_id, status_of(ban, now_ms), subject_text(ban.subject), effect_of(ban), scope_name(ban.scope),
             category_name(ban.category), format_time(ban.issued_at_unix_ms),
             format_time(ban.expires_at_unix_ms, zero="never"), ban.issued_by, ban.reason)
            for ban in bans]
    return format_table(headers, rows)


def ban_details(ban: ban_pb2.BanRecord, now_ms: int) -> str:
    rows = [
        ("ban id", ban.ban_id),
        ("status", status_of(ban, now_ms)),
        ("subject", subject_text(ban.subject)),
        ("effect", effect_of(ban) + (" (everyone on the address)" if ban.enforce_on_address else "")),
        ("scope", scope_name(ban.scope)),
        ("category", category_name(ban.category)),
        ("reason", ban.reason),
        ("issued by", ban.issued_by),
        ("issued", format_time(ban.issued_at_unix_ms)),
        ("expires", format_time(ban.expires_at_unix_ms, zero="never (permanent)")),
        ("appealable until", format_time(ban.appealable_until_unix_ms, zero="not appealable")),
        ("lifted", format_time(ban.lifted_at_unix_ms)),
    ]
    if ban.lifted_at_unix_ms:
        rows += [("lifted by", ban.lifted_by or "-"), ("lift reason", ban.lift_reason or "-")]
    rows.append(("decision", ban.decision_id or "-"))
    return format_table(("FIELD", "VALUE"), rows)


def audit_rows(entries: Sequence[ban_pb2.BanAuditEntry]) -> str:
    rows = []
    for entry in entries:
        detail = json.loads(entry.detail_json or "{}")
        why = detail.get("reason") or detail.get("note") or detail.get("statement") or detail.get("outcome") or ""
        rows.append((format_time(entry.at_unix_ms), entry.action, entry.actor, entry.ban_id or "-", why))
    return format_table(("AT", "ACTION", "WHO", "BAN ID", "WHY"), rows)


def appeal_rows(appeals: Sequence[ban_pb2.Appeal]) -> str:
    rows = [(a.appeal_id, APPEAL_STATUS_NAMES.get(a.status, "?"), a.ban_id,
             category_name(a.ban.category) if a.HasField("ban") else "-", format_time(a.filed_at_unix_ms),
             a.decided_by or "-", _shorten(a.statement)) for a in appeals]
    return format_table(("APPEAL ID", "STATUS", "BAN ID", "CATEGORY", "FILED", "DECIDED BY", "STATEMENT"), rows)


def appeal_details(appeal: ban_pb2.Appeal) -> str:
    rows = [("appeal id", appeal.appeal_id), ("status", APPEAL_STATUS_NAMES.get(appeal.status, "?")),
            ("ban id", appeal.ban_id), ("device", appeal.device_token),
            ("filed", format_time(appeal.filed_at_unix_ms)), ("statement", appeal.statement),
            ("decided by", appeal.decided_by or "-"), ("decided", format_time(appeal.decided_at_unix_ms)),
            ("note", appeal.decision_note or "-")]
    return format_table(("FIELD", "VALUE"), rows)


def _shorten(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def history_text(history: ban_pb2.SubjectHistory, now_ms: int) -> str:
    parts = [f"history of {subject_text(history.subject)}"]
    if history.subject.WhichOneof("kind") == "device_token":
        parts.append(f"strikes counting: {history.active_strikes}; the next one brings: {history.next_penalty}")
        if history.strikes:
            rows = [(format_time(s.at_unix_ms), category_name(s.category), s.decision_id or "-",
                     format_time(s.expires_at_unix_ms),
                     "voided" if s.voided_at_unix_ms else ("expired" if s.expires_at_unix_ms <= now_ms else "counts"))
                    for s in history.strikes]
            parts.append(format_table(("AT", "CATEGORY", "DECISION", "EXPIRES", "STATUS"), rows))
    parts.append(ban_rows(history.bans, now_ms) if history.bans else "no bans")
    if history.appeals:
        parts.append(appeal_rows(history.appeals))
    if history.audit:
        parts.append(audit_rows(history.audit))
    return "\n\n".join(parts)


# ------------------------------------------------------------ commands

def _subject(args: argparse.Namespace) -> ban_pb2.Subject:
    for dest, field, _metavar, _text in SUBJECT_FLAGS:
        if getattr(args, dest):
            return ban_pb2.Subject(**{field: getattr(args, dest)})
    raise AssertionError("argparse requires one subject")


def run(args: argparse.Namespace, stub: ban_pb2_grpc.BanStub) -> str:
    now_ms = time.time_ns() // 1_000_000
    call = {"timeout": RPC_TIMEOUT_S}
    if args.command == "issue":
        ban = stub.IssueBan(ban_pb2.IssueBanRequest(
            subject=_subject(args), scope=SCOPES[args.scope], category=CATEGORIES[args.category],
            duration_s=args.duration, reason=args.reason, issued_by=_operator(args.by),
            enforce_on_address=args.enforce_on_address), **call)
        return "ban issued\n" + ban_details(ban, now_ms)
    if args.command == "lift":
        ban = stub.LiftBan(ban_pb2.LiftBanRequest(ban_id=args.ban_id, reason=args.reason,
                                                  lifted_by=_operator(args.by)), **call)
        return "ban lifted\n" + ban_details(ban, now_ms)
    if args.command == "list":
        reply = stub.ListBans(ban_pb2.ListBansRequest(active_only=args.active, limit=args.limit), **call)
        return ban_rows(reply.bans, now_ms) if reply.bans else "no bans"
    if args.command == "show":
        details = stub.GetBan(ban_pb2.GetBanRequest(ban_id=args.ban_id), **call)
        parts = [ban_details(details.ban, now_ms)]
        if details.HasField("appeal"):
            parts.append("appeal\n" + appeal_details(details.appeal))
        parts.append(audit_rows(details.audit))
        return "\n\n".join(parts)
    if args.command == "history":
        history = stub.GetHistory(ban_pb2.GetHistoryRequest(subject=_subject(args), limit=args.limit), **call)
        return history_text(history, now_ms)
    if args.command == "check":
        identity = common_pb2.Identity(device_token=args.device, ip_hash=args.ip_hash,
                                       ip_prefix_hash=args.ip_prefix_hash)
        reply = stub.CheckBan(ban_pb2.CheckBanRequest(identity=identity, mode=MODES[args.mode],
                                                      session_id=args.session), **call)
        if reply.banned:
            return "BANNED\n" + ban_details(reply.ban, now_ms)
        if reply.suspected_evader:
            return "clear: not banned (but on a watched address: flagged as a suspected evader)"
        return "clear: not banned"
    if args.command == "appeals":
        reply = stub.ListAppeals(ban_pb2.ListAppealsRequest(status=APPEAL_FILTERS[args.status],
                                                            limit=args.limit), **call)
        return appeal_rows(reply.appeals) if reply.appeals else "no appeals"
    if args.command == "appeal":
        appeal = stub.FileAppeal(ban_pb2.FileAppealRequest(
            ban_id=args.ban_id, statement=args.statement,
            appellant=common_pb2.Identity(device_token=args.device, ip_hash=args.ip_hash,
                                          ip_prefix_hash=args.ip_prefix_hash)), **call)
        return "appeal filed\n" + appeal_details(appeal)
    if args.command == "decide":
        outcome = ban_pb2.APPEAL_OUTCOME_LIFT if args.lift else ban_pb2.APPEAL_OUTCOME_UPHOLD
        appeal = stub.DecideAppeal(ban_pb2.DecideAppealRequest(
            appeal_id=args.appeal_id, outcome=outcome, moderator=_operator(args.by), note=args.note), **call)
        said = "ban lifted" if appeal.status == ban_pb2.APPEAL_STATUS_LIFTED else "ban upheld"
        return f"appeal decided: {said}\n" + appeal_details(appeal)
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limit = getattr(args, "limit", None)
    if limit is not None and not 1 <= limit <= 1000:
        print("parley-banctl: --limit must be between 1 and 1000", file=sys.stderr)
        return 2
    if args.command == "check" and not (args.device or args.ip_hash or args.ip_prefix_hash or args.session):
        print("parley-banctl: check needs at least one of --device, --ip-hash, --ip-prefix-hash, --session",
              file=sys.stderr)
        return 2
    return run_cli("parley-banctl", args, ban_pb2_grpc.BanStub, run)


if __name__ == "__main__":
    sys.exit(main())
