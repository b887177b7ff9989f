"""The detectors wired into the moderation service, as a real process on the
real broker: chat lines (published as the gateway publishes them, with the
match id header) and video snapshots in; session actions out on the relay
exchange to the gateway holding the session, review items with evidence,
and automatic bans as durable decisions through the outbox; shadow rules
counted but acting on nothing; poison dead-lettered with the reason; lines
of one conversation kept on one replica; hash banks from a file and added
at run time. The whole flow through a real gateway and the ban service is
in tests/integration/e2e/test_moderation_flow.py."""
from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import grpc
import pytest

from parley.v1 import common_pb2 as c
from parley.v1 import events_pb2
from parley.v1 import moderation_pb2 as m
from parley.v1 import moderation_pb2_grpc
from services.moderation.snapshots import decode_snapshot, pdq_hashes
from services.runtime import envelope as env
from services.runtime.topology import EVENTS_EXCHANGE, MATCH_ID_HEADER, RELAY_EXCHANGE
from tests.integration.moderation.servicekit import (As, eventually, make_report, modctl, start_moderation,
                                                     take_from_queue)
from tests.support import metric_value

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SNAPSHOTS = ROOT / "tests" / "fixtures" / "snapshots"
Kind = events_pb2.SessionAction.Kind

GROOMING = [("a", "hey"), ("b", "hi"), ("a", "how old are u"), ("b", "13"), ("a", "cool. ur really pretty i bet"),
            ("b", "lol thanks"), ("a", "are your parents home"), ("b", "no theyre at work"),
            ("a", "good. dont tell them about me ok, its our secret")]


# ---------------------------------------------------------------- the test plays the gateway

class Gateway:
    """Publishes chat lines and snapshots as a gateway replica does, and
    hears the session actions moderation sends to that replica."""

    def __init__(self, gateway_bus, channel, gateway_id: str) -> None:
        self.bus = gateway_bus
        self.channel = channel
        self.gateway_id = gateway_id
        self.actions: asyncio.Queue = asyncio.Queue()

    async def listen(self) -> "Gateway":
        relay = await self.channel.declare_exchange(RELAY_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
        queue = await self.channel.declare_queue(f"test.relay.{self.gateway_id}", exclusive=True)
        await queue.bind(relay, self.gateway_id)

        async def on_message(message):
            async with message.process():
                envelope = env.decode(message.body, message.content_type, message.type)
                if envelope.WhichOneof("event") == "session_action":
                    await self.actions.put(envelope.session_action)
        await queue.consume(on_message)
        return self

    def session(self, name: str) -> c.SessionRef:
        return c.SessionRef(gateway_id=self.gateway_id, session_id=name)

    async def say(self, match_id: str, who: str, text: str, band=c.AGE_BAND_MINOR, at_ms: int | None = None,
                  device: str | None = None) -> events_pb2.Envelope:
        line = events_pb2.MessageObserved(
            match_id=match_id, session=self.session(f"{match_id}/{who}"), device_token=device or f"dev-{match_id}-{who}",
            mode=c.MODE_TEXT, age_band=band, text=text, sent_at_unix_ms=at_ms or int(time.time() * 1000))
        return await self.bus.publish(line, headers={MATCH_ID_HEADER: match_id})

    async def conversation(self, match_id: str, lines, band=c.AGE_BAND_MINOR) -> None:
        start = int(time.time() * 1000) - 60_000
        for i, (who, text) in enumerate(lines):
            await self.say(match_id, who, text, band, at_ms=start + 5_000 * i)

    async def snapshot(self, match_id: str, who: str, jpeg: bytes, band=c.AGE_BAND_ADULT) -> events_pb2.Envelope:
        return await self.bus.publish(events_pb2.SnapshotObserved(
            match_id=match_id, session=self.session(f"{match_id}/{who}"),
            identity=c.Identity(device_token=f"dev-{match_id}-{who}", ip_hash="iph", ip_prefix_hash="pfx"),
            mode=c.MODE_VIDEO, age_band=band, jpeg=jpeg, sha256=hashlib.sha256(jpeg).hexdigest(),
            taken_at_unix_ms=int(time.time() * 1000)))

    async def next_action(self, timeout: float = 30.0) -> events_pb2.SessionAction:
        return await asyncio.wait_for(self.actions.get(), timeout)


@pytest.fixture
async def gateway(gateway_bus, channel):
    return await Gateway(gateway_bus, channel, f"gw-{uuid.uuid4().hex[:6]}").listen()


@pytest.fixture
async def decisions(channel):
    """A copy of every moderation.decision_made (the ban service's queue is
    left alone): a queue of the test's own on the events exchange."""
    events = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(f"test.decisions.{uuid.uuid4().hex[:6]}", exclusive=True)
    await queue.bind(events, "moderation.decision_made")
    return queue


async def next_decision(queue, timeout: float = 30.0) -> events_pb2.DecisionMade:
    async def got():
        message = await queue.get(no_ack=True, fail=False)
        return env.decode(message.body, message.content_type, message.type) if message else None
    return (await eventually(got, timeout)).decision_made


def as_(stub, name: str) -> As:
    return As(stub, name)


async def items(api, **filters) -> list[m.ReviewItem]:
    reply = await api.ListReviewItems(m.ListReviewItemsRequest(limit=500, **filters), timeout=5)
    return list(reply.items)


def counted(port: int, name: str, **labels) -> float:
    return metric_value(port, name, **labels)


# ---------------------------------------------------------------- chat lines

async def test_a_grooming_conversation_ends_escalates_and_asks_for_a_permanent_ban(
        moderation, stub, gateway, decisions):
    carol = As(stub, "carol")  # child safety: the evidence of such a case is hers to see
    await gateway.conversation("m-groom", GROOMING)

    # warned first (grooming cues), then the conversation ended
    warn = await gateway.next_action()
    assert warn.kind == Kind.KIND_WARN and warn.session.session_id == "m-groom/a"
    end = await gateway.next_action()
    assert end.kind == Kind.KIND_END_CONVERSATION and end.match_id == "m-groom"
    assert end.session == gateway.session("m-groom/a") and end.category == c.CATEGORY_CHILD_SAFETY
    assert end.message

    decision = await next_decision(decisions)
    assert decision.action == m.ACTION_BAN and decision.duration_s == 0
    assert decision.category == c.CATEGORY_CHILD_SAFETY and decision.moderator == "auto:text.grooming"
    assert decision.subject.device_token == "dev-m-groom-a"

    async def escalated():
        found = [i for i in await items(carol, status=m.REVIEW_STATUS_OPEN) if i.match_id == "m-groom"]
        return found[0] if found else None
    item = await eventually(escalated, 30)
    assert item.kind == m.REVIEW_ITEM_KIND_AUTOMATED and item.category == c.CATEGORY_CHILD_SAFETY
    assert item.child_safety and item.priority >= 7699 and item.reported.device_token == "dev-m-groom-a"
    full = await carol.GetReviewItem(m.GetReviewItemRequest(item_id=item.item_id), timeout=5)
    assert [(line.from_reporter, line.text) for line in full.evidence] == [
        (who == "b", text) for who, text in GROOMING]
    assert full.reports[0].source == "detector:text.grooming"

    # the ban's own record: decided by the detector, naming the review item
    record = (await carol.GetReviewItem(m.GetReviewItemRequest(item_id=decision.item_id), timeout=5))
    assert record.status == m.REVIEW_STATUS_DECIDED and record.decision.moderator == "auto:text.grooming"
    assert item.item_id in record.comment and "m-groom" in record.comment

    port = moderation.metrics_port
    assert counted(port, "parley_moderation_actions_total", action="request_ban") == 1
    assert counted(port, "parley_moderation_detections_total", detector="grooming",
                   category="CATEGORY_CHILD_SAFETY", mode="live") >= 1
    assert counted(port, "parley_moderation_event_lag_seconds_count", event="message") == len(GROOMING)

    async def oldest_child_safety_item_is_gauged():
        return counted(port, "parley_moderation_review_oldest_open_seconds", category="CATEGORY_CHILD_SAFETY") > 0
    await eventually(oldest_child_safety_item_is_gauged, 30)


async def test_a_shadow_rule_counts_but_does_nothing(start_service, tmp_path, gateway_bus, channel):
    policy = tmp_path / "policy.toml"
    policy.write_text('shadow_rules = ["harassment.*"]\n')
    service = start_moderation(start_service, PARLEY_MODERATION_POLICY_FILE=str(policy))
    gateway = await Gateway(gateway_bus, channel, f"gw-{uuid.uuid4().hex[:6]}").listen()
    port = service.metrics_port

    await gateway.say("m-shadow", "a", "you are a fucking idiot", c.AGE_BAND_ADULT)
    await gateway.say("m-shadow", "a", "shut up you stupid bitch", c.AGE_BAND_ADULT)

    async def shadow_counted():
        return (counted(port, "parley_moderation_rule_hits_total", rule="harassment.insult", mode="shadow") == 2
                and counted(port, "parley_moderation_shadow_actions_total", action="end_conversation") == 1)
    await eventually(shadow_counted, 30)
    assert counted(port, "parley_moderation_detections_total", detector="harassment",
                   category="CATEGORY_HARASSMENT", mode="shadow") == 2

    # A live rule after it: its action is the first this gateway hears of.
    await gateway.say("m-marker", "a", "im 15", c.AGE_BAND_ADULT)
    first = await gateway.next_action()
    assert first.match_id == "m-marker" and first.category == c.CATEGORY_UNDERAGE
    assert counted(port, "parley_moderation_actions_total", action="warn") == 0
    async with grpc.aio.insecure_channel(service.grpc_addr) as grpc_channel:
        alice = As(moderation_pb2_grpc.ModerationStub(grpc_channel), "alice")

        async def marker_escalated():
            return {i.match_id for i in await items(alice)}
        assert await eventually(marker_escalated, 30) == {"m-marker"}  # and nothing for the shadowed lines


async def test_poison_chat_lines_are_dead_lettered_with_the_reason(moderation, gateway, gateway_bus, channel):
    events = await channel.get_exchange(EVENTS_EXCHANGE)
    garbage = b"\xff\xfe not a protobuf " + uuid.uuid4().bytes
    await events.publish(aio_pika.Message(garbage, headers={MATCH_ID_HEADER: "m-poison"}),
                         routing_key="gateway.message_sent")
    # a report's envelope on the chat lines' route, and a line without a conversation
    wrong = env.wrap(make_report(), "gateway/test")
    await events.publish(aio_pika.Message(wrong.SerializeToString(), content_type=env.CONTENT_TYPE,
                                          type="parley.v1.ReportFiled", message_id=wrong.event_id,
                                          headers={MATCH_ID_HEADER: "m-poison"}),
                         routing_key="gateway.message_sent")
    nameless = await gateway_bus.publish(events_pb2.MessageObserved(text="hello", age_band=c.AGE_BAND_ADULT),
                                         headers={MATCH_ID_HEADER: ""})

    dead = await take_from_queue(channel, "moderation.messages.dlq", lambda msg: msg.body == garbage, 30)
    assert dead.headers["x-parley-reason"].startswith("not a parley.v1.Envelope")
    assert dead.headers["x-parley-queue"].startswith("moderation.messages")
    dead = await take_from_queue(channel, "moderation.messages.dlq",
                                 lambda msg: msg.message_id == wrong.event_id, 30)
    assert dead.headers["x-parley-reason"].startswith("report_filed on moderation.messages")
    dead = await take_from_queue(channel, "moderation.messages.dlq",
                                 lambda msg: msg.message_id == nameless.event_id, 30)
    assert dead.headers["x-parley-reason"] == "message_observed without match_id"

    # and the lines after the poison are judged
    await gateway.say("m-after", "a", "im 15", c.AGE_BAND_ADULT)
    assert (await gateway.next_action()).match_id == "m-after"
    assert counted(moderation.metrics_port, "parley_moderation_events_dead_lettered_total",
                   queue="moderation.messages") == 3


async def test_each_conversation_stays_on_one_replica(start_service, tmp_path, gateway_bus, channel):
    """Two replicas share the store; each takes its share of the
    conversations, whole: a grooming pattern needs every line of its
    conversation in one place, and each escalation holds all of them."""
    database_url = f"sqlite:///{tmp_path}/shared.db"
    first = start_moderation(start_service, PARLEY_MODERATION_DATABASE_URL=database_url)
    second = start_moderation(start_service, PARLEY_MODERATION_DATABASE_URL=database_url)
    gateway = await Gateway(gateway_bus, channel, f"gw-{uuid.uuid4().hex[:6]}").listen()
    groomings = [f"m-g{i}" for i in range(8)]
    for match_id in groomings:
        await gateway.conversation(match_id, GROOMING)
    chatter = [(who, text) for who, text in (("a", "hi there"), ("b", "hello"), ("a", "what music do you like"),
                                             ("b", "mostly jazz"))]
    for i in range(40):
        await gateway.conversation(f"m-c{i}", chatter, c.AGE_BAND_ADULT)
    total = len(groomings) * len(GROOMING) + 40 * len(chatter)

    async def all_classified():
        return sum(counted(s.metrics_port, "parley_moderation_messages_classified_total")
                   for s in (first, second)) == total
    await eventually(all_classified, 60)
    shares = [counted(s.metrics_port, "parley_moderation_messages_classified_total") for s in (first, second)]
    assert all(shares), f"one replica took every line: {shares}"
    assert all(counted(s.metrics_port, "parley_moderation_message_sharding") == 1 for s in (first, second))

    async with grpc.aio.insecure_channel(first.grpc_addr) as grpc_channel:
        carol = As(moderation_pb2_grpc.ModerationStub(grpc_channel), "carol")

        async def every_grooming_escalated():
            found = {i.match_id: i for i in await items(carol, status=m.REVIEW_STATUS_OPEN)}
            return found if set(groomings) <= set(found) else None
        found = await eventually(every_grooming_escalated, 60)
        for match_id in groomings:
            item = await carol.GetReviewItem(m.GetReviewItemRequest(item_id=found[match_id].item_id), timeout=5)
            assert len(item.evidence) == len(GROOMING), f"{match_id}: lines split between replicas"


async def test_without_sharding_one_shared_queue_is_used(start_service, gateway):
    service = start_moderation(start_service, PARLEY_MODERATION_SHARD_MESSAGES="false")
    assert counted(service.metrics_port, "parley_moderation_message_sharding") == 0
    await gateway.say("m-shared", "a", "im 15", c.AGE_BAND_ADULT)
    action = await gateway.next_action()
    assert action.kind == Kind.KIND_END_CONVERSATION and action.category == c.CATEGORY_UNDERAGE


# ---------------------------------------------------------------- snapshots

def pdq_of(name: str) -> str:
    return pdq_hashes(decode_snapshot((SNAPSHOTS / name).read_bytes()).pdq_rgb).hex


async def test_a_snapshot_matching_a_bank_file_ends_the_session_and_asks_for_a_permanent_ban(
        start_service, tmp_path, gateway_bus, channel, decisions):
    bank = tmp_path / "bank.txt"
    bank.write_text(f"# test bank\n{pdq_of('scene.jpg')},case-17\n")
    service = start_moderation(start_service, PARLEY_MODERATION_HASH_BANKS=f"testbank={bank}")
    gateway = await Gateway(gateway_bus, channel, f"gw-{uuid.uuid4().hex[:6]}").listen()
    jpeg = (SNAPSHOTS / "scene.jpg").read_bytes()
    await gateway.snapshot("m-video", "b", jpeg)

    end = await gateway.next_action()
    assert end.kind == Kind.KIND_END_CONVERSATION and end.category == c.CATEGORY_KNOWN_BAD_HASH
    assert end.session.session_id == "m-video/b"
    decision = await next_decision(decisions)
    assert decision.action == m.ACTION_BAN and decision.duration_s == 0
    assert decision.category == c.CATEGORY_KNOWN_BAD_HASH and decision.moderator == "auto:snapshot.hash_bank"
    assert decision.subject == c.Identity(device_token="dev-m-video-b", ip_hash="iph", ip_prefix_hash="pfx")
    async with grpc.aio.insecure_channel(service.grpc_addr) as grpc_channel:
        carol = As(moderation_pb2_grpc.ModerationStub(grpc_channel), "carol")

        async def escalated():
            found = [i for i in await items(carol, status=m.REVIEW_STATUS_OPEN) if i.match_id == "m-video"]
            return found[0] if found else None
        item = await eventually(escalated, 30)
        full = await carol.GetReviewItem(m.GetReviewItemRequest(item_id=item.item_id), timeout=5)
    assert full.category == c.CATEGORY_KNOWN_BAD_HASH and full.child_safety and full.priority >= 7699
    assert f"pdq:{pdq_of('scene.jpg')}" in full.snapshot_hashes
    assert hashlib.sha256(jpeg).hexdigest() in full.vault_sha256  # the frame itself, in the vault
    assert "case-17" in full.reports[0].comment
    assert counted(service.metrics_port, "parley_moderation_snapshots_classified_total", verdict="severe") == 1
    assert counted(service.metrics_port, "parley_moderation_hash_bank_entries", bank="testbank") == 1


async def test_poison_snapshots_are_dead_lettered_with_the_reason(moderation, gateway, channel):
    sent = await gateway.snapshot("m-bad", "a", b"\xff\xd8\xff\xe0 this is no JPEG at all")
    dead = await take_from_queue(channel, "moderation.snapshots.dlq",
                                 lambda msg: msg.message_id == sent.event_id, 30)
    assert dead.headers["x-parley-reason"].startswith("snapshot ")
    assert dead.headers["x-parley-queue"] == "moderation.snapshots"
    assert counted(moderation.metrics_port, "parley_moderation_snapshots_classified_total", verdict="invalid") == 1


async def test_a_report_gets_the_reported_sides_recent_snapshot_hashes(moderation, api, gateway, gateway_bus):
    jpeg = (SNAPSHOTS / "scene.jpg").read_bytes()
    await gateway.snapshot("m-seen", "b", jpeg)

    async def analyzed():
        return counted(moderation.metrics_port, "parley_moderation_snapshots_classified_total", verdict="clean") >= 1
    await eventually(analyzed, 30)
    report = make_report()
    report.match_id = "m-seen"
    report.reported_session.CopyFrom(gateway.session("m-seen/b"))
    await gateway_bus.publish(report)

    async def listed():
        found = [i for i in await items(api) if i.report_id == report.report_id]
        return found[0] if found else None
    item = await eventually(listed, 30)
    full = await api.GetReviewItem(m.GetReviewItemRequest(item_id=item.item_id), timeout=5)
    assert list(full.snapshot_hashes) == ["pdq:abcd", f"sha256:{hashlib.sha256(jpeg).hexdigest()}",
                                          f"pdq:{pdq_of('scene.jpg')}"]


async def test_hashes_added_at_run_time_are_matched_kept_and_audited(start_service, tmp_path, gateway_bus,
                                                                     channel):
    database_url = f"sqlite:///{tmp_path}/banks.db"
    service = start_moderation(start_service, PARLEY_MODERATION_DATABASE_URL=database_url,
                               PARLEY_MODERATION_NUDITY_ENABLED="false")
    gateway = await Gateway(gateway_bus, channel, f"gw-{uuid.uuid4().hex[:6]}").listen()
    scene = pdq_of("scene.jpg")
    async with grpc.aio.insecure_channel(service.grpc_addr) as grpc_channel:
        stub = moderation_pb2_grpc.ModerationStub(grpc_channel)
        add = m.AddBankHashesRequest(bank="internal", hashes=[scene], source_ids=["item-1"], reason="found in case 9")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await As(stub, "alice").AddBankHashes(add, timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await As(stub, "carol").AddBankHashes(m.AddBankHashesRequest(bank="internal", hashes=["12ab"],
                                                                         reason="typo"), timeout=10)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        reply = await As(stub, "carol").AddBankHashes(add, timeout=10)
        assert reply.added == 1 and reply.bank_size == 1

    await gateway.snapshot("m-runtime", "a", (SNAPSHOTS / "scene.jpg").read_bytes())
    end = await gateway.next_action()
    assert end.kind == Kind.KIND_END_CONVERSATION and end.category == c.CATEGORY_KNOWN_BAD_HASH

    code, out, err = await modctl(service.grpc_addr, "bank", "list", who="dana")
    assert code == 0, err
    assert "internal" in out and "1 hash(es) in all" in out
    code, out, err = await modctl(service.grpc_addr, "audit", who="dana")
    assert code == 0 and "bank_hashes_added" in out and "found in case 9" in out

    # kept in the store: a restarted replica (or any other) matches it too
    assert service.stop() == 0
    again = start_moderation(start_service, PARLEY_MODERATION_DATABASE_URL=database_url,
                             PARLEY_MODERATION_NUDITY_ENABLED="false")
    listing = tmp_path / "bank.txt"
    listing.write_text(f"{scene}\n")
    code, out, err = await modctl(again.grpc_addr, "bank", "add", "--bank", "second", "--file", str(listing),
                                  "--reason", "the same again", who="carol")
    assert code == 0, err
    code, out, _ = await modctl(again.grpc_addr, "bank", "list", who="carol")
    assert "internal" in out and "second" in out and "2 hash(es) in all" in out


# ---------------------------------------------------------------- configuration

def run_until_exit(service_env, **overrides) -> subprocess.CompletedProcess:
    environ = service_env("moderation", **overrides)
    return subprocess.run([sys.executable, "-m", "services.moderation"], env=environ, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_bad_policy_file_stops_the_service_at_start_naming_the_variable(service_env, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text("severe_threshold = 3\n")
    result = run_until_exit(service_env, PARLEY_MODERATION_POLICY_FILE=str(policy))
    assert result.returncode != 0
    assert "PARLEY_MODERATION_POLICY_FILE" in result.stderr and "severe_threshold" in result.stderr


def test_a_bad_bank_file_stops_the_service_at_start_naming_the_variable(service_env, tmp_path):
    bank = tmp_path / "bank.txt"
    bank.write_text("not-a-hash\n")
    result = run_until_exit(service_env, PARLEY_MODERATION_HASH_BANKS=f"broken={bank}")
    assert result.returncode != 0
    assert "PARLEY_MODERATION_HASH_BANKS" in result.stderr and "line 1" in result.stderr
    result = run_until_exit(service_env, PARLEY_MODERATION_HASH_BANKS="no-equals-sign")
    assert result.returncode != 0 and "PARLEY_MODERATION_HASH_BANKS" in result.stderr
