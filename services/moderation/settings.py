from __future__ import annotations

import re
from dataclasses import dataclass

from parley.v1 import common_pb2
from services.moderation.retention import CHILD_SAFETY_RETENTION_DAYS, DEFAULT_RETENTION_DAYS, Retention
from services.runtime.settings import CommonSettings, SettingsError, setting

HASH_BANKS_VARIABLE = "PARLEY_MODERATION_HASH_BANKS"
POLICY_FILE_VARIABLE = "PARLEY_MODERATION_POLICY_FILE"
_BANK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class BankFile:
    """One entry of PARLEY_MODERATION_HASH_BANKS."""
    bank: str
    category: int
    path: str


def parse_hash_banks(text: str) -> list[BankFile]:
    """`NAME[:CATEGORY]=PATH` entries separated by commas or new lines, e.g.
    `ncmec=/banks/ncmec.txt, internal:child_safety=/banks/internal.csv`.
    NAME: letters, digits, `.`, `_`, `-` (at most 64). CATEGORY: a Category
    name with or without its CATEGORY_ prefix, any case; by default
    known_bad_hash. PATH: the rest of the entry (no commas). Raises
    SettingsError naming the variable and the bad entry."""
    banks: list[BankFile] = []
    seen: set[str] = set()
    for raw in re.split(r"[,\n]", text):
        entry = raw.strip()
        if not entry:
            continue
        label, sep, path = entry.partition("=")
        name, _, category_text = label.strip().partition(":")
        name, path = name.strip(), path.strip()
        problem = None
        if not sep or not path:
            problem = "expected NAME[:CATEGORY]=PATH"
        elif not _BANK_NAME.fullmatch(name):
            problem = "a bank name is 1 to 64 letters, digits, '.', '_' or '-'"
        elif name in seen:
            problem = f"bank {name!r} named twice"
        category = common_pb2.CATEGORY_KNOWN_BAD_HASH
        if problem is None and category_text.strip():
            key = category_text.strip().upper()
            key = key if key.startswith("CATEGORY_") else f"CATEGORY_{key}"
            if key not in common_pb2.Category.keys() or key == "CATEGORY_UNSPECIFIED":
                problem = f"unknown category {category_text.strip()!r}"
            else:
                category = common_pb2.Category.Value(key)
        if problem:
            raise SettingsError(f"bad moderation configuration:\n  {HASH_BANKS_VARIABLE}: entry {entry!r}: {problem}")
        seen.add(name)
        banks.append(BankFile(name, category, path))
    return banks


@dataclass(frozen=True)
class ModerationSettings(CommonSettings):
    service = "moderation"

    grpc_port: int = setting(50053, minimum=0, maximum=65535, help="gRPC port (moderator API)")
    metrics_port: int = setting(9103, minimum=0, maximum=65535, help="Prometheus /metrics port")
    database_url: str = setting(
        "sqlite:///data/moderation.db", secret=True,
        help="reports, review items, decisions, the evidence vault: "
             "sqlite:///path or postgresql://user:pass@host/db")
    publish_timeout_seconds: float = setting(
        3.0, minimum=0.1, maximum=60,
        help="how long Decide waits for the broker before leaving a decision to the outbox")
    outbox_interval_seconds: float = setting(
        2.0, minimum=0.05, maximum=300,
        help="how often unpublished decisions are published again and queue gauges refreshed")
    moderator_tokens: str = setting(
        "", secret=True,
        help="moderator API tokens, inline: sha256hex:name:role entries separated by commas or new lines "
             "(roles moderator, child_safety, admin); with this and the file unset, the development "
             "tokens are accepted, with a warning")
    moderator_tokens_file: str = setting(
        "", help="a file of moderator token entries (sha256hex:name:role, one a line, # comments), "
                 "re-read when it changes")
    claim_seconds: float = setting(
        900.0, minimum=1, maximum=86400,
        help="how long a moderator's claim on a review item lasts before the item returns to the queue")
    retention_days: int = setting(
        DEFAULT_RETENTION_DAYS, minimum=1, maximum=3650,
        help="how long the evidence of a decided case is kept after the decision")
    child_safety_retention_days: int = setting(
        CHILD_SAFETY_RETENTION_DAYS, minimum=CHILD_SAFETY_RETENTION_DAYS, maximum=3650,
        help="how long the evidence of a case escalated to child safety is kept (at least one year)")
    purge_interval_seconds: float = setting(
        3600.0, minimum=1, maximum=86400,
        help="how often evidence past its retention date is purged")

    # ---------------------------------------------------------------- detectors
    policy_file: str = setting(
        "", help="the text moderation policy: thresholds per pool, shadow and disabled rules "
                 "(.json, .toml, .yaml or .yml; read at start, a bad file stops the service); "
                 "empty: the built-in policy")
    shard_messages: bool = setting(
        True, help="chat lines through RabbitMQ's consistent-hash exchange, a queue per replica, so that "
                   "each conversation stays on one replica (needs the rabbitmq_consistent_hash_exchange "
                   "plugin; without it, or when false, one shared queue)")
    message_prefetch: int = setting(
        1000, minimum=1, maximum=65535, help="chat lines taken from the broker ahead of classification")
    message_batch: int = setting(
        256, minimum=1, maximum=10000,
        help="most chat lines classified in one batch (a batch is what arrived since the last turn of "
             "the event loop, up to this)")
    message_batch_wait_ms: float = setting(
        20.0, minimum=0, maximum=1000,
        help="how long a batch of chat lines waits for more before it is classified (0: what arrived in "
             "one turn of the event loop); bigger batches cost less per line")
    classify_in_thread: bool = setting(
        False, help="classify batches of chat lines in a worker thread instead of on the event loop")
    evidence_lines: int = setting(
        30, minimum=1, maximum=500,
        help="recent lines kept per conversation (both sides) as the evidence of a detector's escalation")
    auto_ban_seconds: int = setting(
        3600, minimum=60, maximum=315360000,
        help="length of a non-permanent ban a detector asks for (the ban service applies the stronger of "
             "it and its ladder's step); severe cases are permanent")
    hash_banks: str = setting(
        "", help="hash bank files matched against video snapshots: NAME[:CATEGORY]=PATH entries separated "
                 "by commas or new lines (CATEGORY: what a match is evidence of, default known_bad_hash); "
                 "a bad file stops the service at start")
    bank_sync_interval_seconds: float = setting(
        5.0, minimum=0.1, maximum=3600,
        help="how often hashes added at run time (through any replica) are read from the store")
    nudity_enabled: bool = setting(
        True, help="score video snapshots with the nudity classifier (NudeNet's 12 MB ONNX model, "
                   "loaded at start)")
    nudity_threshold: float = setting(
        0.5, minimum=0.01, maximum=1.0,
        help="nudity score from which an adults' pool snapshot is nudity (a warning and a review item)")
    minor_nudity_threshold: float = setting(
        0.5, minimum=0.01, maximum=1.0,
        help="nudity score from which a minors' pool snapshot is nudity (severe: the session ends, "
             "top-priority review, permanent ban)")
    snapshot_workers: int = setting(
        2, minimum=1, maximum=64, help="snapshots analyzed at once (threads; about 20 ms of CPU each)")

    def retention(self) -> Retention:
        return Retention(self.retention_days, self.child_safety_retention_days)

    def bank_files(self) -> list[BankFile]:
        return parse_hash_banks(self.hash_banks)
