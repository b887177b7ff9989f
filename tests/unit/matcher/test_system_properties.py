"""The whole pairing protocol, simulated in memory from the real pure parts.

Several gateways hold SessionMachine instances; the matcher is the real
PartitionWorker over the real Pools; a simulated broker carries the messages:

- the matcher's request queue tracks every delivery until it is acked, and
  when the matcher crashes (or only its channel drops) hands the unacked
  requests back, flagged redelivered, in their original order, to a fresh
  PartitionWorker (state lost) or to the same one;
- each gateway has one FIFO queue for match results and relay frames;
- duplicates and replays of match requests are injected, the announce of a
  pair can fail or the matcher can die right after it, and a gateway can go
  silent (it crashed: its sessions stop renewing their tickets).

Hypothesis draws the sequence of operations and the interleaving of the
deliveries. Then, at every step and after everything has settled:

- nobody is connected across pools (age band, mode, language), with their
  own device, or with a device either side had blocked or reported when it
  accepted (DESIGN.md, invariant 1); the matcher never pairs such tickets;
- conversations are symmetric: a connected session's peer is connected to
  it in the same match, or has told it so in a message still on its way;
  once all is delivered, A's peer is B iff B's peer is A (invariant 2);
- no delivery is acked twice, and the broker's unacked requests are exactly
  the requests the matcher holds for its waiting users;
- nobody waiting is lost: every waiting session's ticket is in the
  (possibly rebuilt) matcher pools, every ticket there belongs to a waiting
  session, and tickets of a silent gateway have expired (TTL);
- liveness: no two waiting sessions remain who fit (same pool, not the same
  device, nobody avoided, not recent partners) and would take each other
  (a shared interest, or both take a random partner).

The scenarios at the end of the file are the bugs these found, kept as
regression tests now that they are fixed.
"""
from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import Phase as HypothesisPhase
from hypothesis import strategies as st

from parley.v1 import common_pb2, events_pb2, gateway_pb2
from services.gateway.machine import Close, Phase, Publish, Relay, SessionMachine
from services.matcher.app import _fill_participant
from services.matcher.metrics import MatcherMetrics
from services.matcher.pairing import Pair, Pools, compatible
from services.matcher.partition import PartitionWorker

TEXT, VIDEO = common_pb2.MODE_TEXT, common_pb2.MODE_VIDEO
MINOR, ADULT = common_pb2.AGE_BAND_MINOR, common_pb2.AGE_BAND_ADULT
GATEWAYS = ("g1", "g2", "g3")

FALLBACK_AFTER = 5.0
TICKET_TTL = 30.0
PROPOSAL_TIMEOUT = 5.0
RENEW_INTERVAL = 10.0
# Time the random phase may advance in all: below the TTL, so a live
# gateway's tickets never expire merely because the operations drawn forgot
# to tick it (see test_a_ticket_expired_while_its_renewal_was_late_is_recreated).
RANDOM_PHASE_TIME = TICKET_TTL - 5.0
SETTLE_ROUNDS = int(TICKET_TTL + PROPOSAL_TIMEOUT + RENEW_INTERVAL)  # one simulated second each
MAX_SESSIONS = 12

METRICS = MatcherMetrics()


def _participant(ticket) -> events_pb2.MatchParticipant:
    """The participant as the matcher announces it."""
    participant = events_pb2.MatchParticipant()
    _fill_participant(participant, ticket)
    return participant


def run(coroutine):
    """Drive a coroutine that never really waits (fake acks, fake announce)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise AssertionError("the simulation never suspends")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class MatcherDied(BaseException):
    """The matcher process dies: not an Exception, nothing in it may catch it."""


# ---------------------------------------------------------------- the broker

class Channel:
    def __init__(self) -> None:
        self.is_closed = False


class Delivery:
    """One delivery of a request-queue message: what aio_pika hands the
    matcher (ack, nack, redelivered, channel)."""

    def __init__(self, queue: "RequestQueue", seq: int, envelope: events_pb2.Envelope,
                 channel: Channel, redelivered: bool) -> None:
        self.queue = queue
        self.seq = seq
        self.envelope = envelope
        self.channel = channel
        self.redelivered = redelivered
        self.settled = False

    async def ack(self) -> None:
        self.queue.settle(self, requeue=False)

    async def nack(self, requeue: bool = True) -> None:
        self.queue.settle(self, requeue=requeue)


class RequestQueue:
    """The matcher partition's queue: FIFO; unacked deliveries return to
    their original place, flagged redelivered, when their channel closes or
    they are nacked with requeue (as a classic RabbitMQ queue does)."""

    def __init__(self) -> None:
        self._seq = itertools.count()
        self.ready: list[tuple[int, bool, events_pb2.Envelope]] = []  # sorted by seq
        self.unacked: dict[int, Delivery] = {}
        self.channel = Channel()
        self.errors: list[str] = []

    def publish(self, envelope: events_pb2.Envelope) -> None:
        self.ready.append((next(self._seq), False, envelope))

    def deliver(self) -> Delivery:
        seq, redelivered, envelope = self.ready.pop(0)
        delivery = Delivery(self, seq, envelope, self.channel, redelivered)
        self.unacked[seq] = delivery
        return delivery

    def settle(self, delivery: Delivery, requeue: bool) -> None:
        if delivery.channel.is_closed:
            raise RuntimeError("channel closed: the broker already took the message back")
        if delivery.settled or self.unacked.get(delivery.seq) is not delivery:
            # PRECONDITION_FAILED - unknown delivery tag: RabbitMQ would close the channel
            self.errors.append(f"delivery {delivery.seq} settled twice")
            raise RuntimeError("unknown delivery tag")
        delivery.settled = True
        del self.unacked[delivery.seq]
        if requeue:
            bisect.insort(self.ready, (delivery.seq, True, delivery.envelope), key=lambda r: r[0])

    def close_channel(self) -> None:
        """The consumer's channel is gone: every unacked delivery goes back."""
        self.channel.is_closed = True
        for seq, delivery in sorted(self.unacked.items()):
            bisect.insort(self.ready, (seq, True, delivery.envelope), key=lambda r: r[0])
        self.unacked.clear()
        self.channel = Channel()


# ---------------------------------------------------------------- gateways and sessions

@dataclass
class Session:
    machine: SessionMachine
    gateway: str
    device: str
    alive: bool = True  # False once disconnected

    @property
    def sid(self) -> str:
        return self.machine.ref.session_id


@dataclass
class Gateway:
    gid: str
    silent: bool = False
    inbox: deque = field(default_factory=deque)  # match results and relay frames, FIFO
    sessions: dict[str, Session] = field(default_factory=dict)


@dataclass
class AnnounceFailure:
    kind: str   # "error": the broker refused (the worker nacks); "die": the matcher dies
    sent: int   # how many of the gateways got the MatchFound first


class Sim:
    def __init__(self) -> None:
        self.clock = Clock()
        self.requests = RequestQueue()
        self.gateways = {gid: Gateway(gid) for gid in GATEWAYS}
        self.sessions: list[Session] = []
        self.by_sid: dict[str, Session] = {}
        self.history: list[events_pb2.Envelope] = []  # every match request ever published
        self.failure: AnnounceFailure | None = None
        self.duplicate_next = False
        # (match id, session id) -> (pool, avoided devices) when it accepted
        self.at_accept: dict[tuple[str, str], tuple[tuple, frozenset[str]]] = {}
        self.violations: list[str] = []
        self.pairs_announced = 0
        self.connections = 0
        self.crashes = 0
        self._match_ids = itertools.count(1)
        self._spent = 0.0
        self.worker = self._new_worker()

    def _new_worker(self) -> PartitionWorker:
        pools = Pools(fallback_after=FALLBACK_AFTER, ticket_ttl=TICKET_TTL)  # recent window: 600 s
        return PartitionWorker(0, pools, self._announce, METRICS, clock=self.clock)

    def violation(self, text: str) -> None:
        self.violations.append(text)

    # ------------------------------------------------------------ the matcher side

    async def _announce(self, pair: Pair) -> None:
        a, b = pair.a, pair.b
        if not compatible(a, b) or a.pool_key != b.pool_key:
            self.violation(f"matcher paired incompatible tickets {a} {b}")
        found = events_pb2.MatchFound(
            match_id=f"m{next(self._match_ids)}", a=_participant(a), b=_participant(b),
            common_interests=pair.common_interests, random_fallback=pair.kind.value == "fallback",
            mode=a.mode)
        failure, self.failure = self.failure, None
        targets = list(dict.fromkeys((a.gateway_id, b.gateway_id)))
        for i, gid in enumerate(targets):
            if failure is not None and i >= failure.sent:
                break
            self.to_gateway(gid, events_pb2.Envelope(event_id=found.match_id, match_found=found))
        if failure is not None:
            if failure.kind == "die":
                raise MatcherDied()
            raise ConnectionError("announce failed")
        self.pairs_announced += 1

    def _matcher(self, step: Callable[[PartitionWorker], object]) -> None:
        try:
            run(step(self.worker))
        except MatcherDied:
            self.crash_matcher()

    def deliver_request(self) -> bool:
        if not self.requests.ready:
            return False
        delivery = self.requests.deliver()
        self._matcher(lambda w: w.handle(delivery.envelope, delivery))
        return True

    def tick_matcher(self) -> None:
        self._matcher(lambda w: w.tick())

    def crash_matcher(self) -> None:
        """The matcher dies; a standby takes the partition with nothing but
        what the broker gives back."""
        self.crashes += 1
        self.requests.close_channel()
        self.worker = self._new_worker()

    def bounce_channel(self) -> None:
        """Only the matcher's channel drops: the same worker (pools intact)
        gets its unacked requests again, flagged redelivered."""
        self.requests.close_channel()

    def replay(self, back: int) -> None:
        """A match request published again (a publisher retry, a replay)."""
        if self.history:
            self.requests.publish(self.history[-1 - back % len(self.history)])

    # ------------------------------------------------------------ the gateway side

    def to_gateway(self, gid: str, envelope: events_pb2.Envelope) -> None:
        gateway = self.gateways[gid]
        if not gateway.silent:
            gateway.inbox.append(envelope)

    def live(self) -> list[Session]:
        return [s for s in self.sessions if s.alive and not self.gateways[s.gateway].silent]

    def new_session(self, gi: int, device: int) -> Session | None:
        if len(self.sessions) >= MAX_SESSIONS:
            return None
        for k in range(len(GATEWAYS)):
            gateway = self.gateways[GATEWAYS[(gi + k) % len(GATEWAYS)]]
            if not gateway.silent:
                break
        else:
            return None
        n = len(self.sessions)
        sid = f"s{n}"
        ids = itertools.count()
        machine = SessionMachine(
            common_pb2.SessionRef(gateway_id=gateway.gid, session_id=sid),
            common_pb2.Identity(device_token=f"d{device}", ip_hash=f"ip{device}"),
            new_id=lambda: f"{sid}.{next(ids)}", now=self.clock,
            proposal_timeout=PROPOSAL_TIMEOUT, renew_interval=RENEW_INTERVAL)
        session = Session(machine, gateway.gid, f"d{device}")
        self.sessions.append(session)
        self.by_sid[sid] = session
        gateway.sessions[sid] = session
        return session

    def apply(self, session: Session, step: Callable[[SessionMachine], list]) -> None:
        machine = session.machine
        before = machine.phase
        effects = step(machine)
        if machine.phase is Phase.CONNECTED and before is not Phase.CONNECTED:
            self.connections += 1
            self._check_new_conversation(session)
        for effect in effects:
            if isinstance(effect, Publish):
                if effect.event.DESCRIPTOR.name == "MatchRequested":
                    envelope = events_pb2.Envelope(event_id="r", match_requested=effect.event)
                    self.history.append(envelope)
                    self.requests.publish(envelope)
                    if self.duplicate_next:  # delivered twice (a publisher retry)
                        self.duplicate_next = False
                        self.requests.publish(envelope)
                elif effect.event.DESCRIPTOR.name == "MatchCancelled":
                    self.requests.publish(events_pb2.Envelope(event_id="c", match_cancelled=effect.event))
            elif isinstance(effect, Relay):
                if effect.frame.HasField("accept"):
                    self.at_accept[(effect.frame.match_id, session.sid)] = (
                        pool_of(machine), frozenset(machine.avoid))
                self.to_gateway(effect.gateway_id, events_pb2.Envelope(event_id="f", relay=effect.frame))
            elif isinstance(effect, Close):
                self._gone(session)

    def _gone(self, session: Session) -> None:
        session.alive = False
        self.gateways[session.gateway].sessions.pop(session.sid, None)

    def _check_new_conversation(self, session: Session) -> None:
        machine = session.machine
        conversation = machine.conversation
        peer = self.by_sid.get(conversation.peer.session_id)
        if peer is None:
            self.violation(f"{session.sid} connected with an unknown session {conversation.peer}")
            return
        # The peer may have left and joined again since it accepted: what
        # counts is what it was when it accepted this match.
        accepted = self.at_accept.get((conversation.match_id, peer.sid))
        if accepted is None:
            self.violation(f"{session.sid} connected with {peer.sid}, which never accepted")
            return
        peer_pool, peer_avoid = accepted
        if pool_of(machine) != peer_pool:
            self.violation(f"{session.sid} connected across pools with {peer.sid}: "
                           f"{pool_of(machine)} / {peer_pool}")
        if peer.device == session.device:
            self.violation(f"{session.sid} connected with its own device through {peer.sid}")
        if conversation.peer_identity.device_token != peer.device:
            self.violation(f"{session.sid} holds a wrong identity for {peer.sid}")
        # (blocking the stranger one is talking to is allowed: the peer's
        # avoid list counts as it was when it accepted, too)
        if peer.device in machine.avoid or session.device in peer_avoid:
            self.violation(f"{session.sid} connected with {peer.sid} although one blocked the other")

    def deliver_to_gateway(self, gid: str) -> bool:
        gateway = self.gateways[gid]
        if gateway.silent or not gateway.inbox:
            return False
        envelope = gateway.inbox.popleft()
        if envelope.WhichOneof("event") == "match_found":
            found = envelope.match_found
            # as SessionHub.on_event does
            for side, other in ((found.a, found.b), (found.b, found.a)):
                if side.session.gateway_id != gid:
                    continue
                session = gateway.sessions.get(side.session.session_id)
                if session is None:  # gone before the match: refuse for it
                    self.to_gateway(other.session.gateway_id, events_pb2.Envelope(
                        event_id="f", relay=events_pb2.RelayFrame(
                            match_id=found.match_id, to=other.session,
                            refuse=events_pb2.MatchRefuse(ticket_id=side.ticket_id, reason="session closed"),
                            **{"from": side.session})))
                    continue
                self.apply(session, lambda m: m.on_match_found(found))
        else:
            frame = envelope.relay
            session = gateway.sessions.get(frame.to.session_id)
            if session is not None:
                self.apply(session, lambda m: m.on_relay(frame))
        return True

    def tick_gateways(self) -> None:
        for gateway in self.gateways.values():
            if gateway.silent:
                continue
            for session in list(gateway.sessions.values()):
                if session.machine.phase in (Phase.WAITING, Phase.PROPOSED):
                    self.apply(session, lambda m: m.on_tick())

    def silence(self, gi: int) -> None:
        """A gateway crashes: its queue and sessions are gone, nothing it held is cancelled."""
        gateway = self.gateways[GATEWAYS[gi]]
        if sum(not g.silent for g in self.gateways.values()) > 1:
            gateway.silent = True
            gateway.inbox.clear()

    def advance(self, seconds: float) -> None:
        seconds = min(seconds, RANDOM_PHASE_TIME - self._spent)
        if seconds > 0:
            self._spent += seconds
            self.clock.t += seconds

    # ------------------------------------------------------------ operations

    def do(self, op: tuple) -> None:
        kind, *args = op
        if kind == "new":
            gi, device, params = args
            session = self.new_session(gi, device)
            if session is not None:
                self.apply(session, lambda m: m.on_frame(join_frame(*params)))
            return
        if kind in ("join", "stop", "next", "block", "report", "disconnect"):
            live = self.live()
            if not live:
                return
            session = live[args[0] % len(live)]
            if kind == "join":
                self.apply(session, lambda m: m.on_frame(join_frame(*args[1])))
            elif kind == "disconnect":
                self.apply(session, lambda m: m.on_disconnect())
                self._gone(session)
            else:
                self.apply(session, lambda m: m.on_frame(CLIENT_FRAMES[kind]))
        elif kind == "deliver":
            queue, count = args
            for _ in range(count):
                if queue == 0:
                    self.deliver_request()
                else:
                    self.deliver_to_gateway(GATEWAYS[queue - 1])
        elif kind == "deliver_all":
            self.drain()
        elif kind == "duplicate_next":
            self.duplicate_next = True
        elif kind == "replay":
            self.replay(args[0])
        elif kind == "advance":
            self.advance(args[0])
        elif kind == "tick_gateways":
            self.tick_gateways()
        elif kind == "tick_matcher":
            self.tick_matcher()
        elif kind == "crash":
            self.crash_matcher()
        elif kind == "bounce":
            self.bounce_channel()
        elif kind == "fail_announce":
            self.failure = AnnounceFailure(*args)
        elif kind == "silence":
            self.silence(args[0])
        else:  # pragma: no cover
            raise ValueError(op)

    def drain(self, limit: int = 20_000) -> None:
        for _ in range(limit):
            progressed = self.deliver_request()
            for gid in GATEWAYS:
                progressed = self.deliver_to_gateway(gid) or progressed
            if not progressed:
                return
        raise AssertionError("messages never stop flowing")

    def settle(self) -> None:
        """Everything delivered, and time enough for fallbacks, proposal
        timeouts, renewals and the TTL, the clocks ticking as in production."""
        self.failure = None
        self.drain()
        for _ in range(SETTLE_ROUNDS):
            self.clock.t += 1.0
            self.tick_gateways()
            self.drain()
            self.tick_matcher()
            self.drain()
            self.check_step()

    # ------------------------------------------------------------ invariants

    def _pending_goodbye(self, session: Session, match_id: str) -> bool:
        """Is a PeerLeft or refusal for this conversation on its way to `session`?"""
        for envelope in self.gateways[session.gateway].inbox:
            frame = envelope.relay
            if (envelope.WhichOneof("event") == "relay" and frame.to.session_id == session.sid
                    and frame.match_id == match_id and frame.WhichOneof("kind") in ("left", "refuse")):
                return True
        return False

    def check_step(self) -> None:
        assert not self.violations, self.violations
        assert not self.requests.errors, self.requests.errors
        for session in self.live():
            machine = session.machine
            if machine.phase is not Phase.CONNECTED:
                continue
            conversation = machine.conversation
            peer = self.by_sid[conversation.peer.session_id]
            if peer.alive and self.gateways[peer.gateway].silent:
                continue  # the peer's gateway crashed: nobody will tell
            other = peer.machine
            with_me = (peer.alive and other.phase is Phase.CONNECTED
                       and other.conversation.match_id == conversation.match_id
                       and other.conversation.peer.session_id == session.sid)
            proposed_to_me = (peer.alive and other.phase is Phase.PROPOSED
                              and other.proposal.match_id == conversation.match_id
                              and other.proposal.peer.session_id == session.sid)
            assert with_me or proposed_to_me or self._pending_goodbye(session, conversation.match_id), (
                f"{session.sid} is connected with {peer.sid} ({conversation.match_id}), which is "
                f"{other.phase.value} elsewhere and never told it")

    def check_settled(self) -> None:
        self.check_step()
        assert not self.requests.ready and all(not g.inbox for g in self.gateways.values())
        live = self.live()
        for session in live:
            assert session.machine.phase is not Phase.PROPOSED, f"{session.sid} still proposed"
            if session.machine.phase is Phase.CONNECTED:
                conversation = session.machine.conversation
                peer = self.by_sid[conversation.peer.session_id]
                if self.gateways[peer.gateway].silent:
                    continue
                assert peer.alive and peer.machine.phase is Phase.CONNECTED, (session.sid, peer.sid)
                assert peer.machine.conversation.peer.session_id == session.sid
                assert peer.machine.conversation.match_id == conversation.match_id
        pools = self.worker.pools
        now = self.clock()
        waiting = {s.machine.ticket_id: s for s in live if s.machine.phase is Phase.WAITING}
        for ticket_id, session in waiting.items():
            assert ticket_id in pools, f"{session.sid} waits with {ticket_id}, which the matcher lost"
        for ticket in pools.tickets():
            assert ticket.ticket_id in waiting, f"ghost ticket {ticket} left in the pools"
        # the broker's unacked requests are exactly the ones the matcher holds
        held = {id(m) for m in self.worker.held.values()}
        assert held == {id(d) for d in self.requests.unacked.values()}
        assert set(self.worker.held) == {t.ticket_id for t in pools.tickets()}
        # liveness: every compatible waiting pair was paired
        tickets = pools.tickets()
        for x, y in itertools.combinations(tickets, 2):
            # fits() asks the arrival's memory of recent partners only; either
            # side's memory keeps them apart here (see test_pairing_more).
            if x.pool_key != y.pool_key or not (pools.fits(x, y, now) and pools.fits(y, x, now)):
                continue
            takes = (x.interests & y.interests) or (
                x.takes_random(now, FALLBACK_AFTER) and y.takes_random(now, FALLBACK_AFTER))
            assert not takes, f"{waiting[x.ticket_id].sid} and {waiting[y.ticket_id].sid} both still wait"


def pool_of(machine: SessionMachine) -> tuple[int, int, str]:
    join = machine.join
    return (join.mode, join.age_band, join.language) if join else (0, 0, "")


def join_frame(band: int, mode: int, language: str, interests, only: bool) -> gateway_pb2.ClientFrame:
    return gateway_pb2.ClientFrame(join=gateway_pb2.Join(
        mode=mode, age_band=band, language=language, interests=sorted(interests), interests_only=only))


CLIENT_FRAMES = {
    "stop": gateway_pb2.ClientFrame(stop=gateway_pb2.Stop()),
    "next": gateway_pb2.ClientFrame(next=gateway_pb2.Next()),
    "block": gateway_pb2.ClientFrame(block=gateway_pb2.Block()),
    "report": gateway_pb2.ClientFrame(report=gateway_pb2.Report(category=common_pb2.CATEGORY_HARASSMENT)),
}


# ---------------------------------------------------------------- operations drawn

join_params = st.tuples(
    st.sampled_from([ADULT] * 4 + [MINOR]),
    st.sampled_from([TEXT] * 5 + [VIDEO]),
    st.sampled_from(["en"] * 9 + ["de"]),
    st.sets(st.sampled_from(["chess", "go", "music"]), max_size=2),
    st.sampled_from([False, False, False, True]),  # interests only
)
session_index = st.integers(0, MAX_SESSIONS - 1)


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    return st.sampled_from([strategy for weight, strategy in choices for _ in range(weight)]).flatmap(
        lambda strategy: strategy)


def operations(replays: bool) -> st.SearchStrategy:
    """One operation of the simulation; `replays` adds replays of old
    requests, at any later time."""
    choices = [
        (4, st.tuples(st.just("new"), st.integers(0, len(GATEWAYS) - 1), st.integers(0, 9), join_params)),
        (2, st.tuples(st.just("join"), session_index, join_params)),
        (3, st.tuples(st.sampled_from(["stop", "next", "next", "next", "block", "report", "disconnect"]),
                      session_index)),
        (7, st.tuples(st.just("deliver"), st.integers(0, len(GATEWAYS)), st.integers(1, 4))),
        (1, st.just(("deliver_all",))),
        (1, st.just(("duplicate_next",))),
        (1, st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 2.0, 3.0, 6.0, 11.0]))),
        (1, st.just(("tick_gateways",))),
        (1, st.just(("tick_matcher",))),
        (1, st.sampled_from([("crash",), ("bounce",)])),
        (1, st.tuples(st.just("fail_announce"), st.sampled_from(["error", "die"]), st.integers(0, 2))),
    ]
    if replays:
        choices.append((3, st.tuples(st.just("replay"), st.integers(0, 12))))
    return weighted(*choices, (1, st.tuples(st.just("silence"), st.integers(0, len(GATEWAYS) - 1))))


def simulate(ops, sim: Sim | None = None) -> Sim:
    sim = sim or Sim()
    for op in ops:
        sim.do(op)
        sim.check_step()
    sim.settle()
    sim.check_settled()
    return sim


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations(replays=False), min_size=40, max_size=120))
def test_arrivals_cancels_blocks_and_crashes_keep_every_invariant(ops):
    simulate(ops)


# ---------------------------------------------------------------- scenarios, step by step

PLAIN = (ADULT, TEXT, "en", (), False)
CHESS_ONLY = (ADULT, TEXT, "en", ("chess",), True)


def play(ops) -> Sim:
    sim = Sim()
    for op in ops:
        sim.do(op)
        sim.check_step()
    return sim


def phase_and_peer(sim: Sim, sid: str) -> tuple[str, str | None]:
    machine = sim.by_sid[sid].machine
    peer = machine.conversation.peer.session_id if machine.conversation else None
    return machine.phase.value, peer


def test_a_matcher_that_dies_between_pairing_and_acking_leaves_one_conversation_each():
    sim = play([
        ("new", 0, 0, PLAIN), ("new", 1, 1, PLAIN),
        ("fail_announce", "die", 2),  # MatchFound reaches both gateways, then the matcher dies
        ("deliver", 0, 2),
        ("new", 2, 2, PLAIN),
    ])
    assert sim.crashes == 1 and len(sim.requests.ready) == 3  # both requests back, and s2's
    assert all(redelivered for _seq, redelivered, _ in sim.requests.ready[:2])
    sim.drain()  # the standby pairs s0 and s1 again: each gateway holds two results
    sim.settle()
    sim.check_settled()
    assert phase_and_peer(sim, "s0") == ("connected", "s1")
    assert phase_and_peer(sim, "s1") == ("connected", "s0")
    assert phase_and_peer(sim, "s2") == ("waiting", None)


def test_the_side_whose_partner_refused_is_requeued_at_the_head_and_paired():
    sim = play([
        ("new", 0, 0, PLAIN), ("new", 1, 1, PLAIN),
        ("deliver", 0, 2),    # paired: the results are on their way to g1 and g2
        ("stop", 0),          # s0 leaves before its result arrives
        ("deliver", 1, 1),    # g1 refuses for s0
        ("deliver", 2, 2),    # s1 accepts, then hears the refusal
    ])
    assert phase_and_peer(sim, "s1") == ("waiting", None)
    requeued = sim.history[-1].match_requested
    assert requeued.session.session_id == "s1" and requeued.at_head
    sim.do(("new", 2, 2, PLAIN))
    sim.settle()
    sim.check_settled()
    assert phase_and_peer(sim, "s1") == ("connected", "s2")


def test_a_silent_gateways_tickets_expire_and_the_user_paired_with_one_is_requeued():
    sim = play([
        ("new", 2, 0, CHESS_ONLY), ("deliver", 0, 1),
        ("silence", 2),                    # g3 crashes: s0's ticket is never renewed again
        ("new", 0, 1, CHESS_ONLY), ("deliver", 0, 1),  # paired with the dead s0 before the TTL
        ("deliver", 1, 1),                 # s1 accepts; no answer will ever come
    ])
    assert phase_and_peer(sim, "s1") == ("proposed", None)
    sim.settle()  # the proposal times out, s1 goes back at the head, alone
    sim.check_settled()
    assert phase_and_peer(sim, "s1") == ("waiting", None)
    assert [t.session_id for t in sim.worker.pools.tickets()] == ["s1"]
    sim.do(("new", 0, 2, CHESS_ONLY))
    sim.settle()
    sim.check_settled()
    assert phase_and_peer(sim, "s1") == ("connected", "s2")


def test_a_request_delivered_twice_makes_one_conversation():
    sim = play([
        ("duplicate_next",), ("new", 0, 0, PLAIN),
        ("duplicate_next",), ("new", 1, 1, PLAIN),
        ("new", 2, 2, PLAIN),
    ])
    sim.settle()
    sim.check_settled()
    assert phase_and_peer(sim, "s0") == ("connected", "s1")
    assert phase_and_peer(sim, "s2") == ("waiting", None)


def test_a_channel_that_drops_hands_the_waiting_users_back_to_the_same_worker():
    sim = play([("new", 0, 0, CHESS_ONLY), ("new", 1, 1, PLAIN), ("deliver", 0, 2), ("bounce",)])
    worker = sim.worker
    assert len(sim.requests.ready) == 2 and not sim.requests.unacked
    sim.drain()  # redelivered: the held messages are swapped, nothing is paired twice
    assert sim.worker is worker and set(worker.held) == {"s0.0", "s1.0"}
    sim.do(("new", 2, 2, CHESS_ONLY))
    sim.settle()
    sim.check_settled()
    assert phase_and_peer(sim, "s0") == ("connected", "s2")


# ---------------------------------------------------------------- bugs found, now fixed

def test_an_old_request_replayed_after_a_failover_does_not_strand_its_session():
    sim = play([
        ("new", 0, 0, PLAIN), ("new", 1, 1, PLAIN), ("deliver_all",),  # s0 and s1 connected
        ("crash",),           # a standby takes the partition over, remembering nothing
        ("next", 0),          # s0 waits again with a new ticket, s0.1
        ("replay", 2),        # s0's first request, s0.0, is published again (a late publisher retry)
    ])
    assert sim.requests.ready[-1][2].match_requested.ticket_id == "s0.0"
    sim.drain()
    assert phase_and_peer(sim, "s0") == ("waiting", None)
    sim.settle()
    sim.check_settled()  # fails: "s0 waits with s0.1, which the matcher lost"


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          phases=[HypothesisPhase.generate],  # it is known to fail: no need to shrink
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations(replays=True), min_size=40, max_size=120))
def _replays_property(ops):
    simulate(ops)


def test_old_requests_replayed_late_keep_every_invariant():
    _replays_property()


def test_a_ticket_expired_while_its_renewal_was_late_is_recreated():
    sim = play([("new", 0, 0, CHESS_ONLY), ("deliver", 0, 1)])
    sim.clock.t += TICKET_TTL + 1  # the gateway did not renew in time
    sim.tick_matcher()
    assert len(sim.worker.pools) == 0
    sim.settle()  # the gateway renews again every RENEW_INTERVAL
    sim.check_settled()  # fails: "s0 waits with s0.0, which the matcher lost"


def test_blocking_the_last_stranger_while_a_match_with_them_is_proposed_prevents_the_conversation():
    sim = play([
        ("new", 0, 0, PLAIN), ("new", 1, 1, PLAIN), ("deliver_all",),  # s0 and s1 talk
        ("stop", 1), ("deliver_all",),                # s1 leaves; s0 is told
        ("join", 0, PLAIN), ("join", 1, PLAIN), ("deliver_all",),  # recent partners: not paired again
        ("crash",),                                   # the standby forgot they met
        ("deliver", 0, 2),                            # ...and pairs them again
        ("deliver", 1, 1),                            # s0 accepts
    ])
    assert phase_and_peer(sim, "s0") == ("proposed", None)
    sim.do(("block", 0))                              # s0 blocks the last stranger, s1
    assert "d1" in sim.by_sid["s0"].machine.avoid
    sim.do(("deliver_all",))
    sim.check_step()  # fails: "s0 connected with s1 although one blocked the other"


def test_a_match_result_delivered_twice_changes_nothing():
    sim = play([("new", 0, 0, PLAIN), ("new", 1, 1, PLAIN), ("deliver", 0, 2)])
    inbox = sim.gateways["g1"].inbox
    inbox.append(inbox[0])  # g1 receives the MatchFound twice
    sim.do(("deliver", 1, 1))
    sim.do(("deliver", 2, 1))
    sim.do(("deliver", 1, 1))  # the copy
    sim.drain()
    sim.check_step()  # fails: "s0 is connected with s1 (m1), which is idle elsewhere and never told it"
