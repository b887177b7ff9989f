"""The custody log's hash chain and the vault check, on records in memory."""
from __future__ import annotations

import dataclasses
import hashlib

import pytest

from services.moderation import custody
from services.moderation.custody import Entry, StoredBlob, StoredEntry


def build_chain(actions) -> list[StoredEntry]:
    """(action, sha256) pairs -> a chain as the store writes it."""
    chain, prev = [], custody.GENESIS
    for seq, (action, sha) in enumerate(actions, 1):
        entry = Entry(seq=seq, at_ms=1_700_000_000_000 + seq, actor="intake", action=action,
                      item_id="item-1", sha256=sha, detail={"n": seq, "text": "ünï"})
        entry_hash = custody.chain_hash(prev, entry)
        chain.append(StoredEntry(entry, prev, entry_hash))
        prev = entry_hash
    return chain


def blob(content: bytes) -> StoredBlob:
    return StoredBlob(custody.sha256_hex(content), len(content), content)


A, B = blob(b"report evidence"), blob(b"\xff\xd8 a jpeg")
CHAIN = build_chain([(custody.STORED, A.sha256), (custody.LINKED, A.sha256), (custody.STORED, B.sha256),
                     (custody.LINKED, B.sha256), (custody.VIEWED, None)])
HEAD = (len(CHAIN), CHAIN[-1].entry_hash)


def test_the_entry_hash_is_sha256_of_the_previous_hash_and_the_canonical_entry():
    first = CHAIN[0]
    expected = hashlib.sha256(bytes(32) + first.entry.canonical()).hexdigest()
    assert first.prev_hash == custody.GENESIS and first.entry_hash == expected
    assert CHAIN[1].prev_hash == first.entry_hash
    assert CHAIN[1].entry_hash == hashlib.sha256(bytes.fromhex(first.entry_hash) + CHAIN[1].entry.canonical()
                                                ).hexdigest()


def test_the_canonical_form_does_not_depend_on_key_order():
    one = Entry(1, 5, "a", "viewed", None, None, {"b": 1, "a": [1, 2]})
    two = Entry(1, 5, "a", "viewed", None, None, {"a": [1, 2], "b": 1})
    assert one.canonical() == two.canonical()
    assert b" " not in one.canonical()


def test_an_intact_vault_verifies():
    result = custody.verify(CHAIN, [A, B], HEAD)
    assert result.ok and result.problem == ""
    assert (result.entries_checked, result.blobs_checked, result.head_hash) == (5, 2, HEAD[1])


def test_an_empty_vault_verifies():
    assert custody.verify([], [], (0, custody.GENESIS)).ok


def test_an_altered_entry_is_named():
    altered = list(CHAIN)
    altered[2] = dataclasses.replace(CHAIN[2], entry=dataclasses.replace(CHAIN[2].entry, actor="mallory"))
    result = custody.verify(altered, [A, B], HEAD)
    assert not result.ok and result.first_broken_seq == 3
    assert "entry 3" in result.problem and "altered" in result.problem


def test_an_entry_rewritten_with_a_fresh_hash_breaks_the_next_link():
    forged = dataclasses.replace(CHAIN[1].entry, detail={"n": 99})
    rewritten = list(CHAIN)
    rewritten[1] = StoredEntry(forged, CHAIN[1].prev_hash, custody.chain_hash(CHAIN[1].prev_hash, forged))
    result = custody.verify(rewritten, [A, B], HEAD)
    assert not result.ok and result.first_broken_seq == 3 and "previous-entry hash" in result.problem


def test_a_deleted_entry_is_named():
    result = custody.verify(CHAIN[:1] + CHAIN[2:], [A, B], HEAD)
    assert not result.ok and result.first_broken_seq == 2 and "missing" in result.problem


def test_a_cut_tail_is_caught_by_the_head():
    result = custody.verify(CHAIN[:3], [A, B], HEAD)
    assert not result.ok and result.first_broken_seq == 4 and "cut" in result.problem


def test_an_altered_blob_is_named():
    tampered = StoredBlob(B.sha256, B.size, b"\xff\xd8 another jpeg")
    result = custody.verify(CHAIN, [A, tampered], HEAD)
    assert not result.ok and result.broken_blob_sha256 == B.sha256 and "altered" in result.problem


def test_a_missing_blob_is_named_and_a_stray_one_too():
    result = custody.verify(CHAIN, [A], HEAD)
    assert not result.ok and result.broken_blob_sha256 == B.sha256 and "missing" in result.problem
    stray = blob(b"slipped in")
    result = custody.verify(CHAIN, [A, B, stray], HEAD)
    assert not result.ok and result.broken_blob_sha256 == stray.sha256 and "never stored" in result.problem


def test_a_purge_recorded_in_the_chain_keeps_it_verifiable():
    chain = build_chain([(custody.STORED, A.sha256), (custody.LINKED, A.sha256),
                         (custody.UNLINKED, A.sha256), (custody.PURGED, A.sha256), (custody.CASE_PURGED, None)])
    assert custody.verify(chain, [], (5, chain[-1].entry_hash)).ok
    # the same bytes stored again after the purge must be present again
    chain = build_chain([(custody.STORED, A.sha256), (custody.PURGED, A.sha256), (custody.STORED, A.sha256)])
    assert not custody.verify(chain, [], (3, chain[-1].entry_hash)).ok
    assert custody.verify(chain, [A], (3, chain[-1].entry_hash)).ok


@pytest.mark.parametrize("bad_detail", ["not json {", ["a", "list"]])
def test_an_unreadable_detail_fails_as_altered(bad_detail):
    altered = list(CHAIN)
    altered[0] = dataclasses.replace(CHAIN[0], entry=dataclasses.replace(CHAIN[0].entry, detail=bad_detail))
    result = custody.verify(altered, [A, B], HEAD)
    assert not result.ok and result.first_broken_seq == 1
