"""The WebSocket transport of the client API: the same ClientFrame and
ServerFrame messages as the gRPC stream, as text frames in protobuf's JSON
mapping (e.g. {"join": {"mode": "MODE_TEXT", "ageBand": "AGE_BAND_ADULT"}})."""
from __future__ import annotations

from aiohttp import WSMsgType, web
from google.protobuf import json_format

from parley.v1 import gateway_pb2
from services.gateway.grpc_api import MAX_FRAME_BYTES
from services.gateway.hub import SessionHub
from services.gateway.identity import ClientAddress
from services.gateway.session_driver import InvalidFrame, drive_session

# aiohttp closes the socket past its own limit; below it, an oversized frame
# gets an error frame and the session goes on.
SOCKET_LIMIT_BYTES = 1024 * 1024


def parse_json_frame(text: str) -> gateway_pb2.ClientFrame | InvalidFrame:
    if len(text.encode()) > MAX_FRAME_BYTES:
        return InvalidFrame(f"frame over {MAX_FRAME_BYTES} bytes")
    frame = gateway_pb2.ClientFrame()
    try:
        json_format.Parse(text, frame)
    except json_format.ParseError as exc:
        return InvalidFrame(f"not a ClientFrame in protobuf JSON: {exc}")
    return frame


def frame_to_json(frame: gateway_pb2.ServerFrame) -> str:
    return json_format.MessageToJson(frame, indent=None)


class WebSocketApi:
    def __init__(self, hub: SessionHub, hello_timeout: float, addresses: ClientAddress | None = None) -> None:
        self.hub = hub
        self.hello_timeout = hello_timeout
        self.addresses = addresses or ClientAddress()

    def register(self, app: web.Application, path: str = "/ws") -> None:
        app.router.add_get(path, self.session)

    async def session(self, request: web.Request) -> web.WebSocketResponse:
        # No permessage-deflate: chat frames are small, and a deflate context
        # per socket made a browser's idle session five times bigger (130 KiB
        # against 26 KiB, make bench-gateway).
        socket = web.WebSocketResponse(heartbeat=30, max_msg_size=SOCKET_LIMIT_BYTES, compress=False)
        await socket.prepare(request)

        async def receive():
            while True:
                message = await socket.receive()
                if message.type == WSMsgType.TEXT:
                    return parse_json_frame(message.data)
                if message.type == WSMsgType.BINARY:
                    return InvalidFrame("send JSON text frames, not binary")
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    return None

        async def send(frame: gateway_pb2.ServerFrame) -> None:
            if not socket.closed:
                await socket.send_str(frame_to_json(frame))

        ip = self.addresses.resolve(request.remote or "", request.headers.get("X-Forwarded-For"))
        await drive_session(self.hub, "websocket", ip, self.hello_timeout, receive, send)
        await socket.close()
        return socket
