"""The state of one client session, as pure logic.

Every input (a frame from the client, a match result, a frame from the
stranger's gateway, a ban, a tick of the clock) returns the effects to carry
out: frames to the client, events to publish, frames to relay to another
gateway, and whether to close. No I/O happens here, so the whole conversation
protocol is tested without a broker.

Phases:  IDLE --join--> WAITING --match found--> PROPOSED --both accept--> CONNECTED
Stop returns to IDLE, next to WAITING; a refused or unanswered proposal
re-queues the session at the head of its pool (DESIGN.md, invariant 2).
"""
from __future__ import annotations

import enum
import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import Message

from parley.v1 import ban_pb2, common_pb2, events_pb2, gateway_pb2
from services.gateway import limits, proof_of_work

TRANSCRIPT_LINES = 50  # evidence kept per conversation for reports
Err = gateway_pb2.Error


class Phase(enum.Enum):
    IDLE = "idle"
    WAITING = "waiting"
    PROPOSED = "proposed"
    CONNECTED = "connected"
    CLOSED = "closed"


# ---------------------------------------------------------------- effects

@dataclass(frozen=True)
class ToClient:
    frame: gateway_pb2.ServerFrame


@dataclass(frozen=True)
class Publish:
    event: Message  # a domain event for the events exchange


@dataclass(frozen=True)
class Relay:
    gateway_id: str
    frame: events_pb2.RelayFrame


@dataclass(frozen=True)
class Close:
    reason: str


Effect = ToClient | Publish | Relay | Close


def error(code: int, message: str) -> ToClient:
    return ToClient(gateway_pb2.ServerFrame(error=gateway_pb2.Error(code=code, message=message)))


def banned_frame(ban: ban_pb2.BanRecord) -> gateway_pb2.ServerFrame:
    return gateway_pb2.ServerFrame(banned=gateway_pb2.Banned(
        reason=ban.reason, expires_at_unix_ms=ban.expires_at_unix_ms, category=ban.category,
        ban_id=ban.ban_id, appealable_until_unix_ms=ban.appealable_until_unix_ms))


# ---------------------------------------------------------------- state

@dataclass
class Proposal:
    match_id: str
    peer: common_pb2.SessionRef
    peer_device: str
    common_interests: list[str]
    random_fallback: bool
    offerer: bool
    proposed_at: float


@dataclass
class Conversation:
    match_id: str
    peer: common_pb2.SessionRef
    peer_identity: common_pb2.Identity
    started_at_ms: int = 0
    transcript: deque = field(default_factory=lambda: deque(maxlen=TRANSCRIPT_LINES))

    def record(self, text: str, from_me: bool, sent_at_ms: int) -> None:
        self.transcript.append(common_pb2.ChatLine(from_reporter=from_me, text=text,
                                                   sent_at_unix_ms=sent_at_ms))


class SessionMachine:
    def __init__(self, ref: common_pb2.SessionRef, identity: common_pb2.Identity,
                 new_id: Callable[[], str], now: Callable[[], float],
                 proposal_timeout: float = 5.0, renew_interval: float = 10.0,
                 language_fallback_after: float = 0.0, fallback_language: str = "en",
                 ice_config: Callable[[str, float], gateway_pb2.IceConfig] | None = None,
                 challenge: gateway_pb2.ProofOfWork | None = None,
                 mask_contacts: Callable[[str], tuple[str, bool]] | None = None) -> None:
        self.ref = ref
        self.identity = identity
        self._new_id = new_id
        self._now = now
        self.proposal_timeout = proposal_timeout
        self.renew_interval = renew_interval
        self.language_fallback_after = language_fallback_after
        self.fallback_language = fallback_language
        self._ice_config = ice_config  # (session id, now) -> TURN servers for video
        # Applied to every line in a minors' pool before it is relayed, so
        # contact details never reach the other side (moderation sees the
        # original, after the fact).
        self._mask_contacts = mask_contacts
        self._typing_since_ms = 0
        # The proof of work the first join must carry; None once it has.
        self.challenge = challenge if challenge is not None and challenge.difficulty_bits else None
        self.phase = Phase.IDLE
        self.join: gateway_pb2.Join | None = None
        self.ticket_id: str | None = None
        self._request: events_pb2.MatchRequested | None = None  # the current ticket's request
        self._sent_at = 0.0  # when it was last sent
        self._waiting_since = 0.0
        self._ticket_count = 0
        self.proposal: Proposal | None = None
        self.conversation: Conversation | None = None
        self.last_conversation: Conversation | None = None
        self.avoid: set[str] = set()  # device tokens blocked or reported
        # Answers from the stranger's gateway that came before our own match
        # result: both gateways get the MatchFound at about the same time.
        self._early: dict[str, events_pb2.RelayFrame] = {}

    @property
    def mode(self) -> int:
        return self.join.mode if self.join else common_pb2.MODE_UNSPECIFIED

    # ------------------------------------------------------------ client frames

    def on_frame(self, frame: gateway_pb2.ClientFrame) -> list[Effect]:
        if self.phase is Phase.CLOSED:
            return []
        kind = frame.WhichOneof("frame")
        handler = getattr(self, f"_client_{kind}", None) if kind else None
        if handler is None:
            return [error(Err.CODE_INVALID_FRAME, "empty or unknown frame")]
        return handler(getattr(frame, kind))

    def _client_hello(self, _hello) -> list[Effect]:
        return [error(Err.CODE_OUT_OF_ORDER, "hello: the session is already open")]

    def _client_join(self, join: gateway_pb2.Join) -> list[Effect]:
        if self.phase is not Phase.IDLE:
            return [error(Err.CODE_OUT_OF_ORDER, f"join: already {self.phase.value}; stop first")]
        problem = limits.check_join(join)
        if problem:
            return [error(Err.CODE_INVALID_FRAME, problem)]
        if self.challenge is not None:
            if not proof_of_work.verify(self.challenge.challenge, join.proof_of_work,
                                        self.challenge.difficulty_bits):
                return [error(Err.CODE_PROOF_REQUIRED,
                              f"join: proof_of_work must solve the welcome's challenge "
                              f"({self.challenge.difficulty_bits} bits)")]
            self.challenge = None
        self.join = gateway_pb2.Join()
        self.join.CopyFrom(join)
        self.join.ClearField("proof_of_work")
        self.join.language = join.language or "en"
        del self.join.interests[:]
        self.join.interests.extend(limits.normalize_interests(join.interests))
        return self._enqueue(at_head=False)

    def _client_text(self, text: gateway_pb2.SendText) -> list[Effect]:
        if self.phase is not Phase.CONNECTED:
            return [error(Err.CODE_NOT_CONNECTED, "text: no stranger to talk to")]
        problem = limits.check_text(text.text)
        if problem:
            return [error(*problem)]
        sent_at = int(self._now() * 1000)
        conversation = self.conversation
        conversation.record(text.text, True, sent_at)
        relayed, masked = text.text, False
        if self.join.age_band == common_pb2.AGE_BAND_MINOR and self._mask_contacts is not None:
            relayed, masked = self._mask_contacts(text.text)
        typing_since, self._typing_since_ms = self._typing_since_ms, 0
        effects: list[Effect] = [
            Relay(conversation.peer.gateway_id, self._relay(
                conversation, text=events_pb2.RelayText(text=relayed, sent_at_unix_ms=sent_at))),
            Publish(events_pb2.MessageObserved(
                match_id=conversation.match_id, session=self.ref,
                device_token=self.identity.device_token, mode=self.join.mode,
                age_band=self.join.age_band, text=text.text, sent_at_unix_ms=sent_at,
                typing_started_at_unix_ms=typing_since, connected_at_unix_ms=conversation.started_at_ms,
                masked=masked)),
        ]
        if masked:
            effects.append(ToClient(gateway_pb2.ServerFrame(notice=gateway_pb2.ModerationNotice(
                category=common_pb2.CATEGORY_CONTACT_SOLICITATION, match_id=conversation.match_id,
                message="Contact details are hidden here: the stranger saw your message without them."))))
        return effects

    def _client_typing(self, typing: gateway_pb2.SetTyping) -> list[Effect]:
        if self.phase is not Phase.CONNECTED:
            return [error(Err.CODE_NOT_CONNECTED, "typing: no stranger to talk to")]
        if typing.typing and not self._typing_since_ms:
            self._typing_since_ms = int(self._now() * 1000)
        return [Relay(self.conversation.peer.gateway_id, self._relay(
            self.conversation, typing=events_pb2.RelayTyping(typing=typing.typing)))]

    def _client_signal(self, signal: gateway_pb2.Signal) -> list[Effect]:
        if self.phase is not Phase.CONNECTED:
            return [error(Err.CODE_NOT_CONNECTED, "signal: no stranger to talk to")]
        if self.join.mode != common_pb2.MODE_VIDEO:
            return [error(Err.CODE_OUT_OF_ORDER, "signal: only in video mode")]
        problem = limits.check_signal(signal)
        if problem:
            return [error(*problem)]
        relayed = events_pb2.RelaySignal()
        which = signal.WhichOneof("payload")
        setattr(relayed, which, getattr(signal, which))
        return [Relay(self.conversation.peer.gateway_id, self._relay(self.conversation, signal=relayed))]

    def _client_snapshot(self, snapshot: gateway_pb2.Snapshot) -> list[Effect]:
        if self.phase is not Phase.CONNECTED:
            return [error(Err.CODE_NOT_CONNECTED, "snapshot: no stranger to talk to")]
        if self.join.mode != common_pb2.MODE_VIDEO:
            return [error(Err.CODE_OUT_OF_ORDER, "snapshot: only in video mode")]
        problem = limits.check_snapshot(snapshot.jpeg)
        if problem:
            return [error(*problem)]
        return [Publish(events_pb2.SnapshotObserved(
            match_id=self.conversation.match_id, session=self.ref, identity=self.identity,
            mode=self.join.mode, age_band=self.join.age_band, jpeg=snapshot.jpeg,
            sha256=hashlib.sha256(snapshot.jpeg).hexdigest(), taken_at_unix_ms=int(self._now() * 1000)))]

    def _client_stop(self, _stop) -> list[Effect]:
        if self.phase is Phase.IDLE:
            return [error(Err.CODE_OUT_OF_ORDER, "stop: not waiting and not in a conversation")]
        return self._leave("stop")

    def _client_next(self, _next) -> list[Effect]:
        if self.join is None:
            return [error(Err.CODE_OUT_OF_ORDER, "next: join first")]
        return self._leave("next") + self._enqueue(at_head=False)

    def _client_report(self, report: gateway_pb2.Report) -> list[Effect]:
        problem = limits.check_report(report)
        if problem:
            return [error(Err.CODE_INVALID_FRAME, problem)]
        target = self.conversation or self.last_conversation
        if target is None:
            return [error(Err.CODE_NOT_CONNECTED, "report: no stranger to report")]
        report_id = self._new_id()
        self.avoid.add(target.peer_identity.device_token)
        event = events_pb2.ReportFiled(
            report_id=report_id, reporter=self.identity, reported=target.peer_identity,
            reporter_session=self.ref, reported_session=target.peer, match_id=target.match_id,
            category=report.category, comment=report.comment, evidence=list(target.transcript),
            mode=self.join.mode, age_band=self.join.age_band,
            reported_at_unix_ms=int(self._now() * 1000))
        return [Publish(event),
                ToClient(gateway_pb2.ServerFrame(ack=gateway_pb2.Ack(what="report", id=report_id)))]

    def _client_block(self, _block) -> list[Effect]:
        target = self.conversation or self.last_conversation
        if target is None:
            return [error(Err.CODE_NOT_CONNECTED, "block: no stranger to block")]
        blocked = target.peer_identity.device_token
        self.avoid.add(blocked)
        effects: list[Effect] = []
        if self.conversation is target:
            effects += self._leave("block")
        elif self.phase is Phase.PROPOSED and self.proposal.peer_device == blocked:
            # Matched with the very stranger being blocked: give it up, wait on.
            proposal = self.proposal
            effects += [self._refuse(proposal.match_id, proposal.peer, "blocked")] + self._enqueue(at_head=True)
        effects.append(ToClient(gateway_pb2.ServerFrame(ack=gateway_pb2.Ack(what="block"))))
        return effects

    # ------------------------------------------------------------ transitions

    def _enqueue(self, at_head: bool, language: str | None = None) -> list[Effect]:
        self.phase = Phase.WAITING
        self.ticket_id = self._new_id()
        self._ticket_count += 1
        self._early.clear()
        if not at_head:
            # A user sent back to the head of the pool keeps their place in
            # time too: the wait counts from when they asked.
            self._waiting_since = self._now()
        join = self.join
        request = events_pb2.MatchRequested(
            ticket_id=self.ticket_id, session=self.ref, device_token=self.identity.device_token,
            mode=join.mode, age_band=join.age_band, language=language or join.language,
            interests=list(join.interests), interests_only=join.interests_only,
            avoid_device_tokens=sorted(self.avoid), at_head=at_head,
            requested_at_unix_ms=int(self._waiting_since * 1000), session_seq=self._ticket_count)
        self._request, self._sent_at = request, self._now()
        effects: list[Effect] = [Publish(request)]
        if not at_head:
            effects.append(ToClient(gateway_pb2.ServerFrame(waiting=gateway_pb2.Waiting(
                mode=join.mode, age_band=join.age_band, language=join.language))))
        return effects

    def _leave(self, reason: str) -> list[Effect]:
        """Leave whatever the session is doing and become idle."""
        effects: list[Effect] = []
        if self.phase is Phase.WAITING:
            effects.append(Publish(self._cancel()))
        elif self.phase is Phase.PROPOSED:
            effects.append(self._refuse(self.proposal.match_id, self.proposal.peer, reason))
        elif self.phase is Phase.CONNECTED:
            conversation = self.conversation
            effects.append(Relay(conversation.peer.gateway_id, self._relay(
                conversation, left=events_pb2.PeerLeft(reason=reason))))
            self.last_conversation = conversation
        self.phase = Phase.IDLE
        self.ticket_id = None
        self.proposal = None
        self.conversation = None
        return effects

    def _cancel(self) -> events_pb2.MatchCancelled:
        request = self._request
        return events_pb2.MatchCancelled(ticket_id=request.ticket_id, session=self.ref, mode=request.mode,
                                         age_band=request.age_band, language=request.language)

    def _relay(self, conversation: Conversation, **kind) -> events_pb2.RelayFrame:
        return events_pb2.RelayFrame(match_id=conversation.match_id, to=conversation.peer,
                                     **{"from": self.ref}, **kind)

    def _refuse(self, match_id: str, peer: common_pb2.SessionRef, reason: str) -> Relay:
        return Relay(peer.gateway_id, events_pb2.RelayFrame(
            match_id=match_id, to=peer, refuse=events_pb2.MatchRefuse(reason=reason),
            **{"from": self.ref}))

    # ------------------------------------------------------------ the matcher's answer

    def on_match_found(self, found: events_pb2.MatchFound) -> list[Effect]:
        if found.match_id in self._current_match_ids():
            return []  # the same result delivered again: already answered
        if found.a.session.session_id == self.ref.session_id:
            me, other, offerer = found.a, found.b, True
        elif found.b.session.session_id == self.ref.session_id:
            me, other, offerer = found.b, found.a, False
        else:
            return []
        reason = self._refusal_reason(me, other)
        if reason:
            # The matcher took our ticket out of its pool along with the pair:
            # a session that is still waiting must go back in, at the head.
            effects: list[Effect] = [self._refuse(found.match_id, other.session, reason)]
            if self.phase is Phase.WAITING and me.ticket_id == self.ticket_id:
                effects += self._enqueue(at_head=True)
            return effects
        self.phase = Phase.PROPOSED
        self.proposal = Proposal(match_id=found.match_id, peer=other.session,
                                 peer_device=other.device_token,
                                 common_interests=list(found.common_interests),
                                 random_fallback=found.random_fallback, offerer=offerer,
                                 proposed_at=self._now())
        effects = [Relay(other.session.gateway_id, events_pb2.RelayFrame(
            match_id=found.match_id, to=other.session,
            accept=events_pb2.MatchAccept(ticket_id=me.ticket_id, age_band=self.join.age_band,
                                          identity=self.identity),
            **{"from": self.ref}))]
        early = self._early.pop(found.match_id, None)
        if early is not None:
            effects += self.on_relay(early)
        return effects

    def _current_match_ids(self) -> set[str]:
        ids = set()
        if self.proposal is not None:
            ids.add(self.proposal.match_id)
        for conversation in (self.conversation, self.last_conversation):
            if conversation is not None:
                ids.add(conversation.match_id)
        return ids

    def _refusal_reason(self, me: events_pb2.MatchParticipant, other: events_pb2.MatchParticipant) -> str:
        if self.phase is not Phase.WAITING:
            return f"session is {self.phase.value}"
        if me.ticket_id != self.ticket_id:
            return "stale ticket"
        # Invariant 1, checked again at the gateway: both sides in our band.
        if me.age_band != self.join.age_band or other.age_band != self.join.age_band:
            return "age band mismatch"
        if other.device_token == self.identity.device_token or other.device_token in self.avoid:
            return "avoided device"
        early = self._early.get("refused:" + other.session.session_id)
        if early is not None:
            return "peer already refused"
        return ""

    # ------------------------------------------------------------ the stranger's gateway

    def on_relay(self, frame: events_pb2.RelayFrame) -> list[Effect]:
        kind = frame.WhichOneof("kind")
        if kind == "accept":
            return self._peer_accepted(frame)
        if kind == "refuse":
            return self._peer_refused(frame)
        conversation = self.conversation
        if (self.phase is not Phase.CONNECTED or frame.match_id != conversation.match_id
                or getattr(frame, "from").session_id != conversation.peer.session_id):
            return []  # for a conversation that has ended: dropped
        if kind == "text":
            conversation.record(frame.text.text, False, frame.text.sent_at_unix_ms)
            return [ToClient(gateway_pb2.ServerFrame(message=gateway_pb2.StrangerMessage(
                text=frame.text.text, sent_at_unix_ms=frame.text.sent_at_unix_ms)))]
        if kind == "typing":
            return [ToClient(gateway_pb2.ServerFrame(
                typing=gateway_pb2.StrangerTyping(typing=frame.typing.typing)))]
        if kind == "signal":
            signal = gateway_pb2.Signal()
            which = frame.signal.WhichOneof("payload")
            if which is None:
                return []
            setattr(signal, which, getattr(frame.signal, which))
            return [ToClient(gateway_pb2.ServerFrame(signal=signal))]
        if kind == "left":
            self.last_conversation = conversation
            self.conversation = None
            self.phase = Phase.IDLE
            return [ToClient(gateway_pb2.ServerFrame(
                stranger_disconnected=gateway_pb2.StrangerDisconnected(match_id=frame.match_id)))]
        return []

    def _peer_accepted(self, frame: events_pb2.RelayFrame) -> list[Effect]:
        peer = getattr(frame, "from")
        proposal = self.proposal
        if self.phase is Phase.WAITING:
            if len(self._early) < 8:
                self._early[frame.match_id] = frame
            return []
        if self.phase is not Phase.PROPOSED or proposal.match_id != frame.match_id \
                or proposal.peer.session_id != peer.session_id:
            return []  # we refused or left; our answer reaches them
        if frame.accept.age_band != self.join.age_band:
            return [self._refuse(frame.match_id, peer, "age band mismatch")] + self._enqueue(at_head=True)
        if frame.accept.identity.device_token in self.avoid:
            return [self._refuse(frame.match_id, peer, "avoided device")] + self._enqueue(at_head=True)
        self.phase = Phase.CONNECTED
        self.proposal = None
        self.conversation = Conversation(match_id=frame.match_id, peer=peer,
                                         peer_identity=frame.accept.identity,
                                         started_at_ms=int(self._now() * 1000))
        self._typing_since_ms = 0
        connected = gateway_pb2.Connected(
            match_id=frame.match_id, common_interests=proposal.common_interests,
            random_fallback=proposal.random_fallback, offerer=proposal.offerer)
        if self.join.mode == common_pb2.MODE_VIDEO and self._ice_config is not None:
            connected.ice.CopyFrom(self._ice_config(self.ref.session_id, self._now()))
        return [ToClient(gateway_pb2.ServerFrame(connected=connected))]

    def _peer_refused(self, frame: events_pb2.RelayFrame) -> list[Effect]:
        peer = getattr(frame, "from")
        if self.phase is Phase.WAITING:
            if len(self._early) < 8:
                self._early["refused:" + peer.session_id] = frame
            return []
        if self.phase is Phase.PROPOSED and self.proposal.match_id == frame.match_id:
            return self._enqueue(at_head=True)
        if self.phase is Phase.CONNECTED and self.conversation.match_id == frame.match_id:
            # Only after a lost accept; treat it as the stranger leaving.
            return self.on_relay(events_pb2.RelayFrame(
                match_id=frame.match_id, left=events_pb2.PeerLeft(reason="refused"),
                **{"from": peer}))
        return []

    # ------------------------------------------------------------ enforcement and time

    def on_session_action(self, action: events_pb2.SessionAction) -> list[Effect]:
        """Moderation's verdict on the conversation it saw: acts only while
        that conversation lasts (a late verdict on an ended one is dropped)."""
        if self.phase is not Phase.CONNECTED or self.conversation.match_id != action.match_id:
            return []
        Kind = events_pb2.SessionAction.Kind
        if action.kind == Kind.KIND_WARN:
            return [ToClient(gateway_pb2.ServerFrame(notice=gateway_pb2.ModerationNotice(
                category=action.category, message=action.message, match_id=action.match_id)))]
        if action.kind == Kind.KIND_END_CONVERSATION:
            return self._leave("moderation") + [ToClient(gateway_pb2.ServerFrame(notice=gateway_pb2.ModerationNotice(
                category=action.category, message=action.message, match_id=action.match_id,
                conversation_ended=True)))]
        return []

    def on_ban(self, ban: ban_pb2.BanRecord) -> list[Effect]:
        if self.phase is Phase.CLOSED or not ban_applies(ban, self.identity, self.mode, self.ref.session_id):
            return []
        effects = self._leave("banned")
        self.phase = Phase.CLOSED
        return effects + [ToClient(banned_frame(ban)), Close("banned")]

    def on_disconnect(self) -> list[Effect]:
        if self.phase is Phase.CLOSED:
            return []
        effects = self._leave("disconnect")
        self.phase = Phase.CLOSED
        return effects

    def _language_fallback_due(self, now: float) -> bool:
        return (self.phase is Phase.WAITING and self.language_fallback_after > 0
                and not self.join.interests_only
                and self._request.language != self.fallback_language
                and now - self._waiting_since >= self.language_fallback_after)

    def on_tick(self) -> list[Effect]:
        """Renew a waiting ticket (the matcher drops tickets nobody renews, and
        re-creates one it lost); give up a proposal never answered."""
        now = self._now()
        if self._language_fallback_due(now):
            # Nobody speaks this language right now: wait on in the fallback
            # language's pool (same mode and band), first in line there.
            cancel = Publish(self._cancel())
            return [cancel] + self._enqueue(at_head=True, language=self.fallback_language)
        if self.phase is Phase.WAITING and now - self._sent_at >= self.renew_interval:
            self._sent_at = now
            return [Publish(self._request)]
        if self.phase is Phase.PROPOSED and now - self.proposal.proposed_at > self.proposal_timeout:
            proposal = self.proposal
            return [self._refuse(proposal.match_id, proposal.peer, "timeout")] + self._enqueue(at_head=True)
        return []


def ban_applies(ban: ban_pb2.BanRecord, identity: common_pb2.Identity, mode: int, session_id: str = "") -> bool:
    """Does `ban` cover this identity (or this session) in this mode? Lifted bans do not."""
    if ban.lifted_at_unix_ms:
        return False
    if ban.scope == common_pb2.BAN_SCOPE_VIDEO and mode != common_pb2.MODE_VIDEO:
        return False
    kind = ban.subject.WhichOneof("kind")
    if kind in ("ip_hash", "ip_prefix_hash") and not ban.enforce_on_address:
        return False  # a watch ban flags new devices there for review; it shuts no one out
    if kind == "session_id":
        return bool(session_id) and ban.subject.session_id == session_id
    value = getattr(ban.subject, kind) if kind else ""
    return bool(value) and value == getattr(identity, kind, None)
