"""People in the loop: merged review items with claims, risk and reporter
reputation; evader suspicions and detector escalations as filings; the
evidence vault (content-addressed blobs, the hash-chained custody log) with
its retention clock; the audit log and the custody log made append-only.

Existing rows are carried over: each item gets its report's reported user as
its subject and its priority on the new scale (rank * 1000, one newcomer
reporter, the same evidence bonus); decided items get their retention date
(90 days after the decision, 365 for an escalation). Old items get no merge
key (nothing merges into them) and no vault blobs (they predate the vault).

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DAY_MS = 24 * 3600 * 1000
GENESIS = "0" * 64
APPEND_ONLY = ("audit_log", "custody_log")


def upgrade() -> None:
    # ---------------------------------------------------------------- filings
    op.add_column("reports", sa.Column("item_id", sa.String(32), nullable=True))
    op.add_column("reports", sa.Column("source", sa.Text, nullable=False, server_default="user"))
    op.add_column("reports", sa.Column("risk_score", sa.Float, nullable=False, server_default="0"))
    op.add_column("reports", sa.Column("reporter_weight", sa.Float, nullable=False, server_default="0"))
    op.create_index("ix_reports_item_id", "reports", ["item_id"])

    # ---------------------------------------------------------------- items
    columns = [
        sa.Column("kind", sa.String(24), nullable=False, server_default="report"),
        sa.Column("subject_device_token", sa.Text, nullable=False, server_default=""),
        sa.Column("subject_ip_hash", sa.Text, nullable=False, server_default=""),
        sa.Column("subject_ip_prefix_hash", sa.Text, nullable=False, server_default=""),
        sa.Column("match_id", sa.Text, nullable=False, server_default=""),
        sa.Column("merge_key", sa.Text, nullable=True),
        sa.Column("risk_score", sa.Float, nullable=False, server_default="0"),
        sa.Column("reporter_weight", sa.Float, nullable=False, server_default="0"),
        sa.Column("report_count", sa.Integer, nullable=False, server_default="1"),
        sa.Column("evidence_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("priority_floor", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claim_expires_at_ms", sa.BigInteger, nullable=True),
        sa.Column("child_safety", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("escalated_at_ms", sa.BigInteger, nullable=True),
        sa.Column("retain_until_ms", sa.BigInteger, nullable=True),
        sa.Column("legal_hold", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("purged_at_ms", sa.BigInteger, nullable=True),
        sa.Column("linked_ban_id", sa.Text, nullable=False, server_default=""),
        sa.Column("linked_subject", sa.Text, nullable=False, server_default=""),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False, server_default="0"),
    ]
    for column in columns:
        op.add_column("review_items", column)

    # Carry existing rows over (one report per item so far).
    def from_report(column: str) -> str:
        return f"(SELECT reports.{column} FROM reports WHERE reports.report_id = review_items.report_id)"

    op.execute(sa.text(f"""
        UPDATE review_items SET
            subject_device_token = {from_report('reported_device_token')},
            subject_ip_hash = {from_report('reported_ip_hash')},
            subject_ip_prefix_hash = {from_report('reported_ip_prefix_hash')},
            match_id = {from_report('match_id')},
            reporter_weight = CASE WHEN {from_report('reporter_device_token')} <> '' THEN 1.0 ELSE 0.0 END,
            evidence_count =
                (SELECT count(*) FROM evidence_lines WHERE evidence_lines.report_id = review_items.report_id)
                + (SELECT count(*) FROM snapshot_hashes WHERE snapshot_hashes.report_id = review_items.report_id),
            priority = (priority / 100) * 1000 + (priority % 100)
                + CASE WHEN {from_report('reporter_device_token')} <> '' THEN 75 ELSE 0 END,
            updated_at_ms = created_at_ms
    """))
    op.execute(sa.text("""
        UPDATE reports SET
            item_id = (SELECT review_items.item_id FROM review_items
                       WHERE review_items.report_id = reports.report_id),
            reporter_weight = CASE WHEN reporter_device_token <> '' THEN 1.0 ELSE 0.0 END
    """))
    decided_at = "(SELECT decisions.decided_at_ms FROM decisions WHERE decisions.item_id = review_items.item_id)"
    escalated = "(SELECT decisions.action FROM decisions WHERE decisions.item_id = review_items.item_id) = 4"
    op.execute(sa.text(f"""
        UPDATE review_items SET
            retain_until_ms = {decided_at} + CASE WHEN {escalated} THEN {365 * DAY_MS} ELSE {90 * DAY_MS} END,
            escalated_at_ms = CASE WHEN {escalated} THEN {decided_at} ELSE NULL END,
            child_safety = CASE WHEN {escalated} THEN true ELSE false END
        WHERE status = 'decided'
    """))

    op.create_index("uq_review_items_open_merge_key", "review_items", ["merge_key"], unique=True,
                    sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))
    op.create_index("ix_review_items_retain_until_ms", "review_items", ["retain_until_ms"])

    # ---------------------------------------------------------------- reputation
    op.create_table(
        "reporter_reputation",
        sa.Column("device_token", sa.Text, nullable=False),
        sa.Column("upheld", sa.Integer, nullable=False),
        sa.Column("dismissed", sa.Integer, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("device_token", name="pk_reporter_reputation"),
    )

    # ---------------------------------------------------------------- the vault
    op.create_table(
        "vault_blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.Text, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("stored_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_vault_blobs"),
    )
    op.create_table(
        "case_evidence",
        sa.Column("item_id", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("ref", sa.Text, nullable=False),
        sa.Column("added_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("item_id", "sha256", name="pk_case_evidence"),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.item_id"], name="fk_case_evidence_item_id"),
        sa.ForeignKeyConstraint(["sha256"], ["vault_blobs.sha256"], name="fk_case_evidence_sha256"),
    )
    op.create_index("ix_case_evidence_sha256", "case_evidence", ["sha256"])
    op.create_table(
        "custody_log",
        sa.Column("seq", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(32), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_custody_log"),
    )
    op.create_index("ix_custody_log_item_id", "custody_log", ["item_id"])
    head = op.create_table(
        "custody_head",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_custody_head"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "entry_hash": GENESIS}])

    # ---------------------------------------------------------------- append-only
    # Defence in depth: the application never updates or deletes these rows,
    # and the database refuses to. (Someone who can drop a trigger can still
    # rewrite rows: that is what the custody hash chain is for.)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text("""
            CREATE OR REPLACE FUNCTION moderation_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
            END
            $$
        """))
        for table in APPEND_ONLY:
            op.execute(sa.text(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                               "FOR EACH ROW EXECUTE FUNCTION moderation_append_only()"))
    else:
        for table in APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(sa.text(
                    f"CREATE TRIGGER {table}_append_only_{verb} BEFORE {verb.upper()} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log"))
    else:
        for verb in ("update", "delete"):
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS audit_log_append_only_{verb}"))
    for table in ("custody_head", "custody_log", "case_evidence", "vault_blobs", "reporter_reputation"):
        op.drop_table(table)
    op.drop_index("ix_review_items_retain_until_ms", table_name="review_items")
    op.drop_index("uq_review_items_open_merge_key", table_name="review_items")
    with op.batch_alter_table("review_items") as batch:
        for name in ("kind", "subject_device_token", "subject_ip_hash", "subject_ip_prefix_hash", "match_id",
                     "merge_key", "risk_score", "reporter_weight", "report_count", "evidence_count",
                     "priority_floor", "claim_expires_at_ms", "child_safety", "escalated_at_ms",
                     "retain_until_ms", "legal_hold", "purged_at_ms", "linked_ban_id", "linked_subject",
                     "updated_at_ms"):
            batch.drop_column(name)
    op.drop_index("ix_reports_item_id", table_name="reports")
    with op.batch_alter_table("reports") as batch:
        for name in ("item_id", "source", "risk_score", "reporter_weight"):
            batch.drop_column(name)
