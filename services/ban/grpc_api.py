"""The `parley.v1.Ban` gRPC API: the check gateways make at the door, the
admin calls and appeals. Bad requests get INVALID_ARGUMENT and change
nothing; store errors map to NOT_FOUND / FAILED_PRECONDITION /
ALREADY_EXISTS / PERMISSION_DENIED; a store that cannot be reached is
UNAVAILABLE, so a caller can tell "try again" from "you asked wrong".

CheckBan answers from the in-memory index (services/ban/index.py), never
the database."""
from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING

import grpc

from parley.v1 import ban_pb2, ban_pb2_grpc, common_pb2
from services.ban.model import AppealRefusal, judge
from services.ban.retry import is_transient
from services.ban.store import (AppealAlreadyDecided, AppealExists, AppealNotFound, AppealRefused,
                                BanAlreadyLifted, BanNotFound)
from services.ban.wire import (APPEAL_STATUS_NAMES, appeal_to_proto, audit_to_proto, ban_to_proto,
                               category_name, strike_to_proto, subject_from_proto, subject_to_proto)

if TYPE_CHECKING:
    from services.ban.app import BanService

log = logging.getLogger(__name__)

MAX_DURATION_S = 100 * 365 * 24 * 3600  # longer is "permanent": say 0
MAX_SUBJECT_CHARS = 256                  # hex HMACs and device tokens are far shorter
MAX_TEXT_CHARS = 1000                    # reasons, notes
MAX_STATEMENT_CHARS = 2000               # an appeal's statement
MAX_NAME_CHARS = 200                     # issued_by, lifted_by, moderator
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1000
DEFAULT_HISTORY_LIMIT = 100

_MODES = frozenset(common_pb2.Mode.values())
_NOT_BANNED = ban_pb2.CheckBanResponse(banned=False)
_SUSPECTED = ban_pb2.CheckBanResponse(banned=False, suspected_evader=True)


class BadRequest(ValueError):
    """The request is malformed; the text says what to fix."""


def _grpc_errors(method):
    """Map the service's exceptions to gRPC status codes with clear text."""

    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except BadRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (BanNotFound, AppealNotFound) as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except (BanAlreadyLifted, AppealAlreadyDecided) as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except AppealExists as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except AppealRefused as exc:
            code = (grpc.StatusCode.PERMISSION_DENIED if exc.refusal is AppealRefusal.NOT_YOURS
                    else grpc.StatusCode.INVALID_ARGUMENT if exc.refusal is AppealRefusal.NO_DEVICE
                    else grpc.StatusCode.FAILED_PRECONDITION)
            await context.abort(code, str(exc))
        except Exception as exc:
            if not is_transient(exc):
                raise  # a bug: gRPC answers UNKNOWN and logs it
            log.warning("ban store unavailable", extra={"rpc": method.__name__, "error": repr(exc)})
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"ban store unavailable: {type(exc).__name__}")

    return wrapper


def _known(enum_type, value: int, field: str) -> int:
    if value not in enum_type.values():
        raise BadRequest(f"{field}: unknown value {value}")
    return value


def _bounded_text(value: str, field: str, limit: int) -> str:
    if len(value) > limit:
        raise BadRequest(f"{field}: at most {limit} characters, got {len(value)}")
    return value


def _limit(requested: int, default: int = DEFAULT_LIST_LIMIT) -> int:
    return min(requested or default, MAX_LIST_LIMIT)


class BanApi(ban_pb2_grpc.BanServicer):
    def __init__(self, service: BanService) -> None:
        self.service = service
        metrics = service.metrics
        # label children looked up once: CheckBan is the hot path
        self._checked = {result: metrics.checks.labels(result) for result in ("banned", "clear", "suspected")}
        self._observe = metrics.check_duration.observe

    @property
    def store(self):
        return self.service.store

    @property
    def metrics(self):
        return self.service.metrics

    # ------------------------------------------------------------ the check

    @_grpc_errors
    async def CheckBan(self, request: ban_pb2.CheckBanRequest, context) -> ban_pb2.CheckBanResponse:
        started = time.perf_counter()
        identity = request.identity
        device, ip_hash, prefix, session = (identity.device_token, identity.ip_hash,
                                            identity.ip_prefix_hash, request.session_id)
        if not (device or ip_hash or prefix or session):
            raise BadRequest("identity: give at least one of device_token, ip_hash, ip_prefix_hash "
                             "(or session_id)")
        for value, field in ((device, "identity.device_token"), (ip_hash, "identity.ip_hash"),
                             (prefix, "identity.ip_prefix_hash"), (session, "session_id")):
            if len(value) > MAX_SUBJECT_CHARS:
                raise BadRequest(f"{field}: at most {MAX_SUBJECT_CHARS} characters, got {len(value)}")
        mode = request.mode
        if mode not in _MODES:
            raise BadRequest(f"mode: unknown value {mode}")

        candidates = self.service.index.candidates(device, ip_hash, prefix, session)
        if not candidates:
            reply, result = _NOT_BANNED, "clear"
        else:
            verdict = judge(candidates, mode, self.service.clock(), device_token=device)
            if verdict.ban is not None:
                reply, result = ban_pb2.CheckBanResponse(banned=True, ban=ban_to_proto(verdict.ban)), "banned"
            elif verdict.watched is not None:
                self.service.flagger.note(device_token=device, ip_hash=ip_hash, ip_prefix_hash=prefix,
                                          ban=verdict.watched)
                reply, result = _SUSPECTED, "suspected"
            else:
                reply, result = _NOT_BANNED, "clear"
        self._checked[result].inc()
        self._observe(time.perf_counter() - started)
        return reply

    # ------------------------------------------------------------ bans

    @_grpc_errors
    async def IssueBan(self, request: ban_pb2.IssueBanRequest, context) -> ban_pb2.BanRecord:
        subject = subject_from_proto(request.subject)
        if subject is None:
            raise BadRequest("subject: set one of device_token, ip_hash, ip_prefix_hash, session_id")
        _bounded_text(subject.value, f"subject.{subject.kind.value}", MAX_SUBJECT_CHARS)
        if request.enforce_on_address and not subject.kind.is_address:
            raise BadRequest(f"enforce_on_address: only for an ip_hash or ip_prefix_hash subject, "
                             f"not {subject.kind.value} (a ban on it always refuses it)")
        if request.duration_s < 0:
            raise BadRequest(f"duration_s: must be 0 (permanent) or positive, got {request.duration_s}")
        if request.duration_s > MAX_DURATION_S:
            raise BadRequest(f"duration_s: at most {MAX_DURATION_S} (100 years); use 0 for permanent")
        ban = await self.store.issue(
            subject,
            scope=_known(common_pb2.BanScope, request.scope, "scope"),
            category=_known(common_pb2.Category, request.category, "category"),
            duration_s=request.duration_s,
            reason=_bounded_text(request.reason, "reason", MAX_TEXT_CHARS),
            # The audit log needs a name; the peer address is better than nothing.
            issued_by=_bounded_text(request.issued_by, "issued_by", MAX_NAME_CHARS) or f"grpc:{context.peer()}",
            enforce_on_address=request.enforce_on_address,
        )
        self.metrics.bans_issued.labels(category_name(ban.category)).inc()
        log.info("ban issued", extra={"ban_id": ban.ban_id, "subject_kind": ban.subject.kind.value,
                                      "category": category_name(ban.category), "by": ban.issued_by,
                                      "enforce_on_address": ban.enforce_on_address})
        await self.service.changed([ban], "issue")
        return ban_to_proto(ban)

    @_grpc_errors
    async def LiftBan(self, request: ban_pb2.LiftBanRequest, context) -> ban_pb2.BanRecord:
        if not request.ban_id:
            raise BadRequest("ban_id: required")
        ban = await self.store.lift(
            _bounded_text(request.ban_id, "ban_id", MAX_SUBJECT_CHARS),
            by=_bounded_text(request.lifted_by, "lifted_by", MAX_NAME_CHARS) or f"grpc:{context.peer()}",
            reason=_bounded_text(request.reason, "reason", MAX_TEXT_CHARS))
        self.metrics.bans_lifted.inc()
        log.info("ban lifted", extra={"ban_id": ban.ban_id, "by": ban.lifted_by})
        await self.service.changed([ban], "lift")
        return ban_to_proto(ban)

    @_grpc_errors
    async def ListBans(self, request: ban_pb2.ListBansRequest, context) -> ban_pb2.ListBansResponse:
        bans = await self.store.list_bans(active_only=request.active_only, limit=_limit(request.limit))
        return ban_pb2.ListBansResponse(bans=[ban_to_proto(ban) for ban in bans])

    @_grpc_errors
    async def GetBan(self, request: ban_pb2.GetBanRequest, context) -> ban_pb2.BanDetails:
        if not request.ban_id:
            raise BadRequest("ban_id: required")
        details = await self.store.details(_bounded_text(request.ban_id, "ban_id", MAX_SUBJECT_CHARS))
        reply = ban_pb2.BanDetails(ban=ban_to_proto(details.ban),
                                   audit=[audit_to_proto(entry) for entry in details.audit])
        if details.appeal is not None:
            reply.appeal.CopyFrom(appeal_to_proto(details.appeal))
        return reply

    @_grpc_errors
    async def GetHistory(self, request: ban_pb2.GetHistoryRequest, context) -> ban_pb2.SubjectHistory:
        subject = subject_from_proto(request.subject)
        if subject is None:
            raise BadRequest("subject: set one of device_token, ip_hash, ip_prefix_hash, session_id")
        _bounded_text(subject.value, f"subject.{subject.kind.value}", MAX_SUBJECT_CHARS)
        history = await self.store.history(subject, limit=_limit(request.limit, DEFAULT_HISTORY_LIMIT))
        expiry = self.store.rules.strike_expiry_ms
        return ban_pb2.SubjectHistory(
            subject=subject_to_proto(subject),
            bans=[ban_to_proto(ban) for ban in history.bans],
            strikes=[strike_to_proto(strike, expiry) for strike in history.strikes],
            active_strikes=history.active_strikes,
            next_penalty=history.next_penalty.describe() if history.next_penalty else "",
            appeals=[appeal_to_proto(appeal) for appeal in history.appeals],
            audit=[audit_to_proto(entry) for entry in history.audit])

    # ------------------------------------------------------------ appeals

    @_grpc_errors
    async def FileAppeal(self, request: ban_pb2.FileAppealRequest, context) -> ban_pb2.Appeal:
        if not request.ban_id:
            raise BadRequest("ban_id: required")
        appellant = request.appellant
        if not appellant.device_token:
            raise BadRequest("appellant.device_token: required")
        for value, field in ((request.ban_id, "ban_id"), (appellant.device_token, "appellant.device_token"),
                             (appellant.ip_hash, "appellant.ip_hash"),
                             (appellant.ip_prefix_hash, "appellant.ip_prefix_hash")):
            _bounded_text(value, field, MAX_SUBJECT_CHARS)
        statement = request.statement.strip()
        if not statement:
            raise BadRequest("statement: required (say why the ban should be lifted)")
        _bounded_text(statement, "statement", MAX_STATEMENT_CHARS)
        appeal = await self.store.file_appeal(request.ban_id, device_token=appellant.device_token,
                                              ip_hash=appellant.ip_hash, ip_prefix_hash=appellant.ip_prefix_hash,
                                              statement=statement)
        self.metrics.appeals.labels("filed").inc()
        log.info("appeal filed", extra={"appeal_id": appeal.appeal_id, "ban_id": appeal.ban_id})
        return appeal_to_proto(appeal, await self.store.get(appeal.ban_id))

    @_grpc_errors
    async def ListAppeals(self, request: ban_pb2.ListAppealsRequest, context) -> ban_pb2.ListAppealsResponse:
        _known(ban_pb2.AppealStatus, request.status, "status")
        appeals = await self.store.list_appeals(status=APPEAL_STATUS_NAMES.get(request.status),
                                                limit=_limit(request.limit))
        bans = {ban.ban_id: ban for ban in await self._bans({a.ban_id for a in appeals})}
        return ban_pb2.ListAppealsResponse(appeals=[appeal_to_proto(a, bans.get(a.ban_id)) for a in appeals])

    @_grpc_errors
    async def DecideAppeal(self, request: ban_pb2.DecideAppealRequest, context) -> ban_pb2.Appeal:
        if not request.appeal_id:
            raise BadRequest("appeal_id: required")
        if request.outcome not in (ban_pb2.APPEAL_OUTCOME_UPHOLD, ban_pb2.APPEAL_OUTCOME_LIFT):
            raise BadRequest(f"outcome: APPEAL_OUTCOME_UPHOLD or APPEAL_OUTCOME_LIFT, got {request.outcome}")
        moderator = _bounded_text(request.moderator, "moderator", MAX_NAME_CHARS)
        if not moderator:
            raise BadRequest("moderator: required (who decides, for the audit log)")
        decided = await self.store.decide_appeal(
            _bounded_text(request.appeal_id, "appeal_id", MAX_SUBJECT_CHARS),
            lift=request.outcome == ban_pb2.APPEAL_OUTCOME_LIFT, moderator=moderator,
            note=_bounded_text(request.note, "note", MAX_TEXT_CHARS))
        self.metrics.appeals.labels(decided.appeal.status).inc()
        if decided.lifted:
            self.metrics.bans_lifted.inc(len(decided.lifted))
            await self.service.changed(decided.lifted, "lift")
        log.info("appeal decided", extra={"appeal_id": decided.appeal.appeal_id, "outcome": decided.appeal.status,
                                          "by": moderator, "lifted": [ban.ban_id for ban in decided.lifted]})
        return appeal_to_proto(decided.appeal, await self.store.get(decided.appeal.ban_id))

    async def _bans(self, ban_ids: set[str]):
        found = []
        for ban_id in ban_ids:
            ban = await self.store.get(ban_id)
            if ban is not None:
                found.append(ban)
        return found

