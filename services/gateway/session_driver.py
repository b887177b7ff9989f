"""One session over any transport: the gRPC stream and the WebSocket both
hand the driver a way to read the next client frame and a way to send a
server frame; the driver does the rest (hello first, admission, reading,
writing, closing) on the shared session hub."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from parley.v1 import gateway_pb2
from services.gateway.hub import CLOSED, SessionHub

log = logging.getLogger(__name__)


class InvalidFrame:
    """What a transport hands over for input that is not a ClientFrame."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


Incoming = gateway_pb2.ClientFrame | InvalidFrame | None  # None: the client went away


async def drive_session(hub: SessionHub, transport: str, ip: str, hello_timeout: float,
                        receive: Callable[[], Awaitable[Incoming]],
                        send: Callable[[gateway_pb2.ServerFrame], Awaitable[None]]) -> None:
    try:
        first = await asyncio.wait_for(receive(), hello_timeout)
    except asyncio.TimeoutError:
        first = None
    if first is None:
        return
    if isinstance(first, InvalidFrame) or first.WhichOneof("frame") != "hello":
        await send(gateway_pb2.ServerFrame(error=gateway_pb2.Error(
            code=gateway_pb2.Error.CODE_OUT_OF_ORDER, message="the first frame must be hello")))
        return
    live, farewell = await hub.open(first.hello, ip, transport)
    if live is None:
        for frame in farewell:
            await send(frame)
        return

    async def read() -> None:
        try:
            while (frame := await receive()) is not None:
                if isinstance(frame, InvalidFrame):
                    hub.reject_invalid(live, frame.reason)
                else:
                    await hub.from_client(live, frame)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("session reader failed")
        finally:
            await hub.close(live)

    reader = asyncio.create_task(read())
    try:
        while True:
            item = await live.outbox.get()
            if item is CLOSED:
                break
            await send(item)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        if live.session_id in hub.sessions:
            await hub.close(live)
