"""The review store: reports and their evidence, review items, decisions
with their outbox column, and the audit log.

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _identity_columns(who: str) -> list[sa.Column]:
    return [sa.Column(f"{who}_device_token", sa.Text, nullable=False),
            sa.Column(f"{who}_ip_hash", sa.Text, nullable=False),
            sa.Column(f"{who}_ip_prefix_hash", sa.Text, nullable=False)]


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("report_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("received_at_ms", sa.BigInteger, nullable=False),
        sa.Column("category", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        *_identity_columns("reporter"),
        *_identity_columns("reported"),
        sa.Column("match_id", sa.Text, nullable=False),
        sa.Column("mode", sa.Integer, nullable=False),
        sa.Column("age_band", sa.Integer, nullable=False),
        sa.Column("reported_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("report_id", name="pk_reports"),
    )
    op.create_index("ix_reports_reported_device_token", "reports", ["reported_device_token"])

    op.create_table(
        "evidence_lines",
        sa.Column("report_id", sa.Text, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("from_reporter", sa.Boolean, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("sent_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("report_id", "seq", name="pk_evidence_lines"),
        sa.ForeignKeyConstraint(["report_id"], ["reports.report_id"], name="fk_evidence_lines_report_id"),
    )

    op.create_table(
        "snapshot_hashes",
        sa.Column("report_id", sa.Text, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("report_id", "seq", name="pk_snapshot_hashes"),
        sa.ForeignKeyConstraint(["report_id"], ["reports.report_id"], name="fk_snapshot_hashes_report_id"),
    )

    op.create_table(
        "review_items",
        sa.Column("item_id", sa.String(32), nullable=False),
        sa.Column("report_id", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("category", sa.Integer, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("claimed_by", sa.Text, nullable=True),
        sa.Column("decision_id", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("item_id", name="pk_review_items"),
        sa.UniqueConstraint("report_id", name="uq_review_items_report_id"),
        sa.ForeignKeyConstraint(["report_id"], ["reports.report_id"], name="fk_review_items_report_id"),
    )
    op.create_index("ix_review_items_queue", "review_items",
                    ["status", sa.text("priority DESC"), "created_at_ms"])

    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(32), nullable=False),
        sa.Column("action", sa.Integer, nullable=False),
        sa.Column("category", sa.Integer, nullable=False),
        sa.Column("duration_s", sa.BigInteger, nullable=False),
        sa.Column("moderator", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("decided_at_ms", sa.BigInteger, nullable=False),
        sa.Column("published_at_ms", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("decision_id", name="pk_decisions"),
        sa.UniqueConstraint("item_id", name="uq_decisions_item_id"),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.item_id"], name="fk_decisions_item_id"),
    )
    op.create_index("ix_decisions_published_at_ms", "decisions", ["published_at_ms"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(32), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_item_id", "audit_log", ["item_id"])


def downgrade() -> None:
    for table in ("audit_log", "decisions", "review_items", "snapshot_hashes", "evidence_lines", "reports"):
        op.drop_table(table)
