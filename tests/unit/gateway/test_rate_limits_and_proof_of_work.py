"""Proof of work and rate limits at the door, as pure logic."""
from __future__ import annotations

import itertools

from parley.v1 import common_pb2, gateway_pb2
from services.gateway import proof_of_work
from services.gateway.machine import Phase, SessionMachine, ToClient
from services.gateway.rate_limits import AddressLimiter, DecayingRate, RateLimits, SessionLimiter, TokenBucket

Err = gateway_pb2.Error
JOIN = dict(mode=common_pb2.MODE_TEXT, age_band=common_pb2.AGE_BAND_ADULT)


# ---------------------------------------------------------------- proof of work

def test_a_solved_challenge_verifies_and_a_wrong_nonce_does_not():
    challenge = proof_of_work.new_challenge()
    nonce = proof_of_work.solve(challenge, 12)
    assert proof_of_work.verify(challenge, nonce, 12)
    assert proof_of_work.leading_zero_bits(proof_of_work.digest(challenge, nonce)) >= 12
    # Another challenge's nonce almost never fits (1 in 4096); pick one that does not.
    other = next(c for c in (proof_of_work.new_challenge() for _ in range(100))
                 if not proof_of_work.verify(c, nonce, 12))
    assert not proof_of_work.verify(other, nonce, 12)
    assert not proof_of_work.verify(challenge, "", 0)
    assert not proof_of_work.verify(challenge, "1" * 65, 0)


def test_leading_zero_bits_counts_bits_not_bytes():
    assert proof_of_work.leading_zero_bits(b"\x00\x0f" + b"\xff" * 30) == 12
    assert proof_of_work.leading_zero_bits(b"\x80" + b"\x00" * 31) == 0
    assert proof_of_work.leading_zero_bits(b"\x00" * 32) == 256


def test_difficulty_rises_two_bits_per_doubling_beyond_the_free_rate_and_stops_at_the_cap():
    policy = proof_of_work.Policy(base_bits=16, max_bits=24, free_per_minute=10)
    assert policy.bits(1) == 16
    assert policy.bits(10) == 16
    assert policy.bits(11) == 18
    assert policy.bits(20) == 18
    assert policy.bits(40) == 20
    assert policy.bits(10_000) == 24
    assert proof_of_work.Policy(base_bits=0).bits(10_000) == 0
    assert proof_of_work.Policy(base_bits=16, free_per_minute=0).bits(10_000) == 16


def door_machine(bits: int) -> SessionMachine:
    counter = itertools.count()
    challenge = gateway_pb2.ProofOfWork(challenge="c0ffee", difficulty_bits=bits)
    return SessionMachine(common_pb2.SessionRef(gateway_id="g", session_id="s"),
                          common_pb2.Identity(device_token="d", ip_hash="i"),
                          new_id=lambda: f"id{next(counter)}", now=lambda: 1000.0, challenge=challenge)


def codes(effects) -> list[int]:
    return [e.frame.error.code for e in effects if isinstance(e, ToClient) and e.frame.HasField("error")]


def test_the_first_join_needs_the_proof_and_later_ones_do_not():
    m = door_machine(10)
    assert codes(m.on_frame(gateway_pb2.ClientFrame(join=gateway_pb2.Join(**JOIN)))) == [Err.CODE_PROOF_REQUIRED]
    assert codes(m.on_frame(gateway_pb2.ClientFrame(join=gateway_pb2.Join(**JOIN, proof_of_work="nope")))) \
        == [Err.CODE_PROOF_REQUIRED]
    assert m.phase is Phase.IDLE
    nonce = proof_of_work.solve("c0ffee", 10)
    assert codes(m.on_frame(gateway_pb2.ClientFrame(join=gateway_pb2.Join(**JOIN, proof_of_work=nonce)))) == []
    assert m.phase is Phase.WAITING
    assert m.join.proof_of_work == ""  # not sent on with the match request
    m.on_frame(gateway_pb2.ClientFrame(stop=gateway_pb2.Stop()))
    assert codes(m.on_frame(gateway_pb2.ClientFrame(join=gateway_pb2.Join(**JOIN)))) == []
    assert m.phase is Phase.WAITING


def test_zero_bits_asks_for_no_proof():
    m = door_machine(0)
    assert codes(m.on_frame(gateway_pb2.ClientFrame(join=gateway_pb2.Join(**JOIN)))) == []


# ---------------------------------------------------------------- rate limits

def test_token_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate=2, burst=3, now=0)
    assert [bucket.take(0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(0) == 0.5  # one token comes every half second
    assert bucket.take(0.25) == 0.25
    assert bucket.take(0.5) == 0
    assert not bucket.full(0.5)
    assert bucket.full(100)


def test_session_limiter_limits_text_and_joins_and_tells_once_per_streak():
    limits = RateLimits(text_per_second=1, text_burst=2, frames_per_second=100, frames_burst=100,
                        joins_per_minute=4)
    session = SessionLimiter(limits, now=0)
    assert [session.check("text", 0).retry_after for _ in range(2)] == [0, 0]
    first, second = session.check("text", 0), session.check("text", 0)
    assert first.retry_after == 1.0 and first.notify
    assert second.retry_after and not second.notify  # told once
    assert session.check("typing", 0).retry_after == 0  # typing is not a chat line
    assert session.check("text", 1.0).retry_after == 0  # a token came back
    assert session.check("join", 1.0).retry_after == 0
    verdict = session.check("next", 1.0)  # burst of a quarter of 4 per minute: one
    assert verdict.retry_after == 15.0 and verdict.notify


def test_session_limiter_limits_all_frames():
    session = SessionLimiter(RateLimits(frames_per_second=10, frames_burst=5), now=0)
    assert [session.check("signal", 0).retry_after for _ in range(5)] == [0] * 5
    assert session.check("signal", 0).retry_after == 0.1


def test_address_limiter_counts_open_sessions_and_their_rate():
    addresses = AddressLimiter(RateLimits(sessions_per_ip=2))
    assert addresses.open("ip", 0) == 1.0
    assert addresses.open("ip", 0) == 2.0
    assert addresses.open("ip", 0) is None  # a third at once is refused
    assert addresses.open("other", 0) == 1.0
    addresses.close("ip")
    assert addresses.open("ip", 0) == 3.0  # counts every session opened lately
    addresses.close("ip"), addresses.close("ip"), addresses.close("other")
    addresses.prune(10_000)
    assert addresses.addresses == {}


def test_address_limiter_shares_joins_across_sessions():
    addresses = AddressLimiter(RateLimits(ip_joins_per_minute=8))
    assert [addresses.join("ip", 0) for _ in range(2)] == [0, 0]
    assert addresses.join("ip", 0) == 7.5
    assert addresses.join("other", 0) == 0


def test_decaying_rate_forgets_over_minutes():
    rate = DecayingRate(now=0)
    for _ in range(30):
        rate.add(0)
    assert rate.read(0) == 30
    assert 10 < rate.read(60) < 12  # e^-1 of it a minute later
    assert rate.read(600) < 0.01
