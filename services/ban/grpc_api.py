"""The `parley.v1.Ban` gRPC API: the check gateways make at the door and the
admin calls. Bad requests get INVALID_ARGUMENT and change nothing; store
errors map to NOT_FOUND / FAILED_PRECONDITION; a store that cannot be reached
is UNAVAILABLE, so a caller can tell "try again" from "you asked wrong"."""
from __future__ import annotations

import contextlib
import functools
import logging
import time
from typing import TYPE_CHECKING

import grpc

from parley.v1 import ban_pb2, ban_pb2_grpc, common_pb2
from services.ban.announce import AnnouncementFailed
from services.ban.retry import is_transient
from services.ban.store import BanAlreadyLifted, BanNotFound
from services.ban.wire import ban_to_proto, category_name, subject_from_proto

if TYPE_CHECKING:
    from services.ban.app import BanService

log = logging.getLogger(__name__)

MAX_DURATION_S = 100 * 365 * 24 * 3600  # longer is "permanent": say 0
MAX_SUBJECT_CHARS = 256                  # hex HMACs and device tokens are far shorter
MAX_TEXT_CHARS = 1000                    # reasons
MAX_NAME_CHARS = 200                     # issued_by, lifted_by
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1000


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
        except BanNotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except BanAlreadyLifted as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
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


class BanApi(ban_pb2_grpc.BanServicer):
    def __init__(self, service: BanService) -> None:
        self.service = service

    @property
    def store(self):
        return self.service.store

    @property
    def metrics(self):
        return self.service.metrics

    @_grpc_errors
    async def CheckBan(self, request: ban_pb2.CheckBanRequest, context) -> ban_pb2.CheckBanResponse:
        started = time.perf_counter()
        identity = request.identity
        if not (identity.device_token or identity.ip_hash or identity.ip_prefix_hash):
            raise BadRequest("identity: give at least one of device_token, ip_hash, ip_prefix_hash")
        mode = _known(common_pb2.Mode, request.mode, "mode")
        ban = await self.store.active_for(device_token=identity.device_token, ip_hash=identity.ip_hash,
                                          ip_prefix_hash=identity.ip_prefix_hash, mode=mode)
        self.metrics.checks.labels("banned" if ban else "clear").inc()
        self.metrics.check_duration.observe(time.perf_counter() - started)
        if ban is None:
            return ban_pb2.CheckBanResponse(banned=False)
        return ban_pb2.CheckBanResponse(banned=True, ban=ban_to_proto(ban))

    @_grpc_errors
    async def IssueBan(self, request: ban_pb2.IssueBanRequest, context) -> ban_pb2.BanRecord:
        subject = subject_from_proto(request.subject)
        if subject is None:
            raise BadRequest("subject: set one of device_token, ip_hash, ip_prefix_hash")
        _bounded_text(subject.value, f"subject.{subject.kind.value}", MAX_SUBJECT_CHARS)
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
        )
        self.metrics.bans_issued.labels(category_name(ban.category)).inc()
        log.info("ban issued", extra={"ban_id": ban.ban_id, "subject_kind": ban.subject.kind.value,
                                      "category": category_name(ban.category), "by": ban.issued_by})
        await self._announce(self.service.announcer.issued, ban)
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
        await self._announce(self.service.announcer.lifted, ban)
        return ban_to_proto(ban)

    @_grpc_errors
    async def ListBans(self, request: ban_pb2.ListBansRequest, context) -> ban_pb2.ListBansResponse:
        limit = min(request.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        bans = await self.store.list_bans(active_only=request.active_only, limit=limit)
        return ban_pb2.ListBansResponse(bans=[ban_to_proto(ban) for ban in bans])

    @staticmethod
    async def _announce(announce, ban) -> None:
        # Stored first, announced second: if the broker is away the ban
        # still stands and CheckBan enforces it, so the caller gets the record.
        # The announcer has logged and counted the failure.
        with contextlib.suppress(AnnouncementFailed):
            await announce(ban)
