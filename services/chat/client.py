"""A client of the gateway's gRPC session API, for the terminal client, tests
and benchmarks: open a session, send frames, read server frames."""
from __future__ import annotations

import asyncio

import grpc

from parley.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from services.gateway import proof_of_work

_END = object()


class SessionClosed(Exception):
    """The gateway ended the session."""


class ChatClient:
    def __init__(self, channel: grpc.aio.Channel, owns_channel: bool = False) -> None:
        self._channel = channel
        self._owns_channel = owns_channel
        self._stub = gateway_pb2_grpc.GatewayStub(channel)
        self._outgoing: asyncio.Queue = asyncio.Queue()
        self._call = None
        self.session_id = ""
        self.device_token = ""
        self.challenge: gateway_pb2.ProofOfWork | None = None  # until the first join carries its proof
        self._proof: asyncio.Task | None = None

    @classmethod
    async def connect(cls, address: str, device_token: str = "", client: str = "parley-chat") -> "ChatClient":
        """Open a session; raises SessionClosed with the reason when refused
        (a ban), and keeps the device token the gateway hands out."""
        self = cls(grpc.aio.insecure_channel(address), owns_channel=True)
        await self.open(device_token, client)
        return self

    async def open(self, device_token: str = "", client: str = "parley-chat") -> gateway_pb2.Welcome:
        self._call = self._stub.Session(self._frames())
        await self.send(hello=gateway_pb2.Hello(device_token=device_token, client=client))
        first = await self.receive()
        if first.WhichOneof("frame") != "welcome":
            raise SessionClosed(str(first).strip())
        self.session_id = first.welcome.session_id
        self.device_token = first.welcome.device_token
        if first.welcome.proof_of_work.difficulty_bits:
            self.challenge = first.welcome.proof_of_work
            # Solved in a thread while the person picks interests.
            self._proof = asyncio.create_task(asyncio.to_thread(
                proof_of_work.solve, self.challenge.challenge, self.challenge.difficulty_bits))
        return first.welcome

    async def proof(self) -> str:
        """The nonce for the first join ("" when none is asked). Every join
        carries it: the gateway ignores it once a join has been accepted, and
        a first join refused for another reason does not lose it."""
        return await self._proof if self._proof is not None else ""

    async def _frames(self):
        while True:
            frame = await self._outgoing.get()
            if frame is _END:
                return
            yield frame

    async def send(self, **frame) -> None:
        await self._outgoing.put(gateway_pb2.ClientFrame(**frame))

    async def send_raw(self, frame) -> None:
        """Send a frame object as it is (tests of bad input)."""
        await self._outgoing.put(frame)

    async def join(self, mode=common_pb2.MODE_TEXT, age_band=common_pb2.AGE_BAND_ADULT,
                   language="en", interests=(), interests_only=False) -> None:
        await self.send(join=gateway_pb2.Join(mode=mode, age_band=age_band, language=language,
                                              interests=list(interests), interests_only=interests_only,
                                              proof_of_work=await self.proof()))

    async def say(self, text: str) -> None:
        await self.send(text=gateway_pb2.SendText(text=text))

    async def typing(self, typing: bool = True) -> None:
        await self.send(typing=gateway_pb2.SetTyping(typing=typing))

    async def stop(self) -> None:
        await self.send(stop=gateway_pb2.Stop())

    async def next(self) -> None:
        await self.send(next=gateway_pb2.Next())

    async def report(self, category=common_pb2.CATEGORY_HARASSMENT, comment: str = "") -> None:
        await self.send(report=gateway_pb2.Report(category=category, comment=comment))

    async def block(self) -> None:
        await self.send(block=gateway_pb2.Block())

    async def receive(self, timeout: float | None = None) -> gateway_pb2.ServerFrame:
        frame = await asyncio.wait_for(self._call.read(), timeout)
        if frame is grpc.aio.EOF:
            raise SessionClosed("the gateway closed the session")
        return frame

    async def expect(self, kind: str, timeout: float = 5.0, skip=("typing",)) -> gateway_pb2.ServerFrame:
        """Read until a frame of `kind`; frames of the kinds in `skip` are
        passed over, any other frame is an error."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.receive(max(0.0, deadline - loop.time()))
            which = frame.WhichOneof("frame")
            if which == kind:
                return frame
            if which not in skip:
                raise AssertionError(f"expected {kind}, got {which}: {frame}")

    async def close(self) -> None:
        if self._proof is not None and not self._proof.done():
            self._proof.cancel()
        await self._outgoing.put(_END)
        if self._call is not None:
            self._call.cancel()
        if self._owns_channel:
            await self._channel.close()


async def file_appeal(address: str, device_token: str, ban_id: str, statement: str) -> str:
    """Appeal a ban through the gateway; the appeal id, or grpc.aio.AioRpcError
    with the gateway's reason."""
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await gateway_pb2_grpc.GatewayStub(channel).FileAppeal(gateway_pb2.AppealRequest(
            device_token=device_token, ban_id=ban_id, statement=statement), timeout=10)
    return reply.appeal_id
