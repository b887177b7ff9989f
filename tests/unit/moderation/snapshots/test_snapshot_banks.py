"""Hash banks: the multi-index search finds exactly what brute force finds
(distance 31 in, 32 out, through any of the eight dihedral hashes), adds at
run time are seen at once and survive compaction, and bank files load all or
nothing with the bad lines named."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from parley.v1 import common_pb2
from services.moderation.snapshots import (
    DIHEDRALS, BankFileError, HashBanks, InvalidHash, PdqHashes, parse_bank_lines)
from tests.unit.moderation.snapshots.snapshot_helpers import brute_force, flip_bits, random_hashes

KNOWN_BAD = common_pb2.CATEGORY_KNOWN_BAD_HASH
CHILD_SAFETY = common_pb2.CATEGORY_CHILD_SAFETY


def _bank(n: int = 20_000, seed: int = 1, **options) -> tuple[HashBanks, np.ndarray]:
    rows = random_hashes(n, seed)
    banks = HashBanks(**options)
    banks.add_many(rows, bank="random", category=KNOWN_BAD,
                   source_ids=[f"r{i}" for i in range(n)])
    return banks, rows


def _query(seed: int) -> np.ndarray:
    return random_hashes(8, 1000 + seed)


# ---------------------------------------------------------------- distance edges

@pytest.mark.parametrize("slot", range(8))
def test_exact_match_through_any_dihedral(slot):
    banks, rows = _bank()
    query = _query(slot)
    query[slot] = rows[123]
    matches = banks.search(query)
    assert [(m.source_id, m.distance, m.dihedral) for m in matches] == [("r123", 0, DIHEDRALS[slot])]
    assert matches[0].bank == "random" and matches[0].category == KNOWN_BAD
    assert matches[0].bank_hash == rows[123].tobytes().hex()


@pytest.mark.parametrize("seed", range(8))
def test_distance_31_is_found_and_32_is_not(seed):
    banks, rows = _bank()
    slot = seed % 8
    at_31 = _query(seed)
    at_31[slot] = np.frombuffer(flip_bits(rows[77], 31, seed), np.uint8)
    assert [(m.source_id, m.distance) for m in banks.search(at_31)] == [("r77", 31)]
    at_32 = _query(seed)
    at_32[slot] = np.frombuffer(flip_bits(rows[77], 32, seed), np.uint8)
    assert banks.search(at_32) == []


def test_worst_case_for_the_index_31_bits_spread_two_per_chunk_but_one():
    """Every 16-bit chunk differs in 2 bits except one that differs in 1:
    the only chunk the index can find it by."""
    banks, rows = _bank()
    value = bytearray(rows[5].tobytes())
    for chunk in range(16):
        bits = [0] if chunk == 9 else [0, 7]
        for bit in bits:
            value[2 * chunk] ^= 1 << bit
    query = _query(3)
    query[4] = np.frombuffer(bytes(value), np.uint8)
    assert [(m.source_id, m.distance, m.dihedral) for m in banks.search(query)] == [("r5", 31, "flipx")]


def test_closest_dihedral_is_reported_and_each_entry_once():
    banks, rows = _bank()
    query = _query(0)
    query[2] = np.frombuffer(flip_bits(rows[9], 20, 1), np.uint8)
    query[6] = np.frombuffer(flip_bits(rows[9], 3, 2), np.uint8)
    assert [(m.source_id, m.distance, m.dihedral) for m in banks.search(query)] == [("r9", 3, "flip_plus1")]


@pytest.mark.parametrize("max_distance", [0, 15, 16, 31, 40, 50])
def test_index_equals_brute_force(max_distance):
    banks, rows = _bank(5_000, seed=2)
    rng = np.random.default_rng(max_distance)
    for trial in range(12):
        query = _query(trial)
        for slot in rng.choice(8, size=3, replace=False):
            target = int(rng.integers(len(rows)))
            flips = int(rng.integers(max(0, max_distance - 3), max_distance + 3))
            query[slot] = np.frombuffer(flip_bits(rows[target], flips, trial), np.uint8)
        expected = brute_force(rows, query, max_distance)
        got = {int(m.source_id[1:]): m.distance for m in banks.search(query, max_distance=max_distance)}
        assert got == expected


def test_results_are_sorted_closest_first_and_accept_hex_and_pdq_hashes():
    banks, rows = _bank(1_000)
    hexes = [flip_bits(rows[i], d, i).hex() for i, d in [(1, 30), (2, 4), (3, 17)]]
    matches = banks.search(hexes)
    assert [(m.source_id, m.distance) for m in matches] == [("r2", 4), ("r3", 17), ("r1", 30)]
    assert [m.dihedral for m in matches] == ["rotate90", "rotate180", "original"]
    assert banks.search(PdqHashes.from_hex(hexes[:1]))[0].source_id == "r1"


def test_empty_banks_match_nothing():
    assert HashBanks().search(_query(0)) == []
    assert len(HashBanks()) == 0


# ---------------------------------------------------------------- adding at run time

def test_added_at_run_time_is_found_at_once_then_after_compaction():
    banks, _rows = _bank(auto_compact=False)
    new = random_hashes(1, 99)[0].tobytes()
    query = _query(1)
    query[7] = np.frombuffer(flip_bits(new, 10), np.uint8)
    assert banks.search(query) == []
    banks.add(new.hex(), bank="moderators", category=CHILD_SAFETY, source_id="case-42")
    assert banks.pending == 1
    match, = banks.search(query)
    assert (match.bank, match.category, match.source_id, match.distance, match.dihedral) == \
        ("moderators", CHILD_SAFETY, "case-42", 10, "flip_minus1")
    banks.compact()
    assert banks.pending == 0
    assert banks.search(query) == [match]
    assert banks.bank_sizes() == {"random": 20_000, "moderators": 1}


def test_background_compaction_keeps_every_entry_findable():
    banks = HashBanks(compact_threshold=50)
    rows = random_hashes(400, 5)
    for i, row in enumerate(rows):
        banks.add(row.tobytes(), bank="b", category=KNOWN_BAD, source_id=str(i))
    assert banks.wait_idle(timeout=10)
    banks.compact()
    assert banks.pending == 0 and len(banks) == 400
    for i in range(0, 400, 37):
        assert [m.source_id for m in banks.search(rows[i:i + 1])] == [str(i)]


def test_concurrent_adds_and_searches_never_lose_an_entry():
    banks, _rows = _bank(10_000, compact_threshold=64)
    new = random_hashes(600, 6)
    added = 0
    failures: list[str] = []

    def writer() -> None:
        nonlocal added
        for i, row in enumerate(new):
            banks.add(row.tobytes(), bank="live", category=KNOWN_BAD, source_id=f"n{i}")
            added = i + 1

    thread = threading.Thread(target=writer)
    thread.start()
    rng = np.random.default_rng(0)
    while thread.is_alive():
        seen = added  # everything added before this search must be found
        if seen == 0:
            continue
        i = int(rng.integers(seen))
        if [m.source_id for m in banks.search(new[i:i + 1])] != [f"n{i}"]:
            failures.append(f"n{i} missing with {seen} added")
    thread.join()
    banks.wait_idle(timeout=10)
    assert added == len(new)
    assert not failures
    assert len(banks) == 10_600
    assert all([m.source_id for m in banks.search(new[i:i + 1])] == [f"n{i}"] for i in range(0, 600, 29))


async def test_add_from_an_event_loop_while_searches_run_in_threads():
    banks, _rows = _bank(5_000)
    new = random_hashes(50, 8)
    for i, row in enumerate(new):
        banks.add(row.tobytes(), bank="live", category=KNOWN_BAD, source_id=f"a{i}")
        found = await asyncio.to_thread(banks.search, new[i:i + 1])
        assert [m.source_id for m in found] == [f"a{i}"]


def test_bad_adds_raise_and_add_nothing():
    banks = HashBanks()
    with pytest.raises(InvalidHash):
        banks.add_many(["0" * 64, "xyz"], bank="b", category=KNOWN_BAD)
    with pytest.raises(ValueError):
        banks.add("0" * 64, bank="", category=KNOWN_BAD)
    with pytest.raises(ValueError):
        banks.add("0" * 64, bank="b", category=common_pb2.CATEGORY_UNSPECIFIED)
    with pytest.raises(ValueError):
        banks.add("0" * 64, bank="b", category=KNOWN_BAD, source_id="a\nb")
    with pytest.raises(ValueError):
        banks.add_many(["0" * 64], bank="b", category=KNOWN_BAD, source_ids=["x", "y"])
    with pytest.raises(ValueError):
        HashBanks(max_distance=64)
    assert len(banks) == 0


def test_duplicate_entries_match_once():
    banks = HashBanks()
    banks.add("ab" * 32, bank="b", category=KNOWN_BAD, source_id="s")
    banks.add("ab" * 32, bank="b", category=KNOWN_BAD, source_id="s")
    assert len(banks.search(["ab" * 32])) == 1


def test_memory_is_about_110_bytes_per_hash():
    banks, _rows = _bank(20_000)
    per_hash = (banks.memory_bytes() - 16 * 65537 * 4) / 20_000
    assert 100 <= per_hash <= 120


# ---------------------------------------------------------------- bank files

GOOD = """\
# known-bad hashes, one per line
hash,source_id
f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22
D8F8F0CCE0F4A84F0E370A22028F67F0B36E2ED596623E1D33E6B39C4E9C9B22,item-1234

0000000000000000ffffffffffffffff0000000000000000ffffffffffffffff\titem 77
  1111111111111111111111111111111111111111111111111111111111111111   spaced id
"""


def test_load_file_with_header_comments_blank_lines_and_separators(tmp_path):
    path = tmp_path / "bank.txt"
    path.write_text(GOOD)
    banks = HashBanks()
    assert banks.load_file(path, bank="ncmec", category=CHILD_SAFETY) == 4
    assert banks.bank_sizes() == {"ncmec": 4}
    found = banks.search(["d8f8f0cce0f4a84f0e370a22028f67f0b36e2ed596623e1d33e6b39c4e9c9b22"])
    # the first line's hash is 6 bits away from this one: a match too
    assert [(m.source_id, m.distance, m.category) for m in found] == [("item-1234", 0, CHILD_SAFETY),
                                                                      ("", 6, CHILD_SAFETY)]
    assert banks.search(["0000000000000000ffffffffffffffff0000000000000000ffffffffffffffff"])[0].source_id == "item 77"
    assert banks.search(["1" * 64])[0].source_id == "spaced id"
    assert banks.search(["f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"], max_distance=0)[0].source_id == ""


def test_load_file_with_bad_lines_loads_nothing_and_names_every_bad_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(
        ("a" * 64 + "\n"               # 1 good
         + "a" * 63 + "\n"             # 2 too short
         + "zz" * 32 + ",x\n"          # 3 not hex
         + "b" * 64 + "\n").encode()    # 4 good
        + b"\xff\xfe" + b"c" * 62 + b"\n"  # 5 not UTF-8
        + ("d" * 64 + "," + "i" * 300 + "\n").encode())  # 6 source id too long
    banks = HashBanks()
    banks.add("e" * 64, bank="earlier", category=KNOWN_BAD)
    with pytest.raises(BankFileError) as caught:
        banks.load_file(path, bank="ncmec", category=CHILD_SAFETY)
    error = caught.value
    assert [n for n, _reason, _text in error.bad_lines] == [2, 3, 5, 6]
    message = str(error)
    assert str(path) in message and "4 bad line(s), nothing loaded" in message
    assert "line 2: a PDQ hash has 64 hex digits, this has 63" in message
    assert "line 3: a PDQ hash has only hex digits" in message
    assert "line 5: not UTF-8 text" in message
    assert "line 6: source id longer than 256 characters" in message
    assert banks.bank_sizes() == {"earlier": 1}  # all or nothing
    assert banks.search(["a" * 64]) == []


def test_bad_line_message_shows_five_and_counts_the_rest():
    with pytest.raises(BankFileError) as caught:
        parse_bank_lines(["nope"] * 8, source="list")
    assert "8 bad line(s)" in str(caught.value) and "(and 3 more)" in str(caught.value)
    assert len(caught.value.bad_lines) == 8


def test_a_header_is_only_allowed_first():
    with pytest.raises(BankFileError):
        parse_bank_lines(["a" * 64, "hash,label"])
    assert parse_bank_lines(["\ufeffpdq", "a" * 64]) == ([b"\xaa" * 32], [""])


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        HashBanks().load_file(tmp_path / "absent.txt", bank="b", category=KNOWN_BAD)
