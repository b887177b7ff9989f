"""Hash banks: lists of known-bad PDQ hashes, and a fast search of a snapshot's
eight dihedral hashes against all of them at once.

A bank entry is a 256-bit PDQ hash with a label: the bank it came from (a
name, e.g. "ncmec" or "internal"), the category it is evidence of (a
parley.v1.Category value, e.g. CATEGORY_KNOWN_BAD_HASH or CATEGORY_CHILD_SAFETY)
and an optional source id (the list's own id for the item, for reviewers and
reports). Every bank lives in one index: a query looks at all of them in one
pass.

A snapshot matches an entry when ANY of its eight dihedral hashes is within
`max_distance` bits of the entry (31 by default, Meta's recommendation).

Search: multi-index hashing. The 256 bits are 16 chunks of 16 bits (the
reference's 16-bit words). Two hashes within distance d <= 31 differ in at
most 1 bit in at least one chunk (pigeonhole: 16 chunks of 2 or more
differing bits make 32). So, per chunk, the index keeps the entry ids sorted
by that chunk's value with the start of each of the 65,536 values; a query
looks up, for each dihedral hash and each chunk, its own chunk value and the
16 values one bit away (8 x 16 x 17 = 2,176 lookups), and verifies each
candidate with an exact popcount of the XOR. For a general d the radius per
chunk is d // 16. Against 1,000,000 random hashes that is about 33,000
candidates per query instead of 8,000,000 comparisons.

Memory per entry: 32 bytes of hash, 4 of label id, 16 x 4 of sorted ids and
8 of source-id pointer = 108 bytes, plus 16 x 65,537 x 4 bytes (4 MiB) of
offsets: about 107 MiB for 1,000,000 hashes, and the source-id strings when a
file gives them (about 50 bytes each). A bank's name and category are one
interned label shared by all its entries.

Adding at run time: `add` puts the entry in a small "recent" buffer that
queries scan by brute force, at once visible to the next query; past
`compact_threshold` entries a background thread rebuilds the index with them
(readers keep using the old one meanwhile, then switch). Readers never lock:
they take the current immutable state in one reference read. Writers take a
short lock. Safe from threads and from an asyncio loop (`add` never blocks on
I/O or on a rebuild; `load_file` reads a file: run it in a thread from async
code).

Bank file format (what `load_file` reads; the form PDQ hash lists are shared
in, e.g. ThreatExchange's `pdq` text files and hash-list CSV exports):

    # comment lines and blank lines are ignored
    hash,source_id                   <- an optional header line (hash, pdq, signal...)
    f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22
    d8f8f0cce0f4a84f0e370a22028f67f0b36e2ed596623e1d33e6b39c4e9c9b22,item-1234
    0000000000000000ffffffffffffffff0000000000000000ffffffffffffffff	item 77

One hash per line: 64 hex digits (either case), the reference's text form.
Optionally, after a comma, a tab or spaces, a source id (the rest of the
line, at most 256 printable characters). The file is UTF-8.

Loading is all-or-nothing: a file with any bad line loads nothing and raises
BankFileError naming every bad line (number, reason, text; the message shows
the first five). A half-loaded bank would silently miss what the rest of the
file holds; failing at start, before the service serves, is safer.
"""
from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from services.moderation.snapshots.pdq import (
    DIHEDRALS, HASH_BYTES, InvalidHash, PdqHashes, parse_hex, to_bytes)

log = logging.getLogger(__name__)

DEFAULT_MAX_DISTANCE = 31
MAX_MAX_DISTANCE = 63          # radius 3 per chunk; past that the index stops paying
DEFAULT_COMPACT_THRESHOLD = 4096
MAX_SOURCE_ID_CHARS = 256
CHUNKS = 16                    # 16-bit chunks of a 256-bit hash
CHUNK_VALUES = 1 << 16
_HEADER_WORDS = frozenset({"hash", "pdq", "pdq_hash", "pdqhash", "signal", "signal_value", "value"})
_LINE = re.compile(r"([^\s,]+)\s*(?:,\s*)?(.*)$")
_MAX_ERRORS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class HashLabel:
    """What a bank entry is evidence of; interned, shared by a bank's entries."""
    bank: str
    category: int       # a parley.v1.Category value


@dataclass(frozen=True)
class BankMatch:
    bank: str
    category: int
    source_id: str
    bank_hash: str      # the bank entry's hash, hex
    distance: int       # Hamming distance to the closest dihedral hash of the query
    dihedral: str       # which of the query's hashes (DIHEDRALS) was that close


class BankFileError(ValueError):
    """A bank file with bad lines; nothing of it was loaded. `bad_lines` holds
    (line number, reason, the line's text) for every bad line."""

    def __init__(self, source: str, bad_lines: list[tuple[int, str, str]]) -> None:
        self.source = source
        self.bad_lines = bad_lines
        shown = "; ".join(f"line {n}: {reason}: {text!r}" for n, reason, text in bad_lines[:_MAX_ERRORS_SHOWN])
        more = f" (and {len(bad_lines) - _MAX_ERRORS_SHOWN} more)" if len(bad_lines) > _MAX_ERRORS_SHOWN else ""
        super().__init__(f"bank file {source}: {len(bad_lines)} bad line(s), nothing loaded: {shown}{more}")


def parse_bank_lines(lines: Iterable[str | bytes], source: str = "<lines>") -> tuple[list[bytes], list[str]]:
    """Parse the bank file format above: (hashes as 32 bytes, source ids).
    Raises BankFileError listing every bad line; nothing is returned then."""
    hashes: list[bytes] = []
    source_ids: list[str] = []
    bad: list[tuple[int, str, str]] = []
    seen_data = False
    for number, raw in enumerate(lines, start=1):
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                bad.append((number, "not UTF-8 text", raw[:80].decode("utf-8", "replace")))
                continue
        line = raw.lstrip("\ufeff").strip() if number == 1 else raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        assert match is not None  # a non-empty stripped line always matches
        first, rest = match.group(1), match.group(2).strip()
        if not seen_data:
            seen_data = True
            if first.lower() in _HEADER_WORDS:
                continue
        try:
            value = parse_hex(first)
        except InvalidHash as exc:
            bad.append((number, str(exc), line[:80]))
            continue
        if len(rest) > MAX_SOURCE_ID_CHARS:
            bad.append((number, f"source id longer than {MAX_SOURCE_ID_CHARS} characters", line[:80]))
            continue
        if not rest.isprintable():
            bad.append((number, "source id with control characters", line[:80]))
            continue
        hashes.append(value)
        source_ids.append(rest)
    if bad:
        raise BankFileError(source, bad)
    return hashes, source_ids


def _masks(radius: int) -> np.ndarray:
    """Every 16-bit value with at most `radius` bits set (0 first)."""
    values = [0]
    for r in range(1, radius + 1):
        values.extend(sum(1 << b for b in bits) for bits in combinations(range(16), r))
    return np.array(values, dtype=np.int64)


def _as_rows(hashes: np.ndarray | Sequence[str | bytes]) -> np.ndarray:
    """Hashes as a C-contiguous (n, 32) uint8 array."""
    if isinstance(hashes, np.ndarray):
        if hashes.dtype != np.uint8 or hashes.ndim != 2 or hashes.shape[1] != HASH_BYTES:
            raise ValueError(f"hashes as an (n, {HASH_BYTES}) uint8 array, not {hashes.dtype} {hashes.shape}")
        return np.ascontiguousarray(hashes)
    data = b"".join(to_bytes(h) for h in hashes)
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, HASH_BYTES).copy()


def _distances(xor: np.ndarray) -> np.ndarray:
    """Popcounts of (..., 4) uint64 XORs summed over the last axis (adding
    the four columns is several times faster than .sum(axis=-1))."""
    counts = np.bitwise_count(xor)
    return (counts[..., 0].astype(np.int64) + counts[..., 1] + counts[..., 2] + counts[..., 3])


class _Index:
    """The immutable multi-index over a fixed set of entries."""

    def __init__(self, hashes: np.ndarray, labels: np.ndarray) -> None:
        n = len(hashes)
        self.size = n
        self.hashes = hashes                          # (n, 32) uint8
        self.words = hashes.view(np.uint64)           # (n, 4): for XOR + popcount
        self.labels = labels                          # (n,) uint32 label ids
        self.order = np.empty(CHUNKS * n, dtype=np.uint32)          # per chunk: ids sorted by chunk value
        self.starts = np.zeros(CHUNKS * (CHUNK_VALUES + 1), dtype=np.uint32)  # per chunk: where each value starts
        if n == 0:
            return
        chunks = hashes.view(">u2")                   # (n, 16): the reference's words w[15]..w[0]
        for c in range(CHUNKS):
            column = chunks[:, c].astype(np.uint16)
            self.order[c * n:(c + 1) * n] = np.argsort(column, kind="stable")  # a radix sort for uint16
            base = c * (CHUNK_VALUES + 1)
            np.cumsum(np.bincount(column, minlength=CHUNK_VALUES),
                      out=self.starts[base + 1:base + CHUNK_VALUES + 1])

    @property
    def nbytes(self) -> int:
        return self.hashes.nbytes + self.labels.nbytes + self.order.nbytes + self.starts.nbytes

    def candidates(self, query: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(entry ids, query row) of every entry that shares a chunk within
        the masks' radius with a query row. Duplicates possible."""
        n = self.size
        if n == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        k = len(query)
        qchunks = query.view(">u2").astype(np.int64)                       # (k, 16)
        probes = qchunks[:, :, None] ^ masks[None, None, :]                 # (k, 16, P)
        chunk_of = np.broadcast_to(np.arange(CHUNKS, dtype=np.int64)[None, :, None], probes.shape)
        row_of = np.broadcast_to(np.arange(k, dtype=np.int64)[:, None, None], probes.shape)
        where = (chunk_of * (CHUNK_VALUES + 1) + probes).ravel()
        lo = self.starts[where].astype(np.int64)
        lens = self.starts[where + 1].astype(np.int64) - lo
        total = int(lens.sum())
        if total == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        begin = lo + chunk_of.ravel() * n                                   # into self.order
        offsets = np.cumsum(lens) - lens
        positions = np.repeat(begin - offsets, lens) + np.arange(total, dtype=np.int64)
        return self.order[positions].astype(np.int64), np.repeat(row_of.ravel(), lens)


@dataclass(frozen=True)
class _State:
    index: _Index
    recent_hashes: np.ndarray  # (capacity, 32) uint8; rows [0, recent_count) are entries
    recent_labels: np.ndarray  # (capacity,) uint32
    recent_count: int

    @property
    def size(self) -> int:
        return self.index.size + self.recent_count


def _empty_recent(capacity: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((capacity, HASH_BYTES), np.uint8), np.zeros(capacity, np.uint32)


class HashBanks:
    """Every loaded hash bank, in one searchable index. See the module doc."""

    def __init__(self, *, max_distance: int = DEFAULT_MAX_DISTANCE,
                 compact_threshold: int = DEFAULT_COMPACT_THRESHOLD, auto_compact: bool = True) -> None:
        if not 0 <= max_distance <= MAX_MAX_DISTANCE:
            raise ValueError(f"max_distance must be 0 to {MAX_MAX_DISTANCE}, not {max_distance}")
        if compact_threshold < 1:
            raise ValueError("compact_threshold must be at least 1")
        self.max_distance = max_distance
        self.compact_threshold = compact_threshold
        self.auto_compact = auto_compact
        self._masks: dict[int, np.ndarray] = {}
        self._labels: list[HashLabel] = []            # append-only: ids stay valid
        self._label_ids: dict[HashLabel, int] = {}
        # Entry i's source id. Entries keep their number for good: the index
        # holds entries 0..n-1 in order and the recent buffer the next ones,
        # and a rebuild appends the buffer to the index in order.
        self._source_ids: list[str] = []
        self._lock = threading.Lock()                 # writers only
        self._compact_lock = threading.Lock()         # one rebuild at a time
        self._compactor: threading.Thread | None = None
        hashes, labels = _empty_recent(64)
        self._state = _State(_Index(np.zeros((0, HASH_BYTES), np.uint8), np.zeros(0, np.uint32)),
                             hashes, labels, 0)

    # ------------------------------------------------------------ adding

    def _label_id(self, label: HashLabel) -> int:
        found = self._label_ids.get(label)
        if found is None:
            found = len(self._labels)
            self._labels.append(label)
            self._label_ids[label] = found
        return found

    @staticmethod
    def _check_label(bank: str, category: int) -> None:
        if not isinstance(bank, str) or not bank or len(bank) > 64 or not bank.isprintable():
            raise ValueError("a bank name is 1 to 64 printable characters")
        if not isinstance(category, int) or category <= 0:
            raise ValueError("a bank entry needs a category (a parley.v1.Category value other than UNSPECIFIED)")

    @staticmethod
    def _check_source_id(source_id: str) -> None:
        if not isinstance(source_id, str) or len(source_id) > MAX_SOURCE_ID_CHARS or not source_id.isprintable():
            raise ValueError(f"a source id is a string of at most {MAX_SOURCE_ID_CHARS} printable characters")

    def add(self, value: str | bytes, *, bank: str, category: int, source_id: str = "") -> None:
        """Add one hash (hex or 32 bytes); the next search sees it."""
        self.add_many([value], bank=bank, category=category, source_ids=[source_id])

    def add_many(self, hashes: np.ndarray | Sequence[str | bytes], *, bank: str, category: int,
                 source_ids: Sequence[str] | None = None) -> int:
        """Add hashes (an (n, 32) uint8 array, or hex strings or 32-byte
        values) with one bank and category, and a source id each (or none).
        All or nothing: a bad hash raises InvalidHash and adds none. Returns
        how many were added. A batch past the compaction threshold is indexed
        before this returns."""
        rows = _as_rows(hashes)
        n = len(rows)
        if source_ids is not None and len(source_ids) != n:
            raise ValueError(f"{n} hashes but {len(source_ids)} source ids")
        self._check_label(bank, category)
        if source_ids is not None:
            for source_id in source_ids:
                self._check_source_id(source_id)
        if n == 0:
            return 0
        with self._lock:
            label_ids = np.full(n, self._label_id(HashLabel(bank, category)), np.uint32)
            state = self._state
            count = state.recent_count
            buf_h, buf_l = state.recent_hashes, state.recent_labels
            if count + n > len(buf_h):
                # Grow into new buffers; readers of the old state keep the old ones.
                buf_h, buf_l = _empty_recent(max(2 * len(buf_h), count + n))
                buf_h[:count] = state.recent_hashes[:count]
                buf_l[:count] = state.recent_labels[:count]
            # Rows past a reader's recent_count are never read by it.
            buf_h[count:count + n] = rows
            buf_l[count:count + n] = label_ids
            # Before the state that makes the entries visible: a reader never
            # sees an entry without its source id.
            self._source_ids.extend(source_ids if source_ids is not None else [""] * n)
            self._state = _State(state.index, buf_h, buf_l, count + n)
            pending = count + n
        if pending >= self.compact_threshold:
            if n >= self.compact_threshold:
                self.compact()
            elif self.auto_compact:
                self._compact_in_background()
        return n

    def load_file(self, path: str | Path, *, bank: str, category: int) -> int:
        """Load a bank file (format in the module doc). All or nothing:
        BankFileError names every bad line. Returns the number of hashes."""
        path = Path(path)
        with path.open("rb") as f:
            hashes, source_ids = parse_bank_lines(f, source=str(path))
        count = self.add_many(hashes, bank=bank, category=category, source_ids=source_ids)
        log.info("hash bank loaded", extra={"bank": bank, "hashes": count, "path": str(path)})
        return count

    # ------------------------------------------------------------ compaction

    def compact(self) -> None:
        """Fold the recent entries into the index (a full rebuild: about a
        second per million entries). Searches go on meanwhile."""
        with self._compact_lock:
            snapshot = self._state
            k = snapshot.recent_count
            if k == 0:
                return
            index = _Index(np.concatenate([snapshot.index.hashes, snapshot.recent_hashes[:k]]),
                           np.concatenate([snapshot.index.labels, snapshot.recent_labels[:k]]))
            with self._lock:
                current = self._state
                # Entries added during the rebuild keep their places after the
                # first k (buffers only ever grow by copying their prefix).
                later = current.recent_count - k
                buf_h, buf_l = _empty_recent(max(64, 2 * later))
                buf_h[:later] = current.recent_hashes[k:current.recent_count]
                buf_l[:later] = current.recent_labels[k:current.recent_count]
                self._state = _State(index, buf_h, buf_l, later)

    def _compact_in_background(self) -> None:
        with self._lock:
            if self._compactor is not None and self._compactor.is_alive():
                return
            self._compactor = threading.Thread(target=self._compact_logged, name="hash-bank-compact", daemon=True)
            self._compactor.start()

    def _compact_logged(self) -> None:
        try:
            self.compact()
        except Exception:  # noqa: BLE001 - a failed rebuild leaves the recent buffer searched as it is
            log.exception("hash bank compaction failed; recent entries stay in the brute-force buffer")

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for a background compaction to end; True when none runs."""
        compactor = self._compactor
        if compactor is not None:
            compactor.join(timeout)
            return not compactor.is_alive()
        return True

    # ------------------------------------------------------------ searching

    def search(self, query: PdqHashes | np.ndarray | Sequence[str | bytes],
               max_distance: int | None = None) -> list[BankMatch]:
        """Every bank entry within `max_distance` (the bank's by default) of
        any of the query's hashes (usually a snapshot's eight dihedral
        hashes), each entry once with its closest query hash; closest first."""
        rows = query.hashes if isinstance(query, PdqHashes) else _as_rows(query)
        rows = np.ascontiguousarray(rows)
        limit = self.max_distance if max_distance is None else max_distance
        if not 0 <= limit <= MAX_MAX_DISTANCE:
            raise ValueError(f"max_distance must be 0 to {MAX_MAX_DISTANCE}, not {limit}")
        if len(rows) == 0:
            return []
        state = self._state                            # one read: a consistent view
        qwords = rows.view(np.uint64)                  # (k, 4)
        found_entries: list[np.ndarray] = []
        found_rows: list[np.ndarray] = []
        found_dist: list[np.ndarray] = []
        found_labels: list[np.ndarray] = []
        found_hashes: list[np.ndarray] = []

        index = state.index
        if index.size:
            entries, qrows = index.candidates(rows, self._masks_for(limit))
            if len(entries):
                dist = _distances(index.words[entries] ^ qwords[qrows])
                keep = dist <= limit
                entries = entries[keep]
                found_entries.append(entries)
                found_rows.append(qrows[keep])
                found_dist.append(dist[keep])
                found_labels.append(index.labels[entries])
                found_hashes.append(index.hashes[entries])
        k = state.recent_count
        if k:
            recent = state.recent_hashes[:k].view(np.uint64)  # (k, 4)
            dist = _distances(qwords[:, None, :] ^ recent[None, :, :])
            qrows, entries = np.nonzero(dist <= limit)
            found_entries.append(entries + index.size)     # ids after the index's
            found_rows.append(qrows.astype(np.int64))
            found_dist.append(dist[qrows, entries])
            found_labels.append(state.recent_labels[entries])
            found_hashes.append(state.recent_hashes[entries])
        if not found_entries:
            return []
        entries = np.concatenate(found_entries)
        if len(entries) == 0:
            return []
        qrows = np.concatenate(found_rows)
        dist = np.concatenate(found_dist)
        labels = np.concatenate(found_labels)
        hashes = np.concatenate(found_hashes)
        # Each entry once: its smallest distance, then the first dihedral.
        order = np.lexsort((qrows, dist, entries))
        first = np.ones(len(order), bool)
        first[1:] = entries[order][1:] != entries[order][:-1]
        picked = order[first]
        matches = {}
        for i in picked:
            label = self._labels[int(labels[i])]
            row = int(qrows[i])
            match = BankMatch(bank=label.bank, category=label.category,
                              source_id=self._source_ids[int(entries[i])],
                              bank_hash=hashes[i].tobytes().hex(), distance=int(dist[i]),
                              dihedral=DIHEDRALS[row] if row < len(DIHEDRALS) else str(row))
            key = (match.bank_hash, label, match.source_id)  # the same entry added twice counts once
            if key not in matches or matches[key].distance > match.distance:
                matches[key] = match
        return sorted(matches.values(), key=lambda m: (m.distance, m.bank, m.source_id, m.bank_hash))

    def _masks_for(self, max_distance: int) -> np.ndarray:
        radius = max_distance // CHUNKS
        masks = self._masks.get(radius)
        if masks is None:
            masks = self._masks[radius] = _masks(radius)
        return masks

    # ------------------------------------------------------------ introspection

    def __len__(self) -> int:
        return self._state.size

    def bank_sizes(self) -> dict[str, int]:
        """Entries per bank name."""
        state = self._state
        ids = np.concatenate([state.index.labels, state.recent_labels[:state.recent_count]])
        counts = np.bincount(ids, minlength=len(self._labels)) if len(ids) else np.zeros(0, np.int64)
        sizes: dict[str, int] = {}
        for label_id, count in enumerate(counts.tolist()):
            if count:
                bank = self._labels[label_id].bank
                sizes[bank] = sizes.get(bank, 0) + count
        return sizes

    @property
    def pending(self) -> int:
        """Entries in the brute-force buffer, not yet in the index."""
        return self._state.recent_count

    def memory_bytes(self) -> int:
        """Bytes of the index's arrays, the recent buffer and the source-id
        list's pointers (8 per entry); the source-id strings themselves (about
        50 bytes each when a file gives them) are not counted."""
        state = self._state
        return (state.index.nbytes + state.recent_hashes.nbytes + state.recent_labels.nbytes
                + sys.getsizeof(self._source_ids))
