"""Benchmark: one matcher process driven through the real RabbitMQ.

    .venv/bin/python tests/bench/bench_matcher.py [--steps 1000,2000,...] [--step-seconds 4]

It makes a RabbitMQ virtual host of its own, starts ONE matcher process
(`python -m services.matcher`) on it, and plays K gateways: each has its relay
queue (topology.gateway_relay) and publishes MatchRequested envelopes to the
matcher partitions, as the gateway does, at a controlled rate with a realistic
mix (both age bands, text and video, a few languages, about half the users
with 1-3 interests from a vocabulary of 30, some of them interests-only; every
user a new session and device). The offered load goes up in steps; stepping
stops once the matcher falls behind.

Per user, the time a MatchFound reaches its gateway is measured against the
time its request was published (one process clock, `time.perf_counter`):

- `pair_*`: time-to-pair counted from the moment a partner was there, that is
  from the publish of the later of the two requests of the pair (the one the
  matcher pairs on arrival) to the MatchFound at each side's gateway. This is
  what the matcher and the broker add; it is what the 50 ms target is about.
- `wait_*`: each user's whole wait, from its own request. It adds the time
  spent waiting for a compatible stranger to show up, which is the pairing
  policy and the traffic mix, not speed (an interests-only user with a rare
  interest waits for as long as it takes).

The pair time is also split at the matcher's own stamp on the MatchFound
(envelope occurred_at; wall clock, same machine): request to the matcher
("to"), and MatchFound back to the gateway ("back"). Random-fallback pairs
(made by the sweep after `fallback_after` seconds) are counted but not in the
latency figures: a timer made them, not an arrival.

A step is sustained when the matcher handled (took into its pools or paired,
by its own requests_total counter) at least 95% of the requests offered in
it, the backlog was gone one second after, and the pair p99 stayed under
200 ms. `requests_per_s` is the highest sustained step, with its p50/p99;
`requests_per_s_within_p99_target` the highest whose p99 also met 50 ms.

In the same run, the raw limits: the aio-pika publish rate of a message of the
same size to a plain queue (no confirms, Exchange.publish awaited one by one),
the consume rate from it with manual ack (the matcher's prefetch), and the
publish-to-consume latency of one hop through the broker at the sustained
rate, so a ratio can be read from one run (DESIGN.md, section 6).

The load generator shares this machine's cores with the matcher and the
broker, and so does anything else running: each step shows the CPU of the
matcher, the broker, the bench and the rest of the machine (100 = one core).
Every figure is a lower bound of what the matcher would do on its own.

The last line of output is JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402
from aiormq import spec  # noqa: E402

from parley.v1 import common_pb2, events_pb2  # noqa: E402
from services.runtime import envelope as env  # noqa: E402
from services.runtime.health import wait_until_serving  # noqa: E402
from tests.support import add_vhost, delete_vhost, free_port  # noqa: E402
from services.runtime.topology import (  # noqa: E402
    EVENTS_EXCHANGE, QueueKind, QueueSpec, gateway_relay, match_routing_key, matcher_partition)

TIME_BUDGET = 170.0           # seconds, the whole run
SUSTAIN_HANDLED = 0.95        # share of offered requests the matcher must handle
SUSTAIN_P99_MS = 200.0        # pair p99 under which a step counts as sustained
TARGET_PER_S = 5000.0
TARGET_P99_MS = 50.0
GRACE = 1.0                   # seconds after a step for in-flight work

LANGUAGES = (("en", 0.5), ("es", 0.2), ("pt", 0.15), ("de", 0.1), ("fr", 0.05))
INTERESTS = ("music", "movies", "games", "anime", "football", "basketball", "books", "art",
             "travel", "cooking", "coding", "science", "history", "politics", "memes",
             "fitness", "fashion", "photography", "cars", "pets", "dancing", "poetry",
             "chess", "space", "philosophy", "languages", "hiking", "kpop", "crypto", "theatre")
# a few interests are much more common than the rest, as in life
INTEREST_WEIGHTS = tuple(1 / (i + 1) ** 0.8 for i in range(len(INTERESTS)))


# ---------------------------------------------------------------- the machine


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def broker_pid() -> int | None:
    """The RabbitMQ VM on this machine, to show its share of the cores."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if proc.joinpath("comm").read_text().strip() == "beam.smp":
                    return int(proc.name)
    return None


class CpuMeter:
    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self._start = self._read()

    def _read(self) -> tuple[float, dict[str, float]]:
        values = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        # the whole machine, all cores: busy, and stolen by the hypervisor
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        values["machine"] = (sum(fields[:8]) - fields[3] - fields[4]) / _TICKS
        values["steal"] = fields[7] / _TICKS
        return time.monotonic(), values

    def percent(self) -> dict[str, float]:
        """CPU % of each process since the last call (100 = one core)."""
        then, before = self._start
        now, after = self._start = self._read()
        wall = max(now - then, 1e-6)
        out = {name: round(100 * (after[name] - before[name]) / wall, 1) for name in after}
        # what else ran on the machine meanwhile (other work skews the figures)
        out["others"] = round(max(0.0, out["machine"] - sum(out[name] for name in self.pids)), 1)
        return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


# ---------------------------------------------------------------- the matcher


class Matcher:
    """One `python -m services.matcher` process on the bench's vhost."""

    def __init__(self, amqp_url: str, partitions: int, log_path: Path) -> None:
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.log_path = log_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        self.env.update({
            "PARLEY_AMQP_URL": amqp_url,
            "PARLEY_LOG_LEVEL": "WARNING",
            "PARLEY_DRAIN_SECONDS": "0.2",
            "PARLEY_MATCHER_PARTITIONS": str(partitions),
            "PARLEY_MATCHER_GRPC_HOST": "127.0.0.1",
            "PARLEY_MATCHER_GRPC_PORT": str(self.grpc_port),
            "PARLEY_MATCHER_METRICS_PORT": str(self.metrics_port),
        })
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "services.matcher"], env=self.env,
                                        cwd=ROOT, stdout=log, stderr=log)
        wait_until_serving(f"127.0.0.1:{self.grpc_port}", 30, name="matcher", poll=self.process.poll,
                           details=lambda: f"log:\n{self.log_path.read_text(errors='replace')[-4000:]}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def counters(self) -> dict[str, float]:
        """The matcher's own counters, from its Prometheus endpoint."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        out: dict[str, float] = {"new": 0.0, "pairs": 0.0}
        for line in text.splitlines():
            m = re.match(r'parley_matcher_requests_total\{kind="(\w+)"\} (\S+)', line)
            if m:
                out[m.group(1)] = float(m.group(2))
            elif line.startswith("parley_matcher_pairs_total{"):
                out["pairs"] += float(line.rsplit(" ", 1)[1])
        return out


# ---------------------------------------------------------------- the gateways


@dataclass
class User:
    ticket_id: str
    gateway: int
    session_id: str
    device_token: str
    mode: int
    age_band: int
    language: str
    interests: tuple[str, ...]
    interests_only: bool
    step: int
    published_at: float = 0.0   # perf_counter
    published_wall: float = 0.0  # time.time, to compare with the matcher's stamp
    found_at: float = 0.0


def make_users(count: int, gateways: int, step: int, rng: random.Random) -> list[User]:
    languages = [lang for lang, _ in LANGUAGES]
    weights = [w for _, w in LANGUAGES]
    users = []
    for _ in range(count):
        interests: tuple[str, ...] = ()
        interests_only = False
        if rng.random() < 0.5:
            interests = tuple(set(rng.choices(INTERESTS, INTEREST_WEIGHTS, k=rng.randint(1, 3))))
            interests_only = rng.random() < 0.3
        users.append(User(
            ticket_id=uuid.uuid4().hex, gateway=rng.randrange(gateways), session_id=uuid.uuid4().hex,
            device_token=uuid.uuid4().hex + uuid.uuid4().hex[:11],
            mode=common_pb2.MODE_TEXT if rng.random() < 0.7 else common_pb2.MODE_VIDEO,
            age_band=common_pb2.AGE_BAND_ADULT if rng.random() < 0.8 else common_pb2.AGE_BAND_MINOR,
            language=rng.choices(languages, weights)[0], interests=interests,
            interests_only=interests_only, step=step))
    return users


@dataclass
class StepStats:
    index: int
    rate: float
    pairs: int = 0
    fallback_pairs: int = 0
    pair_latency: list[float] = field(default_factory=list)   # seconds, per user
    user_wait: list[float] = field(default_factory=list)      # seconds, per user
    # the pair latency split at the matcher's MatchFound stamp (envelope
    # occurred_at, wall clock of the same machine): request in, result out
    inbound: list[float] = field(default_factory=list)
    outbound: list[float] = field(default_factory=list)
    found_users: int = 0


class Gateways:
    """K fake gateway replicas: each consumes its relay queue, and they
    publish match requests as gateways do."""

    def __init__(self, url: str, count: int, partitions: int) -> None:
        self.url = url
        self.count = count
        self.partitions = partitions
        self.run_id = uuid.uuid4().hex[:8]
        self.ids = [f"bench-gw{i}-{self.run_id}" for i in range(count)]
        self.producers = [f"gateway/{gid}" for gid in self.ids]
        self.by_ticket: dict[str, User] = {}
        self.steps: list[StepStats] = []
        self.published = 0
        self.found_messages = 0
        self.unknown = 0
        self._keys: dict[tuple[int, int, str], str] = {}

    async def connect(self) -> None:
        self.pub_connection = await aio_pika.connect(self.url)
        self.sub_connection = await aio_pika.connect(self.url)
        channel = await self.pub_connection.channel(publisher_confirms=False)
        self.pub_channel = await channel.get_underlay_channel()
        for gateway_id in self.ids:
            sub = await self.sub_connection.channel()
            queue = await declare(sub, gateway_relay(gateway_id))
            # consumed on the channel underneath, without acks: the fake
            # gateways should take as little of the shared cores as they can
            underlay = await sub.get_underlay_channel()
            await underlay.basic_consume(queue.name, self._on_relay(gateway_id), no_ack=True)

    async def close(self) -> None:
        for connection in (getattr(self, "sub_connection", None), getattr(self, "pub_connection", None)):
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()

    def routing_key(self, user: User) -> str:
        key = (user.mode, user.age_band, user.language)
        rk = self._keys.get(key)
        if rk is None:
            rk = self._keys[key] = match_routing_key(
                "match_requested", matcher_partition(*key, self.partitions))
        return rk

    def body(self, user: User) -> tuple[bytes, spec.Basic.Properties]:
        request = events_pb2.MatchRequested(
            ticket_id=user.ticket_id,
            session=common_pb2.SessionRef(gateway_id=self.ids[user.gateway], session_id=user.session_id),
            device_token=user.device_token, mode=user.mode, age_band=user.age_band,
            language=user.language, interests=user.interests, interests_only=user.interests_only,
            requested_at_unix_ms=int(time.time() * 1000))
        envelope = env.wrap(request, self.producers[user.gateway])
        # the AMQP properties the bus sets on an ephemeral event
        properties = spec.Basic.Properties(
            content_type=env.CONTENT_TYPE, message_type="parley.v1.MatchRequested",
            message_id=envelope.event_id, app_id=self.producers[user.gateway], delivery_mode=1)
        return envelope.SerializeToString(), properties

    async def offer(self, users: list[User], rate: float) -> tuple[float, float]:
        """Publish `users` at `rate` per second; returns (seconds taken, the
        largest lag behind the schedule in seconds)."""
        channel = self.pub_channel
        total = len(users)
        sent = 0
        lag = 0.0
        start = time.perf_counter()
        while sent < total:
            now = time.perf_counter()
            due = min(total, int((now - start) * rate) + 1)
            lag = max(lag, (due - sent) / rate)
            while sent < due:
                user = users[sent]
                self.by_ticket[user.ticket_id] = user
                body, properties = self.body(user)
                user.published_wall = time.time()
                user.published_at = time.perf_counter()
                # wait=False: the frame is queued for the connection's writer,
                # no await per message, so the generator takes less CPU
                await channel.basic_publish(body, exchange=EVENTS_EXCHANGE, routing_key=self.routing_key(user),
                                            properties=properties, mandatory=False, wait=False)
                sent += 1
                self.published += 1
            await asyncio.sleep(0.001)
        return time.perf_counter() - start, lag

    def _on_relay(self, gateway_id: str):
        async def on_message(message) -> None:  # an aiormq DeliveredMessage
            arrived = time.perf_counter()
            arrived_wall = time.time()
            envelope = events_pb2.Envelope()
            envelope.ParseFromString(message.body)
            if envelope.WhichOneof("event") != "match_found":
                return
            self.found_messages += 1
            found = envelope.match_found
            a = self.by_ticket.get(found.a.ticket_id)
            b = self.by_ticket.get(found.b.ticket_id)
            if a is None or b is None:
                self.unknown += 1
                return
            later = max(a.published_at, b.published_at)
            trigger = a if a.published_at >= b.published_at else b
            stats = self.steps[trigger.step]
            if not a.found_at and not b.found_at:
                # each pair counted once, at the first of its (one or two) messages
                stats.pairs += 1
                if found.random_fallback:
                    stats.fallback_pairs += 1
            for participant, user in ((found.a, a), (found.b, b)):
                if participant.session.gateway_id != gateway_id or user.found_at:
                    continue
                user.found_at = arrived
                own = self.steps[user.step]
                own.found_users += 1
                own.user_wait.append(arrived - user.published_at)
                if not found.random_fallback:
                    stats.pair_latency.append(arrived - later)
                    made = envelope.occurred_at.ToNanoseconds() / 1e9
                    stats.inbound.append(made - trigger.published_wall)
                    stats.outbound.append(arrived_wall - made)
        return on_message


class LoopLag:
    """How late this process's event loop wakes a 5 ms sleeper."""

    def __init__(self, period: float = 0.005) -> None:
        self.samples: list[float] = []
        self._task = asyncio.ensure_future(self._run(period))

    async def _run(self, period: float) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(period)
            self.samples.append(time.perf_counter() - start - period)

    def stop(self) -> None:
        self._task.cancel()


async def declare(channel: aio_pika.abc.AbstractChannel, queue_spec: QueueSpec):
    """A queue, its dead-letter queue and its bindings, as the bus declares them."""
    durable = queue_spec.kind is not QueueKind.TRANSIENT
    await channel.declare_queue(queue_spec.dlq, durable=True, arguments=queue_spec.dlq_arguments())
    queue = await channel.declare_queue(queue_spec.name, durable=durable, arguments=queue_spec.arguments())
    for exchange_name, routing_key in queue_spec.bindings:
        exchange = await channel.get_exchange(exchange_name, ensure=False)
        await queue.bind(exchange, routing_key)
    return queue


# ---------------------------------------------------------------- raw RabbitMQ


async def raw_limits(url: str, body: bytes, count: int) -> dict:
    """aio-pika alone, no matcher: publish `count` messages of the bench's
    size to a plain queue (no confirms, each publish awaited, as the bus does
    on its fast channel), then consume them with manual ack (prefetch as the
    matcher's partitions)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=False)
        queue = await channel.declare_queue(f"bench.raw.{uuid.uuid4().hex[:6]}", durable=True,
                                            arguments={"x-dead-letter-exchange": ""})
        exchange = channel.default_exchange
        start = time.perf_counter()
        for i in range(count):
            await exchange.publish(aio_pika.Message(
                body, content_type=env.CONTENT_TYPE, type="parley.v1.MatchRequested",
                message_id=uuid.uuid4().hex, app_id="bench/raw",
                delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT), queue.name)
        while True:  # until the broker holds them all
            declared = await channel.declare_queue(queue.name, passive=True)
            if declared.declaration_result.message_count >= count:
                break
            await asyncio.sleep(0.005)
        publish_s = time.perf_counter() - start

        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=50_000)
        done = asyncio.get_running_loop().create_future()
        got = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal got
            envelope = events_pb2.Envelope()
            envelope.ParseFromString(message.body)
            await message.ack()
            got += 1
            if got == count and not done.done():
                done.set_result(None)

        start = time.perf_counter()
        consuming = await consumer.get_queue(queue.name, ensure=False)
        tag = await consuming.consume(on_message)
        await asyncio.wait_for(done, 60)
        consume_s = time.perf_counter() - start
        await consuming.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        return {"raw_publish_per_s": round(count / publish_s), "raw_consume_per_s": round(count / consume_s)}
    finally:
        await connection.close()


async def raw_latency(url: str, body: bytes, rate: float, seconds: float) -> dict:
    """Publish-to-consume latency of a plain queue at `rate`: the floor under
    one hop through the broker (a match takes two: request in, MatchFound out)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=False)
        queue = await channel.declare_queue(f"bench.rawlat.{uuid.uuid4().hex[:6]}", durable=True)
        sent_at: dict[str, float] = {}
        latencies: list[float] = []

        async def on_message(message) -> None:  # an aiormq DeliveredMessage
            arrived = time.perf_counter()
            envelope = events_pb2.Envelope()
            envelope.ParseFromString(message.body)
            await message.ack()
            latencies.append(arrived - sent_at.pop(message.message_id, arrived))

        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=50_000)
        consuming = await consumer.get_queue(queue.name, ensure=False)
        tag = await consuming.consume(on_message)
        underlay = await channel.get_underlay_channel()
        total = int(rate * seconds)
        sent = 0
        start = time.perf_counter()
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while sent < due:
                message_id = uuid.uuid4().hex
                properties = spec.Basic.Properties(content_type=env.CONTENT_TYPE, message_type="parley.v1.MatchRequested",
                                                   message_id=message_id, app_id="bench/raw", delivery_mode=1)
                sent_at[message_id] = time.perf_counter()
                await underlay.basic_publish(body, exchange="", routing_key=queue.name,
                                             properties=properties, wait=False)
                sent += 1
            await asyncio.sleep(0.001)
        deadline = time.monotonic() + 5
        while sent_at and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await consuming.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        return {"raw_latency_rate_per_s": round(rate), "raw_p50_ms": ms(percentile(latencies, 50)),
                "raw_p99_ms": ms(percentile(latencies, 99))}
    finally:
        await connection.close()


# ---------------------------------------------------------------- the run


def say(text: str) -> None:
    print(text, flush=True)


async def bench(args, amqp_url: str, matcher: Matcher) -> dict:
    rng = random.Random(args.seed)
    gateways = Gateways(amqp_url, args.gateways, args.partitions)
    await gateways.connect()
    try:
        sample_body, _ = gateways.body(make_users(1, args.gateways, 0, rng)[0])
        gateways.by_ticket.clear()
        say(f"raw aio-pika, plain queue, {len(sample_body)}-byte messages ...")
        raw = await raw_limits(amqp_url, sample_body, args.raw_count)
        say(f"  publish {raw['raw_publish_per_s']}/s, consume with manual ack {raw['raw_consume_per_s']}/s")

        cpu = CpuMeter({"matcher": matcher.pid, "broker": broker_pid(), "bench": os.getpid()})
        results: list[dict] = []
        say(f"steps of {args.step_seconds:g} s, {args.gateways} gateways, {args.partitions} partitions "
            f"(load generator, matcher and broker share {os.cpu_count()} cores)")
        for index, rate in enumerate(args.steps):
            if time.monotonic() > args.deadline - (args.step_seconds + GRACE + 10):
                say("  (time budget reached: no more steps)")
                break
            users = make_users(int(rate * args.step_seconds), args.gateways, index, rng)
            stats = StepStats(index, rate)
            gateways.steps.append(stats)
            # no cyclic garbage collection in the bench during a step: a
            # pause of its own would show up as the matcher's latency
            gc.collect()
            gc.disable()
            before = await asyncio.to_thread(matcher.counters)
            cpu.percent()
            lags = LoopLag()
            took, lag = await gateways.offer(users, rate)
            at_end = await asyncio.to_thread(matcher.counters)
            step_cpu = cpu.percent()
            await asyncio.sleep(GRACE)
            lags.stop()
            gc.enable()
            after = await asyncio.to_thread(matcher.counters)
            handled = at_end["new"] - before["new"]
            backlog = gateways.published - after["new"]
            row = {
                "offered_per_s": rate,
                "published_per_s": round(len(users) / took),
                "handled_per_s": round(handled / took),
                "handled_share": round(handled / len(users), 3),
                "backlog_after_grace": int(backlog),
                "pairs": stats.pairs,
                "fallback_pairs": stats.fallback_pairs,
                "paired_share": round(stats.found_users / len(users), 3),
                "pair_p50_ms": ms(percentile(stats.pair_latency, 50)),
                "pair_p99_ms": ms(percentile(stats.pair_latency, 99)),
                "in_p50_ms": ms(percentile(stats.inbound, 50)),
                "in_p99_ms": ms(percentile(stats.inbound, 99)),
                "out_p50_ms": ms(percentile(stats.outbound, 50)),
                "out_p99_ms": ms(percentile(stats.outbound, 99)),
                "wait_p50_ms": ms(percentile(stats.user_wait, 50)),
                "wait_p99_ms": ms(percentile(stats.user_wait, 99)),
                "cpu_percent": step_cpu,
                "generator_lag_ms": ms(lag),
                # how late the bench's own event loop ran (it delays arrivals)
                "bench_loop_lag_p99_ms": ms(percentile(lags.samples, 99)),
            }
            generator_kept_up = row["published_per_s"] >= 0.95 * rate
            row["sustained"] = bool(
                row["handled_share"] >= SUSTAIN_HANDLED and backlog <= 0.01 * len(users)
                and row["pair_p99_ms"] is not None and row["pair_p99_ms"] <= SUSTAIN_P99_MS)
            row["generator_kept_up"] = generator_kept_up
            results.append(row)
            say(f"  {rate:>6.0f}/s offered: published {row['published_per_s']}/s, handled "
                f"{row['handled_per_s']}/s ({100 * row['handled_share']:.1f}%), backlog {row['backlog_after_grace']}, "
                f"pairs {stats.pairs} ({stats.fallback_pairs} fallback), paired users "
                f"{100 * row['paired_share']:.1f}%; pair p50 {row['pair_p50_ms']} ms p99 {row['pair_p99_ms']} ms "
                f"(to the matcher p50/p99 {row['in_p50_ms']}/{row['in_p99_ms']}, back {row['out_p50_ms']}/{row['out_p99_ms']}); "
                f"whole wait p50 {row['wait_p50_ms']} ms p99 {row['wait_p99_ms']} ms; "
                f"cpu% matcher {step_cpu['matcher']} broker {step_cpu['broker']} bench {step_cpu['bench']} "
                f"others {step_cpu['others']} steal {step_cpu['steal']}; bench loop lag p99 {row['bench_loop_lag_p99_ms']} ms"
                f"{'' if row['sustained'] else '  <- NOT sustained'}"
                f"{'' if generator_kept_up else '  (the generator could not publish this fast)'}")
            if not matcher.alive():
                raise RuntimeError("the matcher exited during the run; see its log")
            if not row["sustained"] or not generator_kept_up:
                break
            # let the pools settle a moment before the next step
            await asyncio.sleep(0.5)

        sustained = [r for r in results if r["sustained"]]
        best = max(sustained, key=lambda r: r["offered_per_s"]) if sustained else None
        within = [r for r in sustained if r["pair_p99_ms"] <= TARGET_P99_MS]
        best_within = max(within, key=lambda r: r["offered_per_s"]) if within else None
        saturation = max((r["handled_per_s"] for r in results), default=0)
        rate_for_raw = best["handled_per_s"] if best else args.steps[0]
        # the raw hop is measured on a quiet broker: the last step may have
        # left a backlog in the matcher
        await settle(matcher, gateways, args.deadline)
        gc.collect()
        gc.disable()
        try:
            raw.update(await raw_latency(amqp_url, sample_body, rate_for_raw, min(3.0, args.step_seconds)))
        finally:
            gc.enable()
        say(f"raw publish->consume latency at {raw['raw_latency_rate_per_s']}/s (one hop): "
            f"p50 {raw['raw_p50_ms']} ms p99 {raw['raw_p99_ms']} ms")
        busy = max((r["cpu_percent"]["others"] for r in results), default=0.0)
        if busy > 20:
            say(f"WARNING: other processes took up to {busy}% CPU during the steps: "
                "the figures are not comparable with a run on a quiet machine")
        summary = {
            "requests_per_s": best["handled_per_s"] if best else 0,
            "pair_p50_ms": best["pair_p50_ms"] if best else None,
            "pair_p99_ms": best["pair_p99_ms"] if best else None,
            "wait_p50_ms": best["wait_p50_ms"] if best else None,
            "wait_p99_ms": best["wait_p99_ms"] if best else None,
            **raw,
            "requests_vs_raw_consume": round((best["handled_per_s"] if best else 0) / raw["raw_consume_per_s"], 3),
            # the highest step whose pair p99 also met the 50 ms target
            "requests_per_s_within_p99_target": best_within["handled_per_s"] if best_within else 0,
            "pair_p50_ms_within_p99_target": best_within["pair_p50_ms"] if best_within else None,
            "pair_p99_ms_within_p99_target": best_within["pair_p99_ms"] if best_within else None,
            "saturation_handled_per_s": saturation,
            "matcher_cpu_percent": best["cpu_percent"]["matcher"] if best else None,
            "broker_cpu_percent": best["cpu_percent"]["broker"] if best else None,
            "bench_cpu_percent": best["cpu_percent"]["bench"] if best else None,
            # above ~20 (a fifth of a core), something else ran: the run is not comparable
            "others_cpu_percent_max": max((r["cpu_percent"]["others"] for r in results), default=0.0),
            "target": {"requests_per_s": TARGET_PER_S, "pair_p99_ms": TARGET_P99_MS},
            "target_met": bool(best and best["handled_per_s"] >= TARGET_PER_S
                               and best["pair_p99_ms"] <= TARGET_P99_MS),
            "partitions": args.partitions,
            "gateways": args.gateways,
            "step_seconds": args.step_seconds,
            "cores": os.cpu_count(),
            "note": "load generator, matcher and broker share the cores: figures are lower bounds",
            "steps": results,
        }
        if gateways.unknown:
            summary["unknown_match_found"] = gateways.unknown
        return summary
    finally:
        await gateways.close()


async def settle(matcher: Matcher, gateways: Gateways, deadline: float, longest: float = 15.0) -> None:
    """Wait (a while at most) until the matcher has taken every request."""
    until = min(time.monotonic() + longest, deadline - 15)
    seen = -1
    while time.monotonic() < until:
        counters = await asyncio.to_thread(matcher.counters)
        if counters["new"] >= gateways.published and gateways.found_messages == seen:
            break  # all taken, and no MatchFound came in the last quarter second
        seen = gateways.found_messages
        await asyncio.sleep(0.25)
    await asyncio.sleep(0.5)


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="1000,2000,3000,4000,5000,6000,8000,10000",
                        help="offered loads, match requests per second, comma-separated")
    parser.add_argument("--step-seconds", type=float, default=4.0)
    parser.add_argument("--gateways", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--raw-count", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-log", action="store_true", help="keep the matcher's log file")
    args = parser.parse_args(argv)
    args.steps = [float(s) for s in args.steps.split(",") if s.strip()]
    return args


def _terminated(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # as Ctrl-C: clean up, then exit


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    args.deadline = time.monotonic() + TIME_BUDGET
    vhost = f"parley-bench-{uuid.uuid4().hex[:10]}"
    log_dir = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    matcher: Matcher | None = None
    summary: dict | None = None
    vhost_made = False
    try:
        vhost_made = True  # delete_vhost is harmless if add_vhost failed half way
        amqp_url = add_vhost(vhost)
        matcher = Matcher(amqp_url, args.partitions, log_dir / "matcher.log")
        matcher.start()
        say(f"matcher pid {matcher.pid} serving on vhost {vhost}")
        summary = asyncio.run(asyncio.wait_for(bench(args, amqp_url, matcher),
                                               args.deadline - time.monotonic()))
    except BaseException as exc:
        summary = {"error": f"{type(exc).__name__}: {exc}"}
        if matcher is not None and matcher.log_path.exists():
            tail = matcher.log_path.read_text(errors="replace")[-2000:]
            if tail.strip():
                say(f"matcher log (tail):\n{tail}")
    finally:
        if matcher is not None:
            matcher.stop()
        if vhost_made:
            with contextlib.suppress(Exception):
                delete_vhost(vhost)
        if args.keep_log:
            say(f"matcher log kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    print(json.dumps(summary), flush=True)
    return 1 if "error" in summary else 0


if __name__ == "__main__":
    sys.exit(main())
