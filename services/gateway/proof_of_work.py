"""Hashcash-style proof of work at the door, as pure logic.

A session is handed a random challenge and a difficulty in bits; before its
first join it must find a nonce such that SHA-256 of `challenge:nonce` starts
with that many zero bits. A person's browser does it in the background while
they pick interests; a bot opening thousands of sessions pays for each one.
An address that opens sessions faster than a person would is asked for more
bits, doubling the work per bit.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import secrets
from dataclasses import dataclass

MAX_NONCE_CHARS = 64


def new_challenge() -> str:
    return secrets.token_hex(16)


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def digest(challenge: str, nonce: str) -> bytes:
    return hashlib.sha256(f"{challenge}:{nonce}".encode()).digest()


def verify(challenge: str, nonce: str, bits: int) -> bool:
    if not nonce or len(nonce) > MAX_NONCE_CHARS:
        return False
    return leading_zero_bits(digest(challenge, nonce)) >= bits


def solve(challenge: str, bits: int) -> str:
    """The first nonce (a decimal counter) that meets `bits`; what a client
    does, here for the terminal client, tests and benchmarks."""
    # Hash the fixed prefix once; each try only adds the counter.
    prefix = hashlib.sha256(f"{challenge}:".encode())
    for counter in itertools.count():
        attempt = prefix.copy()
        nonce = str(counter)
        attempt.update(nonce.encode())
        if leading_zero_bits(attempt.digest()) >= bits:
            return nonce
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Policy:
    """How much work to ask: `base_bits` of an address opening sessions at up
    to `free_per_minute`, then two more bits (four times the work) for each
    doubling beyond it, up to `max_bits`. Zero base bits: no proof at all."""

    base_bits: int = 16
    max_bits: int = 24
    free_per_minute: float = 10.0

    def bits(self, opens_per_minute: float) -> int:
        if not self.base_bits:
            return 0
        if self.free_per_minute <= 0 or opens_per_minute <= self.free_per_minute:
            return self.base_bits
        extra = 2 * math.ceil(math.log2(opens_per_minute / self.free_per_minute))
        return max(self.base_bits, min(self.max_bits, self.base_bits + extra))
