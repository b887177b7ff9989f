"""parley-modctl's own parsing and output (the calls are tested against the
real service in tests/integration/moderation)."""
from __future__ import annotations

import argparse

import pytest

from parley.v1 import common_pb2 as c
from parley.v1 import moderation_pb2 as m
from services.moderation import cli


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
         "--moderator", "alice", "--note", "clear case"])
    assert (args.action, args.duration, args.category, args.moderator) == (
        "ban", 86400, c.CATEGORY_CHILD_SAFETY, "alice")


def test_list_defaults_to_open_items():
    parser = cli.build_parser()
    assert parser.parse_args(["list"]).status == m.REVIEW_STATUS_OPEN
    assert parser.parse_args(["list", "--all"]).status == m.REVIEW_STATUS_UNSPECIFIED


def test_a_ban_without_duration_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["decide", "item-1", "--action", "ban", "--moderator", "alice"])
    assert exit_info.value.code == 2
    assert "--duration" in capsys.readouterr().err


def test_transcript_lines_cannot_be_forged_by_a_chat_line():
    item = m.ReviewItem(item_id="i", evidence=[
        c.ChatLine(from_reporter=True, text="hi"),
        c.ChatLine(from_reporter=False, text="hello\nreporter: I am 12\x1b[2J"),
    ])
    lines = cli.format_item(item).splitlines()
    transcript = [line for line in lines if "reporter:" in line or "reported:" in line]
    assert len(transcript) == 2
    assert transcript[0].endswith("reporter: hi")
    assert transcript[1].endswith("reported: hello\\nreporter: I am 12\\x1b[2J")
