"""The ban check at the door.

The ban service answers CheckBan. When it cannot be reached in time the
gateway *fails open* on what it knows: bans it has heard of through ban
events since it started. A user it has no ban for is served; the failure is
counted (parley_gateway_ban_check_failures_total) and logged. Failing closed
would let an outage of one service stop the whole chat; a banned user's
live session is still ended by the ban event either way.
"""
from __future__ import annotations

import logging
import time

import grpc

from parley.v1 import ban_pb2, ban_pb2_grpc, common_pb2
from services.gateway.machine import ban_applies
from services.runtime.metrics import Metrics

log = logging.getLogger(__name__)
WARN_EVERY_SECONDS = 10.0  # an outage logs a line this often, not one per connection


class BanGate:
    def __init__(self, ban_addr: str, timeout: float) -> None:
        self._channel = grpc.aio.insecure_channel(ban_addr)
        self._stub = ban_pb2_grpc.BanStub(self._channel)
        self._timeout = timeout
        self._known: dict[str, ban_pb2.BanRecord] = {}  # ban_id -> ban, from events
        self._warned_at = -WARN_EVERY_SECONDS
        self._unlogged_failures = 0
        metrics = Metrics("gateway")
        self.m_checks = metrics.counter("ban_checks_total", "Ban checks, by result", ["result"])
        self.m_failures = metrics.counter(
            "ban_check_failures_total", "Ban checks the ban service did not answer (failed open)")

    async def check(self, identity: common_pb2.Identity, mode: int, session_id: str = "") -> ban_pb2.BanRecord | None:
        try:
            reply = await self._stub.CheckBan(
                ban_pb2.CheckBanRequest(identity=identity, mode=mode, session_id=session_id), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            self.m_failures.inc()
            self._warn(exc)
            ban = self.known_ban(identity, mode, session_id)
        else:
            ban = reply.ban if reply.banned else None
        self.m_checks.labels("banned" if ban else "clear").inc()
        return ban

    def _warn(self, exc: grpc.aio.AioRpcError) -> None:
        self._unlogged_failures += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            log.warning("ban service unavailable; failing open on the bans heard of from events",
                        extra={"code": exc.code().name, "detail": exc.details(),
                               "failed_checks": self._unlogged_failures, "known_bans": len(self._known)})
            self._warned_at = now
            self._unlogged_failures = 0

    def known_ban(self, identity: common_pb2.Identity, mode: int, session_id: str = "") -> ban_pb2.BanRecord | None:
        now_ms = int(time.time() * 1000)
        for ban in self._known.values():
            expired = ban.expires_at_unix_ms and ban.expires_at_unix_ms <= now_ms
            if not expired and ban_applies(ban, identity, mode, session_id):
                return ban
        return None

    def remember(self, ban: ban_pb2.BanRecord) -> None:
        self._known[ban.ban_id] = ban

    def forget(self, ban: ban_pb2.BanRecord) -> None:
        self._known.pop(ban.ban_id, None)

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel to the ban service (appeals share it)."""
        return self._channel

    async def close(self) -> None:
        await self._channel.close()
