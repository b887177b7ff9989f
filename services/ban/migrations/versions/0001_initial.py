"""The ban service's first schema: bans, the processed-decision markers,
strikes and the audit log.

Revision ID: 0001
Revises:
Create Date: 2025-11-21

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Frozen copy of the column types as of this revision (not imported from
# schema.py, which moves on with later revisions).
_auto_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "bans",
        sa.Column("ban_id", sa.String(), primary_key=True),
        sa.Column("subject_kind", sa.String(), nullable=False),
        sa.Column("subject_value", sa.String(), nullable=False),
        sa.Column("scope", sa.Integer(), nullable=False),
        sa.Column("category", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("issued_by", sa.String(), nullable=False),
        sa.Column("issued_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("lifted_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("lifted_by", sa.String(), nullable=True),
        sa.Column("lift_reason", sa.Text(), nullable=True),
        sa.Column("decision_id", sa.String(), nullable=True),
        sa.CheckConstraint("subject_kind IN ('device_token', 'ip_hash', 'ip_prefix_hash')",
                           name="ck_bans_subject_kind"),
        sa.UniqueConstraint("decision_id", "subject_kind", name="uq_bans_decision_subject_kind"),
    )
    op.create_index("ix_bans_subject", "bans", ["subject_kind", "subject_value"])
    op.create_index("ix_bans_issued_at", "bans", ["issued_at_ms"])

    op.create_table(
        "processed_decisions",
        sa.Column("decision_id", sa.String(), primary_key=True),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("processed_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
    )

    op.create_table(
        "strikes",
        sa.Column("id", _auto_id, primary_key=True, autoincrement=True),
        sa.Column("device_token", sa.String(), nullable=False),
        sa.Column("category", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.String(), nullable=True, unique=True),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_strikes_device_token", "strikes", ["device_token"])

    op.create_table(
        "ban_audit_log",
        sa.Column("id", _auto_id, primary_key=True, autoincrement=True),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("ban_id", sa.String(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.CheckConstraint("action IN ('issue', 'lift', 'decision')", name="ck_ban_audit_log_action"),
    )
    op.create_index("ix_ban_audit_log_ban_id", "ban_audit_log", ["ban_id"])


def downgrade() -> None:
    op.drop_table("ban_audit_log")
    op.drop_table("strikes")
    op.drop_table("processed_decisions")
    op.drop_table("bans")
