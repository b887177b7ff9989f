"""PartitionWorker without a broker: fake incoming messages that record how
they were settled. A waiting user's request stays unacked until the user is
paired, cancelled or expired."""
from __future__ import annotations

import pytest

from parley.v1 import common_pb2, events_pb2
from services.matcher.metrics import MatcherMetrics
from services.matcher.pairing import Pair, PairKind, Pools
from services.matcher.partition import MAX_INTERESTS, PartitionWorker
from services.runtime.envelope import PoisonMessage

TEXT, VIDEO = common_pb2.MODE_TEXT, common_pb2.MODE_VIDEO
MINOR, ADULT = common_pb2.AGE_BAND_MINOR, common_pb2.AGE_BAND_ADULT


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeChannel:
    def __init__(self) -> None:
        self.is_closed = False


class FakeMessage:
    """Stands in for aio_pika's AbstractIncomingMessage: settled once, and
    never on a closed channel (that raises, as aio_pika does)."""

    def __init__(self, envelope: events_pb2.Envelope, redelivered: bool = False,
                 channel: FakeChannel | None = None) -> None:
        self.envelope = envelope
        self.redelivered = redelivered
        self.channel = channel or FakeChannel()
        self.acked = 0
        self.nacked: list[bool] = []  # the requeue flag of each nack

    async def ack(self) -> None:
        if self.channel.is_closed:
            raise RuntimeError("channel is closed")
        self.acked += 1

    async def nack(self, requeue: bool = True) -> None:
        if self.channel.is_closed:
            raise RuntimeError("channel is closed")
        self.nacked.append(requeue)

    @property
    def settled(self) -> bool:
        return bool(self.acked or self.nacked)


def request(ticket: str, session: str | None = None, gateway: str = "g1", device: str | None = None,
            band: int = ADULT, mode: int = TEXT, language: str = "en", interests=(), only: bool = False,
            avoid=(), at_head: bool = False, requested_at_ms: int = 0,
            session_seq: int = 0) -> events_pb2.Envelope:
    return events_pb2.Envelope(event_id=f"e-{ticket}", match_requested=events_pb2.MatchRequested(
        ticket_id=ticket, session=common_pb2.SessionRef(
            gateway_id=gateway, session_id=f"s-{ticket}" if session is None else session),
        device_token=f"d-{ticket}" if device is None else device, mode=mode, age_band=band, language=language,
        interests=list(interests), interests_only=only, avoid_device_tokens=list(avoid),
        at_head=at_head, requested_at_unix_ms=requested_at_ms, session_seq=session_seq))


def cancel(ticket: str, session: str | None = None, gateway: str = "g1") -> events_pb2.Envelope:
    return events_pb2.Envelope(event_id=f"c-{ticket}", match_cancelled=events_pb2.MatchCancelled(
        ticket_id=ticket, session=common_pb2.SessionRef(gateway_id=gateway, session_id=session or f"s-{ticket}")))


class Harness:
    def __init__(self, fallback_after: float = 5.0, ticket_ttl: float = 30.0, fail: bool = False) -> None:
        self.clock = Clock()
        self.pairs: list[Pair] = []
        self.fail = fail
        self.resent: list[tuple[str, events_pb2.MatchFound]] = []
        self.worker = PartitionWorker(0, Pools(fallback_after=fallback_after, ticket_ttl=ticket_ttl),
                                      self.announce, MatcherMetrics(), clock=self.clock, resend=self.resend)

    async def announce(self, pair: Pair) -> events_pb2.MatchFound:
        if self.fail:
            raise ConnectionError("broker away")
        self.pairs.append(pair)
        return events_pb2.MatchFound(match_id=f"m{len(self.pairs)}")

    async def resend(self, gateway_id: str, found: events_pb2.MatchFound) -> None:
        self.resent.append((gateway_id, found))

    async def send(self, envelope: events_pb2.Envelope, redelivered: bool = False,
                   channel: FakeChannel | None = None) -> FakeMessage:
        message = FakeMessage(envelope, redelivered, channel)
        await self.worker.handle(envelope, message)
        return message

    def tickets(self) -> set[str]:
        return {t.ticket_id for t in self.worker.pools.tickets()}

    def paired(self) -> list[set[str]]:
        return [{p.a.ticket_id, p.b.ticket_id} for p in self.pairs]


# ---------------------------------------------------------------- waiting and pairing

async def test_a_request_is_held_unacked_while_waiting_and_acked_when_paired():
    h = Harness()
    first = await h.send(request("t1"))
    assert not first.settled and h.worker.held == {"t1": first} and h.tickets() == {"t1"}
    second = await h.send(request("t2"))
    assert first.acked == 1 and second.acked == 1 and not first.nacked and not second.nacked
    assert h.paired() == [{"t1", "t2"}] and h.pairs[0].a.ticket_id == "t1"
    assert h.worker.held == {} and len(h.worker.pools) == 0
    assert "t1" in h.worker.done and "t2" in h.worker.done


async def test_the_request_carries_the_policy_inputs_into_the_ticket():
    h = Harness()
    await h.send(request("t1", interests=[" Chess ", "", "MUSIC"] + [f"x{i}" for i in range(20)],
                         only=True, avoid=["d-bad"], language="", requested_at_ms=990_000))
    ticket = h.worker.pools.get("t1")
    assert "chess" in ticket.interests and "music" in ticket.interests and "" not in ticket.interests
    assert len(ticket.interests) <= MAX_INTERESTS
    assert ticket.interests_only and ticket.avoid == frozenset({"d-bad"})
    assert ticket.language == "en"  # empty means the default
    assert ticket.enqueued_at == 990.0  # the wait counts from the first request
    await h.send(request("t2", requested_at_ms=5_000_000))  # a clock ahead of ours is not trusted
    # t2 did not pair with t1 (t1 takes interests only): its wait starts now
    assert h.worker.pools.get("t2").enqueued_at == h.clock.t


async def test_separate_pools_never_pair_across_bands_or_modes():
    h = Harness(fallback_after=0)
    await h.send(request("adult", band=ADULT))
    await h.send(request("minor", band=MINOR))
    await h.send(request("video", mode=VIDEO))
    h.clock.t += 10  # well past the fallback, within the TTL
    await h.worker.tick()
    assert h.pairs == [] and h.tickets() == {"adult", "minor", "video"}


# ---------------------------------------------------------------- leaving

async def test_cancel_acks_the_request_and_the_cancel():
    h = Harness()
    held = await h.send(request("t1"))
    cancelled = await h.send(cancel("t1"))
    assert held.acked == 1 and cancelled.acked == 1
    assert h.worker.held == {} and len(h.worker.pools) == 0 and "t1" in h.worker.done
    await h.send(request("t2"))
    assert h.pairs == []  # t1 is gone for good


async def test_a_cancel_from_another_session_changes_nothing():
    h = Harness()
    held = await h.send(request("t1", session="s1"))
    forged = await h.send(cancel("t1", session="someone-else"))
    assert forged.acked == 1 and not held.settled and h.tickets() == {"t1"}


async def test_a_cancel_that_overtook_its_request_keeps_the_request_out():
    h = Harness()
    cancelled = await h.send(cancel("t1"))
    assert cancelled.acked == 1
    late = await h.send(request("t1"))
    assert late.acked == 1 and len(h.worker.pools) == 0 and h.worker.held == {}


async def test_a_new_ticket_of_the_same_session_replaces_and_acks_the_old():
    h = Harness()
    old = await h.send(request("t1", session="s1", interests=["chess"], only=True))
    new = await h.send(request("t2", session="s1", interests=["go"], only=True))
    assert old.acked == 1 and not new.settled
    assert h.tickets() == {"t2"} and h.worker.held == {"t2": new} and "t1" in h.worker.done


# ---------------------------------------------------------------- renewals and redelivery

async def test_a_renewal_is_acked_and_keeps_the_original_held():
    h = Harness()
    original = await h.send(request("t1"))
    h.clock.t += 10
    renewal = await h.send(request("t1"))
    assert renewal.acked == 1 and not original.settled and h.worker.held["t1"] is original
    assert h.worker.pools.get("t1").renewed_at == h.clock.t
    h.clock.t += 25  # 35 s after the first request, 25 after the renewal: still alive
    await h.worker.tick()
    assert h.tickets() == {"t1"} and not original.settled


async def test_a_redelivered_request_of_a_known_ticket_becomes_the_held_one():
    h = Harness()
    old_channel = FakeChannel()
    original = await h.send(request("t1"), channel=old_channel)
    old_channel.is_closed = True  # the channel was lost: the broker gives the request back
    again = await h.send(request("t1"), redelivered=True)
    assert h.worker.held["t1"] is again and not again.settled
    assert original.acked == 0  # acking it on a closed channel failed, quietly
    assert h.tickets() == {"t1"}
    partner = await h.send(request("t2"))
    assert again.acked == 1 and partner.acked == 1 and h.paired() == [{"t1", "t2"}]


async def test_a_redelivered_copy_while_the_original_channel_is_open_swaps_and_acks_the_old():
    h = Harness()
    original = await h.send(request("t1"))
    again = await h.send(request("t1"), redelivered=True)
    assert original.acked == 1 and not again.settled and h.worker.held["t1"] is again


async def test_a_renewal_whose_held_request_sits_on_a_closed_channel_is_held_instead():
    h = Harness()
    old_channel = FakeChannel()
    await h.send(request("t1"), channel=old_channel)
    old_channel.is_closed = True
    renewal = await h.send(request("t1"))  # not flagged redelivered, but the old one is gone
    assert h.worker.held["t1"] is renewal and not renewal.settled


async def test_a_replay_of_a_finished_ticket_is_acked_and_ignored():
    h = Harness()
    await h.send(request("t1"))
    await h.send(request("t2"))
    replay = await h.send(request("t1"))
    assert replay.acked == 1 and len(h.worker.pools) == 0 and h.worker.held == {}
    redelivered = await h.send(request("t1"), redelivered=True)
    assert redelivered.acked == 1 and len(h.worker.pools) == 0
    await h.send(request("t3"))
    assert h.paired() == [{"t1", "t2"}]  # t1 was never paired a second time


async def test_a_lost_ticket_is_recreated_by_its_renewal():
    """A replica that took the partition over without the original request
    (it was acked by mistake, or the broker lost it) re-creates the ticket."""
    h = Harness()
    renewal = await h.send(request("t1"))
    assert h.tickets() == {"t1"} and not renewal.settled and h.worker.held["t1"] is renewal


# ---------------------------------------------------------------- failures

async def test_a_failed_announce_nacks_both_with_requeue_and_forgets_neither():
    h = Harness(fail=True)
    first = await h.send(request("t1"))
    second = await h.send(request("t2"))
    assert first.nacked == [True] and second.nacked == [True] and not first.acked and not second.acked
    assert h.worker.held == {} and len(h.worker.pools) == 0
    assert "t1" not in h.worker.done and "t2" not in h.worker.done
    # the broker hands both back: they wait again (not dropped as replays)
    h.fail = False
    again1 = await h.send(request("t1"), redelivered=True)
    assert h.tickets() == {"t1"} and h.worker.held == {"t1": again1}
    # and anyone else takes them at once
    await h.send(request("t3"))
    assert again1.acked == 1 and h.paired() == [{"t1", "t3"}]


async def test_after_a_failed_announce_the_same_two_are_paired_again():
    h = Harness(fail=True)
    await h.send(request("t1"))
    await h.send(request("t2"))
    h.fail = False
    again1 = await h.send(request("t1"), redelivered=True)
    again2 = await h.send(request("t2"), redelivered=True)
    assert again1.acked == 1 and again2.acked == 1 and h.paired() == [{"t1", "t2"}]


async def test_a_failed_announce_during_the_sweep_nacks_both():
    h = Harness(fallback_after=5, fail=True)
    first = await h.send(request("t1", interests=["chess"]))
    second = await h.send(request("t2", interests=["go"]))
    h.clock.t += 6
    await h.worker.tick()
    assert first.nacked == [True] and second.nacked == [True] and len(h.worker.pools) == 0


@pytest.mark.parametrize("envelope, reason", [
    (request("t1", mode=0), "mode"),
    (request("t1", mode=7), "mode"),
    (request("t1", band=0), "age band"),
    (request("t1", band=9), "age band"),
    (request("", session="s1"), "without ticket"),
    (request("t1", gateway=""), "without ticket"),
    (request("t1", session=""), "without ticket"),
    (events_pb2.Envelope(event_id="x", match_requested=events_pb2.MatchRequested(
        ticket_id="t1", session=common_pb2.SessionRef(gateway_id="g", session_id="s"),
        mode=TEXT, age_band=ADULT)), "without ticket"),  # no device
    (events_pb2.Envelope(event_id="x", relay=events_pb2.RelayFrame(match_id="m")), "on a matcher queue"),
    (events_pb2.Envelope(event_id="x"), "on a matcher queue"),
])
async def test_a_poison_request_raises_poison_message_and_changes_nothing(envelope, reason):
    h = Harness()
    waiting = await h.send(request("w", device="d-w"))
    message = FakeMessage(envelope)
    with pytest.raises(PoisonMessage, match=reason):
        await h.worker.handle(envelope, message)
    assert not message.settled  # the bus dead-letters it, with the reason
    assert h.tickets() == {"w"} and h.worker.held == {"w": waiting} and h.pairs == []


# ---------------------------------------------------------------- time

async def test_an_unrenewed_ticket_expires_and_its_request_is_acked():
    h = Harness(ticket_ttl=30)
    held = await h.send(request("t1", interests=["chess"], only=True))
    h.clock.t += 30
    await h.worker.tick()
    assert not held.settled and h.tickets() == {"t1"}  # exactly the TTL: not yet
    h.clock.t += 0.5
    await h.worker.tick()
    assert held.acked == 1 and len(h.worker.pools) == 0 and h.worker.held == {}
    assert "t1" not in h.worker.done  # a late renewal may still bring it back
    await h.send(request("t2", interests=["chess"], only=True))
    assert h.pairs == []  # an expired ticket is never paired


async def test_the_sweep_pairs_users_whose_interest_wait_ran_out_and_acks_both():
    h = Harness(fallback_after=5)
    first = await h.send(request("t1", interests=["chess"]))
    second = await h.send(request("t2", interests=["go"]))
    h.clock.t += 4
    await h.worker.tick()
    assert h.pairs == [] and not first.settled
    h.clock.t += 2
    await h.worker.tick()
    assert first.acked == 1 and second.acked == 1
    assert h.paired() == [{"t1", "t2"}] and h.pairs[0].kind is PairKind.FALLBACK


async def test_a_requeued_request_keeps_its_wait_and_goes_first():
    h = Harness(fallback_after=5)
    h.clock.t = 1000.0
    await h.send(request("plain1", device="d1", avoid=["d2"]))
    await h.send(request("plain2", device="d2"))  # avoided by plain1: both wait
    # refused elsewhere, re-queued at the head with the time it first asked
    await h.send(request("back", interests=["chess"], at_head=True, requested_at_ms=990_000))
    # it takes a random partner at once (it has waited 10 s, past the fallback):
    # the longest-waiting one that fits
    assert h.paired() == [{"plain1", "back"}] and h.pairs[0].kind is PairKind.FALLBACK
    assert h.pairs[0].a.ticket_id == "back" and h.pairs[0].a.enqueued_at == 990.0  # at the head


async def test_reset_forgets_the_partition():
    h = Harness()
    await h.send(request("t1"))
    h.worker.active = True
    h.worker.reset()
    assert len(h.worker.pools) == 0 and h.worker.held == {} and not h.worker.active
    assert h.worker.pools.ticket_ttl == 30.0 and h.worker.pools.fallback_after == 5.0
    again = await h.send(request("t1"), redelivered=True)
    assert h.worker.held == {"t1": again} and h.worker.active


# ---------------------------------------------------------------- bugs found (see test_system_properties)

async def test_an_old_request_replayed_to_a_standby_does_not_unseat_the_current_ticket():
    h = Harness()  # took the partition over: it never saw t1, the session's earlier ticket
    await h.send(request("t2", session="s1", requested_at_ms=1_000_000, session_seq=2))
    await h.send(request("t1", session="s1", requested_at_ms=990_000, session_seq=1))  # replayed late
    h.clock.t += 10
    await h.send(request("t2", session="s1", requested_at_ms=1_000_000, session_seq=2))  # renewal
    assert "t2" in h.worker.pools and "t2" in h.worker.held  # the session still waits


async def test_a_renewal_after_the_ttl_recreates_the_expired_ticket():
    h = Harness(ticket_ttl=30)
    await h.send(request("t1"))
    h.clock.t += 31
    await h.worker.tick()
    assert len(h.worker.pools) == 0
    renewal = await h.send(request("t1"))
    assert "t1" in h.worker.pools and h.worker.held.get("t1") is renewal


async def test_a_renewal_of_a_paired_ticket_sends_its_match_again_to_that_gateway_only():
    # The MatchFound to one gateway was lost: that gateway still renews the
    # ticket, and must get the result again rather than wait forever.
    h = Harness()
    await h.send(request("t1", gateway="g1"))
    await h.send(request("t2", gateway="g2"))
    renewal = await h.send(request("t1", gateway="g1"))
    assert renewal.acked == 1 and h.resent == [("g1", events_pb2.MatchFound(match_id="m1"))]
    assert h.paired() == [{"t1", "t2"}] and len(h.worker.pools) == 0  # no second pair
    await h.send(cancel("t3"))
    await h.send(request("t3"))  # a cancelled ticket's replay: ignored, nothing re-sent
    assert len(h.resent) == 1 and "t3" not in h.worker.pools
