"""Which matcher replica owns which partition: pure logic.

Replicas hear each other's heartbeats; every replica computes the same owner
for each partition by rendezvous hashing over the replicas alive, so adding or
losing a replica moves only its share of the partitions. Ownership decides
who *should* consume a partition; the broker's single active consumer decides
who *does*, so two replicas never work one partition at once even while
their views differ for a moment.
"""
from __future__ import annotations

import hashlib


class Membership:
    def __init__(self, me: str, dead_after: float) -> None:
        self.me = me
        self.dead_after = dead_after
        self._last_seen: dict[str, float] = {}

    def heard(self, instance_id: str, now: float) -> bool:
        """Record a heartbeat; True when the replica is new to us."""
        new = instance_id not in self._last_seen
        self._last_seen[instance_id] = now
        return new

    def forget_dead(self, now: float) -> list[str]:
        """Drop replicas not heard of lately; returns them."""
        dead = [m for m, seen in self._last_seen.items()
                if m != self.me and now - seen > self.dead_after]
        for member in dead:
            del self._last_seen[member]
        return dead

    def alive(self, now: float) -> list[str]:
        members = {m for m, seen in self._last_seen.items() if now - seen <= self.dead_after}
        members.add(self.me)
        return sorted(members)

    def owner(self, partition: int, now: float) -> str:
        return _owner(partition, self.alive(now))

    def owned(self, partitions: int, now: float) -> set[int]:
        alive = self.alive(now)
        return {p for p in range(partitions) if _owner(p, alive) == self.me}


def _owner(partition: int, alive: list[str]) -> str:
    return max(alive, key=lambda member: _score(partition, member))


def _score(partition: int, member: str) -> bytes:
    return hashlib.blake2b(f"{partition}:{member}".encode(), digest_size=8).digest()
