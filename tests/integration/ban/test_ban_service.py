"""The ban service as a real process: gRPC calls over a socket, events on the
real RabbitMQ (this module's vhost), its SQLite store on disk."""
from __future__ import annotations

import uuid

import asyncpg
import grpc
import pytest

from parley.v1 import ban_pb2, common_pb2 as c, events_pb2, moderation_pb2 as m
from services.ban import cli
from tests.integration.ban.ban_support import check_request, eventually, stub_for, unique
from tests.support import add_vhost, delete_vhost, metric_value

pytestmark = pytest.mark.integration


async def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value.code(), error.value.details()


def ban_decision(device: str, action=m.ACTION_BAN, **fields) -> events_pb2.DecisionMade:
    fields.setdefault("subject", c.Identity(device_token=device))
    fields.setdefault("category", c.CATEGORY_HARASSMENT)
    return events_pb2.DecisionMade(decision_id=unique("dec"), item_id="item-1", report_id="rep-1",
                                   action=action, moderator="mod-ann", **fields)


# ------------------------------------------------------------ gRPC and announcements

async def test_issue_check_lift_and_announcements(start_service, broker):
    service = start_service("ban")
    channel, stub = stub_for(service)
    async with channel:
        assert not (await stub.CheckBan(check_request("dev-a"))).banned

        issued = await stub.IssueBan(ban_pb2.IssueBanRequest(
            subject=ban_pb2.Subject(device_token="dev-a"), category=c.CATEGORY_SPAM,
            duration_s=3600, reason="link spam", issued_by="mod-bob"))
        assert issued.ban_id and issued.scope == c.BAN_SCOPE_ALL
        assert issued.expires_at_unix_ms - issued.issued_at_unix_ms == 3_600_000
        assert issued.appealable_until_unix_ms - issued.issued_at_unix_ms == 20 * 86_400_000

        check = await stub.CheckBan(check_request("dev-a", ip_hash="some-ip"))
        assert check.banned and check.ban == issued

        # Every gateway hears of it.
        announced = await broker.next_announcement()
        assert announced.WhichOneof("event") == "ban_issued"
        assert announced.ban_issued.ban == issued
        assert announced.producer.startswith("ban/")

        lifted = await stub.LiftBan(ban_pb2.LiftBanRequest(ban_id=issued.ban_id, reason="mistake",
                                                           lifted_by="mod-carol"))
        assert lifted.lifted_at_unix_ms > 0 and lifted.lifted_by == "mod-carol"
        assert not (await stub.CheckBan(check_request("dev-a"))).banned
        announced = await broker.next_announcement()
        assert announced.WhichOneof("event") == "ban_lifted"
        assert announced.ban_lifted.ban.ban_id == issued.ban_id

        listed = await stub.ListBans(ban_pb2.ListBansRequest())
        assert [b.ban_id for b in listed.bans] == [issued.ban_id]
        assert not (await stub.ListBans(ban_pb2.ListBansRequest(active_only=True))).bans

        details = await stub.GetBan(ban_pb2.GetBanRequest(ban_id=issued.ban_id))
        assert details.ban == lifted and not details.HasField("appeal")
        assert [(e.action, e.actor) for e in details.audit] == [("issue", "mod-bob"), ("lift", "mod-carol")]

    assert metric_value(service.metrics_port, "parley_ban_checks_total", result="banned") == 1
    assert metric_value(service.metrics_port, "parley_ban_checks_total", result="clear") == 2
    assert metric_value(service.metrics_port, "parley_ban_bans_issued_total", category="spam") == 1
    assert metric_value(service.metrics_port, "parley_ban_bans_lifted_total") == 1
    assert metric_value(service.metrics_port, "parley_ban_check_duration_seconds_count") == 3
    assert metric_value(service.metrics_port, "parley_ban_index_bans") == 0


async def test_scopes_range_bans_and_watched_addresses_over_grpc(start_service, broker):
    service = start_service("ban")
    channel, stub = stub_for(service)
    async with channel:
        await stub.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(device_token="dev-v"),
                                                    scope=c.BAN_SCOPE_VIDEO, reason="nudity on camera",
                                                    category=c.CATEGORY_SEXUAL_CONTENT))
        assert not (await stub.CheckBan(check_request("dev-v"))).banned            # may connect
        assert not (await stub.CheckBan(check_request("dev-v", c.MODE_TEXT))).banned
        assert (await stub.CheckBan(check_request("dev-v", c.MODE_VIDEO))).banned

        # A range ban enforcing on the address refuses a brand-new device there.
        range_ban = await stub.IssueBan(ban_pb2.IssueBanRequest(
            subject=ban_pb2.Subject(ip_prefix_hash="range-1"), reason="bot farm", category=c.CATEGORY_SPAM,
            enforce_on_address=True))
        assert range_ban.enforce_on_address
        reply = await stub.CheckBan(check_request("brand-new-device", ip_prefix_hash="range-1"))
        assert reply.banned and reply.ban.subject.ip_prefix_hash == "range-1"

        # A watch ban (the default for an address) lets the bystander in.
        watch = await stub.IssueBan(ban_pb2.IssueBanRequest(
            subject=ban_pb2.Subject(ip_hash="school-ip"), reason="abuser's address", category=c.CATEGORY_HARASSMENT))
        assert not watch.enforce_on_address
        reply = await stub.CheckBan(check_request("classmate", ip_hash="school-ip"))
        assert not reply.banned and reply.suspected_evader

    # Gateways hear of the device ban and the range ban, never of the watch:
    # they must not end the bystanders' sessions.
    heard = [await broker.next_announcement(), await broker.next_announcement()]
    assert {e.ban_issued.ban.ban_id for e in heard} >= {range_ban.ban_id}
    assert watch.ban_id not in {e.ban_issued.ban.ban_id for e in heard + await broker.drain(broker.announcements)}
    watch_heard = await broker.next_watch_announcement()
    assert watch_heard.ban_issued.ban.ban_id == watch.ban_id


async def test_suspected_evaders_are_flagged_once_per_device_and_ban(start_service, broker):
    service = start_service("ban")
    channel, stub = stub_for(service)
    async with channel:
        watch = await stub.IssueBan(ban_pb2.IssueBanRequest(
            subject=ban_pb2.Subject(ip_prefix_hash="carrier-nat"), reason="r", category=c.CATEGORY_SPAM))
        for _ in range(5):
            for device in ("phone-1", "phone-2"):
                reply = await stub.CheckBan(check_request(device, ip_hash=f"ip-of-{device}",
                                                          ip_prefix_hash="carrier-nat"))
                assert reply.suspected_evader and not reply.banned
    events = await broker.suspicions_for(watch.ban_id, wanted=2)
    assert sorted(e.evader_suspected.identity.device_token for e in events) == ["phone-1", "phone-2"]
    first = next(e.evader_suspected for e in events if e.evader_suspected.identity.device_token == "phone-1")
    assert first.identity.ip_hash == "ip-of-phone-1" and first.linked_subject.ip_prefix_hash == "carrier-nat"
    assert first.linked_category == c.CATEGORY_SPAM and "range" in first.reason and first.suspicion_id
    assert metric_value(service.metrics_port, "parley_ban_checks_total", result="suspected") == 10
    assert metric_value(service.metrics_port, "parley_ban_suspected_evaders_total", outcome="published") == 2


async def test_session_bans(start_service, broker):
    service = start_service("ban")
    channel, stub = stub_for(service)
    async with channel:
        ban = await stub.IssueBan(ban_pb2.IssueBanRequest(
            subject=ban_pb2.Subject(session_id="sess-42"), reason="ended by moderation",
            category=c.CATEGORY_HARASSMENT))
        assert ban.expires_at_unix_ms - ban.issued_at_unix_ms == 86_400_000  # at most a day
        assert ban.appealable_until_unix_ms == 0
        assert (await stub.CheckBan(check_request("dev-s", session_id="sess-42"))).banned
        assert not (await stub.CheckBan(check_request("dev-s", session_id="sess-43"))).banned
        assert not (await stub.CheckBan(check_request("dev-s"))).banned  # that device elsewhere
    announced = await broker.next_announcement()
    assert announced.ban_issued.ban.subject.session_id == "sess-42"


async def test_an_expired_ban_drops_out_without_a_restart(start_service):
    service = start_service("ban")
    channel, stub = stub_for(service)
    async with channel:
        await stub.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(device_token="dev-e"),
                                                    duration_s=1, reason="short", category=c.CATEGORY_SPAM))
        assert (await stub.CheckBan(check_request("dev-e"))).banned

        async def cleared():
            return not (await stub.CheckBan(check_request("dev-e"))).banned
        assert await eventually(cleared, timeout=10)


async def test_bad_requests_get_clear_errors(start_service):
    service = start_service("ban")
    channel, stub = stub_for(service)
    async with channel:
        device = ban_pb2.Subject(device_token="dev-x")
        bad = {
            "no subject": stub.IssueBan(ban_pb2.IssueBanRequest(reason="r")),
            "empty subject": stub.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(ip_hash=""))),
            "negative": stub.IssueBan(ban_pb2.IssueBanRequest(subject=device, duration_s=-1)),
            "scope": stub.IssueBan(ban_pb2.IssueBanRequest(subject=device, scope=9)),
            "category": stub.IssueBan(ban_pb2.IssueBanRequest(subject=device, category=99)),
            "enforce on a device": stub.IssueBan(ban_pb2.IssueBanRequest(subject=device, enforce_on_address=True)),
            "huge subject": stub.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(device_token="x" * 300))),
            "empty identity": stub.CheckBan(ban_pb2.CheckBanRequest()),
            "mode": stub.CheckBan(check_request("dev-x", mode=7)),
            "huge identity": stub.CheckBan(check_request("x" * 300)),
            "no ban id": stub.LiftBan(ban_pb2.LiftBanRequest()),
            "get without id": stub.GetBan(ban_pb2.GetBanRequest()),
            "history of nobody": stub.GetHistory(ban_pb2.GetHistoryRequest()),
            "appeal without ban": stub.FileAppeal(ban_pb2.FileAppealRequest(statement="s")),
            "appeal without device": stub.FileAppeal(ban_pb2.FileAppealRequest(ban_id="b", statement="s")),
            "appeal without statement": stub.FileAppeal(ban_pb2.FileAppealRequest(
                ban_id="b", appellant=c.Identity(device_token="d"), statement="   ")),
            "appeal too long": stub.FileAppeal(ban_pb2.FileAppealRequest(
                ban_id="b", appellant=c.Identity(device_token="d"), statement="x" * 2001)),
            "appeals status": stub.ListAppeals(ban_pb2.ListAppealsRequest(status=9)),
            "decide without outcome": stub.DecideAppeal(ban_pb2.DecideAppealRequest(appeal_id="a", moderator="m")),
            "decide without moderator": stub.DecideAppeal(ban_pb2.DecideAppealRequest(
                appeal_id="a", outcome=ban_pb2.APPEAL_OUTCOME_LIFT)),
        }
        for what, call in bad.items():
            code, details = await code_of(call)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, what
            assert details, what
        assert (await code_of(stub.LiftBan(ban_pb2.LiftBanRequest(ban_id="nope"))))[0] == grpc.StatusCode.NOT_FOUND
        assert (await code_of(stub.GetBan(ban_pb2.GetBanRequest(ban_id="nope"))))[0] == grpc.StatusCode.NOT_FOUND
        ban = await stub.IssueBan(ban_pb2.IssueBanRequest(subject=device, reason="r"))
        await stub.LiftBan(ban_pb2.LiftBanRequest(ban_id=ban.ban_id, reason="r"))
        code, details = await code_of(stub.LiftBan(ban_pb2.LiftBanRequest(ban_id=ban.ban_id, reason="r")))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "already lifted" in details
        # Nothing the bad requests sent was stored.
        assert [b.ban_id for b in (await stub.ListBans(ban_pb2.ListBansRequest())).bans] == [ban.ban_id]
        assert not (await stub.ListAppeals(ban_pb2.ListAppealsRequest())).appeals


# ------------------------------------------------------------ appeals

async def test_appeals_over_grpc(start_service, broker, publisher):
    service = start_service("ban")
    channel, stub = stub_for(service)
    async with channel:
        device = unique("dev")
        decision = ban_decision(device, duration_s=86400,
                                subject=c.Identity(device_token=device, ip_hash="ip-ap", ip_prefix_hash="pre-ap"))
        await publisher.publish(decision)

        async def banned():
            reply = await stub.CheckBan(check_request(device))
            return reply.ban if reply.banned else None
        ban = await eventually(banned)
        assert ban and ban.appealable_until_unix_ms > ban.issued_at_unix_ms

        code, _ = await code_of(stub.FileAppeal(ban_pb2.FileAppealRequest(
            ban_id=ban.ban_id, appellant=c.Identity(device_token="not-them"), statement="let me in")))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        code, _ = await code_of(stub.FileAppeal(ban_pb2.FileAppealRequest(
            ban_id="no-such-ban", appellant=c.Identity(device_token=device), statement="s")))
        assert code == grpc.StatusCode.NOT_FOUND

        appeal = await stub.FileAppeal(ban_pb2.FileAppealRequest(
            ban_id=ban.ban_id, appellant=c.Identity(device_token=device), statement="  my little brother  "))
        assert appeal.status == ban_pb2.APPEAL_STATUS_PENDING and appeal.statement == "my little brother"
        assert appeal.ban.ban_id == ban.ban_id
        code, _ = await code_of(stub.FileAppeal(ban_pb2.FileAppealRequest(
            ban_id=ban.ban_id, appellant=c.Identity(device_token=device), statement="again")))
        assert code == grpc.StatusCode.ALREADY_EXISTS

        pending = await stub.ListAppeals(ban_pb2.ListAppealsRequest(status=ban_pb2.APPEAL_STATUS_PENDING))
        assert [a.appeal_id for a in pending.appeals] == [appeal.appeal_id]
        assert pending.appeals[0].ban.category == c.CATEGORY_HARASSMENT

        await broker.drain(broker.announcements)
        decided = await stub.DecideAppeal(ban_pb2.DecideAppealRequest(
            appeal_id=appeal.appeal_id, outcome=ban_pb2.APPEAL_OUTCOME_LIFT, moderator="mod-zoe",
            note="credible"))
        assert decided.status == ban_pb2.APPEAL_STATUS_LIFTED and decided.ban.lifted_at_unix_ms > 0
        assert not (await stub.CheckBan(check_request(device))).banned
        # The lift is announced like an issue (the watch bans of the same
        # decision are lifted too, announced to ban replicas only).
        lifted = await broker.next_announcement()
        assert lifted.WhichOneof("event") == "ban_lifted" and lifted.ban_lifted.ban.ban_id == ban.ban_id
        code, details = await code_of(stub.DecideAppeal(ban_pb2.DecideAppealRequest(
            appeal_id=appeal.appeal_id, outcome=ban_pb2.APPEAL_OUTCOME_UPHOLD, moderator="mod-zoe")))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "decided already" in details
        code, _ = await code_of(stub.DecideAppeal(ban_pb2.DecideAppealRequest(
            appeal_id="nope", outcome=ban_pb2.APPEAL_OUTCOME_UPHOLD, moderator="m")))
        assert code == grpc.StatusCode.NOT_FOUND

        history = await stub.GetHistory(ban_pb2.GetHistoryRequest(subject=ban_pb2.Subject(device_token=device)))
        assert [b.ban_id for b in history.bans] == [ban.ban_id]
        assert history.active_strikes == 0 and history.strikes[0].voided_at_unix_ms > 0
        assert history.next_penalty == "warning"
        assert [a.status for a in history.appeals] == [ban_pb2.APPEAL_STATUS_LIFTED]
        assert [e.action for e in history.audit] == ["issue", "appeal", "lift", "appeal_decision"]
    assert metric_value(service.metrics_port, "parley_ban_appeals_total", event="filed") == 1
    assert metric_value(service.metrics_port, "parley_ban_appeals_total", event="lifted") == 1


# ------------------------------------------------------------ decisions from moderation

async def test_decision_applied_once_when_published_twice(start_service, broker, publisher):
    service = start_service("ban")
    decision = ban_decision("dev-d", duration_s=86400, note="threats",
                            subject=c.Identity(device_token="dev-d", ip_hash="ip-d"))
    first = await publisher.publish(decision)
    second = await publisher.publish(decision)  # moderation retried: a new event id, same decision
    assert first.event_id != second.event_id

    def handled(outcome: str) -> float:
        return metric_value(service.metrics_port, "parley_ban_decisions_total", action="ban", outcome=outcome)

    async def both_handled() -> bool:
        return handled("applied") + handled("duplicate") >= 2

    assert await eventually(both_handled)
    assert (handled("applied"), handled("duplicate")) == (1, 1)

    channel, stub = stub_for(service)
    async with channel:
        bans = (await stub.ListBans(ban_pb2.ListBansRequest())).bans
        assert sorted((b.subject.WhichOneof("kind"), b.decision_id) for b in bans) == [
            ("device_token", decision.decision_id), ("ip_hash", decision.decision_id)]
        reply = await stub.CheckBan(check_request("dev-d"))
        assert reply.banned and reply.ban.reason == "threats"
        history = await stub.GetHistory(ban_pb2.GetHistoryRequest(subject=ban_pb2.Subject(device_token="dev-d")))
        assert len(history.strikes) == 1 and history.active_strikes == 1  # one strike, not two

    announced = await broker.next_announcement()
    assert announced.ban_issued.ban.decision_id == decision.decision_id
    assert announced.ban_issued.ban.subject.device_token == "dev-d"


async def test_the_ladder_through_decisions(start_service, publisher):
    service = start_service("ban", PARLEY_BAN_LADDER="warn,1h,permanent")
    device = unique("dev")
    channel, stub = stub_for(service)
    async with channel:
        async def strikes(n):
            async def probe():
                history = await stub.GetHistory(ban_pb2.GetHistoryRequest(
                    subject=ban_pb2.Subject(device_token=device)))
                return history if len(history.strikes) >= n else None
            return await eventually(probe)

        await publisher.publish(ban_decision(device, m.ACTION_WARN))
        history = await strikes(1)
        assert not history.bans and history.next_penalty == "ban 1h"
        assert not (await stub.CheckBan(check_request(device))).banned

        await publisher.publish(ban_decision(device, m.ACTION_WARN))
        history = await strikes(2)
        [ban] = history.bans
        assert ban.expires_at_unix_ms - ban.issued_at_unix_ms == 3_600_000
        assert (await stub.CheckBan(check_request(device))).banned

        await publisher.publish(ban_decision(device, m.ACTION_WARN))
        history = await strikes(3)
        assert history.bans[0].expires_at_unix_ms == 0  # permanent
    assert metric_value(service.metrics_port, "parley_ban_penalties_total", penalty="warning") == 1
    assert metric_value(service.metrics_port, "parley_ban_penalties_total", penalty="timed_ban") == 1
    assert metric_value(service.metrics_port, "parley_ban_penalties_total", penalty="permanent_ban") == 1


async def test_a_severe_case_refuses_a_new_device_on_the_same_address(start_service, publisher):
    service = start_service("ban")
    device = unique("dev")
    await publisher.publish(ban_decision(device, m.ACTION_BAN, category=c.CATEGORY_KNOWN_BAD_HASH, duration_s=60,
                                         subject=c.Identity(device_token=device, ip_hash="ip-sev",
                                                            ip_prefix_hash="pre-sev")))
    channel, stub = stub_for(service)
    async with channel:
        async def refused():
            reply = await stub.CheckBan(check_request("fresh-device", ip_hash="other", ip_prefix_hash="pre-sev"))
            return reply.ban if reply.banned else None
        ban = await eventually(refused)
        assert ban and ban.expires_at_unix_ms == 0 and ban.enforce_on_address


async def test_poison_messages_go_to_the_dead_letter_queues(start_service, broker, publisher):
    service = start_service("ban")
    garbage = b"\xff\x00 not a protobuf " + uuid.uuid4().bytes
    await broker.publish_raw(garbage, "moderation.decision_made")
    no_subject = await publisher.publish(events_pb2.DecisionMade(decision_id="dec-poison", action=m.ACTION_BAN))
    wrong_action = await publisher.publish(events_pb2.DecisionMade(
        decision_id="dec-poison-2", action=42, subject=c.Identity(device_token="dev-p")))

    dead = await broker.dead_letters("ban.decisions.dlq", wanted=3)
    by_id = {message.message_id: message for message in dead}
    garbage_copy = next(message for message in dead if message.body == garbage)
    assert garbage_copy.headers["x-parley-reason"]
    assert garbage_copy.headers["x-parley-queue"] == "ban.decisions"
    assert "device_token" in by_id[no_subject.event_id].headers["x-parley-reason"]
    assert "unknown action" in by_id[wrong_action.event_id].headers["x-parley-reason"]

    # A ban event naming no subject, on the replicas' index queue.
    bad_ban = await publisher.publish(events_pb2.BanIssued(ban=ban_pb2.BanRecord(ban_id="no-subject")))
    [dead_ban] = await broker.dead_letters("ban.index.dlq", wanted=1)
    assert dead_ban.message_id == bad_ban.event_id and "no subject" in dead_ban.headers["x-parley-reason"]

    # The service carries on.
    assert service.process.poll() is None
    channel, stub = stub_for(service)
    async with channel:
        assert not (await stub.CheckBan(check_request("dev-p"))).banned
        assert not (await stub.ListBans(ban_pb2.ListBansRequest())).bans
    assert metric_value(service.metrics_port, "parley_ban_events_dead_lettered_total", queue="ban.decisions") == 3
    assert metric_value(service.metrics_port, "parley_ban_events_dead_lettered_total", queue="ban.index") == 1


async def test_a_ban_stands_when_it_cannot_be_announced(start_service, amqp_url):
    """The broker goes away for good after the service started: IssueBan
    still answers with the stored ban, CheckBan enforces it, and the failure
    is counted."""
    vhost = f"parley-ban-lost-{uuid.uuid4().hex[:8]}"
    try:
        service = start_service("ban", PARLEY_AMQP_URL=add_vhost(vhost),
                                PARLEY_BAN_ANNOUNCE_TIMEOUT_SECONDS="0.5")
    finally:
        delete_vhost(vhost)  # closes the service's connection for good
    channel, stub = stub_for(service)
    async with channel:
        ban = await stub.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(device_token="dev-l"),
                                                          reason="r", category=c.CATEGORY_SPAM))
        reply = await stub.CheckBan(check_request("dev-l"))
        assert reply.banned and reply.ban.ban_id == ban.ban_id
    assert metric_value(service.metrics_port, "parley_ban_announce_failures_total", event="ban_issued") >= 1


async def test_an_unannounced_ban_is_announced_once_the_broker_is_back(start_service, broker, broker_proxy):
    """The broker is cut while a ban is issued: the ban answers at once, and
    the outbox announces it to the gateways when the broker is back."""
    service = start_service("ban", PARLEY_AMQP_URL=broker_proxy.url, PARLEY_BAN_ANNOUNCE_TIMEOUT_SECONDS="0.3",
                            PARLEY_BAN_OUTBOX_INTERVAL_SECONDS="0.2")
    channel, stub = stub_for(service)
    async with channel:
        broker_proxy.cut()
        ban = await stub.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(device_token="dev-o"),
                                                          reason="r", category=c.CATEGORY_SPAM))
        assert (await stub.CheckBan(check_request("dev-o"))).banned
        broker_proxy.restore()
        announced = await broker.next_announcement(timeout=60)
        assert announced.ban_issued.ban.ban_id == ban.ban_id


# ------------------------------------------------------------ durability

async def test_bans_survive_a_restart(start_service, publisher):
    service = start_service("ban")
    device = unique("dev")
    channel, stub = stub_for(service)
    async with channel:
        address_ban = await stub.IssueBan(ban_pb2.IssueBanRequest(
            subject=ban_pb2.Subject(ip_hash="ip-r"), reason="r", category=c.CATEGORY_OTHER, enforce_on_address=True))
        await publisher.publish(ban_decision(device, duration_s=3600))

        async def banned():
            return (await stub.CheckBan(check_request(device))).banned
        assert await eventually(banned)
    assert service.stop() == 0  # SIGTERM: graceful
    service.start()             # same environment: same database file
    channel, stub = stub_for(service)
    async with channel:
        reply = await stub.CheckBan(check_request("any-device", ip_hash="ip-r"))
        assert reply.banned and reply.ban == address_ban
        assert (await stub.CheckBan(check_request(device))).banned
    assert metric_value(service.metrics_port, "parley_ban_index_bans") == 2


@pytest.mark.postgres
async def test_on_postgresql_checks_answer_from_memory_and_writes_say_unavailable(start_service, pg_url):
    name = f"ban_service_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        service = start_service("ban", PARLEY_BAN_DATABASE_URL=pg_url.rsplit("/", 1)[0] + f"/{name}")
        channel, stub = stub_for(service)
        async with channel:
            await stub.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(device_token="dev-pg"),
                                                        reason="r"))
            assert (await stub.CheckBan(check_request("dev-pg"))).banned
            # The database goes away: checks go on from memory, and a write
            # is a clear "try again", not a crash.
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            assert (await stub.CheckBan(check_request("dev-pg"))).banned
            assert not (await stub.CheckBan(check_request("dev-other"))).banned
            code, details = await code_of(stub.IssueBan(ban_pb2.IssueBanRequest(
                subject=ban_pb2.Subject(device_token="dev-pg2"), reason="r")))
            assert code == grpc.StatusCode.UNAVAILABLE, details
        assert service.process.poll() is None
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# ------------------------------------------------------------ parley-banctl

def test_banctl_against_the_service(start_service, capsys):
    addr = start_service("ban").grpc_addr

    def banctl(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["--addr", addr, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    def field(out: str, name: str) -> str:
        return next(line.split()[-1] for line in out.splitlines() if line.startswith(name))

    code, out, _ = banctl("issue", "--device", "dev-cli", "--duration", "7d", "--category",
                          "harassment", "--reason", "slurs", "--by", "mod-dan")
    assert code == 0 and "ban issued" in out and "harassment" in out
    ban_id = field(out, "ban id")

    code, out, _ = banctl("check", "--device", "dev-cli")
    assert code == 0 and out.startswith("BANNED") and ban_id in out
    code, out, _ = banctl("list", "--active")
    assert code == 0 and out.splitlines()[0].startswith("BAN ID") and ban_id in out

    code, out, _ = banctl("appeal", ban_id, "--device", "dev-cli", "--statement", "I was hacked")
    assert code == 0 and "appeal filed" in out
    appeal_id = field(out, "appeal id")
    code, out, _ = banctl("appeals")
    assert code == 0 and appeal_id in out and "I was hacked" in out
    code, out, _ = banctl("decide", appeal_id, "--uphold", "--note", "not credible", "--by", "mod-eve")
    assert code == 0 and "ban upheld" in out
    code, out, _ = banctl("appeals")
    assert code == 0 and out.strip() == "no appeals"
    code, out, _ = banctl("show", ban_id)
    assert code == 0 and "upheld" in out and "mod-eve" in out and "appeal_decision" in out
    code, out, _ = banctl("history", "--device", "dev-cli")
    assert code == 0 and ban_id in out and "appeal_decision" in out

    assert banctl("lift", ban_id, "--reason", "mistake")[0] == 0
    code, out, _ = banctl("check", "--device", "dev-cli")
    assert code == 0 and out.startswith("clear")

    code, out, _ = banctl("issue", "--ip-hash", "cafe-ip", "--category", "spam", "--reason", "watch it")
    assert code == 0 and "watch" in out
    code, out, _ = banctl("check", "--device", "visitor", "--ip-hash", "cafe-ip")
    assert code == 0 and "suspected evader" in out
    code, out, _ = banctl("issue", "--ip-hash", "bot-ip", "--enforce-on-address", "--category", "spam",
                          "--reason", "bots")
    assert code == 0 and "everyone on the address" in out

    code, out, err = banctl("lift", ban_id, "--reason", "again")
    assert code == 1 and "FAILED_PRECONDITION" in err and "already lifted" in err
    code, _, err = banctl("lift", "no-such-ban", "--reason", "r")
    assert code == 1 and "NOT_FOUND" in err
    code, _, err = banctl("decide", appeal_id, "--lift", "--by", "mod-eve")
    assert code == 1 and "FAILED_PRECONDITION" in err
