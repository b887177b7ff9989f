"""Enforcement: watch and enforcing address bans, bans on sessions, appeal
windows, voided strikes, appeals, the change log replicas poll (and the
announcement outbox), and the suspected-evader flags.

Address bans issued before this revision were refusing everyone on the
address, so they keep doing so (enforce_on_address true); bans on devices
and addresses get the default 20-day appeal window from their issue.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_auto_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_APPEAL_WINDOW_MS = 20 * 24 * 3600 * 1000


def upgrade() -> None:
    # batch: SQLite rebuilds the table to change a CHECK constraint.
    with op.batch_alter_table("bans") as batch:
        batch.add_column(sa.Column("enforce_on_address", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("appealable_until_ms", sa.BigInteger(), nullable=False,
                                   server_default="0"))
        batch.drop_constraint("ck_bans_subject_kind", type_="check")
        batch.create_check_constraint(
            "ck_bans_subject_kind", "subject_kind IN ('device_token', 'ip_hash', 'ip_prefix_hash', 'session_id')")
    op.execute("UPDATE bans SET enforce_on_address = true "
               "WHERE subject_kind IN ('ip_hash', 'ip_prefix_hash')")
    op.execute(f"UPDATE bans SET appealable_until_ms = issued_at_ms + {_APPEAL_WINDOW_MS}")

    with op.batch_alter_table("strikes") as batch:
        batch.add_column(sa.Column("voided_at_ms", sa.BigInteger(), nullable=True))

    with op.batch_alter_table("ban_audit_log") as batch:
        batch.drop_constraint("ck_ban_audit_log_action", type_="check")
        batch.create_check_constraint(
            "ck_ban_audit_log_action",
            "action IN ('issue', 'lift', 'decision', 'appeal', 'appeal_decision')")

    op.create_table(
        "ban_changes",
        sa.Column("id", _auto_id, primary_key=True, autoincrement=True),
        sa.Column("ban_id", sa.String(), nullable=False),
        sa.Column("change", sa.String(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("announced_at_ms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("change IN ('issue', 'lift')", name="ck_ban_changes_change"),
    )
    op.create_index("ix_ban_changes_announced_at", "ban_changes", ["announced_at_ms"])
    op.create_index("ix_ban_changes_ban_id", "ban_changes", ["ban_id"])

    op.create_table(
        "appeals",
        sa.Column("appeal_id", sa.String(), primary_key=True),
        sa.Column("ban_id", sa.String(), nullable=False),
        sa.Column("device_token", sa.String(), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("filed_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.Column("decided_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'upheld', 'lifted')", name="ck_appeals_status"),
        sa.UniqueConstraint("ban_id", name="uq_appeals_ban_id"),
    )
    op.create_index("ix_appeals_status_filed", "appeals", ["status", "filed_at_ms"])

    op.create_table(
        "evader_flags",
        sa.Column("device_token", sa.String(), nullable=False),
        sa.Column("ban_id", sa.String(), nullable=False),
        sa.Column("suspicion_id", sa.String(), nullable=False, unique=True),
        sa.Column("ip_hash", sa.String(), nullable=False),
        sa.Column("ip_prefix_hash", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("seen_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("published_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("device_token", "ban_id", name="pk_evader_flags"),
    )
    op.create_index("ix_evader_flags_published_at", "evader_flags", ["published_at_ms"])


def downgrade() -> None:
    op.drop_table("evader_flags")
    op.drop_table("appeals")
    op.drop_table("ban_changes")
    op.execute("DELETE FROM ban_audit_log WHERE action IN ('appeal', 'appeal_decision')")
    with op.batch_alter_table("ban_audit_log") as batch:
        batch.drop_constraint("ck_ban_audit_log_action", type_="check")
        batch.create_check_constraint("ck_ban_audit_log_action", "action IN ('issue', 'lift', 'decision')")
    with op.batch_alter_table("strikes") as batch:
        batch.drop_column("voided_at_ms")
    op.execute("DELETE FROM bans WHERE subject_kind = 'session_id'")
    with op.batch_alter_table("bans") as batch:
        batch.drop_constraint("ck_bans_subject_kind", type_="check")
        batch.create_check_constraint("ck_bans_subject_kind",
                                      "subject_kind IN ('device_token', 'ip_hash', 'ip_prefix_hash')")
        batch.drop_column("appealable_until_ms")
        batch.drop_column("enforce_on_address")
