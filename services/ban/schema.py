"""The ban service's tables, as SQLAlchemy Core. The migrations in
`migrations/versions/` create exactly this (a test compares them).

Times are integer milliseconds since the epoch. Table names stay clear of the
other services' (one PostgreSQL database may hold several services' schemas;
each has its own alembic version table), hence `ban_audit_log`.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, Column, Index, Integer, MetaData,
                        PrimaryKeyConstraint, String, Table, Text, UniqueConstraint, false)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a bigint.
AutoId = BigInteger().with_variant(Integer(), "sqlite")

SUBJECT_KINDS = ("device_token", "ip_hash", "ip_prefix_hash", "session_id")
AUDIT_ACTIONS = ("issue", "lift", "decision", "appeal", "appeal_decision")
APPEAL_STATUSES = ("pending", "upheld", "lifted")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


metadata = MetaData()

bans = Table(
    "bans", metadata,
    Column("ban_id", String, primary_key=True),
    Column("subject_kind", String, nullable=False),
    Column("subject_value", String, nullable=False),
    Column("scope", Integer, nullable=False),
    Column("category", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("issued_by", String, nullable=False),
    Column("issued_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),  # 0: permanent
    Column("lifted_at_ms", BigInteger, nullable=True),    # NULL: not lifted
    Column("lifted_by", String, nullable=True),
    Column("lift_reason", Text, nullable=True),
    Column("decision_id", String, nullable=True),
    # An address ban that refuses everyone there (else it only watches).
    Column("enforce_on_address", Boolean, nullable=False, server_default=false()),
    Column("appealable_until_ms", BigInteger, nullable=False, server_default="0"),  # 0: not appealable
    CheckConstraint(_one_of("subject_kind", SUBJECT_KINDS), name="ck_bans_subject_kind"),
    # One decision bans a subject kind once (a severe case bans the device,
    # the IP and the prefix: three rows, one decision).
    UniqueConstraint("decision_id", "subject_kind", name="uq_bans_decision_subject_kind"),
    Index("ix_bans_subject", "subject_kind", "subject_value"),
    Index("ix_bans_issued_at", "issued_at_ms"),
)

# Every issue and lift, in commit order (near enough: see index.ChangeCursor).
# Replicas poll it to keep their CheckBan index current, and it is the
# outbox of the ban.issued / ban.lifted announcements.
ban_changes = Table(
    "ban_changes", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("ban_id", String, nullable=False),
    Column("change", String, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("announced_at_ms", BigInteger, nullable=True),  # NULL: not yet announced
    CheckConstraint("change IN ('issue', 'lift')", name="ck_ban_changes_change"),
    Index("ix_ban_changes_announced_at", "announced_at_ms"),
    Index("ix_ban_changes_ban_id", "ban_id"),
)

# One row per moderation decision ever handled: the idempotency marker.
processed_decisions = Table(
    "processed_decisions", metadata,
    Column("decision_id", String, primary_key=True),
    Column("event_id", String, nullable=False),
    Column("processed_at_ms", BigInteger, nullable=False),
    Column("outcome", String, nullable=False),
)

# One per decision against a device; the ladder counts those not expired
# and not voided.
strikes = Table(
    "strikes", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("device_token", String, nullable=False),
    Column("category", Integer, nullable=False),
    Column("decision_id", String, nullable=True, unique=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("voided_at_ms", BigInteger, nullable=True),  # an appeal lifted its ban
    Index("ix_strikes_device_token", "device_token"),
)

appeals = Table(
    "appeals", metadata,
    Column("appeal_id", String, primary_key=True),
    Column("ban_id", String, nullable=False),
    Column("device_token", String, nullable=False),
    Column("statement", Text, nullable=False),
    Column("status", String, nullable=False),
    Column("filed_at_ms", BigInteger, nullable=False),
    Column("decided_by", String, nullable=True),
    Column("decided_at_ms", BigInteger, nullable=True),
    Column("decision_note", Text, nullable=True),
    CheckConstraint(_one_of("status", APPEAL_STATUSES), name="ck_appeals_status"),
    UniqueConstraint("ban_id", name="uq_appeals_ban_id"),  # one appeal per ban
    Index("ix_appeals_status_filed", "status", "filed_at_ms"),
)

# Suspected evaders, flagged once per (device, ban) across replicas; the
# outbox of ban.evader_suspected.
evader_flags = Table(
    "evader_flags", metadata,
    Column("device_token", String, nullable=False),
    Column("ban_id", String, nullable=False),
    Column("suspicion_id", String, nullable=False, unique=True),
    Column("ip_hash", String, nullable=False),
    Column("ip_prefix_hash", String, nullable=False),
    Column("reason", Text, nullable=False),
    Column("seen_at_ms", BigInteger, nullable=False),
    Column("published_at_ms", BigInteger, nullable=True),  # NULL: not yet published
    PrimaryKeyConstraint("device_token", "ban_id", name="pk_evader_flags"),
    Index("ix_evader_flags_published_at", "published_at_ms"),
)

audit_log = Table(
    "ban_audit_log", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", String, nullable=False),
    Column("action", String, nullable=False),
    Column("ban_id", String, nullable=True),
    Column("detail", Text, nullable=False),  # JSON object
    CheckConstraint(_one_of("action", AUDIT_ACTIONS), name="ck_ban_audit_log_action"),
    Index("ix_ban_audit_log_ban_id", "ban_id"),
)
