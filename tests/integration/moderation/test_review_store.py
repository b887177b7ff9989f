"""The review store on both of its databases: SQLite in a file, and the real
PostgreSQL (a database of this run's own, emptied before each test)."""
from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from parley.v1 import common_pb2 as c
from parley.v1 import moderation_pb2 as m
from services.moderation import review
from services.moderation.app import MIGRATIONS, VERSION_TABLE
from services.moderation.retention import DAY_MS
from services.moderation.store import DECIDED, OPEN, AlreadyDecided, Identity, ItemNotFound, metadata
from services.runtime.db import migrate
from tests.integration.moderation.storekit import T0, make_report

pytestmark = pytest.mark.integration

# ---------------------------------------------------------------- reports

async def test_a_report_is_stored_with_its_evidence_in_order(store):
    report = make_report(lines=5, hashes=2)
    report.evidence.add(from_reporter=False, text="ünïcode ✓ and 'quotes'\nnewline", sent_at_unix_ms=T0)
    item, created = await store.add_report(report, "event-1")
    assert created
    assert item.status == OPEN and item.decision_id is None and item.claimed_by is None
    assert item.report_id == "report-1" and item.category == c.CATEGORY_HARASSMENT
    assert item.priority == review.priority(c.CATEGORY_HARASSMENT, reporter_weight=1.0, evidence=8)
    assert (item.kind, item.report_count, item.evidence_count, item.reporter_weight) == ("report", 1, 8, 1.0)
    assert [(line.from_reporter, line.text, line.sent_at_ms) for line in item.evidence] == [
        (line.from_reporter, line.text, line.sent_at_unix_ms) for line in report.evidence]
    assert item.snapshot_hashes == ("pdq:0000", "pdq:0001")
    assert item.reported == Identity("dev-reported", "ip-b", "pfx-b")
    assert item.reporter == Identity("dev-reporter", "ip-a", "pfx-a")
    assert (item.match_id, item.mode, item.age_band, item.comment) == (
        "match-report-1", c.MODE_TEXT, c.AGE_BAND_ADULT, "said awful things")
    assert item.reported_at_ms == T0 - 5000 and item.created_at_ms > T0
    assert await store.get_item(item.item_id) == item
    assert await store.get_item_by_report("report-1") == item


async def test_a_report_without_evidence_is_stored(store):
    item, created = await store.add_report(make_report(lines=0), "event-1")
    assert created and item.evidence == () and item.snapshot_hashes == ()


async def test_a_redelivered_report_makes_one_item(store, engine):
    first, created = await store.add_report(make_report(lines=4, hashes=1), "event-1")
    again, created_again = await store.add_report(make_report(lines=4, hashes=1), "event-1")
    republished, created_third = await store.add_report(make_report(lines=4, hashes=1), "event-2")
    assert (created, created_again, created_third) == (True, False, False)
    assert first == again == republished
    assert len(await store.list_items()) == 1
    async with engine.connect() as conn:
        for table, expected in (("reports", 1), ("evidence_lines", 4), ("snapshot_hashes", 1),
                                ("review_items", 1), ("audit_log", 1), ("vault_blobs", 1),
                                ("case_evidence", 1), ("custody_log", 2)):
            count = (await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one()
            assert count == expected, table


async def test_concurrent_deliveries_of_one_report_make_one_item(store):
    results = await asyncio.gather(*(store.add_report(make_report(), f"event-{i}") for i in range(6)))
    assert sum(created for _item, created in results) == 1
    assert len({item.item_id for item, _created in results}) == 1
    assert len(await store.list_items()) == 1


# ---------------------------------------------------------------- the queue

async def test_the_queue_is_ordered_by_priority_then_age(store):
    filed = [  # (report id, category, evidence lines), in the order they arrive
        ("spam-old", c.CATEGORY_SPAM, 1),
        ("harass-few", c.CATEGORY_HARASSMENT, 1),
        ("child", c.CATEGORY_CHILD_SAFETY, 0),
        ("harass-many", c.CATEGORY_HARASSMENT, 8),
        ("spam-new", c.CATEGORY_SPAM, 1),
        ("hash", c.CATEGORY_KNOWN_BAD_HASH, 0),
        ("other", c.CATEGORY_OTHER, 30),
        ("underage", c.CATEGORY_UNDERAGE, 2),
    ]
    for report_id, category, lines in filed:
        await store.add_report(make_report(report_id, category, lines), f"event-{report_id}")
    listed = [item.report_id for item in await store.list_items(OPEN, 50)]
    # child and hash share the top rank: the older first
    assert listed == ["child", "hash", "underage", "harass-many", "harass-few", "spam-old", "spam-new", "other"]
    assert [item.report_id for item in await store.list_items(OPEN, 3)] == listed[:3]


async def test_the_queue_filters_by_status(store):
    items = [(await store.add_report(make_report(f"r{i}"), f"e{i}")).item for i in range(3)]
    await store.decide(items[1].item_id, m.ACTION_DISMISS, c.CATEGORY_UNSPECIFIED, 0, "alice")
    assert {i.item_id for i in await store.list_items(OPEN)} == {items[0].item_id, items[2].item_id}
    assert [i.item_id for i in await store.list_items(DECIDED)] == [items[1].item_id]
    assert len(await store.list_items(None)) == 3
    assert await store.count_open() == 2


async def test_an_unknown_item_is_none(store):
    assert await store.get_item("no-such-item") is None
    assert await store.get_item_by_report("no-such-report") is None


# ---------------------------------------------------------------- decisions

async def test_an_item_is_decided_once(store):
    item = (await store.add_report(make_report(), "event-1")).item
    decision = await store.decide(item.item_id, m.ACTION_BAN, c.CATEGORY_UNSPECIFIED, 86400, "alice", "clear")
    assert decision.category == c.CATEGORY_HARASSMENT  # UNSPECIFIED keeps the report's
    assert decision.subject == Identity("dev-reported", "ip-b", "pfx-b")
    assert (decision.report_id, decision.action, decision.duration_s, decision.moderator, decision.note) == (
        "report-1", m.ACTION_BAN, 86400, "alice", "clear")
    assert decision.published_at_ms is None

    decided = await store.get_item(item.item_id)
    assert decided.status == DECIDED and decided.decision_id == decision.decision_id
    assert await store.get_decision(decision.decision_id) == decision

    with pytest.raises(AlreadyDecided) as again:
        await store.decide(item.item_id, m.ACTION_DISMISS, c.CATEGORY_UNSPECIFIED, 0, "bob")
    assert again.value.decision_id == decision.decision_id
    assert (await store.get_item(item.item_id)).decision_id == decision.decision_id
    with pytest.raises(ItemNotFound):
        await store.decide("no-such-item", m.ACTION_WARN, c.CATEGORY_UNSPECIFIED, 0, "alice")


async def test_a_category_override_is_kept(store):
    item = (await store.add_report(make_report(), "event-1")).item
    decision = await store.decide(item.item_id, m.ACTION_ESCALATE, c.CATEGORY_CHILD_SAFETY, 0, "alice")
    assert (await store.get_decision(decision.decision_id)).category == c.CATEGORY_CHILD_SAFETY


async def test_concurrent_decisions_on_one_item_let_exactly_one_win(store):
    item = (await store.add_report(make_report(), "event-1")).item
    results = await asyncio.gather(
        *(store.decide(item.item_id, m.ACTION_WARN, c.CATEGORY_UNSPECIFIED, 0, f"mod-{i}") for i in range(5)),
        return_exceptions=True)
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    assert all(isinstance(r, AlreadyDecided) for r in results if r not in winners)
    assert (await store.get_item(item.item_id)).decision_id == winners[0].decision_id


async def test_the_outbox_lists_decisions_until_marked_published(store):
    items = [(await store.add_report(make_report(f"r{i}"), f"e{i}")).item for i in range(3)]
    decisions = [await store.decide(item.item_id, m.ACTION_WARN, c.CATEGORY_UNSPECIFIED, 0, "alice")
                 for item in items]
    assert [d.decision_id for d in await store.unpublished_decisions()] == [d.decision_id for d in decisions]
    assert await store.count_unpublished() == 3
    assert await store.mark_published(decisions[0].decision_id)
    assert not await store.mark_published(decisions[0].decision_id)  # recorded once
    assert [d.decision_id for d in await store.unpublished_decisions()] == [
        d.decision_id for d in decisions[1:]]
    assert (await store.get_decision(decisions[0].decision_id)).published_at_ms is not None
    assert await store.count_unpublished() == 2


# ---------------------------------------------------------------- audit

async def test_every_change_writes_an_audit_row(store):
    item, _ = await store.add_report(make_report(lines=2, hashes=1), "event-1")
    await store.add_report(make_report(lines=2, hashes=1), "event-1")  # a redelivery changes nothing
    decision = await store.decide(item.item_id, m.ACTION_BAN, c.CATEGORY_SPAM, 3600, "alice")
    await store.mark_published(decision.decision_id)
    entries = await store.audit_entries(item.item_id)
    assert [(e.actor, e.action) for e in entries] == [
        ("intake", "report_filed"), ("moderator:alice", "decided"), ("outbox", "decision_published")]
    assert entries[0].detail == {"report_id": "report-1", "event_id": "event-1", "category": "CATEGORY_HARASSMENT",
                                 "evidence_lines": 2, "snapshot_hashes": 1, "source": "user"}
    assert entries[1].detail == {"decision_id": decision.decision_id, "action": "ACTION_BAN",
                                 "category": "CATEGORY_SPAM", "duration_s": 3600, "note": "",
                                 "reporters": 1, "retain_until_ms": decision.decided_at_ms + 90 * DAY_MS}
    assert entries[2].detail == {"decision_id": decision.decision_id}
    assert [e.at_ms for e in entries] == sorted(e.at_ms for e in entries)


async def test_a_failed_decision_writes_no_audit_row(store):
    item, _ = await store.add_report(make_report(), "event-1")
    await store.decide(item.item_id, m.ACTION_WARN, c.CATEGORY_UNSPECIFIED, 0, "alice")
    with pytest.raises(AlreadyDecided):
        await store.decide(item.item_id, m.ACTION_BAN, c.CATEGORY_UNSPECIFIED, 0, "bob")
    assert [e.actor for e in await store.audit_entries(item.item_id)] == ["intake", "moderator:alice"]


# ---------------------------------------------------------------- migrations

async def test_migrating_again_changes_nothing(engine, store):
    item, _ = await store.add_report(make_report(), "event-1")
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    async with engine.connect() as conn:
        versions = (await conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))).scalars().all()
    assert versions == ["0003"]
    assert await store.get_item(item.item_id) == item


async def test_the_migrations_build_the_schema_the_store_describes(engine):
    def differences(connection):
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return compare_metadata(context, metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []
