"""parley-banctl's own logic: durations, arguments and tables."""
import argparse

import pytest

from parley.v1 import ban_pb2, common_pb2 as c
from services.ban.cli import build_parser, format_table, parse_duration, status_of


@pytest.mark.parametrize("text, seconds", [
    ("0", 0), ("permanent", 0), ("90s", 90), ("30m", 1800), ("1h", 3600), ("24h", 86400),
    ("7d", 604800), ("2w", 1209600), (" 1H ", 3600),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["24", "-1h", "1y", "h", "", "0h", "1.5h", "1h30m"])
def test_parse_duration_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError, match="bad duration"):
        parse_duration(text)


def test_issue_arguments():
    args = build_parser().parse_args(["--addr", "127.0.0.1:1", "issue", "--ip-prefix-hash", "abc",
                                      "--scope", "video", "--duration", "7d", "--category",
                                      "sexual_content", "--reason", "nudity"])
    assert (args.ip_prefix_hash, args.scope, args.duration, args.category) == (
        "abc", "video", 604800, "sexual_content")
    assert args.device is None


@pytest.mark.parametrize("argv", [
    ["issue", "--category", "spam", "--reason", "r"],                      # no subject
    ["issue", "--device", "d", "--ip-hash", "h", "--category", "spam", "--reason", "r"],  # two
    ["issue", "--device", "d", "--category", "nonsense", "--reason", "r"],
    ["issue", "--device", "d", "--category", "spam"],                      # no reason
    ["issue", "--device", "d", "--category", "spam", "--reason", "r", "--duration", "24"],
    ["lift", "b1"],                                                        # no reason
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2


def test_addr_from_environment(monkeypatch):
    monkeypatch.setenv("PARLEY_BAN_ADDR", "10.1.2.3:5")
    assert build_parser().parse_args(["list"]).addr == "10.1.2.3:5"


def test_format_table_aligns_columns():
    table = format_table(("A", "LONGER"), [("xyz", "1"), ("q", "22")])
    assert table.splitlines() == ["A    LONGER", "xyz  1", "q    22"]


def test_status():
    ban = ban_pb2.BanRecord(ban_id="b", scope=c.BAN_SCOPE_ALL, expires_at_unix_ms=1_000)
    assert status_of(ban, 999) == "active"
    assert status_of(ban, 1_000) == "expired"
    ban.lifted_at_unix_ms = 500
    assert status_of(ban, 600) == "lifted"


def test_range_ban_and_session_arguments():
    args = build_parser().parse_args(["issue", "--ip-prefix-hash", "abc", "--enforce-on-address",
                                      "--category", "spam", "--reason", "bot farm"])
    assert args.enforce_on_address and args.ip_prefix_hash == "abc"
    args = build_parser().parse_args(["issue", "--session", "s1", "--category", "harassment", "--reason", "r"])
    assert args.session == "s1" and not args.enforce_on_address


def test_appeal_commands():
    args = build_parser().parse_args(["decide", "a1", "--lift", "--note", "credible", "--by", "alice"])
    assert (args.appeal_id, args.lift, args.uphold, args.note, args.by) == ("a1", True, False, "credible", "alice")
    args = build_parser().parse_args(["appeals"])
    assert args.status == "pending"
    args = build_parser().parse_args(["appeal", "b1", "--device", "d", "--statement", "not me"])
    assert (args.ban_id, args.device, args.statement, args.ip_hash) == ("b1", "d", "not me", "")


@pytest.mark.parametrize("argv", [
    ["decide", "a1", "--note", "x"],                          # neither uphold nor lift
    ["decide", "a1", "--uphold", "--lift"],                   # both
    ["appeal", "b1", "--statement", "s"],                     # no device
    ["history"],                                              # no subject
    ["appeals", "--status", "open"],
])
def test_bad_appeal_and_history_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2


def test_check_needs_some_identity(capsys):
    from services.ban.cli import main
    assert main(["--addr", "127.0.0.1:1", "check"]) == 2
    assert "at least one" in capsys.readouterr().err
    assert main(["--addr", "127.0.0.1:1", "list", "--limit", "0"]) == 2


def test_effect_and_history_text():
    from services.ban.cli import effect_of, history_text
    watch = ban_pb2.BanRecord(ban_id="w", subject=ban_pb2.Subject(ip_hash="h"))
    assert effect_of(watch) == "watch"
    assert effect_of(ban_pb2.BanRecord(subject=ban_pb2.Subject(ip_hash="h"), enforce_on_address=True)) == "refuse"
    assert effect_of(ban_pb2.BanRecord(subject=ban_pb2.Subject(device_token="d"))) == "refuse"
    history = ban_pb2.SubjectHistory(
        subject=ban_pb2.Subject(device_token="d"), active_strikes=1, next_penalty="ban 1h",
        strikes=[ban_pb2.StrikeRecord(device_token="d", category=c.CATEGORY_SPAM, at_unix_ms=1_000,
                                      expires_at_unix_ms=5_000)],
        bans=[ban_pb2.BanRecord(ban_id="b9", subject=ban_pb2.Subject(device_token="d"))])
    text = history_text(history, now_ms=2_000)
    assert "strikes counting: 1; the next one brings: ban 1h" in text
    assert "counts" in text and "b9" in text
