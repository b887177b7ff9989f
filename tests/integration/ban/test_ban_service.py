"""The ban service as a real process: gRPC calls over a socket, events on the
real RabbitMQ (this run's vhost), its SQLite store on disk."""
from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import asyncpg
import grpc
import pytest

from parley.v1 import ban_pb2, ban_pb2_grpc, common_pb2 as c, events_pb2, moderation_pb2 as m
from services.ban import cli
from services.runtime import envelope as env
from services.runtime.bus import Bus
from services.runtime.topology import EVENTS_EXCHANGE
from tests.support import add_vhost, delete_vhost, metric_value

pytestmark = pytest.mark.integration


# ------------------------------------------------------------ helpers

async def eventually(probe, timeout: float = 5.0, interval: float = 0.05):
    """Call `probe` (async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)


class Broker:
    """The test's own connection to RabbitMQ: a queue listening for
    ban.issued / ban.lifted, and raw publishing."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> "Broker":
        self.connection = await aio_pika.connect_robust(self.url)
        self.channel = await self.connection.channel()
        # Declared as every service declares it (idempotent): the test may
        # listen before the service has started.
        self.events = await self.channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                          durable=True)
        self.announcements = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        for key in ("ban.issued", "ban.lifted"):
            await self.announcements.bind(self.events, key)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.connection.close()

    async def next_announcement(self, timeout: float = 5.0) -> events_pb2.Envelope:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = await self.announcements.get(fail=False, no_ack=True)
            if message is not None:
                return env.decode(message.body, message.content_type, message.type)
            await asyncio.sleep(0.02)
        raise AssertionError("no ban announcement within the timeout")

    async def publish_raw(self, body: bytes, routing_key: str) -> None:
        await self.events.publish(aio_pika.Message(body, message_id=uuid.uuid4().hex), routing_key)

    async def dead_letters(self, queue_name: str, wanted: int, timeout: float = 5.0) -> list:
        queue = await self.channel.get_queue(queue_name, ensure=True)
        found = []
        deadline = time.monotonic() + timeout
        while len(found) < wanted and time.monotonic() < deadline:
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.05)
            else:
                found.append(message)
        return found


@pytest.fixture
async def broker(amqp_url):
    async with Broker(amqp_url) as broker:
        yield broker


@pytest.fixture
async def publisher(amqp_url):
    """Publishes events the way every Parley service does."""
    bus = Bus(amqp_url, "bantest", "publisher")
    await bus.connect()
    yield bus
    await bus.close()


def stub_for(service) -> tuple[grpc.aio.Channel, ban_pb2_grpc.BanStub]:
    channel = grpc.aio.insecure_channel(service.grpc_addr)
    return channel, ban_pb2_grpc.BanStub(channel)


def check_request(device: str = "", mode=c.MODE_UNSPECIFIED, **identity) -> ban_pb2.CheckBanRequest:
    return ban_pb2.CheckBanRequest(identity=c.Identity(device_token=device, **identity), mode=mode)


# ------------------------------------------------------------ gRPC and announcements

async def test_issue_check_lift_and_announcements(start_service, broker):
    service = start_service("ban")
    channel, stub = stub_for(service)
    async with channel:
        assert not (await stub.CheckBan(check_request("dev-a"))).banned

        issued = await stub.IssueBan(ban_pb2.IssueBanRequest(
            subject=ban_pb2.Subject(device_token="dev-a"), category=c.CATEGORY_SPAM,
            duration_s=3600, reason="link spam", issued_by="mod-bob"))
        answered_at = time.monotonic()
        assert issued.ban_id and issued.scope == c.BAN_SCOPE_ALL
        assert issued.expires_at_unix_ms - issued.issued_at_unix_ms == 3_600_000

        check = await stub.CheckBan(check_request("dev-a", ip_hash="some-ip"))
        assert check.banned and check.ban == issued

        # Every gateway hears of it: the event is on the exchange within a second.
        announced = await broker.next_announcement()
        assert time.monotonic() - answered_at < 1.0
        assert announced.WhichOneof("event") == "ban_issued"
        assert announced.ban_issued.ban == issued
        assert announced.producer.startswith("ban/")

        lifted = await stub.LiftBan(ban_pb2.LiftBanRequest(ban_id=issued.ban_id, reason="appeal",
                                                           lifted_by="mod-carol"))
        assert lifted.lifted_at_unix_ms > 0
        assert not (await stub.CheckBan(check_request("dev-a"))).banned
        announced = await broker.next_announcement()
        assert announced.WhichOneof("event") == "ban_lifted"
        assert announced.ban_lifted.ban.ban_id == issued.ban_id

        listed = await stub.ListBans(ban_pb2.ListBansRequest())
        assert [b.ban_id for b in listed.bans] == [issued.ban_id]
        assert not (await stub.ListBans(ban_pb2.ListBansRequest(active_only=True))).bans

    assert metric_value(service.metrics_port, "parley_ban_checks_total", result="banned") == 1
    assert metric_value(service.metrics_port, "parley_ban_checks_total", result="clear") == 2
    assert metric_value(service.metrics_port, "parley_ban_bans_issued_total", category="spam") == 1
    assert metric_value(service.metrics_port, "parley_ban_bans_lifted_total") == 1
    assert metric_value(service.metrics_port, "parley_ban_check_duration_seconds_count") == 3


async def test_scopes_and_ip_bans_over_grpc(start_service):
    service = start_service("ban")
    channel, stub = stub_for(service)
    async with channel:
        await stub.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(device_token="dev-v"),
                                                    scope=c.BAN_SCOPE_VIDEO, reason="nudity on camera",
                                                    category=c.CATEGORY_SEXUAL_CONTENT))
        assert not (await stub.CheckBan(check_request("dev-v"))).banned            # may connect
        assert not (await stub.CheckBan(check_request("dev-v", c.MODE_TEXT))).banned
        assert (await stub.CheckBan(check_request("dev-v", c.MODE_VIDEO))).banned

        await stub.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(ip_prefix_hash="range-1"),
                                                    reason="bot farm", category=c.CATEGORY_SPAM))
        reply = await stub.CheckBan(check_request("brand-new-device", ip_prefix_hash="range-1"))
        assert reply.banned and reply.ban.subject.ip_prefix_hash == "range-1"


async def test_bad_requests_get_clear_errors(start_service):
    service = start_service("ban")
    channel, stub = stub_for(service)

    async def code_of(call) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        return error.value.code(), error.value.details()

    async with channel:
        device = ban_pb2.Subject(device_token="dev-x")
        bad = {
            "no subject": stub.IssueBan(ban_pb2.IssueBanRequest(reason="r")),
            "empty subject": stub.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(ip_hash=""))),
            "negative": stub.IssueBan(ban_pb2.IssueBanRequest(subject=device, duration_s=-1)),
            "scope": stub.IssueBan(ban_pb2.IssueBanRequest(subject=device, scope=9)),
            "category": stub.IssueBan(ban_pb2.IssueBanRequest(subject=device, category=99)),
            "empty identity": stub.CheckBan(ban_pb2.CheckBanRequest()),
            "mode": stub.CheckBan(check_request("dev-x", mode=7)),
            "no ban id": stub.LiftBan(ban_pb2.LiftBanRequest()),
        }
        for what, call in bad.items():
            code, details = await code_of(call)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, what
            assert details, what
        assert (await code_of(stub.LiftBan(ban_pb2.LiftBanRequest(ban_id="nope"))))[0] == \
            grpc.StatusCode.NOT_FOUND
        ban = await stub.IssueBan(ban_pb2.IssueBanRequest(subject=device, reason="r"))
        await stub.LiftBan(ban_pb2.LiftBanRequest(ban_id=ban.ban_id, reason="r"))
        code, details = await code_of(stub.LiftBan(ban_pb2.LiftBanRequest(ban_id=ban.ban_id, reason="r")))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "already lifted" in details
        # Nothing the bad requests sent was stored.
        assert [b.ban_id for b in (await stub.ListBans(ban_pb2.ListBansRequest())).bans] == [ban.ban_id]


# ------------------------------------------------------------ decisions from moderation

async def test_decision_applied_once_when_published_twice(start_service, broker, publisher):
    service = start_service("ban")
    decision = events_pb2.DecisionMade(
        decision_id=f"dec-{uuid.uuid4().hex[:8]}", item_id="item-1", report_id="rep-1",
        subject=c.Identity(device_token="dev-d", ip_hash="ip-d"), action=m.ACTION_BAN,
        category=c.CATEGORY_HARASSMENT, duration_s=86400, moderator="mod-ann", note="threats")
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
        assert [(b.decision_id, b.subject.device_token, b.category) for b in bans] == [
            (decision.decision_id, "dev-d", c.CATEGORY_HARASSMENT)]
        reply = await stub.CheckBan(check_request("dev-d"))
        assert reply.banned and reply.ban.reason == "threats"

    # Gateways heard of it (the duplicate may announce it again: announcing
    # is at least once, ending a banned session twice is harmless).
    announced = await broker.next_announcement()
    assert announced.ban_issued.ban.decision_id == decision.decision_id


async def test_poison_messages_go_to_the_dead_letter_queue(start_service, broker, publisher):
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

    # The service carries on.
    assert service.process.poll() is None
    channel, stub = stub_for(service)
    async with channel:
        assert not (await stub.CheckBan(check_request("dev-p"))).banned
        assert not (await stub.ListBans(ban_pb2.ListBansRequest())).bans
    assert metric_value(service.metrics_port, "parley_ban_events_dead_lettered_total", queue="ban.decisions") == 3


async def test_a_ban_stands_when_it_cannot_be_announced(start_service, amqp_url):
    """The broker goes away after the service started: IssueBan still answers
    with the stored ban, CheckBan enforces it, and the failure is counted."""
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
    assert metric_value(service.metrics_port, "parley_ban_announce_failures_total", event="ban_issued") == 1


# ------------------------------------------------------------ durability

async def test_a_ban_survives_a_restart(start_service):
    service = start_service("ban")
    channel, stub = stub_for(service)
    async with channel:
        ban = await stub.IssueBan(ban_pb2.IssueBanRequest(subject=ban_pb2.Subject(ip_hash="ip-r"),
                                                          reason="r", category=c.CATEGORY_OTHER))
    assert service.stop() == 0  # SIGTERM: graceful
    service.start()             # same environment: same database file
    channel, stub = stub_for(service)
    async with channel:
        reply = await stub.CheckBan(check_request("any-device", ip_hash="ip-r"))
        assert reply.banned and reply.ban == ban


@pytest.mark.postgres
async def test_on_postgresql_and_unavailable_without_it(start_service, pg_url):
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
            # The database goes away: a clear "try again", not a crash.
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.CheckBan(check_request("dev-pg"))
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE, error.value.details()
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

    code, out, _ = banctl("issue", "--device", "dev-cli", "--duration", "7d", "--category",
                          "harassment", "--reason", "slurs", "--by", "mod-dan")
    assert code == 0 and "ban issued" in out and "harassment" in out
    ban_id = next(line.split()[-1] for line in out.splitlines() if line.startswith("ban id"))

    code, out, _ = banctl("check", "--device", "dev-cli")
    assert code == 0 and out.startswith("BANNED") and ban_id in out
    code, out, _ = banctl("list", "--active")
    assert code == 0 and out.splitlines()[0].startswith("BAN ID") and ban_id in out

    assert banctl("lift", ban_id, "--reason", "appeal")[0] == 0
    code, out, _ = banctl("check", "--device", "dev-cli")
    assert code == 0 and out.startswith("clear")

    code, out, err = banctl("lift", ban_id, "--reason", "again")
    assert code == 1 and "FAILED_PRECONDITION" in err and "already lifted" in err
    code, _, err = banctl("lift", "no-such-ban", "--reason", "r")
    assert code == 1 and "NOT_FOUND" in err
