"""Appeals at the door: a banned person's device (and address) asks the ban
service to review the ban. Shared by the gRPC API and the web page's
POST /appeal, so both give the same answers."""
from __future__ import annotations

import logging
import time

import grpc
from aiohttp import web
from google.protobuf import json_format

from parley.v1 import ban_pb2, ban_pb2_grpc, gateway_pb2
from services.gateway.identity import AddressHasher, ClientAddress, DeviceTokens
from services.gateway.rate_limits import AddressLimiter

log = logging.getLogger(__name__)
MAX_STATEMENT_CHARS = 2000

# The ban service's refusals that the appellant should see as they are.
_PASSED_ON = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
              grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION}


class AppealRefused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AppealDesk:
    def __init__(self, ban_channel: grpc.aio.Channel, tokens: DeviceTokens, hasher: AddressHasher,
                 addresses: AddressLimiter, timeout: float = 3.0) -> None:
        self._stub = ban_pb2_grpc.BanStub(ban_channel)
        self._tokens = tokens
        self._hasher = hasher
        self._addresses = addresses
        self._timeout = timeout

    async def file(self, request: gateway_pb2.AppealRequest, ip: str) -> gateway_pb2.AppealReply:
        if not request.device_token or not self._tokens.is_valid(request.device_token):
            raise AppealRefused(grpc.StatusCode.INVALID_ARGUMENT, "device_token: not a token this service issued")
        if not request.ban_id:
            raise AppealRefused(grpc.StatusCode.INVALID_ARGUMENT, "ban_id: required")
        statement = request.statement.strip()
        if not 1 <= len(statement) <= MAX_STATEMENT_CHARS:
            raise AppealRefused(grpc.StatusCode.INVALID_ARGUMENT,
                                f"statement: 1 to {MAX_STATEMENT_CHARS} characters")
        identity = self._hasher.identity(ip, request.device_token)
        # Appeals draw on the address's join allowance: cheap to ask, not free.
        retry_after = self._addresses.join(identity.ip_hash, time.monotonic())
        if retry_after:
            raise AppealRefused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"too many requests from your address; try again in {retry_after:.0f} s")
        try:
            appeal = await self._stub.FileAppeal(ban_pb2.FileAppealRequest(
                ban_id=request.ban_id, appellant=identity, statement=statement), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _PASSED_ON:
                raise AppealRefused(exc.code(), exc.details() or exc.code().name) from None
            log.warning("appeal not filed: ban service unavailable", extra={"code": exc.code().name})
            raise AppealRefused(grpc.StatusCode.UNAVAILABLE,
                                "appeals cannot be filed right now; try again later") from None
        log.info("appeal filed", extra={"appeal_id": appeal.appeal_id, "ban_id": request.ban_id})
        return gateway_pb2.AppealReply(appeal_id=appeal.appeal_id)


# How the web page's POST /appeal answers each refusal.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def add_http_route(app: web.Application, desk: AppealDesk, client_address: ClientAddress) -> None:
    """POST /appeal with an AppealRequest in protobuf's JSON mapping."""

    async def appeal(request: web.Request) -> web.Response:
        def refuse(code: grpc.StatusCode, message: str) -> web.Response:
            return web.json_response({"error": {"code": code.name, "message": message}},
                                     status=HTTP_STATUS.get(code, 500))

        try:
            appeal_request = json_format.ParseDict(await request.json(), gateway_pb2.AppealRequest())
        except (ValueError, json_format.ParseError) as exc:
            return refuse(grpc.StatusCode.INVALID_ARGUMENT, f"not an AppealRequest in JSON: {exc}")
        ip = client_address.resolve(request.remote or "", request.headers.get("X-Forwarded-For"))
        try:
            reply = await desk.file(appeal_request, ip)
        except AppealRefused as exc:
            return refuse(exc.code, exc.message)
        return web.json_response(json_format.MessageToDict(reply))

    app.router.add_post("/appeal", appeal)
