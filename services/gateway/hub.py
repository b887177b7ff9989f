"""The live sessions of one gateway replica: it feeds each session's state
machine and carries out what the machine returns, on the client's transport
and on the broker. Both transports (gRPC stream, WebSocket) go through here."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from parley.v1 import common_pb2, events_pb2, gateway_pb2
from services.gateway import proof_of_work
from services.gateway.bans import BanGate
from services.gateway.identity import AddressHasher, DeviceTokens
from services.gateway.machine import (Close, Phase, Publish, Relay, SessionMachine, ToClient, ban_applies,
                                     banned_frame, error)
from services.gateway.rate_limits import AddressLimiter, RateLimits, SessionLimiter
from services.gateway.turn import TurnCredentials
from services.moderation.detectors.contact import mask_contacts
from services.runtime.bus import Bus, BusUnavailable
from services.runtime.logs import session_context
from services.runtime.metrics import Metrics
from services.runtime.topology import (DEFAULT_MATCHER_PARTITIONS, MATCH_ID_HEADER, match_routing_key,
                                       matcher_partition)

log = logging.getLogger(__name__)

CLOSED = object()  # the last item of a session's outbox
Err = gateway_pb2.Error
# Relay hops on one site take milliseconds; the top buckets catch a broker in trouble.
RELAY_LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class LiveSession:
    machine: SessionMachine
    transport: str
    limiter: SessionLimiter
    outbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def session_id(self) -> str:
        return self.machine.ref.session_id

    def send(self, frame: gateway_pb2.ServerFrame) -> None:
        self.outbox.put_nowait(frame)


class SessionHub:
    def __init__(self, gateway_id: str, bus: Bus, bans: BanGate, tokens: DeviceTokens,
                 hasher: AddressHasher, proposal_timeout: float, publish_timeout: float = 3.0,
                 matcher_partitions: int = DEFAULT_MATCHER_PARTITIONS, renew_interval: float = 10.0,
                 language_fallback_after: float = 0.0, fallback_language: str = "en",
                 turn: TurnCredentials | None = None, limits: RateLimits = RateLimits(),
                 pow_policy: proof_of_work.Policy = proof_of_work.Policy()) -> None:
        self.gateway_id = gateway_id
        self.bus = bus
        self.bans = bans
        self.tokens = tokens
        self.hasher = hasher
        self.proposal_timeout = proposal_timeout
        self.publish_timeout = publish_timeout
        self.matcher_partitions = matcher_partitions
        self.renew_interval = renew_interval
        self.language_fallback_after = language_fallback_after
        self.fallback_language = fallback_language
        self.turn = turn
        self.limits = limits
        self.pow_policy = pow_policy
        self.addresses = AddressLimiter(limits)
        self.sessions: dict[str, LiveSession] = {}
        metrics = Metrics("gateway")
        self.m_sessions = metrics.gauge("sessions", "Live sessions, by phase and transport",
                                        ["phase", "transport"])
        self.m_opened = metrics.counter("sessions_opened_total", "Sessions opened", ["transport"])
        self.m_rejects = metrics.counter("rejects_total", "Refused requests, by reason", ["reason"])
        self.m_connected = metrics.counter("matches_connected_total", "Sessions that got a stranger")
        self.m_relayed = metrics.counter("messages_relayed_total", "Chat lines relayed to a stranger")
        self.m_refused = metrics.counter("matches_refused_total", "Match results refused by this gateway")
        self.m_relay_latency = metrics.histogram(
            "relay_latency_seconds", "From the sending gateway's publish to this gateway's receipt of a "
            "relayed frame (text, typing, signaling)", buckets=RELAY_LATENCY_BUCKETS)
        self.m_moderation_actions = metrics.counter(
            "moderation_actions_total", "Moderation verdicts carried out on live sessions", ["kind"])
        self.m_snapshots = metrics.counter("snapshots_forwarded_total", "Video snapshots sent to moderation")
        self.m_pow_bits = metrics.histogram("proof_of_work_difficulty", "Proof-of-work difficulty (leading zero bits) asked of new sessions",
                                            buckets=(0, 8, 12, 16, 18, 20, 22, 24, 28, 32))

    # ------------------------------------------------------------ sessions

    async def open(self, hello: gateway_pb2.Hello, ip: str, transport: str) -> tuple[LiveSession | None, list]:
        """Admit a client: sign its device, check bans. Returns the session,
        or None and the frames to send before closing."""
        device_token = self.tokens.keep_or_issue(hello.device_token)
        identity = self.hasher.identity(ip, device_token)
        # Counted before the ban check, so that a flood costs the ban service nothing.
        opens_per_minute = self.addresses.open(identity.ip_hash, time.monotonic())
        if opens_per_minute is None:
            self.m_rejects.labels("rate").inc()
            return None, [gateway_pb2.ServerFrame(error=gateway_pb2.Error(
                code=Err.CODE_TOO_MANY_SESSIONS,
                message=f"too many sessions open from your address (at most {self.limits.sessions_per_ip})"))]
        ban = await self.bans.check(identity, common_pb2.MODE_UNSPECIFIED)
        if ban is not None:
            self.addresses.close(identity.ip_hash)
            self.m_rejects.labels("ban").inc()
            return None, [banned_frame(ban)]
        challenge = gateway_pb2.ProofOfWork(challenge=proof_of_work.new_challenge(),
                                            difficulty_bits=self.pow_policy.bits(opens_per_minute))
        self.m_pow_bits.observe(challenge.difficulty_bits)
        ref = common_pb2.SessionRef(gateway_id=self.gateway_id, session_id=uuid.uuid4().hex)
        machine = SessionMachine(ref, identity, new_id=lambda: uuid.uuid4().hex, now=time.time,
                                 proposal_timeout=self.proposal_timeout, renew_interval=self.renew_interval,
                                 language_fallback_after=self.language_fallback_after,
                                 fallback_language=self.fallback_language,
                                 ice_config=self.turn.ice_config if self.turn else None,
                                 challenge=challenge, mask_contacts=mask_contacts)
        live = LiveSession(machine=machine, transport=transport,
                           limiter=SessionLimiter(self.limits, time.monotonic()))
        self.sessions[ref.session_id] = live
        self.m_opened.labels(transport).inc()
        live.send(gateway_pb2.ServerFrame(welcome=gateway_pb2.Welcome(
            session_id=ref.session_id, device_token=device_token,
            proof_of_work=challenge if challenge.difficulty_bits else None)))
        with session_context(ref.session_id):
            log.info("session opened", extra={"transport": transport})
        return live, []

    async def from_client(self, live: LiveSession, frame: gateway_pb2.ClientFrame) -> None:
        with session_context(live.session_id):
            kind = frame.WhichOneof("frame")
            if not self._within_limits(live, kind or ""):
                return
            if kind == "join":
                # Bans are checked again before every join (video-only bans
                # depend on the mode asked for).
                ban = await self.bans.check(live.machine.identity, frame.join.mode, live.session_id)
                if ban is not None:
                    self.m_rejects.labels("ban").inc()
                    await self._run(live, live.machine.on_ban(ban) or [ToClient(banned_frame(ban)), Close("banned")])
                    return
            async with live.lock:
                effects = live.machine.on_frame(frame)
            await self._run(live, effects)

    def _within_limits(self, live: LiveSession, kind: str) -> bool:
        """Spend the session's (and for joins, its address's) allowance; a
        client over it is told once, with when to try again."""
        now = time.monotonic()
        verdict = live.limiter.check(kind, now)
        retry_after = verdict.retry_after
        notify = verdict.notify
        if not retry_after and kind in ("join", "next"):
            retry_after = self.addresses.join(live.machine.identity.ip_hash, now)
            notify = bool(retry_after)
        if not retry_after:
            return True
        self.m_rejects.labels("rate").inc()
        if notify:
            live.send(gateway_pb2.ServerFrame(error=gateway_pb2.Error(
                code=Err.CODE_RATE_LIMITED, message=f"{kind or 'frame'}: too fast; slow down",
                retry_after_ms=max(1, round(retry_after * 1000)))))
        return False

    def reject_invalid(self, live: LiveSession, message: str) -> None:
        if not self._within_limits(live, "invalid"):
            return
        self.m_rejects.labels("invalid").inc()
        live.send(error(gateway_pb2.Error.CODE_INVALID_FRAME, message).frame)

    async def close(self, live: LiveSession) -> None:
        """The client went away (or the gateway is stopping)."""
        with session_context(live.session_id):
            async with live.lock:
                effects = live.machine.on_disconnect()
            await self._run(live, effects)
            self._forget(live)
            log.info("session closed")

    def _forget(self, live: LiveSession) -> None:
        if self.sessions.pop(live.session_id, None) is not None:
            self.addresses.close(live.machine.identity.ip_hash)
        live.outbox.put_nowait(CLOSED)

    # ------------------------------------------------------------ broker

    async def on_event(self, envelope: events_pb2.Envelope) -> None:
        field = envelope.WhichOneof("event")
        if field == "match_found":
            found = envelope.match_found
            for side in (found.a, found.b):
                live = self.sessions.get(side.session.session_id)
                if side.session.gateway_id != self.gateway_id:
                    continue
                if live is None:
                    # Gone before the match: refuse so the other side re-queues.
                    other = found.b if side is found.a else found.a
                    self.m_refused.inc()
                    await self._send_relay(other.session.gateway_id, events_pb2.RelayFrame(
                        match_id=found.match_id, to=other.session,
                        refuse=events_pb2.MatchRefuse(ticket_id=side.ticket_id, reason="session closed"),
                        **{"from": side.session}))
                    continue
                await self._apply(live, lambda m: m.on_match_found(found))
        elif field == "relay":
            relay = envelope.relay
            if relay.relayed_at_unix_ms and relay.WhichOneof("kind") in ("text", "typing", "signal"):
                self.m_relay_latency.observe(max(0.0, time.time() - relay.relayed_at_unix_ms / 1000))
            live = self.sessions.get(relay.to.session_id)
            if live is not None:
                await self._apply(live, lambda m: m.on_relay(envelope.relay))
        elif field == "session_action":
            action = envelope.session_action
            live = self.sessions.get(action.session.session_id)
            if live is not None:
                self.m_moderation_actions.labels(events_pb2.SessionAction.Kind.Name(action.kind)).inc()
                await self._apply(live, lambda m: m.on_session_action(action))
        elif field == "ban_issued":
            ban = envelope.ban_issued.ban
            self.bans.remember(ban)
            for live in list(self.sessions.values()):
                # Checked here first so that a ban costs no lock per session
                # it does not concern; the machine checks again under the lock.
                if ban_applies(ban, live.machine.identity, live.machine.mode, live.session_id):
                    await self._apply(live, lambda m: m.on_ban(ban))
        elif field == "ban_lifted":
            self.bans.forget(envelope.ban_lifted.ban)

    async def _apply(self, live: LiveSession, step) -> None:
        with session_context(live.session_id):
            async with live.lock:
                before = live.machine.phase
                effects = step(live.machine)
                after = live.machine.phase
            if before is Phase.WAITING and after is Phase.WAITING and any(
                    isinstance(e, Relay) and e.frame.HasField("refuse") for e in effects):
                self.m_refused.inc()
            await self._run(live, effects)

    async def tick(self) -> None:
        for live in list(self.sessions.values()):
            if live.machine.phase in (Phase.WAITING, Phase.PROPOSED):
                await self._apply(live, lambda m: m.on_tick())
        self.addresses.prune(time.monotonic())
        self._update_gauge()

    def _update_gauge(self) -> None:
        counts: dict[tuple[str, str], int] = {}
        for live in self.sessions.values():
            key = (live.machine.phase.value, live.transport)
            counts[key] = counts.get(key, 0) + 1
        for phase in Phase:
            for transport in ("grpc", "websocket"):
                self.m_sessions.labels(phase.value, transport).set(counts.get((phase.value, transport), 0))

    # ------------------------------------------------------------ effects

    async def _run(self, live: LiveSession, effects) -> None:
        for effect in effects:
            if isinstance(effect, ToClient):
                if effect.frame.HasField("connected"):
                    self.m_connected.inc()
                elif effect.frame.HasField("error"):
                    self.m_rejects.labels(_reject_reason(effect.frame.error.code)).inc()
                live.send(effect.frame)
            elif isinstance(effect, Publish):
                if effect.event.DESCRIPTOR.name == "SnapshotObserved":
                    self.m_snapshots.inc()
                # Chat copies carry their match id in a header: moderation's
                # consistent-hash exchange keeps a conversation on one replica.
                headers = ({MATCH_ID_HEADER: effect.event.match_id}
                           if effect.event.DESCRIPTOR.name == "MessageObserved" else None)
                try:
                    await self.bus.publish(effect.event, timeout=self.publish_timeout,
                                           routing_key=self._routing_key(effect.event), headers=headers)
                except BusUnavailable:
                    log.error("publish failed", extra={"event": effect.event.DESCRIPTOR.name})
                    live.send(error(gateway_pb2.Error.CODE_UNAVAILABLE,
                                    "the service is busy; try that again in a moment").frame)
            elif isinstance(effect, Relay):
                if effect.frame.HasField("text"):
                    self.m_relayed.inc()
                await self._send_relay(effect.gateway_id, effect.frame)
            elif isinstance(effect, Close):
                self._forget(live)
                log.info("session ended by the gateway", extra={"reason": effect.reason})

    def _routing_key(self, event) -> str | None:
        """Match requests and cancels go to the matcher partition of the pool
        they name; other events use their own key."""
        name = event.DESCRIPTOR.name
        if name not in ("MatchRequested", "MatchCancelled"):
            return None
        partition = matcher_partition(event.mode, event.age_band, event.language, self.matcher_partitions)
        return match_routing_key("match_requested" if name == "MatchRequested" else "match_cancelled", partition)

    async def _send_relay(self, gateway_id: str, frame: events_pb2.RelayFrame) -> None:
        frame.relayed_at_unix_ms = int(time.time() * 1000)
        try:
            await self.bus.send_relay(gateway_id, frame, timeout=self.publish_timeout)
        except BusUnavailable:
            log.error("relay failed", extra={"to_gateway": gateway_id})


def _reject_reason(code: int) -> str:
    return {
        gateway_pb2.Error.CODE_RATE_LIMITED: "rate",
        gateway_pb2.Error.CODE_TOO_MANY_SESSIONS: "rate",
        gateway_pb2.Error.CODE_PROOF_REQUIRED: "pow",
        gateway_pb2.Error.CODE_INVALID_FRAME: "invalid",
        gateway_pb2.Error.CODE_TOO_LARGE: "invalid",
        gateway_pb2.Error.CODE_OUT_OF_ORDER: "out_of_order",
        gateway_pb2.Error.CODE_NOT_CONNECTED: "not_connected",
    }.get(code, "other")
