"""The gRPC transport of the client API: one bidirectional stream per session.

Frames are parsed by hand rather than by the generated servicer so that a
frame that is not valid protobuf (or holds non-UTF-8 text) gets an error
frame and the session goes on, instead of the stream being torn down."""
from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError

from parley.v1 import gateway_pb2
from services.gateway.appeals import AppealDesk, AppealRefused
from services.gateway.hub import SessionHub
from services.gateway.identity import ClientAddress, peer_ip
from services.gateway.session_driver import InvalidFrame, drive_session

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name
MAX_FRAME_BYTES = 64 * 1024


def parse_client_frame(data: bytes) -> gateway_pb2.ClientFrame | InvalidFrame:
    frame = gateway_pb2.ClientFrame()
    try:
        frame.ParseFromString(data)
    except DecodeError as exc:
        return InvalidFrame(f"not a ClientFrame: {exc}")
    return frame


class GatewayApi:
    def __init__(self, hub: SessionHub, hello_timeout: float, addresses: ClientAddress | None = None,
                 appeals: AppealDesk | None = None) -> None:
        self.hub = hub
        self.hello_timeout = hello_timeout
        self.addresses = addresses or ClientAddress()
        self.appeals = appeals

    def register(self, server: grpc.aio.Server) -> None:
        handler = grpc.stream_stream_rpc_method_handler(
            self.Session, request_deserializer=parse_client_frame,
            response_serializer=gateway_pb2.ServerFrame.SerializeToString)
        appeal = grpc.unary_unary_rpc_method_handler(
            self.FileAppeal, request_deserializer=gateway_pb2.AppealRequest.FromString,
            response_serializer=gateway_pb2.AppealReply.SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            SERVICE_NAME, {"Session": handler, "FileAppeal": appeal}),))

    def _client_ip(self, context: grpc.aio.ServicerContext) -> str:
        forwarded_for = dict(context.invocation_metadata() or ()).get("x-forwarded-for")
        return self.addresses.resolve(peer_ip(context.peer()), forwarded_for)

    async def FileAppeal(self, request: gateway_pb2.AppealRequest,
                         context: grpc.aio.ServicerContext) -> gateway_pb2.AppealReply:
        if self.appeals is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "appeals are not served here")
        try:
            return await self.appeals.file(request, self._client_ip(context))
        except AppealRefused as exc:
            await context.abort(exc.code, exc.message)

    async def Session(self, requests, context: grpc.aio.ServicerContext) -> None:
        frames = requests.__aiter__()

        async def receive():
            try:
                return await frames.__anext__()
            except (StopAsyncIteration, grpc.aio.AioRpcError):
                return None

        await drive_session(self.hub, "grpc", self._client_ip(context), self.hello_timeout, receive, context.write)
