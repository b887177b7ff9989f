"""People in the loop, through the real moderation process, the real broker
and real gRPC: moderator tokens and roles, merged reports, claims and their
lease, decisions on the broker, the audit log, the evidence vault (verify,
tampering, purge), the law-enforcement export, and suspected evaders from
the ban service."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid

import grpc
import pytest

from parley.v1 import ban_pb2
from parley.v1 import common_pb2 as c
from parley.v1 import events_pb2
from parley.v1 import moderation_pb2 as m
from parley.v1 import moderation_pb2_grpc
from services.runtime import envelope as env
from services.runtime.bus import Bus
from tests.integration.moderation.servicekit import (As, decision_with_id, eventually, item_for, make_report, modctl,
                                                     start_moderation, take_from_queue, wait_listed)
from tests.support import metric_value

pytestmark = pytest.mark.integration

GRPC = grpc.StatusCode


async def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        result = call()
        if isinstance(result, grpc.aio.UnaryStreamCall):  # a streaming call fails when read
            while await result.read() is not grpc.aio.EOF:
                pass
        else:
            await result
    return error.value.code()


def database_path(service) -> str:
    return service.env["PARLEY_MODERATION_DATABASE_URL"].removeprefix("sqlite:///")


def report_in(match_id: str, reported: str, reporter: str = "dev-reporter",
              category: int = c.CATEGORY_HARASSMENT) -> events_pb2.ReportFiled:
    report = make_report(category)
    report.match_id, report.reported.device_token, report.reporter.device_token = match_id, reported, reporter
    return report


async def filed(api, gateway_bus, category: int = c.CATEGORY_HARASSMENT) -> m.ReviewItem:
    report = make_report(category)
    await gateway_bus.publish(report)
    return await wait_listed(api, report.report_id)


@pytest.fixture
def as_(stub):
    return lambda name: As(stub, name)


@pytest.fixture
async def ban_bus(amqp_url):
    """The test plays the ban service: it publishes suspected evaders."""
    bus = Bus(amqp_url, "ban", f"test-{uuid.uuid4().hex[:6]}")
    await bus.connect(timeout=10)
    yield bus
    await bus.close()


# ---------------------------------------------------------------- tokens and roles

async def test_calls_without_a_valid_token_are_unauthenticated(stub):
    anonymous = As(stub, None)
    forged = [("authorization", "Bearer not-a-token")]
    basic = [("authorization", "Basic YWxpY2U6cHc=")]
    calls = {
        "ListReviewItems": m.ListReviewItemsRequest(), "GetReviewItem": m.GetReviewItemRequest(item_id="x"),
        "ClaimReviewItem": m.ClaimReviewItemRequest(item_id="x"),
        "Decide": m.DecideRequest(item_id="x", action=m.ACTION_WARN, note="n"),
        "ListAuditLog": m.ListAuditLogRequest(), "VerifyVault": m.VerifyVaultRequest(),
        "PurgeExpired": m.PurgeExpiredRequest(reason="r"), "WhoAmI": m.WhoAmIRequest(),
        "ExportCase": m.ExportCaseRequest(item_id="x", reason="r"),
    }
    for method, request in calls.items():
        assert await code_of(lambda: getattr(anonymous, method)(request, timeout=5)) == GRPC.UNAUTHENTICATED, method
        for metadata in (forged, basic):
            code = await code_of(lambda: getattr(stub, method)(request, metadata=metadata, timeout=5))
            assert code == GRPC.UNAUTHENTICATED, method


async def test_each_role_does_what_it_may_and_no_more(as_, gateway_bus):
    alice, carol, dana = as_("alice"), as_("carol"), as_("dana")
    for who, name, role in ((alice, "alice", "moderator"), (carol, "carol", "child_safety"),
                            (dana, "dana", "admin")):
        reply = await who.WhoAmI(m.WhoAmIRequest(), timeout=5)
        assert (reply.name, reply.role) == (name, role)
    item = await filed(alice, gateway_bus)
    hold = m.SetLegalHoldRequest(item_id=item.item_id, hold=True, reason="preservation request")
    for call in (lambda: alice.ListAuditLog(m.ListAuditLogRequest(), timeout=5),
                 lambda: alice.VerifyVault(m.VerifyVaultRequest(), timeout=5),
                 lambda: alice.PurgeExpired(m.PurgeExpiredRequest(reason="r"), timeout=5),
                 lambda: alice.SetLegalHold(hold, timeout=5),
                 lambda: alice.ExportCase(m.ExportCaseRequest(item_id=item.item_id, reason="r"), timeout=5),
                 lambda: dana.ExportCase(m.ExportCaseRequest(item_id=item.item_id, reason="r"), timeout=5),
                 lambda: carol.ListAuditLog(m.ListAuditLogRequest(), timeout=5),
                 lambda: carol.PurgeExpired(m.PurgeExpiredRequest(reason="r"), timeout=5)):
        assert await code_of(call) == GRPC.PERMISSION_DENIED
    held = await dana.SetLegalHold(hold, timeout=5)
    assert held.legal_hold and not held.evidence  # a hold shows nothing of the case
    assert (await carol.VerifyVault(m.VerifyVaultRequest(), timeout=30)).ok


# ---------------------------------------------------------------- the queue

async def test_reports_of_one_conversation_merge_into_one_item(api, gateway_bus):
    reported = f"dev-{uuid.uuid4().hex[:8]}"
    first = report_in("match-42", reported)
    await gateway_bus.publish(first)
    alone = await wait_listed(api, first.report_id)
    second = report_in("match-42", reported, reporter="dev-second-witness", category=c.CATEGORY_SEXUAL_CONTENT)
    await gateway_bus.publish(second)

    async def merged():
        item = await item_for(api, first.report_id)
        return item if item.report_count == 2 else None
    item = await eventually(merged)
    assert item.item_id == alone.item_id and item.priority > alone.priority
    assert item.category == c.CATEGORY_SEXUAL_CONTENT and item.reporter_weight == 2.0
    full = await api.GetReviewItem(m.GetReviewItemRequest(item_id=item.item_id), timeout=5)
    assert [r.report_id for r in full.reports] == [first.report_id, second.report_id]
    assert len(full.vault_sha256) == 2
    # another conversation of the same user is another item
    third = report_in("match-43", reported)
    await gateway_bus.publish(third)
    assert (await wait_listed(api, third.report_id)).item_id != item.item_id


async def test_a_claim_lets_only_its_holder_decide(as_, gateway_bus, channel):
    alice, bob = as_("alice"), as_("bob")
    item = await filed(alice, gateway_bus)
    claimed = await alice.ClaimReviewItem(m.ClaimReviewItemRequest(item_id=item.item_id), timeout=5)
    assert claimed.status == m.REVIEW_STATUS_CLAIMED and claimed.claimed_by == "alice"
    assert not claimed.evidence and not claimed.reports  # evidence is seen (and logged) through GetReviewItem
    assert claimed.claim_expires_at_unix_ms > claimed.created_at_unix_ms
    listed = await bob.ListReviewItems(m.ListReviewItemsRequest(status=m.REVIEW_STATUS_CLAIMED), timeout=5)
    assert [i.item_id for i in listed.items] == [item.item_id]
    assert await item_for(bob, item.report_id, m.REVIEW_STATUS_OPEN) is None

    take = m.ClaimReviewItemRequest(item_id=item.item_id)
    assert await code_of(lambda: bob.ClaimReviewItem(take, timeout=5)) == GRPC.FAILED_PRECONDITION
    decide = m.DecideRequest(item_id=item.item_id, action=m.ACTION_BAN, duration_s=3600, note="mine")
    assert await code_of(lambda: bob.Decide(decide, timeout=5)) == GRPC.FAILED_PRECONDITION
    release = m.ReleaseReviewItemRequest(item_id=item.item_id, reason="not mine")
    assert await code_of(lambda: bob.ReleaseReviewItem(release, timeout=5)) == GRPC.FAILED_PRECONDITION

    await alice.ReleaseReviewItem(m.ReleaseReviewItemRequest(item_id=item.item_id, reason="handing over"),
                                  timeout=5)
    await bob.ClaimReviewItem(take, timeout=5)
    reply = await bob.Decide(decide, timeout=10)
    message = await take_from_queue(channel, "ban.decisions", decision_with_id(reply.decision_id))
    assert env.decode(message.body, message.content_type, message.type).decision_made.moderator == "bob"


async def test_an_abandoned_claim_returns_to_the_queue(start_service, gateway_bus):
    service = start_moderation(start_service, PARLEY_MODERATION_CLAIM_SECONDS="1")
    async with grpc.aio.insecure_channel(service.grpc_addr) as grpc_channel:
        stub = moderation_pb2_grpc.ModerationStub(grpc_channel)
        alice, bob = As(stub, "alice"), As(stub, "bob")
        item = await filed(alice, gateway_bus)
        await alice.ClaimReviewItem(m.ClaimReviewItemRequest(item_id=item.item_id), timeout=5)
        back = await wait_listed(bob, item.report_id)  # open again once the lease ran out
        assert back.claimed_by == "" and back.status == m.REVIEW_STATUS_OPEN
        taken = await bob.ClaimReviewItem(m.ClaimReviewItemRequest(item_id=item.item_id), timeout=5)
        assert taken.claimed_by == "bob"


async def test_the_audit_log_records_who_did_what_and_why(as_, moderation, gateway_bus):
    alice, dana = as_("alice"), as_("dana")
    item = await filed(alice, gateway_bus)
    await alice.GetReviewItem(m.GetReviewItemRequest(item_id=item.item_id), timeout=5)
    await alice.ClaimReviewItem(m.ClaimReviewItemRequest(item_id=item.item_id), timeout=5)
    await alice.Decide(m.DecideRequest(item_id=item.item_id, action=m.ACTION_WARN, note="first offence"),
                       timeout=10)

    async def published():
        reply = await dana.ListAuditLog(m.ListAuditLogRequest(item_id=item.item_id), timeout=5)
        return reply.entries if reply.entries[-1].action == "decision_published" else None
    entries = await eventually(published)
    assert [(e.actor, e.action) for e in entries] == [
        ("intake", "report_filed"), ("moderator:alice", "viewed"), ("moderator:alice", "claimed"),
        ("moderator:alice", "decided"), ("outbox", "decision_published")]
    decided = json.loads(entries[3].detail_json)
    assert decided["note"] == "first offence" and decided["action"] == "ACTION_WARN"
    assert all(e.at_unix_ms > 0 and e.item_id == item.item_id for e in entries)
    assert [e.id for e in entries] == sorted(e.id for e in entries)

    code, out, _ = await modctl(moderation.grpc_addr, "audit", "--item", item.item_id, who="dana")
    assert code == 0 and "moderator:alice" in out and "first offence" in out
    code, _, err = await modctl(moderation.grpc_addr, "audit", who="alice")
    assert code == 1 and "PERMISSION_DENIED" in err


# ---------------------------------------------------------------- the evidence vault

async def test_vault_verify_finds_a_tampered_custody_entry(api, moderation, gateway_bus, tmp_path):
    for _ in range(2):
        await filed(api, gateway_bus)
    code, out, _ = await modctl(moderation.grpc_addr, "vault", "verify", who="dana")
    assert code == 0 and "vault OK: 4 custody entries, 2 blobs" in out

    path = database_path(moderation)
    with sqlite3.connect(path) as db:  # what someone with the database file can do
        db.execute("DROP TRIGGER custody_log_append_only_update")
        db.execute("UPDATE custody_log SET actor = 'moderator:nobody' WHERE seq = 3")
    code, out, _ = await modctl(moderation.grpc_addr, "vault", "verify", who="carol")
    assert code == 1 and "BROKEN at custody entry 3" in out and "altered" in out
    # the same check straight on the database file, without the service
    code, out, _ = await modctl("127.0.0.1:1", "vault", "verify", "--database-url", f"sqlite:///{path}", who=None)
    assert code == 1 and "BROKEN at custody entry 3" in out


async def test_vault_verify_finds_a_tampered_blob(api, moderation, gateway_bus):
    item = await filed(api, gateway_bus)
    full = await api.GetReviewItem(m.GetReviewItemRequest(item_id=item.item_id), timeout=5)
    with sqlite3.connect(database_path(moderation)) as db:
        db.execute("UPDATE vault_blobs SET content = ? WHERE sha256 = ?", (b"{}", full.vault_sha256[0]))
    reply = await As(api.stub, "dana").VerifyVault(m.VerifyVaultRequest(), timeout=30)
    assert not reply.ok and reply.broken_blob_sha256 == full.vault_sha256[0] and "altered" in reply.problem


async def test_expired_evidence_is_purged_and_the_vault_still_verifies(as_, moderation, gateway_bus):
    alice, dana = as_("alice"), as_("dana")
    expired, kept = await filed(alice, gateway_bus), await filed(alice, gateway_bus)
    for item in (expired, kept):
        await alice.Decide(m.DecideRequest(item_id=item.item_id, action=m.ACTION_DISMISS, note="banter"),
                           timeout=10)
    # Ninety days pass for the first case (its retention date, moved back).
    with sqlite3.connect(database_path(moderation)) as db:
        db.execute("UPDATE review_items SET retain_until_ms = 1 WHERE item_id = ?", (expired.item_id,))

    code, _, err = await modctl(moderation.grpc_addr, "vault", "purge", "--reason", "now", who="alice")
    assert code == 1 and "PERMISSION_DENIED" in err
    code, out, _ = await modctl(moderation.grpc_addr, "vault", "purge", "--reason", "retention check", who="dana")
    assert code == 0 and "purged 1 case(s), 1 blob(s)" in out and expired.item_id in out
    purged = await alice.GetReviewItem(m.GetReviewItemRequest(item_id=expired.item_id), timeout=5)
    assert purged.purged_at_unix_ms > 0 and not purged.evidence and not purged.vault_sha256
    assert purged.decision.note == "banter"  # the decision stays
    still = await alice.GetReviewItem(m.GetReviewItemRequest(item_id=kept.item_id), timeout=5)
    assert still.evidence and not still.purged_at_unix_ms
    assert (await dana.VerifyVault(m.VerifyVaultRequest(), timeout=30)).ok
    audit = await dana.ListAuditLog(m.ListAuditLogRequest(item_id=expired.item_id), timeout=5)
    (purge,) = [e for e in audit.entries if e.action == "purged"]
    assert purge.actor == "moderator:dana" and json.loads(purge.detail_json)["reason"] == "retention check"


# ---------------------------------------------------------------- escalation and export

async def test_an_escalated_case_is_exported_for_law_enforcement_by_child_safety_only(
        as_, moderation, gateway_bus, channel, tmp_path):
    alice, carol, dana = as_("alice"), as_("carol"), as_("dana")
    report = make_report(c.CATEGORY_CHILD_SAFETY)
    report.age_band = c.AGE_BAND_MINOR
    report.evidence[1].text = "how old are you? send a photo"
    await gateway_bus.publish(report)
    item = await wait_listed(alice, report.report_id)
    other = await filed(alice, gateway_bus)

    await alice.GetReviewItem(m.GetReviewItemRequest(item_id=item.item_id), timeout=5)  # triage
    reply = await alice.Decide(m.DecideRequest(item_id=item.item_id, action=m.ACTION_ESCALATE,
                                               note="an adult grooming a 13-year-old"), timeout=10)
    message = await take_from_queue(channel, "ban.decisions", decision_with_id(reply.decision_id))
    event = env.decode(message.body, message.content_type, message.type).decision_made
    assert (event.action, event.subject) == (m.ACTION_ESCALATE, report.reported)

    # The evidence is now for child safety only.
    get = m.GetReviewItemRequest(item_id=item.item_id)
    assert await code_of(lambda: alice.GetReviewItem(get, timeout=5)) == GRPC.PERMISSION_DENIED
    assert await code_of(lambda: dana.GetReviewItem(get, timeout=5)) == GRPC.PERMISSION_DENIED
    case = await carol.GetReviewItem(get, timeout=5)
    assert case.child_safety and case.escalated_at_unix_ms > 0
    assert case.retain_until_unix_ms - case.escalated_at_unix_ms == 365 * 24 * 3600 * 1000
    listed = await item_for(alice, report.report_id)
    assert listed.child_safety and not listed.evidence  # still listed, without evidence

    held = await dana.SetLegalHold(m.SetLegalHoldRequest(item_id=item.item_id, hold=True,
                                                         reason="preservation letter 2024-17"), timeout=5)
    assert held.legal_hold and not held.evidence

    export = m.ExportCaseRequest(item_id=item.item_id, reason="CyberTipline report")
    for who in (alice, dana):
        assert await code_of(lambda: who.ExportCase(export, timeout=10)) == GRPC.PERMISSION_DENIED
    not_escalated = m.ExportCaseRequest(item_id=other.item_id, reason="r")
    assert await code_of(lambda: carol.ExportCase(not_escalated, timeout=10)) == GRPC.FAILED_PRECONDITION

    out = tmp_path / "export"
    code, text, err = await modctl(moderation.grpc_addr, "export", item.item_id, "--out", str(out),
                                   "--reason", "CyberTipline report", who="carol")
    assert code == 0, err
    assert "1 blob(s)" in text
    package_bytes = (out / "package.json").read_bytes()
    package = json.loads(package_bytes)
    assert package["case_id"] == item.item_id and package["generated_by"] == {"name": "carol", "role": "child_safety"}
    assert package["incident"]["category"] == "CATEGORY_CHILD_SAFETY"
    assert package["incident"]["type"] == "Online Enticement of Children for Sexual Acts"
    assert package["incident"]["declared_age_band_of_pool"] == "AGE_BAND_MINOR"
    assert package["reported_user"]["device_token"] == report.reported.device_token
    assert package["reported_user"]["ip_hash"] == "ip-b" and "raw IP" in package["reported_user"]["ip_note"]
    assert {e["event"] for e in package["ip_capture_events"]} == {"reported by another user", "message sent"}
    assert ("reported user", "how old are you? send a photo") in [
        (msg["side"], msg["text"]) for msg in package["messages"]]
    assert package["snapshot_hashes"] == [{"hash": "pdq:abcd", "algorithm": "pdq"}]
    assert package["escalation"]["moderator"] == "alice"
    assert package["escalation"]["note"] == "an adult grooming a 13-year-old"
    assert package["retention"]["legal_hold"] is True
    (file,) = package["files"]
    blob = (out / file["path"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == file["sha256"] and json.loads(blob)["report_id"] == report.report_id
    sums = (out / "SHA256SUMS").read_text()
    assert f"{hashlib.sha256(package_bytes).hexdigest()}  package.json" in sums

    # Recorded: who exported, why, and the package's hash, in both logs.
    audit = await dana.ListAuditLog(m.ListAuditLogRequest(item_id=item.item_id), timeout=5)
    exported = [e for e in audit.entries if e.action == "exported"]
    assert [e.actor for e in exported] == ["moderator:carol"]
    assert json.loads(exported[0].detail_json)["package_sha256"] == hashlib.sha256(package_bytes).hexdigest()
    assert [e.action for e in audit.entries].count("view_denied") == 2
    assert (await carol.VerifyVault(m.VerifyVaultRequest(), timeout=30)).ok
    with sqlite3.connect(database_path(moderation)) as db:
        (custody_detail,) = db.execute("SELECT detail FROM custody_log WHERE action = 'exported'").fetchone()
    assert json.loads(custody_detail)["package_sha256"] == hashlib.sha256(package_bytes).hexdigest()

    code, _, err = await modctl(moderation.grpc_addr, "export", item.item_id, "--out", str(out),
                                "--reason", "again", who="carol")
    assert code == 2 and "never overwrite" in err


# ---------------------------------------------------------------- suspected evaders

def suspicion(device: str, suspicion_id: str | None = None) -> events_pb2.EvaderSuspected:
    return events_pb2.EvaderSuspected(
        suspicion_id=suspicion_id or uuid.uuid4().hex,
        identity=c.Identity(device_token=device, ip_hash="ip-banned", ip_prefix_hash="pfx-banned"),
        linked_ban_id="ban-7", linked_subject=ban_pb2.Subject(ip_hash="ip-banned"),
        linked_category=c.CATEGORY_HARASSMENT, reason="new device on a banned IP address",
        seen_at_unix_ms=1_700_000_000_000)


async def test_a_suspected_evader_becomes_a_review_item_to_ban_or_dismiss(api, moderation, ban_bus, channel):
    device = f"dev-{uuid.uuid4().hex[:8]}"
    first = suspicion(device)
    await ban_bus.publish(first)
    await ban_bus.publish(first)  # redelivered: the same suspicion
    report_id = f"suspicion:{first.suspicion_id}"
    item = await wait_listed(api, report_id)
    assert item.kind == m.REVIEW_ITEM_KIND_SUSPECTED_EVADER
    assert (item.linked_ban_id, item.linked_subject) == ("ban-7", "ip_hash:ip-banned")
    assert item.reported.device_token == device and item.comment == "new device on a banned IP address"

    async def both_handled():
        return metric_value(moderation.metrics_port, "parley_moderation_suspicions_received_total",
                            outcome="duplicate") == 1
    await eventually(both_handled)
    assert (await item_for(api, report_id)).report_count == 1
    listed = await api.ListReviewItems(m.ListReviewItemsRequest(kind=m.REVIEW_ITEM_KIND_SUSPECTED_EVADER),
                                       timeout=5)
    assert [i.item_id for i in listed.items] == [item.item_id]

    reply = await api.Decide(m.DecideRequest(item_id=item.item_id, action=m.ACTION_BAN, duration_s=0,
                                             note="same person: same address, minutes after the ban"), timeout=10)
    message = await take_from_queue(channel, "ban.decisions", decision_with_id(reply.decision_id))
    decision = env.decode(message.body, message.content_type, message.type).decision_made
    assert decision.subject.device_token == device and decision.action == m.ACTION_BAN
    assert decision.category == c.CATEGORY_HARASSMENT and decision.duration_s == 0

    other = suspicion(f"dev-{uuid.uuid4().hex[:8]}")
    await ban_bus.publish(other)
    bystander = await wait_listed(api, f"suspicion:{other.suspicion_id}")
    await api.Decide(m.DecideRequest(item_id=bystander.item_id, action=m.ACTION_DISMISS,
                                     note="a school network"), timeout=10)


async def test_a_malformed_suspicion_is_dead_lettered_with_the_reason(moderation, ban_bus, channel):
    bad = suspicion("dev-x")
    bad.linked_ban_id = ""
    await ban_bus.publish(bad)
    dead = await take_from_queue(channel, "moderation.suspicions.dlq",
                                 lambda msg: msg.headers.get("x-parley-reason") == "suspicion without linked_ban_id")
    assert dead.headers["x-parley-queue"] == "moderation.suspicions"


# ---------------------------------------------------------------- development tokens

async def test_without_configured_tokens_the_development_tokens_work_with_a_warning(start_service):
    service = start_service("moderation")  # no PARLEY_MODERATION_MODERATOR_TOKENS
    code, out, _ = await modctl(service.grpc_addr, "whoami", who=None,
                                extra_env={"PARLEY_MODCTL_TOKEN": "parley-dev-child-safety"})
    assert (code, out.strip()) == (0, "dev-child-safety (child_safety)")
    assert "development moderator tokens" in service.logs()
