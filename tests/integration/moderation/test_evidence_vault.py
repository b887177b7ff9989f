"""The evidence vault on both databases: content-addressed blobs, the
hash-chained custody log and its verification (and what tampering does to
it), the append-only logs, the retention purge, the material of a
law-enforcement export, and the migration that brought all this."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from parley.v1 import common_pb2 as c
from parley.v1 import moderation_pb2 as m
from services.moderation import custody, export, review
from services.moderation.app import MIGRATIONS, VERSION_TABLE
from services.moderation.retention import DAY_MS
from services.moderation.store import (FILING_MEDIA_TYPE, SNAPSHOT_MEDIA_TYPE, ItemNotFound, NotExportable,
                                       ReviewStore, case_evidence, custody_log, vault_blobs)
from services.runtime.db import migrate
from tests.integration.moderation.conftest import reset_schema
from tests.integration.moderation.storekit import T0, make_escalation, make_report

pytestmark = pytest.mark.integration

KEEP = c.CATEGORY_UNSPECIFIED
FRAME = b"\xff\xd8\xff\xe0 a low-resolution frame"


async def file(store, report_id, **kwargs):
    return (await store.add_report(make_report(report_id, **kwargs), f"event-{report_id}")).item


async def blobs(engine) -> dict[str, bytes]:
    async with engine.connect() as conn:
        return {row.sha256: bytes(row.content) for row in await conn.execute(sa.select(vault_blobs))}


async def allow_tampering(engine, table: str) -> None:
    """What someone with the database's keys can do: lift the append-only guard."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            for verb in ("update", "delete"):
                await conn.execute(sa.text(f"DROP TRIGGER {table}_append_only_{verb}"))


# ---------------------------------------------------------------- blobs and the chain

async def test_a_filing_is_kept_as_a_blob_named_by_its_sha256(store, engine):
    item = await file(store, "r1", lines=2, hashes=1)
    (link,) = item.vault
    content = (await blobs(engine))[link.sha256]
    assert custody.sha256_hex(content) == link.sha256 and (link.kind, link.ref) == ("filing", "r1")
    kept = json.loads(content)
    assert kept["report_id"] == "r1" and kept["reported"]["device_token"] == "dev-reported"
    assert [line["text"] for line in kept["evidence"]] == ["line 0", "line 1"]
    assert kept["snapshot_hashes"] == ["pdq:0000"] and kept["category"] == "CATEGORY_HARASSMENT"
    entries = await store.custody_entries(item.item_id)
    assert [(e.entry.action, e.entry.sha256) for e in entries] == [
        ("stored", link.sha256), ("linked", link.sha256)]
    assert entries[0].entry.detail == {"size": len(content), "media_type": FILING_MEDIA_TYPE}


async def test_the_same_bytes_are_stored_once_and_linked_to_each_case(store, engine):
    one = (await store.open_escalation(make_escalation("v1", match_id="m1", snapshots=(FRAME,)))).item
    two = (await store.open_escalation(make_escalation("v2", match_id="m2", snapshots=(FRAME,)))).item
    sha = custody.sha256_hex(FRAME)
    assert (await blobs(engine))[sha] == FRAME
    async with engine.connect() as conn:
        linked = (await conn.execute(sa.select(case_evidence.c.item_id)
                                     .where(case_evidence.c.sha256 == sha))).scalars().all()
    assert sorted(linked) == sorted([one.item_id, two.item_id])
    stored = [e for e in await store.custody_entries() if e.entry.action == "stored" and e.entry.sha256 == sha]
    assert len(stored) == 1 and stored[0].entry.detail["media_type"] == SNAPSHOT_MEDIA_TYPE


async def test_every_custody_entry_chains_to_the_one_before(store):
    item = await file(store, "r1")
    await store.view_item(item.item_id, "alice", "moderator", child_safety_allowed=False)
    await store.decide(item.item_id, m.ACTION_ESCALATE, KEEP, 0, "alice", "grooming")
    entries = await store.custody_entries()
    assert [e.entry.seq for e in entries] == list(range(1, len(entries) + 1))
    assert [e.entry.action for e in entries] == ["stored", "linked", "viewed", "decided", "escalated"]
    prev = custody.GENESIS
    for e in entries:
        assert e.prev_hash == prev and e.entry_hash == custody.chain_hash(prev, e.entry)
        prev = e.entry_hash
    assert entries[-1].entry.detail["retain_until_ms"] > T0 + 364 * DAY_MS


async def test_an_untouched_vault_verifies(store):
    assert (await store.verify_vault()).ok  # empty
    for i in range(3):
        await file(store, f"r{i}")
    await store.open_escalation(make_escalation(snapshots=(FRAME, b"another frame")))
    result = await store.verify_vault(batch=2)  # several pages of each
    assert result.ok, result.problem
    assert result.entries_checked == len(await store.custody_entries()) and result.blobs_checked == 6


# ---------------------------------------------------------------- tampering

async def test_the_logs_refuse_updates_and_deletes(store, engine):
    await file(store, "r1")
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log",
                      "UPDATE custody_log SET actor = 'mallory'", "DELETE FROM custody_log"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(sa.text(statement))


async def test_an_altered_custody_entry_is_named(store, engine):
    item = await file(store, "r1")
    await store.view_item(item.item_id, "alice", "moderator", child_safety_allowed=False)
    await file(store, "r2")
    await allow_tampering(engine, "custody_log")
    async with engine.begin() as conn:
        await conn.execute(custody_log.update().where(custody_log.c.seq == 3)
                           .values(actor="moderator:nobody"))
    result = await store.verify_vault()
    assert not result.ok and result.first_broken_seq == 3
    assert "custody entry 3" in result.problem and "altered" in result.problem


async def test_a_deleted_custody_entry_is_named(store, engine):
    for i in range(3):
        await file(store, f"r{i}")
    await allow_tampering(engine, "custody_log")
    async with engine.begin() as conn:
        await conn.execute(custody_log.delete().where(custody_log.c.seq == 2))
    result = await store.verify_vault()
    assert not result.ok and result.first_broken_seq == 2 and "missing" in result.problem


async def test_an_altered_or_removed_blob_is_named(store, engine):
    item = await file(store, "r1")
    sha = item.vault[0].sha256
    async with engine.begin() as conn:
        await conn.execute(vault_blobs.update().where(vault_blobs.c.sha256 == sha)
                           .values(content=b'{"evidence": "rewritten"}'))
    result = await store.verify_vault()
    assert not result.ok and result.broken_blob_sha256 == sha and "altered" in result.problem
    async with engine.begin() as conn:
        await conn.execute(case_evidence.delete())
        await conn.execute(vault_blobs.delete())
    result = await store.verify_vault()
    assert not result.ok and result.broken_blob_sha256 == sha and "missing" in result.problem


# ---------------------------------------------------------------- the retention purge

async def test_decided_cases_are_purged_after_their_retention_and_the_chain_still_verifies(store, engine, clock):
    old = await file(store, "old", hashes=1)
    await store.decide(old.item_id, m.ACTION_WARN, KEEP, 0, "alice", "rude")
    still_open = await file(store, "open")
    escalated = await file(store, "grave", category=c.CATEGORY_CHILD_SAFETY)
    await store.decide(escalated.item_id, m.ACTION_ESCALATE, KEEP, 0, "alice", "grooming")
    held = await file(store, "held")
    await store.decide(held.item_id, m.ACTION_BAN, KEEP, 3600, "alice", "threats")
    await store.set_legal_hold(held.item_id, True, "dana", "admin", "preservation request",
                               child_safety_allowed=False)

    assert (await store.purge_expired("retention", "retention period over")).purged_item_ids == ()
    clock.advance(91 * DAY_MS)
    result = await store.purge_expired("retention", "retention period over")
    assert result.purged_item_ids == (old.item_id,) and result.blobs_deleted == 1

    purged = await store.get_item(old.item_id)
    assert purged.purged_at_ms is not None and purged.evidence == () and purged.snapshot_hashes == ()
    assert purged.vault == () and purged.comment == "" and purged.decision is not None
    assert old.vault[0].sha256 not in await blobs(engine)
    for kept in (still_open, escalated, held):
        assert (await store.get_item(kept.item_id)).evidence, "kept cases keep their evidence"
    actions = [e.entry.action for e in await store.custody_entries(old.item_id)]
    assert actions[-3:] == ["unlinked", "purged", "case_purged"]
    assert (await store.audit_entries(old.item_id))[-1].action == "purged"
    assert (await store.verify_vault()).ok
    assert (await store.purge_expired("retention", "again")).purged_item_ids == ()  # once

    clock.advance(275 * DAY_MS)  # a year after the escalation
    result = await store.purge_expired("retention", "retention period over")
    assert result.purged_item_ids == (escalated.item_id,)
    await store.set_legal_hold(held.item_id, False, "dana", "admin", "released", child_safety_allowed=False)
    assert (await store.purge_expired("retention", "hold lifted")).purged_item_ids == (held.item_id,)
    assert (await store.get_item(still_open.item_id)).purged_at_ms is None  # open: never
    assert (await store.verify_vault()).ok


async def test_a_blob_another_case_still_needs_stays(store, engine, clock):
    one = (await store.open_escalation(make_escalation("v1", match_id="m1", snapshots=(FRAME,)))).item
    two = (await store.open_escalation(make_escalation("v2", match_id="m2", snapshots=(FRAME,)))).item
    await store.decide(one.item_id, m.ACTION_DISMISS, KEEP, 0, "alice", "a cartoon")
    await store.decide(two.item_id, m.ACTION_ESCALATE, KEEP, 0, "alice", "real")
    clock.advance(100 * DAY_MS)
    result = await store.purge_expired("retention", "retention period over")
    assert result.purged_item_ids == (one.item_id,) and result.blobs_deleted == 1  # its filing only
    assert (await blobs(engine))[custody.sha256_hex(FRAME)] == FRAME
    assert (await store.verify_vault()).ok


async def test_a_purged_case_can_no_longer_be_held(store, clock):
    item = await file(store, "r1")
    await store.decide(item.item_id, m.ACTION_DISMISS, KEEP, 0, "alice", "banter")
    clock.advance(91 * DAY_MS)
    await store.purge_expired("retention", "retention period over")
    with pytest.raises(NotExportable, match="purged"):
        await store.set_legal_hold(item.item_id, True, "dana", "admin", "too late", child_safety_allowed=True)


# ---------------------------------------------------------------- export material

async def test_only_escalated_cases_with_their_evidence_are_exported(store, clock):
    with pytest.raises(ItemNotFound):
        await store.export_material("nope")
    item = await file(store, "r1")
    with pytest.raises(NotExportable, match="not escalated"):
        await store.export_material(item.item_id)
    await store.decide(item.item_id, m.ACTION_BAN, KEEP, 3600, "alice", "threats")
    with pytest.raises(NotExportable, match="not escalated"):
        await store.export_material(item.item_id)


async def test_the_export_material_and_package_of_an_escalated_case(store):
    intake = await store.add_report(make_report("r1", c.CATEGORY_CHILD_SAFETY, lines=4, hashes=1,
                                                match_id="m1"), "e1")
    await store.open_escalation(make_escalation("v1", match_id="m1", snapshots=(FRAME,)))
    item_id = intake.item.item_id
    decision = await store.decide(item_id, m.ACTION_ESCALATE, KEEP, 0, "alice", "asked a 13-year-old for photos")
    material = await store.export_material(item_id)
    assert {link.kind for link, _type, _content in material.blobs} == {"filing", "snapshot"}
    assert [c for link, _t, c in material.blobs if link.kind == "snapshot"] == [FRAME]
    assert [e.entry.action for e in material.custody][-2:] == ["decided", "escalated"]

    package = export.build_package(material, exporter="carol", role="child_safety", reason="CyberTipline report",
                                   generated_at_ms=T0 + 60_000)
    assert package["case_id"] == item_id and package["generated_by"] == {"name": "carol", "role": "child_safety"}
    assert package["incident"]["type"] == "Online Enticement of Children for Sexual Acts"
    assert package["incident"]["category"] == "CATEGORY_CHILD_SAFETY"
    assert package["incident"]["escalated_at_utc"] == export.utc(decision.decided_at_ms)
    assert package["reported_user"]["device_token"] == "dev-reported"
    assert package["reported_user"]["ip_hash"] == "ip-b" and package["reported_user"]["ip_prefix_hash"] == "pfx-b"
    assert "never stores raw IP addresses" in package["reported_user"]["ip_note"]
    events = package["ip_capture_events"]
    assert {e["event"] for e in events} == {"reported by another user", "flagged by an automated detector",
                                           "message sent"}
    assert all(e["ip_hash"] == "ip-b" for e in events)
    assert [e["at_utc"] for e in events] == sorted(e["at_utc"] for e in events)
    texts = [(msg["side"], msg["text"]) for msg in package["messages"]]
    assert ("reported user", "send a photo") in texts and ("reporter", "line 0") in texts
    assert {f["kind"] for f in package["files"]} == {"filing", "snapshot"}
    assert all(f["path"] == f"blobs/{f['sha256']}" for f in package["files"])
    assert {h["hash"] for h in package["snapshot_hashes"]} == {"pdq:0000", "pdq:ffee"}
    assert package["escalation"]["moderator"] == "alice"
    assert package["escalation"]["note"] == "asked a 13-year-old for photos"
    assert [r["source"] for r in package["reporters"]] == ["user", "detector:text.grooming"]
    assert package["reporters"][0]["reporter"]["device_token"] == "dev-reporter"
    assert package["custody"]["entries"][-1]["action"] == "escalated"
    data = export.package_bytes(package)
    assert json.loads(data) == package and data == export.package_bytes(json.loads(data))


# ---------------------------------------------------------------- the migration

def _upgrade(connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["version_table"] = VERSION_TABLE
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def test_the_migration_carries_existing_items_over(engine, clock):
    await reset_schema(engine)
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, "0001")
        identity = {f"{who}_{part}": f"{who}-{part}" for who in ("reporter", "reported")
                    for part in ("device_token", "ip_hash", "ip_prefix_hash")}
        for n, decided in ((1, None), (2, m.ACTION_WARN), (3, m.ACTION_ESCALATE)):
            await conn.execute(sa.text(
                "INSERT INTO reports VALUES (:report_id, 'e', :t, 2, 'old', :reporter_device_token, "
                ":reporter_ip_hash, :reporter_ip_prefix_hash, :reported_device_token, :reported_ip_hash, "
                ":reported_ip_prefix_hash, 'match-old', 1, 2, :t)"), {"report_id": f"r{n}", "t": T0, **identity})
            await conn.execute(sa.text("INSERT INTO evidence_lines VALUES (:r, 0, false, 'hi', :t)"),
                               {"r": f"r{n}", "t": T0})
            # the old scale: rank 4 * 100 + one evidence line
            await conn.execute(sa.text(
                "INSERT INTO review_items VALUES (:i, :r, :s, 401, 2, :t, NULL, :d)"),
                {"i": f"item-{n}", "r": f"r{n}", "s": "decided" if decided else "open", "t": T0,
                 "d": f"d{n}" if decided else None})
            if decided:
                await conn.execute(sa.text(
                    "INSERT INTO decisions VALUES (:d, :i, :a, 2, 0, 'alice', '', :t, :t)"),
                    {"d": f"d{n}", "i": f"item-{n}", "a": decided, "t": T0})
    await migrate(engine, MIGRATIONS, VERSION_TABLE)

    store = ReviewStore(engine, clock=clock)
    items = {item.item_id: item for item in await store.list_items(None)}
    old = items["item-1"]
    assert old.priority == review.priority(c.CATEGORY_HARASSMENT, reporter_weight=1.0, evidence=1) == 4076
    assert old.reported.device_token == "reported-device_token" and old.match_id == "match-old"
    assert (old.evidence_count, old.reporter_weight, old.kind) == (1, 1.0, "report")
    assert old.retain_until_ms is None and not old.child_safety
    assert items["item-2"].retain_until_ms == T0 + 90 * DAY_MS
    assert items["item-3"].retain_until_ms == T0 + 365 * DAY_MS and items["item-3"].child_safety
    assert items["item-3"].escalated_at_ms == T0
    full = await store.get_item("item-1")
    assert [f.report_id for f in full.filings] == ["r1"] and full.evidence[0].text == "hi"
    # a new report of the same conversation opens its own item (old items have no merge key) ...
    new = (await store.add_report(make_report("r9", reported="reported-device_token", match_id="match-old"),
                                  "e9")).item
    assert new.item_id != "item-1"
    # ... and the vault starts from an empty, valid chain
    assert (await store.verify_vault()).ok


async def test_an_export_takes_the_vaults_copy_and_refuses_an_altered_blob(store, engine):
    item = await file(store, "r1", category=c.CATEGORY_CHILD_SAFETY, lines=2)
    await store.decide(item.item_id, m.ACTION_ESCALATE, KEEP, 0, "alice", "grooming")
    async with engine.begin() as conn:  # the review tables are rewritten, the vault is not
        await conn.execute(sa.text("UPDATE evidence_lines SET text = 'nothing to see'"))
    package = export.build_package(await store.export_material(item.item_id), exporter="carol",
                                   role="child_safety", reason="r", generated_at_ms=T0)
    assert [msg["text"] for msg in package["messages"]] == ["line 0", "line 1"]
    assert package["reporters"][0]["record"] == "evidence vault"
    async with engine.begin() as conn:
        await conn.execute(vault_blobs.update().values(content=b'{"evidence": []}'))
    with pytest.raises(NotExportable, match="does not match its hash"):
        await store.export_material(item.item_id)
