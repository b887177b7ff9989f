"""The moderation service as a real process: reports in through the real
RabbitMQ, the review queue over real gRPC (with moderator tokens), decisions
out on the durable ban.decisions queue, poison to the dead-letter queue, the
store kept across a restart, and parley-modctl against it. The people-in-
the-loop features (claims, roles, audit, vault, export, evader suspicions)
are in test_people_in_the_loop.py."""
from __future__ import annotations

import uuid

import aio_pika
import grpc
import pytest

from parley.v1 import common_pb2 as c
from parley.v1 import events_pb2
from parley.v1 import moderation_pb2 as m
from parley.v1 import moderation_pb2_grpc
from services.moderation.app import MIGRATIONS, VERSION_TABLE
from services.moderation.store import ReviewStore
from services.runtime import envelope as env
from services.runtime.db import make_engine, migrate
from services.runtime.topology import EVENTS_EXCHANGE
from tests.integration.moderation.servicekit import (As, decision_with_id, eventually, item_for, make_report,
                                                     modctl, start_moderation, take_from_queue, wait_listed)
from tests.support import metric_value

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- reports

async def test_a_report_lands_in_the_review_queue_with_its_evidence(api, moderation, gateway_bus):
    report = make_report(c.CATEGORY_SEXUAL_CONTENT)
    await gateway_bus.publish(report)
    item = await wait_listed(api, report.report_id)
    assert item.status == m.REVIEW_STATUS_OPEN and item.category == c.CATEGORY_SEXUAL_CONTENT
    assert item.kind == m.REVIEW_ITEM_KIND_REPORT and item.report_count == 1
    assert item.evidence_count == 4 and not item.evidence  # a list shows no evidence
    assert item.reported.device_token == report.reported.device_token
    assert item.reporter.device_token == "dev-reporter" and item.comment == "kept insulting me"
    assert item.priority == 5000 + 75 + 4 and item.created_at_unix_ms > 0 and not item.decision_id

    fetched = await api.GetReviewItem(m.GetReviewItemRequest(item_id=item.item_id), timeout=5)
    assert [(line.from_reporter, line.text) for line in fetched.evidence] == [
        (True, "hi"), (False, "you are an idiot"), (True, "bye")]
    assert list(fetched.snapshot_hashes) == ["pdq:abcd"]
    assert [r.report_id for r in fetched.reports] == [report.report_id] and len(fetched.vault_sha256) == 1
    fetched.ClearField("evidence"), fetched.ClearField("snapshot_hashes")
    fetched.ClearField("reports"), fetched.ClearField("vault_sha256")
    assert fetched == item
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await api.GetReviewItem(m.GetReviewItemRequest(item_id="no-such-item"), timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    # Other tests of this run may have left reports in the shared queue: the
    # gauge must agree with what the API lists as open, this report among them.
    async def gauge_counts_open_items():
        listed = await api.ListReviewItems(m.ListReviewItemsRequest(status=m.REVIEW_STATUS_OPEN, limit=500))
        open_ids = {i.report_id for i in listed.items}
        gauge = metric_value(moderation.metrics_port, "parley_moderation_review_queue_open")
        return report.report_id in open_ids and gauge == len(open_ids)
    await eventually(gauge_counts_open_items)


async def test_a_report_published_twice_makes_one_item(api, moderation, gateway_bus):
    report = make_report()
    await gateway_bus.publish(report)
    await gateway_bus.publish(report)  # the gateway retried: a new event, the same report

    async def both_handled():
        return metric_value(moderation.metrics_port, "parley_moderation_reports_received_total",
                            category="CATEGORY_HARASSMENT", outcome="duplicate") == 1
    await eventually(both_handled)
    assert await item_for(api, report.report_id) is not None  # exactly one: item_for checks
    assert metric_value(moderation.metrics_port, "parley_moderation_reports_received_total",
                        category="CATEGORY_HARASSMENT", outcome="stored") == 1


async def test_poison_reports_are_dead_lettered_with_the_reason(api, moderation, gateway_bus, channel):
    exchange = await channel.get_exchange(EVENTS_EXCHANGE)
    garbage = b"\xff\xfe not a protobuf " + uuid.uuid4().bytes
    await exchange.publish(aio_pika.Message(garbage), routing_key="gateway.report_filed")
    nameless = make_report()
    nameless.report_id = ""
    await gateway_bus.publish(nameless)

    dead = await take_from_queue(channel, "moderation.reports.dlq", lambda msg: msg.body == garbage)
    assert dead.headers["x-parley-reason"].startswith("not a parley.v1.Envelope")
    dead = await take_from_queue(channel, "moderation.reports.dlq",
                                 lambda msg: msg.headers.get("x-parley-reason") == "report without report_id")
    assert dead.headers["x-parley-queue"] == "moderation.reports"

    # and the service goes on: a good report after the poison is queued
    report = make_report()
    await gateway_bus.publish(report)
    await wait_listed(api, report.report_id)


async def test_chat_copies_are_counted(moderation, gateway_bus):
    for band in (c.AGE_BAND_MINOR, c.AGE_BAND_MINOR, c.AGE_BAND_ADULT):
        await gateway_bus.publish(events_pb2.MessageObserved(
            match_id="match-1", device_token="dev-x", mode=c.MODE_VIDEO, age_band=band, text="hello"))

    async def counted():
        return (metric_value(moderation.metrics_port, "parley_moderation_messages_observed_total",
                             mode="MODE_VIDEO", age_band="AGE_BAND_MINOR") == 2
                and metric_value(moderation.metrics_port, "parley_moderation_messages_observed_total",
                                 mode="MODE_VIDEO", age_band="AGE_BAND_ADULT") == 1)
    await eventually(counted)


async def test_a_report_survives_a_restart(start_service, gateway_bus, tmp_path):
    database_url = f"sqlite:///{tmp_path}/kept.db"
    first = start_moderation(start_service, PARLEY_MODERATION_DATABASE_URL=database_url)
    report = make_report()
    await gateway_bus.publish(report)
    async with grpc.aio.insecure_channel(first.grpc_addr) as grpc_channel:
        item = await wait_listed(As(moderation_pb2_grpc.ModerationStub(grpc_channel), "alice"), report.report_id)
    assert first.stop() == 0

    second = start_moderation(start_service, PARLEY_MODERATION_DATABASE_URL=database_url)
    async with grpc.aio.insecure_channel(second.grpc_addr) as grpc_channel:
        kept = await As(moderation_pb2_grpc.ModerationStub(grpc_channel), "alice").ListReviewItems(
            m.ListReviewItemsRequest(), timeout=5)
    assert list(kept.items) == [item]


# ---------------------------------------------------------------- decisions

async def test_a_decision_reaches_the_ban_decisions_queue(api, moderation, gateway_bus, channel):
    report = make_report()
    await gateway_bus.publish(report)
    item = await wait_listed(api, report.report_id)

    reply = await api.Decide(m.DecideRequest(item_id=item.item_id, action=m.ACTION_BAN, duration_s=86400,
                                             moderator="mallory", note="slurs"), timeout=10)
    message = await take_from_queue(channel, "ban.decisions", decision_with_id(reply.decision_id))
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.type == "parley.v1.DecisionMade"
    decision = env.decode(message.body, message.content_type, message.type).decision_made
    assert decision.subject == report.reported
    assert (decision.action, decision.duration_s, decision.category) == (
        m.ACTION_BAN, 86400, c.CATEGORY_HARASSMENT)
    # the authenticated moderator, whatever the request claimed
    assert (decision.item_id, decision.report_id, decision.moderator, decision.note) == (
        item.item_id, report.report_id, "alice", "slurs")

    decided = await api.GetReviewItem(m.GetReviewItemRequest(item_id=item.item_id), timeout=5)
    assert decided.status == m.REVIEW_STATUS_DECIDED and decided.decision_id == reply.decision_id
    assert await item_for(api, report.report_id, m.REVIEW_STATUS_OPEN) is None
    assert metric_value(moderation.metrics_port, "parley_moderation_decisions_total", action="ACTION_BAN") == 1
    assert metric_value(moderation.metrics_port, "parley_moderation_decisions_unpublished") == 0


async def test_bad_decisions_get_clear_errors(api, gateway_bus):
    report = make_report()
    await gateway_bus.publish(report)
    item = await wait_listed(api, report.report_id)

    async def code_of(**fields) -> grpc.StatusCode:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await api.Decide(m.DecideRequest(**fields), timeout=5)
        return error.value.code()

    assert await code_of(item_id=item.item_id, action=m.ACTION_UNSPECIFIED, note="x") == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert await code_of(item_id=item.item_id, action=m.ACTION_BAN, duration_s=-5, note="x") == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert await code_of(item_id=item.item_id, action=m.ACTION_WARN) == grpc.StatusCode.INVALID_ARGUMENT  # no note
    assert await code_of(item_id="no-such-item", action=m.ACTION_WARN, note="x") == grpc.StatusCode.NOT_FOUND
    await api.Decide(m.DecideRequest(item_id=item.item_id, action=m.ACTION_DISMISS, note="banter"), timeout=10)
    assert await code_of(item_id=item.item_id, action=m.ACTION_WARN, note="x") == \
        grpc.StatusCode.FAILED_PRECONDITION


async def test_a_decision_left_unpublished_by_a_crash_is_published_at_start(start_service, channel, tmp_path):
    # The state a crash between commit and publish leaves: a stored decision
    # with no confirmed event.
    database_url = f"sqlite:///{tmp_path}/crashed.db"
    engine = make_engine(database_url)
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    store = ReviewStore(engine)
    report = make_report()
    item, _ = await store.add_report(report, "event-1")
    decision = await store.decide(item.item_id, m.ACTION_WARN, c.CATEGORY_UNSPECIFIED, 0, "alice", "rude")
    assert await store.count_unpublished() == 1

    service = start_moderation(start_service, PARLEY_MODERATION_DATABASE_URL=database_url)
    message = await take_from_queue(channel, "ban.decisions", decision_with_id(decision.decision_id))
    published = env.decode(message.body, message.content_type, message.type).decision_made
    assert published.subject == report.reported and published.action == m.ACTION_WARN

    async def marked():
        return await store.count_unpublished() == 0
    await eventually(marked)
    assert (await store.audit_entries(item.item_id))[-1].action == "decision_published"

    async def gauge_zero():
        return metric_value(service.metrics_port, "parley_moderation_decisions_unpublished") == 0
    await eventually(gauge_zero)
    await engine.dispose()


# ---------------------------------------------------------------- parley-modctl

async def test_modctl_lists_shows_and_decides(api, moderation, gateway_bus, channel):
    report = make_report(c.CATEGORY_SPAM)
    await gateway_bus.publish(report)
    item = await wait_listed(api, report.report_id)
    addr = moderation.grpc_addr

    code, out, _ = await modctl(addr, "list")
    assert code == 0 and item.item_id in out and "spam" in out

    code, out, _ = await modctl(addr, "show", item.item_id)
    assert code == 0
    assert "reporter: hi" in out and "reported: you are an idiot" in out and "reporter: bye" in out
    assert out.index("reporter: hi") < out.index("reported: you are an idiot") < out.index("reporter: bye")

    code, out, _ = await modctl(addr, "decide", item.item_id, "--action", "ban", "--duration", "24h",
                                "--category", "harassment", "--note", "spam and abuse")
    assert code == 0 and "decision" in out
    decision_id = out.split()[-1]
    message = await take_from_queue(channel, "ban.decisions", decision_with_id(decision_id))
    decision = env.decode(message.body, message.content_type, message.type).decision_made
    assert (decision.duration_s, decision.category, decision.moderator) == (86400, c.CATEGORY_HARASSMENT, "bob")

    code, out, _ = await modctl(addr, "list")
    assert item.item_id not in out
    code, out, _ = await modctl(addr, "list", "--all")
    assert item.item_id in out and "decided" in out

    code, _, err = await modctl(addr, "decide", item.item_id, "--action", "warn", "--note", "again")
    assert code == 1 and "FAILED_PRECONDITION" in err and "already decided" in err
    code, _, err = await modctl(addr, "show", "no-such-item")
    assert code == 1 and "NOT_FOUND" in err

    code, out, _ = await modctl(addr, "whoami")
    assert (code, out.strip()) == (0, "bob (moderator)")
    code, _, err = await modctl(addr, "list", who=None)
    assert code == 2 and "PARLEY_MODCTL_TOKEN" in err
    code, _, err = await modctl(addr, "list", who=None, extra_env={"PARLEY_MODCTL_TOKEN": "not-a-token"})
    assert code == 1 and "UNAUTHENTICATED" in err
