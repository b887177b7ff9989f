"""The ban service's tables, as SQLAlchemy Core. The migrations in
`migrations/versions/` create exactly this (a test compares them).

Times are integer milliseconds since the epoch. Table names stay clear of the
other services' (one PostgreSQL database may hold several services' schemas;
each has its own alembic version table), hence `ban_audit_log`.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, CheckConstraint, Column, Index, Integer, MetaData, String, Table,
                        Text, UniqueConstraint)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a bigint.
AutoId = BigInteger().with_variant(Integer(), "sqlite")

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
    CheckConstraint("subject_kind IN ('device_token', 'ip_hash', 'ip_prefix_hash')",
                    name="ck_bans_subject_kind"),
    # One decision bans a subject kind once (an escalation bans the device
    # and the IP: two rows, one decision).
    UniqueConstraint("decision_id", "subject_kind", name="uq_bans_decision_subject_kind"),
    Index("ix_bans_subject", "subject_kind", "subject_value"),
    Index("ix_bans_issued_at", "issued_at_ms"),
)

# One row per moderation decision ever handled: the idempotency marker.
processed_decisions = Table(
    "processed_decisions", metadata,
    Column("decision_id", String, primary_key=True),
    Column("event_id", String, nullable=False),
    Column("processed_at_ms", BigInteger, nullable=False),
    Column("outcome", String, nullable=False),
)

# Warnings that did not ban, per device; the strike ladder will count them.
strikes = Table(
    "strikes", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("device_token", String, nullable=False),
    Column("category", Integer, nullable=False),
    Column("decision_id", String, nullable=True, unique=True),
    Column("at_ms", BigInteger, nullable=False),
    Index("ix_strikes_device_token", "device_token"),
)

audit_log = Table(
    "ban_audit_log", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", String, nullable=False),
    Column("action", String, nullable=False),
    Column("ban_id", String, nullable=True),
    Column("detail", Text, nullable=False),  # JSON object
    CheckConstraint("action IN ('issue', 'lift', 'decision')", name="ck_ban_audit_log_action"),
    Index("ix_ban_audit_log_ban_id", "ban_id"),
)
