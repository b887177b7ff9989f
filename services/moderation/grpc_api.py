"""parley.v1.Moderation: the review queue, the audit log and the evidence
vault for moderators and their tools. Every call is authenticated (auth.py)
and checked against the caller's role before it touches the store."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from parley.v1 import common_pb2, moderation_pb2, moderation_pb2_grpc
from services.moderation import export, review
from services.moderation.auth import ADMIN, CHILD_SAFETY, Permission, Principal, TokenBook, bearer_token, roles_with
from services.moderation.bank_sync import BankRegistry, InvalidAddition
from services.moderation.custody import sha256_hex
from services.moderation.enums import enum_name
from services.moderation.messages import KIND_FILTER, STATUS_FILTER, audit_message, item_message
from services.moderation.metrics import ModerationMetrics
from services.moderation.outbox import DecisionOutbox
from services.moderation.store import (STORE_ERRORS, AlreadyDecided, ClaimConflict, ItemNotFound, NotExportable,
                                       RestrictedCase, ReviewStore)

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
DEFAULT_AUDIT_LIMIT = 100
MAX_AUDIT_LIMIT = 1000

# Domain errors and the status each becomes.
_ERROR_CODES: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (ItemNotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyDecided, grpc.StatusCode.FAILED_PRECONDITION),
    (ClaimConflict, grpc.StatusCode.FAILED_PRECONDITION),
    (NotExportable, grpc.StatusCode.FAILED_PRECONDITION),
    (RestrictedCase, grpc.StatusCode.PERMISSION_DENIED),
    (review.InvalidDecision, grpc.StatusCode.INVALID_ARGUMENT),
    (review.InvalidReport, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidAddition, grpc.StatusCode.INVALID_ARGUMENT),
)
_DOMAIN_ERRORS = tuple(error for error, _code in _ERROR_CODES)

T = TypeVar("T")


class ModerationApi(moderation_pb2_grpc.ModerationServicer):
    def __init__(self, store: ReviewStore, outbox: DecisionOutbox, metrics: ModerationMetrics,
                 tokens: TokenBook, claim_seconds: float = 900.0, banks: BankRegistry | None = None) -> None:
        self.store = store
        self.outbox = outbox
        self.metrics = metrics
        self.tokens = tokens
        self.lease_ms = int(claim_seconds * 1000)
        self.banks = banks

    # ------------------------------------------------------------ plumbing

    async def _authenticate(self, context, method: str, permission: Permission) -> Principal:
        principal = self.tokens.authenticate(bearer_token(context.invocation_metadata()))
        if principal is None:
            self.metrics.moderator_calls.labels(method, "unauthenticated").inc()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "a valid moderator token is required (metadata authorization: Bearer <token>)")
        if not principal.can(permission):
            self.metrics.moderator_calls.labels(method, "permission_denied").inc()
            log.warning("moderator call refused", extra={"method": method, "moderator": principal.name,
                                                         "role": principal.role})
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"role {principal.role} may not {permission.value}: "
                                f"needs {' or '.join(roles_with(permission))}")
        return principal

    async def _call(self, context, method: str, permission: Permission,
                    body: Callable[[Principal], Awaitable[T]]) -> T:
        """Authenticate, run `body`, and turn its domain errors into statuses."""
        principal = await self._authenticate(context, method, permission)
        try:
            result = await body(principal)
        except _DOMAIN_ERRORS as exc:
            code = next(code for error, code in _ERROR_CODES if isinstance(exc, error))
            outcome = "permission_denied" if code == grpc.StatusCode.PERMISSION_DENIED else "error"
            self.metrics.moderator_calls.labels(method, outcome).inc()
            await context.abort(code, str(exc))
        except STORE_ERRORS as exc:
            self.metrics.moderator_calls.labels(method, "error").inc()
            await _store_unavailable(context, exc)
        self.metrics.moderator_calls.labels(method, "ok").inc()
        return result

    def _item(self, item) -> moderation_pb2.ReviewItem:
        return item_message(item, self.store.clock())

    # ------------------------------------------------------------ the queue

    async def ListReviewItems(self, request, context):
        async def body(_principal):
            if request.status not in STATUS_FILTER:
                raise review.InvalidDecision(f"unknown status {request.status}")
            if request.kind not in KIND_FILTER:
                raise review.InvalidDecision(f"unknown kind {request.kind}")
            if request.category not in common_pb2.Category.values():
                raise review.InvalidDecision(f"unknown category {request.category}")
            items = await self.store.list_items(
                STATUS_FILTER[request.status], min(request.limit or DEFAULT_LIMIT, MAX_LIMIT),
                category=request.category, min_priority=request.min_priority, kind=KIND_FILTER[request.kind])
            return moderation_pb2.ListReviewItemsResponse(items=[self._item(item) for item in items])
        return await self._call(context, "ListReviewItems", Permission.REVIEW, body)

    async def GetReviewItem(self, request, context):
        async def body(principal: Principal):
            _require_id(request.item_id)
            item = await self.store.view_item(request.item_id, principal.name, principal.role,
                                              child_safety_allowed=principal.can(Permission.CHILD_SAFETY))
            return self._item(item)
        return await self._call(context, "GetReviewItem", Permission.REVIEW, body)

    async def ClaimReviewItem(self, request, context):
        async def body(principal: Principal):
            _require_id(request.item_id)
            item = await self.store.claim(request.item_id, principal.name, self.lease_ms,
                                          child_safety_allowed=principal.can(Permission.CHILD_SAFETY))
            log.info("claimed", extra={"item_id": item.item_id, "moderator": principal.name})
            return self._item(item.without_evidence())
        return await self._call(context, "ClaimReviewItem", Permission.REVIEW, body)

    async def ReleaseReviewItem(self, request, context):
        async def body(principal: Principal):
            _require_id(request.item_id)
            if len(request.reason) > review.MAX_NOTE_CHARS:
                raise review.InvalidDecision(f"reason longer than {review.MAX_NOTE_CHARS} characters")
            item = await self.store.release(request.item_id, principal.name, request.reason.strip())
            return self._item(item.without_evidence())
        return await self._call(context, "ReleaseReviewItem", Permission.REVIEW, body)

    async def Decide(self, request, context):
        async def body(principal: Principal):
            checked = review.validate_decision(request, principal.name)
            decision = await self.store.decide(
                checked.item_id, checked.action, checked.category, checked.duration_s, checked.moderator,
                checked.note, child_safety_allowed=principal.can(Permission.CHILD_SAFETY))
            return decision
        decision = await self._call(context, "Decide", Permission.REVIEW, body)
        action = enum_name(moderation_pb2.Action, decision.action)
        self.metrics.decisions.labels(action).inc()
        log.info("decided", extra={"item_id": decision.item_id, "decision_id": decision.decision_id,
                                   "action": action, "moderator": decision.moderator})
        # The decision is stored: if the broker does not confirm now, the
        # outbox publishes it later, so the moderator's answer is still OK.
        await self.outbox.publish(decision)
        await self.metrics.refresh_gauges(self.store)
        return moderation_pb2.DecideResponse(decision_id=decision.decision_id)

    async def SetLegalHold(self, request, context):
        async def body(principal: Principal):
            _require_id(request.item_id)
            reason = review.check_reason(request.reason)
            # A hold shows nothing of the case, so it may be set on any case,
            # child-safety ones included (legal asks for those most).
            item = await self.store.set_legal_hold(request.item_id, request.hold, principal.name,
                                                   principal.role, reason, child_safety_allowed=True)
            return self._item(item.without_evidence())
        return await self._call(context, "SetLegalHold", Permission.HOLD, body)

    # ------------------------------------------------------------ the audit log

    async def ListAuditLog(self, request, context):
        async def body(_principal):
            entries = await self.store.audit_entries(
                request.item_id or None, actor=request.actor or None, after_id=request.after_id,
                limit=min(request.limit or DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT))
            return moderation_pb2.ListAuditLogResponse(entries=[audit_message(e) for e in entries])
        return await self._call(context, "ListAuditLog", Permission.AUDIT, body)

    # ------------------------------------------------------------ the vault

    async def VerifyVault(self, request, context):
        async def body(principal: Principal):
            result = await self.store.verify_vault()
            await self.store.record_audit(principal.actor, "vault_verified", None, {
                "ok": result.ok, "entries": result.entries_checked, "blobs": result.blobs_checked,
                "problem": result.problem})
            if not result.ok:
                log.error("evidence vault verification failed", extra={"problem": result.problem})
            return moderation_pb2.VerifyVaultResponse(
                ok=result.ok, entries_checked=result.entries_checked, blobs_checked=result.blobs_checked,
                first_broken_seq=result.first_broken_seq, broken_blob_sha256=result.broken_blob_sha256,
                problem=result.problem, head_hash=result.head_hash)
        return await self._call(context, "VerifyVault", Permission.VERIFY, body)

    async def PurgeExpired(self, request, context):
        async def body(principal: Principal):
            reason = review.check_reason(request.reason)
            result = await self.store.purge_expired(principal.actor, reason)
            self.metrics.evidence_purged.inc(len(result.purged_item_ids))
            log.info("evidence purged", extra={"items": len(result.purged_item_ids),
                                               "blobs": result.blobs_deleted, "by": principal.name})
            return moderation_pb2.PurgeExpiredResponse(purged_item_ids=result.purged_item_ids,
                                                       blobs_deleted=result.blobs_deleted)
        return await self._call(context, "PurgeExpired", Permission.PURGE, body)

    async def ExportCase(self, request, context):
        async def body(principal: Principal):
            _require_id(request.item_id)
            reason = review.check_reason(request.reason)
            material = await self.store.export_material(request.item_id)
            package = export.build_package(material, exporter=principal.name, role=principal.role,
                                           reason=reason, generated_at_ms=self.store.clock())
            data = export.package_bytes(package)
            # Recorded before anything leaves: an export is never unlogged.
            await self.store.record_export(request.item_id, principal.name, principal.role, reason,
                                           sha256_hex(data), len(material.blobs))
            log.info("law-enforcement package exported", extra={
                "item_id": request.item_id, "by": principal.name, "blobs": len(material.blobs)})
            return data, material
        data, material = await self._call(context, "ExportCase", Permission.EXPORT, body)
        self.metrics.exports.inc()
        yield moderation_pb2.ExportPart(package_json=data.decode("utf-8"))
        for link, media_type, content in material.blobs:
            yield moderation_pb2.ExportPart(blob=moderation_pb2.VaultBlob(
                sha256=link.sha256, media_type=media_type, kind=link.kind, content=content))

    async def WhoAmI(self, request, context):
        async def body(principal: Principal):
            return moderation_pb2.WhoAmIResponse(name=principal.name, role=principal.role)
        return await self._call(context, "WhoAmI", Permission.REVIEW, body)

    # ------------------------------------------------------------ hash banks

    async def _bank_admin(self, context, method: str, principal: Principal) -> BankRegistry:
        """Hash banks are child-safety tooling: roles child_safety and admin."""
        if principal.role not in BANK_ROLES:
            self.metrics.moderator_calls.labels(method, "permission_denied").inc()
            log.warning("moderator call refused", extra={"method": method, "moderator": principal.name,
                                                         "role": principal.role})
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"role {principal.role} may not manage hash banks: needs {' or '.join(BANK_ROLES)}")
        if self.banks is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server matches no hash banks")
        return self.banks

    async def AddBankHashes(self, request, context):
        principal = await self._authenticate(context, "AddBankHashes", Permission.REVIEW)
        banks = await self._bank_admin(context, "AddBankHashes", principal)

        async def body(_principal):
            reason = review.check_reason(request.reason)
            added, size = await banks.add(request.bank, request.category, request.hashes, request.source_ids,
                                          principal.actor, principal.role, reason)
            log.info("hash bank hashes added", extra={"bank": request.bank, "added": added,
                                                      "by": principal.name, "role": principal.role})
            return moderation_pb2.AddBankHashesResponse(added=added, bank_size=size)
        return await self._call(context, "AddBankHashes", Permission.REVIEW, body)

    async def ListHashBanks(self, request, context):
        principal = await self._authenticate(context, "ListHashBanks", Permission.REVIEW)
        banks = await self._bank_admin(context, "ListHashBanks", principal)

        async def body(_principal):
            listing = banks.listing()
            return moderation_pb2.ListHashBanksResponse(
                banks=[moderation_pb2.HashBank(name=b.name, size=b.size, added_at_run_time=b.added_at_run_time,
                                               source=b.source) for b in listing],
                total=sum(b.size for b in listing))
        return await self._call(context, "ListHashBanks", Permission.REVIEW, body)


BANK_ROLES = (CHILD_SAFETY, ADMIN)


def _require_id(item_id: str) -> None:
    if not item_id:
        raise review.InvalidDecision("item_id is required")
    if len(item_id) > review.MAX_ID_CHARS:
        raise review.InvalidDecision(f"item_id longer than {review.MAX_ID_CHARS} characters")


async def _store_unavailable(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    log.error("review store failed", extra={"error": repr(exc)})
    await context.abort(grpc.StatusCode.UNAVAILABLE, "review store unavailable; try again")
