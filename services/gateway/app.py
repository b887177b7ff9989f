"""The gateway process, wired together: client transports, the session hub,
the ban gate, and this replica's relay queue on the broker."""
from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from services.gateway import proof_of_work
from services.gateway import appeals
from services.gateway.bans import BanGate
from services.gateway.grpc_api import MAX_FRAME_BYTES, SERVICE_NAME, GatewayApi
from services.gateway.http import HttpServer, build_http_app
from services.gateway.hub import SessionHub
from services.gateway.identity import AddressHasher, ClientAddress, DeviceTokens
from services.gateway.settings import DEV_DEVICE_TOKEN_SECRET, DEV_IP_PEPPER, DEV_TURN_SECRET, GatewaySettings
from services.gateway.turn import TurnCredentials
from services.gateway.websocket import WebSocketApi
from services.runtime.bus import Bus
from services.runtime.topology import gateway_relay, moderation_reports

log = logging.getLogger(__name__)


class GatewayService:
    grpc_service_names = [SERVICE_NAME]
    grpc_options = [("grpc.max_receive_message_length", MAX_FRAME_BYTES)]

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        if not (settings.ip_pepper and settings.device_token_secret and settings.turn_secret):
            log.warning("PARLEY_IP_PEPPER, PARLEY_DEVICE_TOKEN_SECRET or PARLEY_TURN_SECRET unset: "
                        "using development secrets; set all three in production")
        if not settings.turn_urls:
            log.warning("PARLEY_GATEWAY_TURN_URLS unset: video clients get no TURN server, and "
                        "with relay-only ICE their video cannot connect")
        # Every chat line is two publishes (the relay, moderation's copy):
        # socket writes coalesced per loop turn, as the matcher does
        # (make bench-gateway: about a fifth less CPU per line).
        self.bus = Bus(settings.amqp_url, "gateway", settings.instance_id, coalesce_writes=True,
                       queue_fast_publishes=True)
        self.bans = BanGate(settings.ban_addr, settings.ban_check_timeout_seconds)
        tokens = DeviceTokens(settings.device_token_secret or DEV_DEVICE_TOKEN_SECRET)
        hasher = AddressHasher(settings.ip_pepper or DEV_IP_PEPPER)
        self.hub = SessionHub(
            gateway_id=settings.instance_id, bus=self.bus, bans=self.bans, tokens=tokens, hasher=hasher,
            proposal_timeout=settings.proposal_timeout_seconds,
            publish_timeout=settings.publish_timeout_seconds,
            matcher_partitions=settings.matcher_partitions,
            renew_interval=settings.ticket_renew_seconds,
            language_fallback_after=settings.language_fallback_seconds,
            fallback_language=settings.fallback_language,
            turn=TurnCredentials(settings.turn_secret or DEV_TURN_SECRET, settings.turn_urls,
                                 settings.turn_ttl_seconds),
            limits=settings.rate_limits(),
            pow_policy=proof_of_work.Policy(settings.pow_bits, settings.pow_max_bits,
                                            settings.pow_free_sessions_per_minute))
        addresses = ClientAddress(settings.trusted_proxies)
        appeal_desk = appeals.AppealDesk(self.bans.channel, tokens, hasher, self.hub.addresses)
        self.api = GatewayApi(self.hub, settings.hello_timeout_seconds, addresses, appeal_desk)
        self._serving = False
        http_app = build_http_app(lambda: self._serving)
        WebSocketApi(self.hub, settings.hello_timeout_seconds, addresses).register(http_app)
        appeals.add_http_route(http_app, appeal_desk, addresses)
        self.http = HttpServer(http_app, settings.http_host, settings.http_port)
        self._ticker: asyncio.Task | None = None

    def register(self, server: grpc.aio.Server) -> None:
        self.api.register(server)

    def extra_ports(self) -> dict:
        return {"http_port": self.http.port}

    async def start(self) -> None:
        await self.bus.connect()
        # Reports must survive until moderation first starts.
        await self.bus.declare(moderation_reports())
        await self.bus.consume(gateway_relay(self.settings.instance_id), self.hub.on_event, prefetch=1000)
        await self.http.start()
        self._ticker = asyncio.create_task(self._tick_forever())
        self._serving = True

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.hub.tick()
            except Exception:
                log.exception("tick failed")

    async def drain(self) -> None:
        """End every session, telling each stranger their partner is gone,
        before the gRPC server closes the streams."""
        self._serving = False
        for live in list(self.hub.sessions.values()):
            await self.hub.close(live)

    async def stop(self) -> None:
        self._serving = False
        if self._ticker:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.http.stop()
        await self.bans.close()
        await self.bus.close()
