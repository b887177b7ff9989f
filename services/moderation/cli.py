"""parley-modctl: the review queue, the audit log and the evidence vault from
a terminal, over the moderation gRPC API.

    parley-modctl whoami
    parley-modctl list [--open | --claimed | --decided | --all] [--category C] [--kind K]
                       [--min-priority N] [--limit N]
    parley-modctl show ITEM_ID
    parley-modctl claim ITEM_ID
    parley-modctl release ITEM_ID [--reason TEXT]
    parley-modctl decide ITEM_ID --action ban --duration 24h --note "why" [--category harassment]
    parley-modctl hold ITEM_ID --reason TEXT [--lift]
    parley-modctl audit [--item ITEM_ID] [--actor moderator:alice] [--after ID] [--limit N]
    parley-modctl vault verify [--database-url URL]
    parley-modctl vault purge --reason TEXT
    parley-modctl export ITEM_ID --out DIR --reason TEXT
    parley-modctl token new --name alice --role moderator
    parley-modctl token hash < token
    parley-modctl bank list
    parley-modctl bank add --bank internal --reason TEXT [--category known_bad_hash] (HASH... | --file FILE)

Every call sends the caller's token: `--token-file FILE`, or
$PARLEY_MODCTL_TOKEN, or the file named by $PARLEY_MODCTL_TOKEN_FILE (in
that order). With `make run`, the development tokens work:
PARLEY_MODCTL_TOKEN=parley-dev-moderator (or parley-dev-child-safety,
parley-dev-admin).

The server checks every request; this tool only spells it. Exit status 1
with the server's error on failure (or a failed vault verification), 2 on a
usage error.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
from pathlib import Path

import grpc

from parley.v1 import common_pb2, moderation_pb2, moderation_pb2_grpc
from services.moderation import auth
from services.moderation.custody import sha256_hex
from services.moderation.enums import enum_name
from services.runtime.cli import format_table, format_time, parse_duration

DEFAULT_ADDR = "127.0.0.1:50053"
TOKEN_ENV = "PARLEY_MODCTL_TOKEN"
TOKEN_FILE_ENV = "PARLEY_MODCTL_TOKEN_FILE"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

ACTIONS = {"dismiss": moderation_pb2.ACTION_DISMISS, "warn": moderation_pb2.ACTION_WARN,
           "ban": moderation_pb2.ACTION_BAN, "escalate": moderation_pb2.ACTION_ESCALATE}
# "harassment", "child_safety", ...: the enum names without their prefix.
CATEGORIES = {name.removeprefix("CATEGORY_").lower(): number
              for name, number in common_pb2.Category.items() if number != common_pb2.CATEGORY_UNSPECIFIED}
KINDS = {"report": moderation_pb2.REVIEW_ITEM_KIND_REPORT,
         "evader": moderation_pb2.REVIEW_ITEM_KIND_SUSPECTED_EVADER,
         "automated": moderation_pb2.REVIEW_ITEM_KIND_AUTOMATED}


class UsageError(Exception):
    """A problem with how the tool was called (exit status 2)."""


def _category(text: str) -> int:
    key = text.strip().lower().replace("-", "_")
    if key not in CATEGORIES:
        raise argparse.ArgumentTypeError(f"unknown category {text!r}: one of {', '.join(CATEGORIES)}")
    return CATEGORIES[key]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley-modctl", description="Parley review queue and evidence vault")
    parser.add_argument("--addr", default=os.environ.get("PARLEY_MODERATION_ADDR", DEFAULT_ADDR),
                        help="moderation gRPC address (default: $PARLEY_MODERATION_ADDR or %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    parser.add_argument("--token-file", help=f"file holding your token (default: ${TOKEN_ENV}, "
                                             f"or the file ${TOKEN_FILE_ENV})")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("whoami", help="the name and role your token stands for")

    listing = commands.add_parser("list", help="review items, highest priority first")
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--open", dest="status", action="store_const", const=moderation_pb2.REVIEW_STATUS_OPEN,
                       help="items waiting for a moderator (the default)")
    which.add_argument("--claimed", dest="status", action="store_const",
                       const=moderation_pb2.REVIEW_STATUS_CLAIMED, help="items a moderator holds")
    which.add_argument("--decided", dest="status", action="store_const",
                       const=moderation_pb2.REVIEW_STATUS_DECIDED, help="decided items")
    which.add_argument("--all", dest="status", action="store_const",
                       const=moderation_pb2.REVIEW_STATUS_UNSPECIFIED, help="every item")
    listing.set_defaults(status=moderation_pb2.REVIEW_STATUS_OPEN)
    listing.add_argument("--category", type=_category, default=common_pb2.CATEGORY_UNSPECIFIED,
                         help=f"only this category: {', '.join(CATEGORIES)}")
    listing.add_argument("--kind", choices=sorted(KINDS), help="only this kind of item")
    listing.add_argument("--min-priority", type=int, default=0, help="only items at least this urgent")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (server maximum 500)")

    show = commands.add_parser("show", help="one item with its evidence (recorded in the audit log)")
    show.add_argument("item_id")

    claim = commands.add_parser("claim", help="take an item for review (a lease; again to renew it)")
    claim.add_argument("item_id")

    release = commands.add_parser("release", help="give a claimed item back to the queue")
    release.add_argument("item_id")
    release.add_argument("--reason", default="")

    decide = commands.add_parser("decide", help="decide an open item (unclaimed or claimed by you)")
    decide.add_argument("item_id")
    decide.add_argument("--action", required=True, choices=sorted(ACTIONS))
    decide.add_argument("--duration", type=parse_duration,
                        help="ban length: 90s, 30m, 24h, 7d, 2w, or 0 or permanent (required with --action ban)")
    decide.add_argument("--category", type=_category, default=common_pb2.CATEGORY_UNSPECIFIED,
                        help=f"override the item's category: {', '.join(CATEGORIES)}")
    decide.add_argument("--note", required=True, help="why: kept in the audit log")

    hold = commands.add_parser("hold", help="keep a case's evidence past its retention date (legal hold)")
    hold.add_argument("item_id")
    hold.add_argument("--reason", required=True)
    hold.add_argument("--lift", action="store_true", help="lift the hold instead")

    audit = commands.add_parser("audit", help="the audit log, oldest first (role admin)")
    audit.add_argument("--item", default="", help="one item's entries")
    audit.add_argument("--actor", default="", help='one actor\'s entries, e.g. "moderator:alice"')
    audit.add_argument("--after", type=int, default=0, help="entries after this id (paging)")
    audit.add_argument("--limit", type=int, default=100, help="at most this many (server maximum 1000)")

    vault = commands.add_parser("vault", help="the evidence vault")
    vault_commands = vault.add_subparsers(dest="vault_command", required=True)
    verify = vault_commands.add_parser("verify", help="recompute the custody chain and every blob's hash")
    verify.add_argument("--database-url", help="verify this database directly (e.g. a backup) instead of "
                                               "asking the service")
    purge = vault_commands.add_parser("purge", help="delete evidence past its retention date now (role admin)")
    purge.add_argument("--reason", required=True)

    exporting = commands.add_parser("export", help="law-enforcement package of an escalated child-safety "
                                                   "case (role child_safety)")
    exporting.add_argument("item_id")
    exporting.add_argument("--out", required=True, type=Path, help="a new (or empty) directory to write to")
    exporting.add_argument("--reason", required=True, help='why, e.g. "CyberTipline report"')

    token = commands.add_parser("token", help="make moderator tokens (no server call)")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    new = token_commands.add_parser("new", help="a new random token and its configuration line")
    new.add_argument("--name", required=True)
    new.add_argument("--role", required=True, choices=auth.ROLES)
    token_commands.add_parser("hash", help="the configuration digest of a token read from stdin")

    bank = commands.add_parser("bank", help="the PDQ hash banks snapshots are matched against "
                                            "(roles child_safety and admin)")
    bank_commands = bank.add_subparsers(dest="bank_command", required=True)
    bank_commands.add_parser("list", help="the banks and their sizes")
    add = bank_commands.add_parser("add", help="add hashes to a bank now (every replica matches them within "
                                               "seconds; kept in the store, audit-logged)")
    add.add_argument("--bank", required=True, help="the bank's name (a new name makes a new bank)")
    add.add_argument("--category", type=_category, default=common_pb2.CATEGORY_KNOWN_BAD_HASH,
                     help="what a match is evidence of (default known_bad_hash)")
    add.add_argument("--reason", required=True, help="why: kept in the audit log")
    add.add_argument("--file", type=Path, help="a bank file: one 64-hex-digit PDQ hash a line, optionally "
                                               "a source id after a comma, tab or spaces; # comments")
    add.add_argument("hashes", nargs="*", metavar="HASH", help="PDQ hashes (64 hex digits)")
    return parser


# ---------------------------------------------------------------- the token

def read_token(args: argparse.Namespace, environ=os.environ) -> str:
    """The caller's token: --token-file, $PARLEY_MODCTL_TOKEN, $PARLEY_MODCTL_TOKEN_FILE."""
    path = args.token_file or (None if environ.get(TOKEN_ENV) else environ.get(TOKEN_FILE_ENV))
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read the token file {path}: {exc.strerror}") from None
        if not token:
            raise UsageError(f"the token file {path} is empty")
        return token
    token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(f"no token: set {TOKEN_ENV}, or {TOKEN_FILE_ENV}, or pass --token-file "
                         "(with `make run`: PARLEY_MODCTL_TOKEN=parley-dev-moderator)")
    return token


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call."""

    def __init__(self, token: str) -> None:
        self.metadata = ("authorization", f"Bearer {token}")

    def _details(self, details):
        metadata = list(details.metadata or ()) + [self.metadata]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
        grpc.ClientCallDetails):
    pass


# ---------------------------------------------------------------- output

def _printable(text: str) -> str:
    """One transcript line per chat line: newlines and control characters
    escaped, so a user cannot forge "reporter:" lines or send terminal codes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _status(status: int) -> str:
    return enum_name(moderation_pb2.ReviewStatus, status).removeprefix("REVIEW_STATUS_").lower()


def _category_name(category: int) -> str:
    return enum_name(common_pb2.Category, category).removeprefix("CATEGORY_").lower()


def _kind_name(kind: int) -> str:
    return enum_name(moderation_pb2.ReviewItemKind, kind).removeprefix("REVIEW_ITEM_KIND_").lower()


def format_list(items) -> str:
    if not items:
        return "no review items"
    rows = []
    for item in items:
        comment = _printable(item.comment)
        comment = comment if len(comment) <= 40 else comment[:39] + "…"
        status = _status(item.status) + (f" ({_printable(item.claimed_by)})" if item.claimed_by else "")
        flags = ("CS " if item.child_safety else "") + ("HOLD " if item.legal_hold else "")
        rows.append((item.item_id, status, item.priority, _category_name(item.category), _kind_name(item.kind),
                     item.report_count, item.evidence_count, format_time(item.created_at_unix_ms),
                     (flags + comment).strip()))
    return format_table(("ITEM", "STATUS", "PRIO", "CATEGORY", "KIND", "REPORTS", "EVID", "CREATED", "COMMENT"),
                        rows, right=(2, 5, 6))


def _identity(identity: common_pb2.Identity) -> str:
    return (f"device {_printable(identity.device_token) or '-'}  ip_hash {_printable(identity.ip_hash) or '-'}  "
            f"prefix {_printable(identity.ip_prefix_hash) or '-'}")


def format_item(item: moderation_pb2.ReviewItem) -> str:
    status = _status(item.status)
    if item.claimed_by:
        status += f" by {_printable(item.claimed_by)} until {format_time(item.claim_expires_at_unix_ms)}"
    lines = [
        f"item       {item.item_id}",
        f"kind       {_kind_name(item.kind)}",
        f"status     {status}",
        f"category   {_category_name(item.category)}" + ("  [child-safety case]" if item.child_safety else ""),
        f"priority   {item.priority}  (risk {item.risk_score:.2f}, reporter weight {item.reporter_weight:.2f}, "
        f"{item.report_count} report(s))",
        f"created    {format_time(item.created_at_unix_ms)}",
        f"match      {_printable(item.match_id) or '-'}",
        f"reported   {_identity(item.reported)}",
    ]
    if item.linked_ban_id:
        lines.append(f"linked ban {_printable(item.linked_ban_id)} ({_printable(item.linked_subject) or '-'})")
    if item.HasField("decision"):
        d = item.decision
        action = enum_name(moderation_pb2.Action, d.action).removeprefix("ACTION_").lower()
        lines.append(f"decision   {d.decision_id}: {action} by {_printable(d.moderator)} at "
                     f"{format_time(d.decided_at_unix_ms)}: {_printable(d.note)}")
    if item.escalated_at_unix_ms:
        lines.append(f"escalated  {format_time(item.escalated_at_unix_ms)}")
    lines.append(f"retention  {format_time(item.retain_until_unix_ms, zero='while open')}"
                 + ("  (legal hold)" if item.legal_hold else "")
                 + (f"  purged {format_time(item.purged_at_unix_ms)}" if item.purged_at_unix_ms else ""))
    for report in item.reports:
        lines += ["", f"filing {_printable(report.report_id)}  ({_printable(report.source)}, "
                      f"{_category_name(report.category)}, {format_time(report.reported_at_unix_ms)})"]
        if report.reporter.device_token:
            lines.append(f"  reporter  {_identity(report.reporter)}  weight {report.reporter_weight:.2f}")
        if report.risk_score:
            lines.append(f"  risk      {report.risk_score:.2f}")
        lines.append(f"  comment   {_printable(report.comment) or '-'}")
    lines += ["", f"transcript ({len(item.evidence)} lines):"]
    for line in item.evidence:
        speaker = "reporter" if line.from_reporter else "reported"
        lines.append(f"  {format_time(line.sent_at_unix_ms)}  {speaker}: {_printable(line.text)}")
    if item.snapshot_hashes:
        lines += ["", f"snapshot hashes ({len(item.snapshot_hashes)}):"]
        lines.extend(f"  {_printable(value)}" for value in item.snapshot_hashes)
    if item.vault_sha256:
        lines += ["", f"vault blobs ({len(item.vault_sha256)}):"]
        lines.extend(f"  {value}" for value in item.vault_sha256)
    return "\n".join(lines)


def format_audit(entries) -> str:
    if not entries:
        return "no audit entries"
    rows = [(e.id, format_time(e.at_unix_ms), _printable(e.actor), e.action, e.item_id or "-",
             _printable(e.detail_json)) for e in entries]
    return format_table(("ID", "AT", "ACTOR", "ACTION", "ITEM", "DETAIL"), rows, right=(0,))


def format_verification(reply) -> str:
    if reply.ok:
        return (f"vault OK: {reply.entries_checked} custody entries, {reply.blobs_checked} blobs; "
                f"head {reply.head_hash}")
    where = (f"custody entry {reply.first_broken_seq}" if reply.first_broken_seq
             else f"blob {reply.broken_blob_sha256}")
    return (f"vault BROKEN at {where}: {reply.problem}\n"
            f"(checked {reply.entries_checked} entries and {reply.blobs_checked} blobs before it)")


# ---------------------------------------------------------------- export

def write_export(parts, out: Path) -> str:
    """Write package.json, blobs/<sha256> and SHA256SUMS under `out`,
    checking each blob against its name."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty directory: exports never overwrite evidence")
    package = None
    sums = []
    blobs = 0
    for part in parts:
        which = part.WhichOneof("part")
        if which == "package_json":
            out.mkdir(parents=True, exist_ok=True)
            (out / "blobs").mkdir(exist_ok=True)
            package = part.package_json.encode("utf-8")
            (out / "package.json").write_bytes(package)
            sums.append((sha256_hex(package), "package.json"))
        elif which == "blob":
            if package is None:
                raise RuntimeError("the server sent a blob before the package")
            blob = part.blob
            if sha256_hex(blob.content) != blob.sha256 or len(blob.sha256) != 64:
                raise RuntimeError(f"blob {blob.sha256!r} does not match its content: export aborted")
            (out / "blobs" / blob.sha256).write_bytes(blob.content)
            sums.append((blob.sha256, f"blobs/{blob.sha256}"))
            blobs += 1
    if package is None:
        raise RuntimeError("the server sent no package")
    (out / "SHA256SUMS").write_text("".join(f"{digest}  {name}\n" for digest, name in sums))
    manifest = json.loads(package)
    return (f"exported {manifest.get('case_id')} to {out}: package.json, {blobs} blob(s), SHA256SUMS "
            f"(package sha256 {sums[0][0]})")


# ---------------------------------------------------------------- commands

def run(args: argparse.Namespace, stub: moderation_pb2_grpc.ModerationStub) -> tuple[int, str]:
    """One command against the service: (exit status, what to print)."""
    t = args.timeout
    if args.command == "whoami":
        reply = stub.WhoAmI(moderation_pb2.WhoAmIRequest(), timeout=t)
        return 0, f"{reply.name} ({reply.role})"
    if args.command == "list":
        reply = stub.ListReviewItems(moderation_pb2.ListReviewItemsRequest(
            status=args.status, limit=args.limit, category=args.category, min_priority=args.min_priority,
            kind=KINDS[args.kind] if args.kind else moderation_pb2.REVIEW_ITEM_KIND_UNSPECIFIED), timeout=t)
        return 0, format_list(reply.items)
    if args.command == "show":
        return 0, format_item(stub.GetReviewItem(moderation_pb2.GetReviewItemRequest(item_id=args.item_id),
                                                 timeout=t))
    if args.command == "claim":
        item = stub.ClaimReviewItem(moderation_pb2.ClaimReviewItemRequest(item_id=args.item_id), timeout=t)
        return 0, f"claimed {item.item_id} until {format_time(item.claim_expires_at_unix_ms)}"
    if args.command == "release":
        stub.ReleaseReviewItem(moderation_pb2.ReleaseReviewItemRequest(item_id=args.item_id, reason=args.reason),
                               timeout=t)
        return 0, f"released {args.item_id}"
    if args.command == "decide":
        reply = stub.Decide(moderation_pb2.DecideRequest(
            item_id=args.item_id, action=ACTIONS[args.action], category=args.category,
            duration_s=args.duration or 0, note=args.note), timeout=t)
        return 0, f"decided {args.item_id}: {args.action}, decision {reply.decision_id}"
    if args.command == "hold":
        item = stub.SetLegalHold(moderation_pb2.SetLegalHoldRequest(
            item_id=args.item_id, hold=not args.lift, reason=args.reason), timeout=t)
        return 0, f"{item.item_id}: legal hold {'on' if item.legal_hold else 'off'}"
    if args.command == "audit":
        reply = stub.ListAuditLog(moderation_pb2.ListAuditLogRequest(
            item_id=args.item, actor=args.actor, after_id=args.after, limit=args.limit), timeout=t)
        return 0, format_audit(reply.entries)
    if args.command == "vault" and args.vault_command == "verify":
        reply = stub.VerifyVault(moderation_pb2.VerifyVaultRequest(), timeout=max(t, 300))
        return (0 if reply.ok else 1), format_verification(reply)
    if args.command == "vault" and args.vault_command == "purge":
        reply = stub.PurgeExpired(moderation_pb2.PurgeExpiredRequest(reason=args.reason), timeout=max(t, 300))
        return 0, (f"purged {len(reply.purged_item_ids)} case(s), {reply.blobs_deleted} blob(s)"
                   + "".join(f"\n  {item_id}" for item_id in reply.purged_item_ids))
    if args.command == "export":
        parts = stub.ExportCase(moderation_pb2.ExportCaseRequest(item_id=args.item_id, reason=args.reason),
                                timeout=max(t, 300))
        return 0, write_export(parts, args.out)
    if args.command == "bank" and args.bank_command == "list":
        reply = stub.ListHashBanks(moderation_pb2.ListHashBanksRequest(), timeout=t)
        return 0, format_banks(reply)
    if args.command == "bank" and args.bank_command == "add":
        hashes, source_ids = bank_hashes(args)
        reply = stub.AddBankHashes(moderation_pb2.AddBankHashesRequest(
            bank=args.bank, category=args.category, hashes=hashes, source_ids=source_ids, reason=args.reason),
            timeout=max(t, 60))
        return 0, f"added {reply.added} hash(es) to bank {args.bank} (now {reply.bank_size:,} on this replica)"
    raise UsageError(f"unknown command {args.command}")


def bank_hashes(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The hashes (and source ids) to add, from the command line or --file."""
    from services.moderation.snapshots.banks import BankFileError, parse_bank_lines

    if bool(args.hashes) == bool(args.file):
        raise UsageError("give hashes on the command line or --file, not both (and not neither)")
    if args.hashes:
        return list(args.hashes), []
    try:
        with args.file.open("rb") as lines:
            values, source_ids = parse_bank_lines(lines, source=str(args.file))
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    except BankFileError as exc:
        raise UsageError(str(exc)) from None
    hexes = [bytes(value).hex() for value in values]
    return hexes, (source_ids if any(source_ids) else [])


def format_banks(reply) -> str:
    if not reply.banks:
        return "no hash banks"
    rows = [(b.name, f"{b.size:,}", f"{b.added_at_run_time:,}", _printable(b.source) or "-") for b in reply.banks]
    return (format_table(("BANK", "HASHES", "ADDED AT RUN TIME", "FILE"), rows, right=(1, 2))
            + f"\n{reply.total:,} hash(es) in all")


def verify_database(url: str) -> tuple[int, str]:
    """`vault verify --database-url`: the same check, straight on a database."""
    from services.moderation.store import ReviewStore
    from services.runtime.db import make_engine

    async def check():
        engine = make_engine(url)
        try:
            return await ReviewStore(engine).verify_vault()
        finally:
            await engine.dispose()

    result = asyncio.run(check())
    return (0 if result.ok else 1), format_verification(moderation_pb2.VerifyVaultResponse(
        ok=result.ok, entries_checked=result.entries_checked, blobs_checked=result.blobs_checked,
        first_broken_seq=result.first_broken_seq, broken_blob_sha256=result.broken_blob_sha256,
        problem=result.problem, head_hash=result.head_hash))


def token_command(args: argparse.Namespace, stdin=sys.stdin) -> str:
    if args.token_command == "new":
        try:
            auth.check_name_and_role(args.name, args.role)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        token = auth.new_token()
        return (f"token (give it to {args.name}; it is not stored anywhere):\n  {token}\n"
                f"configuration line (PARLEY_MODERATION_MODERATOR_TOKENS or its file):\n"
                f"  {auth.entry_line(token, args.name, args.role)}")
    token = stdin.read().strip()
    if not token:
        raise UsageError("no token on stdin")
    return auth.token_digest(token)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "decide" and args.action == "ban" and args.duration is None:
        # The API reads a missing duration as permanent; make that a choice.
        parser.error("--action ban needs --duration (e.g. 24h, 7d, or permanent)")
    try:
        if args.command == "token":
            print(token_command(args))
            return 0
        if args.command == "vault" and args.vault_command == "verify" and args.database_url:
            code, text = verify_database(args.database_url)
            print(text)
            return code
        token = read_token(args)
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        with grpc.insecure_channel(args.addr, options=options) as channel:
            stub = moderation_pb2_grpc.ModerationStub(grpc.intercept_channel(channel, _BearerToken(token)))
            code, text = run(args, stub)
        print(text)
        return code
    except UsageError as exc:
        print(f"parley-modctl: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"parley-modctl: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:
        print(f"parley-modctl: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
