"""The hash banks one moderation replica matches snapshots against: the files
named by PARLEY_MODERATION_HASH_BANKS, loaded at start, and the hashes
moderators add at run time (AddBankHashes, `parley-modctl bank add`).

A run-time addition is stored first (with its audit entry) and then taken in
from the store: at once by the replica that took the call, within
PARLEY_MODERATION_BANK_SYNC_INTERVAL_SECONDS by the others (they read the
rows after the last one they have), and by every replica at start. So
additions survive restarts and reach every replica, whichever one a
moderator's call lands on."""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass

from parley.v1 import common_pb2
from services.moderation.metrics import ModerationMetrics
from services.moderation.settings import HASH_BANKS_VARIABLE, BankFile
from services.moderation.snapshots import BankFileError, HashBanks, InvalidHash, parse_hex
from services.moderation.store import ReviewStore
from services.runtime.settings import SettingsError

log = logging.getLogger(__name__)

MAX_HASHES_PER_CALL = 10_000
MAX_SOURCE_ID_CHARS = 256
MAX_BANK_CHARS = 64


class InvalidAddition(ValueError):
    """An AddBankHashes request that cannot be applied (nothing is stored)."""


@dataclass(frozen=True)
class BankInfo:
    name: str
    size: int
    added_at_run_time: int
    source: str


def check_addition(bank: str, category: int, hashes, source_ids) -> tuple[int, list[str], list[str]]:
    """(category, hashes as lowercase hex, source ids), or InvalidAddition."""
    if not bank or len(bank) > MAX_BANK_CHARS or not bank.isprintable() or bank != bank.strip():
        raise InvalidAddition(f"a bank name is 1 to {MAX_BANK_CHARS} printable characters")
    if category == common_pb2.CATEGORY_UNSPECIFIED:
        category = common_pb2.CATEGORY_KNOWN_BAD_HASH
    if category not in common_pb2.Category.values():
        raise InvalidAddition(f"unknown category {category}")
    if not hashes:
        raise InvalidAddition("no hashes")
    if len(hashes) > MAX_HASHES_PER_CALL:
        raise InvalidAddition(f"{len(hashes)} hashes, at most {MAX_HASHES_PER_CALL} a call")
    if source_ids and len(source_ids) != len(hashes):
        raise InvalidAddition(f"{len(hashes)} hashes but {len(source_ids)} source ids (give none or one each)")
    values = []
    for number, text in enumerate(hashes, start=1):
        try:
            values.append(parse_hex(text).hex())
        except InvalidHash as exc:
            raise InvalidAddition(f"hash {number}: {exc}") from None
    ids = list(source_ids) if source_ids else [""] * len(values)
    for source_id in ids:
        if len(source_id) > MAX_SOURCE_ID_CHARS or not source_id.isprintable():
            raise InvalidAddition(f"a source id is at most {MAX_SOURCE_ID_CHARS} printable characters")
    return category, values, ids


class BankRegistry:
    def __init__(self, banks: HashBanks, store: ReviewStore, files: list[BankFile],
                 metrics: ModerationMetrics) -> None:
        self.banks = banks
        self.store = store
        self.files = files
        self.metrics = metrics
        self.sources = {f.bank: f.path for f in files}
        self.runtime = Counter()
        self.last_id = 0
        self._lock = asyncio.Lock()

    async def load_files(self) -> None:
        """Load every configured file (in a thread: a large bank takes
        seconds). A missing or bad file stops the service: matching against
        half a bank would miss what the rest holds, silently."""
        for bank_file in self.files:
            try:
                count = await asyncio.to_thread(self.banks.load_file, bank_file.path, bank=bank_file.bank,
                                                category=bank_file.category)
            except (BankFileError, OSError, ValueError) as exc:
                raise SettingsError(f"bad moderation configuration:\n  {HASH_BANKS_VARIABLE}: bank "
                                    f"{bank_file.bank!r} ({bank_file.path}): {exc}") from None
            log.info("hash bank file loaded", extra={"bank": bank_file.bank, "path": bank_file.path,
                                                     "hashes": count})
        self._gauges()

    async def sync(self) -> int:
        """Take in the run-time additions stored since the last sync."""
        taken = 0
        async with self._lock:
            while True:
                rows = await self.store.bank_hashes_after(self.last_id)
                if not rows:
                    break
                start = 0
                for end in range(1, len(rows) + 1):
                    if end == len(rows) or (rows[end].bank, rows[end].category) != (rows[start].bank,
                                                                                    rows[start].category):
                        group = rows[start:end]
                        self.banks.add_many([r.hash for r in group], bank=group[0].bank,
                                            category=group[0].category, source_ids=[r.source_id for r in group])
                        self.runtime[group[0].bank] += len(group)
                        start = end
                taken += len(rows)
                self.last_id = rows[-1].id
        if taken:
            self.metrics.bank_additions.inc(taken)
            self._gauges()
            log.info("hash bank additions taken in", extra={"hashes": taken, "last_id": self.last_id})
        return taken

    async def add(self, bank: str, category: int, hashes, source_ids, actor: str, role: str,
                  reason: str) -> tuple[int, int]:
        """Store an addition and take it in here at once: (added, bank size)."""
        category, values, ids = check_addition(bank, category, list(hashes), list(source_ids))
        added = await self.store.add_bank_hashes(bank, category, values, ids, actor, role, reason)
        await self.sync()
        return added, self.banks.bank_sizes().get(bank, 0)

    def listing(self) -> list[BankInfo]:
        sizes = self.banks.bank_sizes()
        names = sorted(set(sizes) | set(self.sources))
        return [BankInfo(name, sizes.get(name, 0), self.runtime.get(name, 0), self.sources.get(name, ""))
                for name in names]

    def _gauges(self) -> None:
        for name, size in self.banks.bank_sizes().items():
            self.metrics.hash_bank_entries.labels(name).set(size)
