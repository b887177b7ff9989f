"""parley-modctl's own parsing and output (the calls are tested against the
real service in tests/integration/moderation)."""
from __future__ import annotations

import argparse
import hashlib
import io

import pytest

from parley.v1 import common_pb2 as c
from parley.v1 import moderation_pb2 as m
from services.moderation import auth, cli


@pytest.mark.parametrize("text, seconds", [
    ("0", 0), ("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("2w", 1209600),
    ("permanent", 0), (" 24H ", 86400),
])
def test_durations(text, seconds):
    assert cli.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "90", "-1h", "1.5h", "1y", "h", "forever"])
def test_bad_durations(text):
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_duration(text)


def test_decide_arguments_map_to_the_api():
    args = cli.build_parser().parse_args(
        ["decide", "item-1", "--action", "ban", "--duration", "24h", "--category", "child-safety",
         "--note", "clear case"])
    assert (args.action, args.duration, args.category, args.note) == (
        "ban", 86400, c.CATEGORY_CHILD_SAFETY, "clear case")


def test_a_decision_needs_a_note(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["decide", "item-1", "--action", "warn"])
    assert exit_info.value.code == 2 and "--note" in capsys.readouterr().err


def test_list_defaults_to_open_items_and_filters():
    parser = cli.build_parser()
    assert parser.parse_args(["list"]).status == m.REVIEW_STATUS_OPEN
    assert parser.parse_args(["list", "--all"]).status == m.REVIEW_STATUS_UNSPECIFIED
    assert parser.parse_args(["list", "--claimed"]).status == m.REVIEW_STATUS_CLAIMED
    assert parser.parse_args(["list", "--decided"]).status == m.REVIEW_STATUS_DECIDED
    args = parser.parse_args(["list", "--category", "spam", "--kind", "evader", "--min-priority", "4000"])
    assert (args.category, cli.KINDS[args.kind], args.min_priority) == (
        c.CATEGORY_SPAM, m.REVIEW_ITEM_KIND_SUSPECTED_EVADER, 4000)


def test_a_ban_without_duration_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["decide", "item-1", "--action", "ban", "--note", "x"])
    assert exit_info.value.code == 2
    assert "--duration" in capsys.readouterr().err


# ---------------------------------------------------------------- the token

def _args(*argv):
    return cli.build_parser().parse_args([*argv, "whoami"])


def test_the_token_comes_from_the_option_then_the_variable_then_the_variable_file(tmp_path):
    option, variable_file = tmp_path / "option", tmp_path / "variable"
    option.write_text("from-option\n")
    variable_file.write_text(" from-variable-file \n")
    assert cli.read_token(_args("--token-file", str(option)), {"PARLEY_MODCTL_TOKEN": "v"}) == "from-option"
    assert cli.read_token(_args(), {"PARLEY_MODCTL_TOKEN": "from-variable",
                                    "PARLEY_MODCTL_TOKEN_FILE": str(variable_file)}) == "from-variable"
    assert cli.read_token(_args(), {"PARLEY_MODCTL_TOKEN_FILE": str(variable_file)}) == "from-variable-file"


def test_no_token_is_a_usage_error_that_says_what_to_set(tmp_path, capsys):
    with pytest.raises(cli.UsageError, match="PARLEY_MODCTL_TOKEN"):
        cli.read_token(_args(), {})
    with pytest.raises(cli.UsageError, match="cannot read"):
        cli.read_token(_args("--token-file", str(tmp_path / "missing")), {})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(cli.UsageError, match="empty"):
        cli.read_token(_args("--token-file", str(empty)), {})


def test_token_new_prints_a_token_and_its_configuration_line(capsys):
    assert cli.main(["token", "new", "--name", "alice", "--role", "child_safety"]) == 0
    out = capsys.readouterr().out.splitlines()
    token, line = out[1].strip(), out[3].strip()
    assert auth.parse_entries(line, "x") == {auth.token_digest(token): auth.Principal("alice", "child_safety")}


def test_token_hash_reads_stdin():
    args = cli.build_parser().parse_args(["token", "hash"])
    assert cli.token_command(args, io.StringIO("abc\n")) == hashlib.sha256(b"abc").hexdigest()


# ---------------------------------------------------------------- export files

def _parts(blob_content=b"\xff\xd8jpeg", claimed_sha=None):
    sha = hashlib.sha256(blob_content).hexdigest()
    return [m.ExportPart(package_json='{"case_id": "item-1"}'),
            m.ExportPart(blob=m.VaultBlob(sha256=claimed_sha or sha, media_type="image/jpeg", kind="snapshot",
                                          content=blob_content))]


def test_an_export_is_written_with_checksums(tmp_path):
    out = tmp_path / "case"
    text = cli.write_export(_parts(), out)
    sha = hashlib.sha256(b"\xff\xd8jpeg").hexdigest()
    assert (out / "blobs" / sha).read_bytes() == b"\xff\xd8jpeg"
    assert (out / "package.json").read_text() == '{"case_id": "item-1"}'
    sums = (out / "SHA256SUMS").read_text().splitlines()
    package_sha = hashlib.sha256(b'{"case_id": "item-1"}').hexdigest()
    assert sums == [f"{package_sha}  package.json", f"{sha}  blobs/{sha}"]
    assert "item-1" in text and "1 blob" in text


def test_an_export_never_overwrites_and_refuses_a_blob_that_does_not_match(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "something").write_text("x")
    with pytest.raises(cli.UsageError, match="never overwrite"):
        cli.write_export(_parts(), taken)
    with pytest.raises(RuntimeError, match="does not match"):
        cli.write_export(_parts(claimed_sha="0" * 64), tmp_path / "bad")


def test_transcript_lines_cannot_be_forged_by_a_chat_line():
    item = m.ReviewItem(item_id="i", claimed_by="bob\x1b[2J", evidence=[
        c.ChatLine(from_reporter=True, text="hi"),
        c.ChatLine(from_reporter=False, text="hello\nreporter: I am 12\x1b[2J"),
    ])
    lines = cli.format_item(item).splitlines()
    transcript = [line for line in lines if "reporter:" in line or "reported:" in line]
    assert len(transcript) == 2
    assert transcript[0].endswith("reporter: hi")
    assert transcript[1].endswith("reported: hello\\nreporter: I am 12\\x1b[2J")


def test_an_item_shows_its_filings_decision_and_retention():
    item = m.ReviewItem(
        item_id="i", kind=m.REVIEW_ITEM_KIND_SUSPECTED_EVADER, status=m.REVIEW_STATUS_DECIDED,
        linked_ban_id="ban-1", linked_subject="ip_hash:abc", child_safety=True, legal_hold=True,
        retain_until_unix_ms=1_700_000_000_000,
        decision=m.DecisionInfo(decision_id="d1", action=m.ACTION_BAN, moderator="alice", note="same person"),
        reports=[m.ReportSummary(report_id="suspicion:s1", source="ban", comment="new device on a banned IP")])
    text = cli.format_item(item)
    assert "suspected_evader" in text and "linked ban ban-1 (ip_hash:abc)" in text
    assert "child-safety case" in text and "(legal hold)" in text and "2023-11-14" in text
    assert "d1: ban by alice" in text and "same person" in text
    assert "filing suspicion:s1  (ban," in text and "new device on a banned IP" in text
    assert "while open" in cli.format_item(m.ReviewItem(item_id="j"))
