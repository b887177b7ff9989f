"""Bounded memory for the detectors: per-conversation state that forgets idle
conversations, and the cross-conversation record of repeated texts.

Both are least-recently-used maps with a time to live and a hard cap on
entries, so memory stays bounded however many conversations go by: a
process that sees millions of conversations keeps only the most recent
`capacity`. The clock is passed in (milliseconds), never read here.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, Iterator, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedLRU(Generic[K, V]):
    """A map that keeps at most `capacity` entries, each for at most
    `ttl_ms` since it was last touched."""

    def __init__(self, capacity: int, ttl_ms: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.ttl_ms = ttl_ms
        self._items: OrderedDict[K, tuple[int, V]] = OrderedDict()
        self.evicted = 0  # entries dropped for capacity or age, for a metric

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def get(self, key: K, now_ms: int) -> V | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        touched, value = entry
        if now_ms - touched > self.ttl_ms:
            del self._items[key]
            self.evicted += 1
            return None
        self._items[key] = (now_ms, value)
        self._items.move_to_end(key)
        return value

    def get_or_create(self, key: K, now_ms: int, factory: Callable[[], V]) -> V:
        value = self.get(key, now_ms)
        if value is None:
            value = factory()
            self._items[key] = (now_ms, value)
            self.expire(now_ms)
        return value

    def pop(self, key: K) -> V | None:
        entry = self._items.pop(key, None)
        return entry[1] if entry else None

    def expire(self, now_ms: int) -> int:
        """Drop what is over capacity and what has been idle past the TTL;
        the oldest are first in line, so this stops at the first fresh one."""
        dropped = 0
        items = self._items
        while len(items) > self.capacity:
            items.popitem(last=False)
            dropped += 1
        while items:
            key, (touched, _value) = next(iter(items.items()))
            if now_ms - touched <= self.ttl_ms:
                break
            items.popitem(last=False)
            dropped += 1
        self.evicted += dropped
        return dropped

    def values(self) -> Iterator[V]:
        return (value for _touched, value in self._items.values())


class _Distinct:
    """Distinct 64-bit ids up to a cap: one int while there is one (most
    texts are sent once), a set after."""

    __slots__ = ("one", "many")

    def __init__(self, first: int) -> None:
        self.one = first
        self.many: set[int] | None = None

    def add(self, item: int, cap: int) -> int:
        if self.many is None:
            if item != self.one:
                self.many = {self.one, item}
        elif len(self.many) < cap:
            self.many.add(item)
        return 1 if self.many is None else len(self.many)


class RepeatedTexts:
    """How many distinct conversations a text was sent in by one device
    (`record`), and how many devices sent it (`record_everyone`, for texts
    that carry a link or a promotion), over the last `ttl_ms`. Texts are
    64-bit fingerprints and counts stop at `cap` (past it, "many" is all a
    rule needs): a text sent once costs one small entry."""

    def __init__(self, capacity: int, ttl_ms: int, cap: int = 16) -> None:
        self._by_device: BoundedLRU[int, _Distinct] = BoundedLRU(capacity, ttl_ms)
        self._devices: BoundedLRU[int, _Distinct] = BoundedLRU(capacity, ttl_ms)
        self.cap = cap

    def __len__(self) -> int:
        return len(self._by_device) + len(self._devices)

    def record(self, fingerprint: int, device: str, conversation: str, now_ms: int) -> int:
        """Count this device's text in this conversation; returns in how many
        distinct conversations this device sent it."""
        conv = hash(conversation)
        entry = self._by_device.get_or_create(hash((device, fingerprint)), now_ms, lambda: _Distinct(conv))
        return entry.add(conv, self.cap)

    def record_everyone(self, fingerprint: int, device: str, now_ms: int) -> int:
        """Count the device sending this text; returns how many distinct devices did."""
        dev = hash(device)
        entry = self._devices.get_or_create(fingerprint, now_ms, lambda: _Distinct(dev))
        return entry.add(dev, self.cap)
