"""The in-memory index CheckBan answers from, and the cursor that keeps it
current from the store's change log.

The index holds every ban in force, by subject kind and value. It is loaded
from the store at start and then kept current three ways, all idempotent:
this replica's own issues and lifts, the ban events of every replica (a
queue of its own), and a poll of the change log (so replicas agree within a
second even if an event is lost). A ban that expires stops counting at once
(every answer checks the time) and leaves memory at the next sweep.

Memory matters at a million bans, so each ban is kept as its serialized
`BanRecord` without the subject (the dictionary key is the subject's value):
about 320 bytes a ban, all told. A check of an identity nobody banned is four
dictionary look-ups; a ban found is parsed back (a few microseconds).
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable

from parley.v1 import ban_pb2
from services.ban.model import Ban, Subject, SubjectKind
from services.ban.wire import ban_from_proto

_MINUTE_MS = 60_000
# Lifted ban ids remembered, so that a late event announcing a ban that was
# lifted meanwhile does not bring it back.
LIFTED_MEMORY = 100_000


def _encode(ban: Ban) -> bytes:
    """The ban's BanRecord without its subject (the key says it)."""
    return ban_pb2.BanRecord(
        ban_id=ban.ban_id, scope=ban.scope, category=ban.category, reason=ban.reason, issued_by=ban.issued_by,
        issued_at_unix_ms=ban.issued_at_ms, expires_at_unix_ms=ban.expires_at_ms,
        lifted_at_unix_ms=ban.lifted_at_ms or 0, decision_id=ban.decision_id or "",
        enforce_on_address=ban.enforce_on_address, appealable_until_unix_ms=ban.appealable_until_ms,
        lifted_by=ban.lifted_by or "", lift_reason=ban.lift_reason or "").SerializeToString()


def _decode(blob: bytes, subject: Subject) -> Ban:
    return ban_from_proto(ban_pb2.BanRecord.FromString(blob), subject)


def _entries(found) -> tuple[bytes, ...]:
    return (found,) if type(found) is bytes else found


class BanIndex:
    def __init__(self) -> None:
        # kind -> subject value -> one record (bytes), or a tuple of records
        # when several bans are on one subject (rare)
        self._by_kind: dict[SubjectKind, dict[str, bytes | tuple[bytes, ...]]] = {
            kind: {} for kind in SubjectKind}
        # Expiry buckets, by the minute after the expiry: kind -> minute ->
        # subject values (plain strings, so that a million timed bans add no
        # objects for the garbage collector to walk), and a heap of minutes.
        self._expiring: dict[SubjectKind, dict[int, list[str]]] = {kind: {} for kind in SubjectKind}
        self._minutes: list[int] = []
        self._lifted: dict[str, None] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    # ------------------------------------------------------------ reading

    def candidates(self, device_token: str = "", ip_hash: str = "", ip_prefix_hash: str = "",
                   session_id: str = "") -> list[Ban]:
        """The bans on this identity's subjects (expired ones included until
        swept: the caller judges them against the clock)."""
        found: list[Ban] = []
        for kind, value in ((SubjectKind.DEVICE_TOKEN, device_token), (SubjectKind.IP_HASH, ip_hash),
                            (SubjectKind.IP_PREFIX_HASH, ip_prefix_hash), (SubjectKind.SESSION_ID, session_id)):
            if not value:
                continue
            entry = self._by_kind[kind].get(value)
            if entry is not None:
                subject = Subject(kind, value)
                found.extend(_decode(blob, subject) for blob in _entries(entry))
        return found

    def bans_on(self, subject: Subject) -> list[Ban]:
        entry = self._by_kind[subject.kind].get(subject.value)
        return [] if entry is None else [_decode(blob, subject) for blob in _entries(entry)]

    # ------------------------------------------------------------ writing

    def apply(self, ban: Ban, now_ms: int) -> bool:
        """Bring the index in line with this ban's state (from the store or an
        event): in force, it is there; lifted or expired, it is not. True
        when the index changed. A lift is final: a ban seen lifted is never
        put back, whatever arrives later."""
        if ban.lifted_at_ms is not None:
            self._remember_lifted(ban.ban_id)
            return self.remove(ban)
        if not ban.in_force(now_ms):
            return self.remove(ban)
        return self.put(ban)

    def put(self, ban: Ban) -> bool:
        """Add or replace a ban in force (by its id). False when it was
        lifted before, or when it was there already as it is."""
        if ban.ban_id in self._lifted:
            return False
        table = self._by_kind[ban.subject.kind]
        value = ban.subject.value
        blob = _encode(ban)
        entry = table.get(value)
        if entry is None:
            table[value] = blob
            self._size += 1
        else:
            entries = _entries(entry)
            if blob in entries:
                return False
            others = tuple(e for e in entries if ban_pb2.BanRecord.FromString(e).ban_id != ban.ban_id)
            if len(others) == len(entries):
                self._size += 1
            table[value] = (*others, blob) if others else blob
        if not ban.permanent:
            self._schedule(ban.subject.kind, value, ban.expires_at_ms)
        return True

    def remove(self, ban: Ban) -> bool:
        """Drop a ban (by its id); False when it was not there."""
        table = self._by_kind[ban.subject.kind]
        entry = table.get(ban.subject.value)
        if entry is None:
            return False
        entries = _entries(entry)
        others = tuple(e for e in entries if ban_pb2.BanRecord.FromString(e).ban_id != ban.ban_id)
        if len(others) == len(entries):
            return False
        self._size -= 1
        if not others:
            del table[ban.subject.value]
        else:
            table[ban.subject.value] = others[0] if len(others) == 1 else others
        return True

    def load(self, bans: Iterable[Ban], now_ms: int) -> int:
        """Add a batch of bans read at start; the number added."""
        return sum(self.apply(ban, now_ms) for ban in bans)

    # ------------------------------------------------------------ expiry

    def _schedule(self, kind: SubjectKind, value: str, expires_at_ms: int) -> None:
        minute = expires_at_ms // _MINUTE_MS + 1  # the first whole minute after it ends
        bucket = self._expiring[kind].get(minute)
        if bucket is None:
            bucket = self._expiring[kind][minute] = []
            heapq.heappush(self._minutes, minute)
        bucket.append(value)

    def sweep(self, now_ms: int) -> int:
        """Drop the bans that have expired by whole minutes before now; the
        number dropped. Cheap when nothing is due."""
        dropped = 0
        current = now_ms // _MINUTE_MS
        while self._minutes and self._minutes[0] <= current:
            minute = heapq.heappop(self._minutes)
            for kind in SubjectKind:
                for value in self._expiring[kind].pop(minute, ()):
                    dropped += self._drop_expired(kind, value, now_ms)
        return dropped

    def _drop_expired(self, kind: SubjectKind, value: str, now_ms: int) -> int:
        table = self._by_kind[kind]
        entry = table.get(value)
        if entry is None:
            return 0
        entries = _entries(entry)
        keep = []
        for blob in entries:
            record = ban_pb2.BanRecord.FromString(blob)
            if record.expires_at_unix_ms == 0 or record.expires_at_unix_ms > now_ms:
                keep.append(blob)
        dropped = len(entries) - len(keep)
        self._size -= dropped
        if not keep:
            del table[value]
        elif dropped:
            table[value] = keep[0] if len(keep) == 1 else tuple(keep)
        return dropped

    def _remember_lifted(self, ban_id: str) -> None:
        self._lifted[ban_id] = None
        if len(self._lifted) > LIFTED_MEMORY:
            del self._lifted[next(iter(self._lifted))]


class ChangeCursor:
    """How far a replica has read the store's change log.

    Change ids come from a sequence, allotted when a transaction inserts its
    row, but transactions commit in their own order: on PostgreSQL change 11
    may be visible before change 10 commits. So the cursor only moves past
    an id it has seen, or past a missing id after `gap_timeout_ms` (a
    transaction that rolled back leaves a hole forever). The rows after a
    hole are read again at each poll until it closes; applying a ban's
    current state twice changes nothing."""

    def __init__(self, position: int, gap_timeout_ms: int = 10_000) -> None:
        self.position = position      # every change up to this id has been applied
        self.gap_timeout_ms = gap_timeout_ms
        self._gaps: dict[int, int] = {}  # missing id -> when first noticed

    @property
    def open_gaps(self) -> int:
        return len(self._gaps)

    def advance(self, seen_ids: Iterable[int], now_ms: int) -> int:
        """After applying the rows with these ids (ascending, all above the
        position): the new position."""
        expected = self.position + 1
        blocked_at: int | None = None  # the first hole still worth waiting for
        for change_id in seen_ids:
            if change_id < expected:
                continue
            for missing in range(expected, change_id):
                noticed = self._gaps.setdefault(missing, now_ms)
                if blocked_at is None and now_ms - noticed < self.gap_timeout_ms:
                    blocked_at = missing
            expected = change_id + 1
        self._settle(expected - 1 if blocked_at is None else blocked_at - 1)
        return self.position

    def _settle(self, position: int) -> None:
        self.position = max(self.position, position)
        for change_id in [g for g in self._gaps if g <= self.position]:
            del self._gaps[change_id]
