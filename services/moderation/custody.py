"""The custody log of the evidence vault, without I/O: how an entry is
hashed into the chain, and how a chain and the blobs it speaks of are
verified.

Each entry holds the hash of the one before it:

    entry_hash = sha256(bytes.fromhex(prev_hash) || canonical(entry))

where canonical(entry) is the UTF-8 JSON of the entry's fields (seq, at_ms,
actor, action, item_id, sha256, detail) with sorted keys and no spaces, and
the first entry's prev_hash is 64 zeros. Changing, inserting or deleting
any entry breaks every hash after it; the store's head row (the last seq and
hash) catches a cut tail.

Blobs are content-addressed: a blob is named by the SHA-256 of its bytes.
The log says when each blob was stored and purged, so a verifier knows which
blobs must be present.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

GENESIS = "0" * 64

# What the vault records (the `action` of an entry).
STORED = "stored"          # a blob's bytes entered the vault (first time, or again after a purge)
LINKED = "linked"          # a blob became evidence of a case
VIEWED = "viewed"          # a moderator saw a case's evidence
DECIDED = "decided"        # a case was decided; detail has its retention date
ESCALATED = "escalated"    # a case became a child-safety case (one-year retention)
LEGAL_HOLD = "legal_hold"  # a hold was set or lifted
EXPORTED = "exported"      # a law-enforcement package left the vault; detail has its hash
UNLINKED = "unlinked"      # the retention purge detached a blob from a case
PURGED = "purged"          # a blob's bytes were deleted (no case needs them any more)
CASE_PURGED = "case_purged"  # a case's evidence (blobs, transcript lines) was deleted


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value) -> bytes:
    """The one byte form of a JSON value that every hash here is taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class Entry:
    seq: int
    at_ms: int
    actor: str
    action: str
    item_id: str | None
    sha256: str | None
    detail: dict = field(default_factory=dict)

    def canonical(self) -> bytes:
        return canonical_json({"seq": self.seq, "at_ms": self.at_ms, "actor": self.actor,
                               "action": self.action, "item_id": self.item_id, "sha256": self.sha256,
                               "detail": self.detail})


def chain_hash(prev_hash: str, entry: Entry) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + entry.canonical()).hexdigest()


@dataclass(frozen=True)
class StoredEntry:
    """A custody row as read back: the entry, and the hashes stored beside it."""
    entry: Entry
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    content: bytes


@dataclass
class Verification:
    ok: bool = True
    entries_checked: int = 0
    blobs_checked: int = 0
    first_broken_seq: int = 0
    broken_blob_sha256: str = ""
    problem: str = ""
    head_hash: str = GENESIS

    def fail(self, problem: str, *, seq: int = 0, blob: str = "") -> "Verification":
        self.ok = False
        self.problem = problem
        self.first_broken_seq = seq
        self.broken_blob_sha256 = blob
        return self


class ChainVerifier:
    """Feed it the entries in seq order, then the blobs; it stops at the
    first problem. Memory: one small record per blob the log names."""

    def __init__(self) -> None:
        self.result = Verification()
        self._prev_hash = GENESIS
        self._expected_seq = 1
        # blob -> True: must be in the vault, False: purged, None: seen in the vault
        self._present: dict[str, bool | None] = {}

    @property
    def failed(self) -> bool:
        return not self.result.ok

    def entry(self, row: StoredEntry) -> bool:
        """Check one entry; False once the chain is broken."""
        if self.failed:
            return False
        seq = row.entry.seq
        if seq != self._expected_seq:
            missing = "missing" if seq > self._expected_seq else "repeated or out of order"
            self.result.fail(f"custody entry {self._expected_seq} is {missing} (found {seq} next)",
                             seq=self._expected_seq)
            return False
        if row.prev_hash != self._prev_hash:
            self.result.fail(f"custody entry {seq}: its previous-entry hash does not match entry {seq - 1}",
                             seq=seq)
            return False
        try:
            recomputed = chain_hash(self._prev_hash, row.entry)
        except (TypeError, ValueError) as exc:
            self.result.fail(f"custody entry {seq}: unreadable ({exc})", seq=seq)
            return False
        if recomputed != row.entry_hash:
            self.result.fail(f"custody entry {seq}: content does not match its hash (altered)", seq=seq)
            return False
        action, blob = row.entry.action, row.entry.sha256
        if blob and action == STORED:
            self._present[blob] = True
        elif blob and action == PURGED:
            self._present[blob] = False
        self._prev_hash = row.entry_hash
        self._expected_seq += 1
        self.result.entries_checked += 1
        self.result.head_hash = row.entry_hash
        return True

    def head(self, seq: int, entry_hash: str) -> bool:
        """The head row the store keeps: the last entry's seq and hash."""
        if self.failed:
            return False
        last = self._expected_seq - 1
        if seq != last or entry_hash != self._prev_hash:
            if seq > last:
                self.result.fail(f"custody entries {last + 1} to {seq} are missing (the log was cut)",
                                 seq=last + 1)
            else:
                self.result.fail(f"the custody head (entry {seq}) does not match the last entry ({last})",
                                 seq=seq or last)
            return False
        return True

    def blob(self, blob: StoredBlob) -> bool:
        if self.failed:
            return False
        actual = sha256_hex(blob.content)
        if actual != blob.sha256:
            self.result.fail(f"blob {blob.sha256}: content hashes to {actual} (altered)", blob=blob.sha256)
            return False
        if len(blob.content) != blob.size:
            self.result.fail(f"blob {blob.sha256}: {len(blob.content)} bytes, the vault says {blob.size}",
                             blob=blob.sha256)
            return False
        if not self._present.get(blob.sha256, False):
            self.result.fail(f"blob {blob.sha256} is in the vault but the custody log never stored it "
                             "(or records its purge)", blob=blob.sha256)
            return False
        self._present[blob.sha256] = None
        self.result.blobs_checked += 1
        return True

    def finish(self) -> Verification:
        """After every blob: any blob the log says is stored and was not seen is missing."""
        if not self.failed:
            for sha, present in self._present.items():
                if present is True:
                    self.result.fail(f"blob {sha} is missing from the vault without a purge entry", blob=sha)
                    break
        return self.result


def verify(entries: Iterable[StoredEntry], blobs: Iterable[StoredBlob],
           head: tuple[int, str] | None = None) -> Verification:
    """Verify a whole vault in memory (tests, small vaults)."""
    verifier = ChainVerifier()
    for row in entries:
        if not verifier.entry(row):
            return verifier.result
    if head is not None and not verifier.head(*head):
        return verifier.result
    for blob in blobs:
        if not verifier.blob(blob):
            return verifier.result
    return verifier.finish()
