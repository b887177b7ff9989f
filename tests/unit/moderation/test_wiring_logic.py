"""The pure parts of moderation's wiring: which acks the chat-line consumer
sends (one `multiple` for many, never one the broker would not know), the
hash bank setting, run-time bank additions, snapshot hashes attached to a
report, and parley-modctl's bank commands."""
from __future__ import annotations

import pytest

from parley.v1 import common_pb2 as c
from parley.v1 import events_pb2
from services.moderation import cli, review
from services.moderation.bank_sync import InvalidAddition, check_addition
from services.moderation.batching import _Acks
from services.moderation.consumers import attach_snapshot_hashes
from services.moderation.settings import BankFile, parse_hash_banks
from services.runtime.settings import SettingsError

HASH = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def broker_acks(sends, delivered: int) -> set[int]:
    """What a broker makes of the acks: every tag acked once, or an error
    (an ack of a tag it does not hold unacked closes the channel)."""
    unacked = set(range(1, delivered + 1))
    for tag, multiple in sends:
        assert tag in unacked, f"unknown delivery tag {tag}"
        if multiple:
            unacked -= {t for t in unacked if t <= tag}
        else:
            unacked.discard(tag)
    return set(range(1, delivered + 1)) - unacked


# ---------------------------------------------------------------- acks

def test_contiguous_deliveries_are_acked_with_one_frame():
    acks = _Acks(channel=None)
    acks.mark(range(1, 101))
    sends = acks.sends()
    assert sends == [(100, True)]
    acks.mark(range(101, 151))
    assert acks.sends() == [(150, True)]
    assert broker_acks([(100, True), (150, True)], 150) == set(range(1, 151))


def test_deliveries_behind_one_not_done_wait_for_it_then_one_frame_acks_all():
    acks = _Acks(channel=None, max_waiting=1000, patience=60)
    acks.mark([1, 2, 4, 5, 6])
    first = acks.sends()
    assert first == [(2, True)]           # 3 is not done: 4..6 wait
    acks.mark([3])
    second = acks.sends()
    assert second == [(6, True)]
    assert broker_acks(first + second, 6) == {1, 2, 3, 4, 5, 6}


def test_deliveries_waiting_too_long_are_acked_one_by_one_and_the_gap_closes_later():
    acks = _Acks(channel=None, max_waiting=2, patience=60)
    acks.mark([1, 3, 4, 5])                 # 2 is held up (its dead-letter copy, say)
    first = acks.sends()
    assert first == [(1, True), (3, False), (4, False), (5, False)]
    acks.mark([6, 7])
    assert acks.sends() == []               # still behind 2: these wait, up to the limit again
    acks.mark([8])
    second = acks.sends()
    assert second == [(6, False), (7, False), (8, False)]
    acks.mark([2, 9])
    third = acks.sends()
    assert third == [(9, True)]             # covers 2 and 9; 3..8 were acked already
    assert broker_acks(first + second + third, 9) == set(range(1, 10))


def test_patience_runs_out():
    acks = _Acks(channel=None, max_waiting=1000, patience=0.0)
    acks.mark([2, 3])
    assert acks.sends() == [(2, False), (3, False)]


# ---------------------------------------------------------------- hash banks

def test_the_hash_banks_setting():
    assert parse_hash_banks("") == []
    assert parse_hash_banks("ncmec=/banks/ncmec.txt, internal:child_safety=/b/internal.csv\nx:CATEGORY_SPAM = /p") == [
        BankFile("ncmec", c.CATEGORY_KNOWN_BAD_HASH, "/banks/ncmec.txt"),
        BankFile("internal", c.CATEGORY_CHILD_SAFETY, "/b/internal.csv"),
        BankFile("x", c.CATEGORY_SPAM, "/p")]
    assert parse_hash_banks("odd=/path:with=signs")[0].path == "/path:with=signs"


@pytest.mark.parametrize("text, problem", [
    ("no-path", "expected NAME[:CATEGORY]=PATH"),
    ("name=", "expected NAME[:CATEGORY]=PATH"),
    ("bad name=/p", "a bank name is"),
    ("n:nonsense=/p", "unknown category 'nonsense'"),
    ("n:unspecified=/p", "unknown category"),
    ("a=/p, a=/q", "named twice"),
])
def test_a_bad_hash_banks_setting_names_the_variable_and_the_entry(text, problem):
    with pytest.raises(SettingsError) as error:
        parse_hash_banks(text)
    assert "PARLEY_MODERATION_HASH_BANKS" in str(error.value) and problem in str(error.value)


def test_run_time_additions_are_checked_before_anything_is_stored():
    category, hashes, ids = check_addition("internal", c.CATEGORY_UNSPECIFIED, [HASH.upper()], [])
    assert (category, hashes, ids) == (c.CATEGORY_KNOWN_BAD_HASH, [HASH], [""])
    assert check_addition("b", c.CATEGORY_CHILD_SAFETY, [HASH], ["item-1"])[2] == ["item-1"]
    for bank, hashes, ids, problem in (("", [HASH], [], "bank name"), ("b", [], [], "no hashes"),
                                       ("b", ["12ab"], [], "hash 1"), ("b", [HASH, HASH], ["one"], "source ids"),
                                       ("b", [HASH], ["\n"], "source id")):
        with pytest.raises(InvalidAddition, match=problem):
            check_addition(bank, c.CATEGORY_KNOWN_BAD_HASH, hashes, ids)


# ---------------------------------------------------------------- reports

def test_a_report_gets_the_snapshot_hashes_it_lacks():
    report = events_pb2.ReportFiled(report_id="r", snapshot_hashes=["pdq:aa"])
    enriched = attach_snapshot_hashes(report, ["sha256:11", "pdq:aa", "pdq:bb"])
    assert list(enriched.snapshot_hashes) == ["pdq:aa", "sha256:11", "pdq:bb"]
    assert list(report.snapshot_hashes) == ["pdq:aa"]  # the event itself is left as it came
    assert attach_snapshot_hashes(report, []) is report
    full = events_pb2.ReportFiled(snapshot_hashes=[f"h{i}" for i in range(review.MAX_SNAPSHOT_HASHES)])
    assert attach_snapshot_hashes(full, ["pdq:new"]) is full  # never past what the queue takes


# ---------------------------------------------------------------- parley-modctl

def test_modctl_bank_commands(tmp_path):
    parser = cli.build_parser()
    args = parser.parse_args(["bank", "add", "--bank", "internal", "--reason", "case 9", HASH])
    assert cli.bank_hashes(args) == ([HASH], [])
    assert args.category == c.CATEGORY_KNOWN_BAD_HASH
    listing = tmp_path / "bank.txt"
    listing.write_text(f"# from case 9\nhash,source\n{HASH},item-1\n")
    args = parser.parse_args(["bank", "add", "--bank", "internal", "--reason", "r", "--file", str(listing),
                              "--category", "child_safety"])
    assert cli.bank_hashes(args) == ([HASH], ["item-1"]) and args.category == c.CATEGORY_CHILD_SAFETY
    for argv in (["bank", "add", "--bank", "b", "--reason", "r"],
                 ["bank", "add", "--bank", "b", "--reason", "r", "--file", str(listing), HASH]):
        with pytest.raises(cli.UsageError):
            cli.bank_hashes(parser.parse_args(argv))
    listing.write_text("not a hash\n")
    with pytest.raises(cli.UsageError, match="line 1"):
        cli.bank_hashes(parser.parse_args(["bank", "add", "--bank", "b", "--reason", "r", "--file", str(listing)]))
    assert parser.parse_args(["bank", "list"]).bank_command == "list"
