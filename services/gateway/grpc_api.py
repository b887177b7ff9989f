"""The gRPC transport of the client API: one bidirectional stream per session.

Frames are parsed by hand rather than by the generated servicer so that a
frame that is not valid protobuf (or holds non-UTF-8 text) gets an error
frame and the session goes on, instead of the stream being torn down."""
from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from google.protobuf.message import DecodeError

from parley.v1 import gateway_pb2
from services.gateway.hub import CLOSED, SessionHub
from services.gateway.identity import peer_ip

log = logging.getLogger(__name__)

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name
MAX_FRAME_BYTES = 64 * 1024


class InvalidFrame:
    """What the deserializer returns for bytes that are not a ClientFrame."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def parse_client_frame(data: bytes) -> gateway_pb2.ClientFrame | InvalidFrame:
    frame = gateway_pb2.ClientFrame()
    try:
        frame.ParseFromString(data)
    except DecodeError as exc:
        return InvalidFrame(f"not a ClientFrame: {exc}")
    return frame


class GatewayApi:
    def __init__(self, hub: SessionHub, hello_timeout: float) -> None:
        self.hub = hub
        self.hello_timeout = hello_timeout

    def register(self, server: grpc.aio.Server) -> None:
        handler = grpc.stream_stream_rpc_method_handler(
            self.Session, request_deserializer=parse_client_frame,
            response_serializer=gateway_pb2.ServerFrame.SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            SERVICE_NAME, {"Session": handler}),))

    async def Session(self, requests, context: grpc.aio.ServicerContext):
        frames = requests.__aiter__()
        try:
            first = await asyncio.wait_for(frames.__anext__(), self.hello_timeout)
        except (asyncio.TimeoutError, StopAsyncIteration):
            return
        if isinstance(first, InvalidFrame) or first.WhichOneof("frame") != "hello":
            yield _error(gateway_pb2.Error.CODE_OUT_OF_ORDER, "the first frame must be hello")
            return
        live, farewell = await self.hub.open(first.hello, peer_ip(context.peer()), "grpc")
        if live is None:
            for frame in farewell:
                yield frame
            return

        async def read() -> None:
            try:
                async for frame in frames:
                    if isinstance(frame, InvalidFrame):
                        self.hub.reject_invalid(live, frame.reason)
                    else:
                        await self.hub.from_client(live, frame)
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                pass
            except Exception:
                log.exception("session reader failed")
            finally:
                await self.hub.close(live)

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await live.outbox.get()
                if item is CLOSED:
                    break
                yield item
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if live.session_id in self.hub.sessions:
                await self.hub.close(live)


def _error(code: int, message: str) -> gateway_pb2.ServerFrame:
    return gateway_pb2.ServerFrame(error=gateway_pb2.Error(code=code, message=message))
