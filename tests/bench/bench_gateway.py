"""Benchmark: two gateway processes, driven over real WebSockets.

    .venv/bin/python tests/bench/bench_gateway.py [--quick] [--idle 10000] [--pairs 200] ...

It makes a RabbitMQ virtual host of its own and starts, as processes on it,
the ban service (SQLite in a temporary folder, so every hello and join pays
the real CheckBan), one matcher and TWO gateways, A and B. The clients are
aiohttp WebSockets (the browser's path: JSON text frames at /ws) in a few
client processes of their own (multiprocessing), so that the bench's Python
is not one more event loop in the way of the figures it measures.

1. Raw broker, on the quiet broker, in this process (aio-pika alone): the
   round trip of one small message published to a queue and consumed in the
   same process, one in flight at a time (`raw_roundtrip_*`): the one broker
   hop a relayed line takes (client -> gateway A -> broker -> gateway B ->
   client). Then the publish rate of the same message awaited one by one, as
   the gateway's bus publishes (`raw_publish_per_s`), and the consume rate
   with acks (`raw_consume_per_s`): the broker's ceiling beside the relay's.
2. Idle sessions: N WebSocket sessions opened on gateway A (hello, then the
   welcome awaited), at most `--open-concurrency` handshakes in flight, and
   all kept open (a reader on each answers the gateway's pings). Gateway A's
   resident memory (VmRSS of /proc/<pid>/status) is read before and after:
   `rss_mib_before`, `rss_mib`, `rss_kib_per_session`. The idle sessions stay
   open through the relay phases, as a gateway that holds its share of users
   while relaying their chat (`--close-idle-before-relay` to measure without).
3. Relay: K pairs, side A on gateway A and side B on gateway B. Each pair has
   an interest of its own and joins interests-only, so the matcher can only
   pair it with itself, across the two gateways. Each text line carries the
   client's send time (time.perf_counter_ns; both sides of a pair live in
   the same client process), so the latency is from the client's send to the
   peer client's receive.
   - Saturation: every side sends as fast as the gateways take it, with at
     most `--window` lines in flight per direction (sent, not yet received by
     the peer): closed loop, the queues stay bounded. `relay_msgs_per_s` is
     the lines delivered per second, divided by the 2 gateways (each gateway
     takes in half of them from its clients and delivers the other half).
   - Below saturation: an open loop at 50 % of that maximum, the sends
     spread evenly over the sides: `relay_offered_per_s`, `relay_p50_ms` and
     `relay_p99_ms` (the 10 ms target is judged here); then at 25 % and 10 %
     (`relay_latency_by_load`), to show where the latency comes from.

The rate limits are raised and proof of work is made cheap for the bench
(it measures the relay, not the limiter): the settings are in the JSON
(`gateway_env`). When the welcome carries a proof-of-work challenge, each
relay session solves it before its join (services.gateway.proof_of_work).
Chat copies to moderation (MessageObserved) go to the `moderation.messages`
queue, declared by the bench as the moderation service declares it (it is
bounded; nothing consumes it here).

Everything runs on this machine's cores (2 on a developer's machine): the
clients, the broker, the matcher and the ban service take CPU the gateways
would have on their own hosts. Each phase shows the CPU of each process
(100 = one core), and `gateway_cpu_us_per_msg` the gateways' CPU per relayed
line, from which the rate per gateway core reads. Figures are lower bounds.

Progress goes to stderr; the last line of stdout is JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402
import aiohttp  # noqa: E402
from aiormq import spec  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from parley.v1 import common_pb2, events_pb2  # noqa: E402
from services.gateway import proof_of_work  # noqa: E402
from services.runtime import envelope as env  # noqa: E402
from services.runtime.health import NotServing, wait_until_serving  # noqa: E402
from services.runtime.topology import EVENTS_EXCHANGE, QueueKind, moderation_messages  # noqa: E402
from tests.support import add_vhost, delete_vhost, free_port, scrape_metrics  # noqa: E402

TARGETS = {"idle_sessions": 10_000, "relay_msgs_per_s": 5_000.0, "relay_p99_ms": 10.0}
PARTITIONS = 8

# The bench measures the relay, not the limiter: limits out of the way, and
# proof of work cheap (8 bits: ~256 hashes), also for an address that opens
# thousands of sessions a minute (all of the bench's come from 127.0.0.1).
GATEWAY_BENCH_ENV = {
    "PARLEY_GATEWAY_TEXT_PER_SECOND": "1000000",
    "PARLEY_GATEWAY_TEXT_BURST": "1000000",
    "PARLEY_GATEWAY_FRAMES_PER_SECOND": "1000000",
    "PARLEY_GATEWAY_FRAMES_BURST": "1000000",
    "PARLEY_GATEWAY_JOINS_PER_MINUTE": "1000000",
    "PARLEY_GATEWAY_IP_JOINS_PER_MINUTE": "1000000000",
    "PARLEY_GATEWAY_SESSIONS_PER_IP": "1000000",
    "PARLEY_GATEWAY_POW_BITS": "8",
    "PARLEY_GATEWAY_POW_MAX_BITS": "8",
    "PARLEY_GATEWAY_POW_FREE_SESSIONS_PER_MINUTE": "1000000000",
}

HELLO = json.dumps({"hello": {"client": "bench"}})
# a chat line of a usual length; the client's send time goes in front
LINE_TAIL = " hey, where are you from? I am from here"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def raise_nofile() -> int:
    """Soft limit of open files up to the hard one (subprocesses inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def percentile(values, q: float):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def ms_of_ns(value) -> float | None:
    return None if value is None else round(value / 1e6, 2)


def ms_of_s(value) -> float | None:
    return None if value is None else round(value * 1000, 2)


# ---------------------------------------------------------------- the machine


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int | None) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, from /proc/<pid>/stat."""
    if pid is None:
        return 0.0, 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def broker_pid() -> int | None:
    """The RabbitMQ VM: the oldest beam.smp (rabbitmqctl runs short-lived ones)."""
    found: list[tuple[int, int]] = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if proc.joinpath("comm").read_text().strip() == "beam.smp":
                    started = int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[19])
                    found.append((started, int(proc.name)))
    return min(found)[1] if found else None


class CpuMeter:
    """CPU % of named groups of processes (100 = one core) between calls."""

    def __init__(self, groups: dict[str, list[int | None]]) -> None:
        self.groups = groups
        self._start = self._read()

    def _read(self) -> tuple[float, dict[str, float]]:
        values = {}
        for name, pids in self.groups.items():
            times = [cpu_times(pid) for pid in pids]
            values[name] = sum(user + system for user, system in times)
            values[f"{name}_sys"] = sum(system for _user, system in times)
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        values["machine"] = (sum(fields[:8]) - fields[3] - fields[4]) / _TICKS
        # interrupts (loopback networking is mostly softirq), and time stolen by the hypervisor
        values["irq"] = (fields[5] + fields[6]) / _TICKS
        values["steal"] = fields[7] / _TICKS
        return time.monotonic(), values

    def take(self) -> tuple[float, dict[str, float]]:
        """(seconds, CPU seconds per group) since the last call."""
        then, before = self._start
        now, after = self._start = self._read()
        return now - then, {name: after[name] - before[name] for name in after}

    @staticmethod
    def percent(wall: float, used: dict[str, float], groups) -> dict[str, float]:
        out = {name: round(100 * value / max(wall, 1e-6), 1) for name, value in used.items()
               if not name.endswith("_sys") or name.startswith("gateway")}
        out["others"] = round(max(0.0, out["machine"] - out["irq"] - out["steal"]
                                  - sum(out[name] for name in groups)), 1)
        return out


# ---------------------------------------------------------------- services


class Service:
    """One Parley service as its own process, as `make run` starts it."""

    def __init__(self, name: str, env_vars: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.env = env_vars
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def prefix(self) -> str:
        return f"PARLEY_{self.name.split('-')[0].upper()}_"

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.env[self.prefix + 'GRPC_PORT']}"

    @property
    def metrics_port(self) -> int:
        return int(self.env[self.prefix + "METRICS_PORT"])

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> "Service":
        module = f"services.{self.name.split('-')[0]}"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", module], env=self.env, cwd=ROOT,
                                            stdout=log, stderr=log)
        return self

    def wait_serving(self, timeout: float = 30.0) -> None:
        wait_until_serving(self.grpc_addr, timeout, name=self.name, poll=self.process.poll,
                           details=lambda: f"log:\n{self.tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def metrics(self) -> list[tuple[str, dict, float]]:
        """This service's Prometheus samples: (name, labels, value)."""
        text = scrape_metrics(self.metrics_port)
        return [(sample.name, sample.labels, sample.value)
                for family in text_string_to_metric_families(text) for sample in family.samples]


def metric_sum(samples, name: str, **labels: str) -> float:
    return sum(value for sample_name, sample_labels, value in samples
               if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()))


def metric_by_label(samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for sample_name, sample_labels, value in samples:
        if sample_name == name and value and label in sample_labels:
            out[sample_labels[label]] = out.get(sample_labels[label], 0.0) + value
    return out


def base_env(amqp_url: str, name: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    prefix = f"PARLEY_{name.upper()}_"
    environment.update({
        "PARLEY_AMQP_URL": amqp_url,
        "PARLEY_LOG_LEVEL": "WARNING",
        "PARLEY_DRAIN_SECONDS": "0.2",
        "PARLEY_MATCHER_PARTITIONS": str(PARTITIONS),
        "PARLEY_IP_PEPPER": "bench-pepper",
        "PARLEY_DEVICE_TOKEN_SECRET": "bench-device-secret",
        "PARLEY_TURN_SECRET": "bench-turn-secret",
        prefix + "GRPC_HOST": "127.0.0.1",
        prefix + "GRPC_PORT": str(free_port()),
        prefix + "METRICS_PORT": str(free_port()),
    })
    return environment


class Stack:
    """ban, matcher, gateway A and gateway B on the bench's vhost."""

    def __init__(self, amqp_url: str, log_dir: Path, run_id: str) -> None:
        self.services: list[Service] = []
        ban_env = base_env(amqp_url, "ban")
        ban_env["PARLEY_BAN_DATABASE_URL"] = f"sqlite:///{log_dir}/ban.db"
        self.ban = self._add("ban", ban_env, log_dir)
        self.matcher = self._add("matcher", base_env(amqp_url, "matcher"), log_dir)
        self.gateways = []
        for letter in "ab":
            gw_env = base_env(amqp_url, "gateway")
            gw_env.update(GATEWAY_BENCH_ENV)
            gw_env.update({
                "PARLEY_INSTANCE_ID": f"bench-gw-{letter}-{run_id}",
                "PARLEY_GATEWAY_HTTP_HOST": "127.0.0.1",
                "PARLEY_GATEWAY_HTTP_PORT": str(free_port()),
                "PARLEY_GATEWAY_BAN_ADDR": self.ban.grpc_addr,
            })
            self.gateways.append(self._add(f"gateway-{letter}", gw_env, log_dir))

    def _add(self, name: str, env_vars: dict[str, str], log_dir: Path) -> Service:
        service = Service(name, env_vars, log_dir / f"{name}.log")
        self.services.append(service)
        return service

    def start(self) -> None:
        for service in self.services:  # all at once: they start in parallel
            service.start()
        for service in self.services:
            service.wait_serving(45)

    def ws_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.gateways[index].env['PARLEY_GATEWAY_HTTP_PORT']}/ws"

    def check_alive(self) -> None:
        for service in self.services:
            if not service.alive():
                raise RuntimeError(f"{service.name} exited (code {service.process.returncode}); "
                                   f"log:\n{service.tail()}")

    def stop(self) -> None:
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop()


# ---------------------------------------------------------------- raw RabbitMQ


def relay_body(text: str) -> bytes:
    """A relayed chat line's envelope, as gateway A publishes it for B."""
    frame = events_pb2.RelayFrame(
        match_id=uuid.uuid4().hex,
        to=common_pb2.SessionRef(gateway_id="bench-gw-b", session_id=uuid.uuid4().hex),
        text=events_pb2.RelayText(text=text, sent_at_unix_ms=int(time.time() * 1000)),
        **{"from": common_pb2.SessionRef(gateway_id="bench-gw-a", session_id=uuid.uuid4().hex)})
    return env.wrap(frame, "gateway/bench-gw-a").SerializeToString()


def raw_properties() -> spec.Basic.Properties:
    return spec.Basic.Properties(content_type=env.CONTENT_TYPE, message_type="parley.v1.RelayFrame",
                                 message_id=uuid.uuid4().hex, app_id="bench/raw", delivery_mode=1)


async def declare_moderation_messages(url: str) -> None:
    """Where the gateways' chat copies go (as the moderation service declares
    it): without a bound queue every copy would come back unroutable."""
    queue_spec = moderation_messages()
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        durable = queue_spec.kind is not QueueKind.TRANSIENT
        await channel.declare_queue(queue_spec.dlq, durable=True, arguments=queue_spec.dlq_arguments())
        queue = await channel.declare_queue(queue_spec.name, durable=durable, arguments=queue_spec.arguments())
        for _exchange, routing_key in queue_spec.bindings:
            await queue.bind(exchange, routing_key)
    finally:
        await connection.close()


async def raw_broker(url: str, body: bytes, roundtrips: int, publishes: int) -> dict:
    """aio-pika alone on the quiet broker: sequential round trips (one in
    flight), then publishes awaited one by one (as the gateway's bus, on a
    channel without confirms, mandatory), then consumes with acks."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=False)
        underlay = await channel.get_underlay_channel()
        queue = await channel.declare_queue(f"bench.raw.{uuid.uuid4().hex[:8]}", exclusive=True)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=1000)  # the gateway's relay prefetch
        consuming = await consumer.get_queue(queue.name, ensure=False)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future | None = None
        consumed = 0
        all_consumed: asyncio.Future = loop.create_future()
        expect = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal consumed
            arrived = time.perf_counter_ns()
            envelope = events_pb2.Envelope()
            envelope.ParseFromString(message.body)
            await message.ack()
            consumed += 1
            if waiter is not None and not waiter.done():
                waiter.set_result(arrived)
            if expect and consumed >= expect and not all_consumed.done():
                all_consumed.set_result(None)

        tag = await consuming.consume(on_message)
        trips: list[int] = []
        for i in range(roundtrips + 50):
            waiter = loop.create_future()
            sent = time.perf_counter_ns()
            await underlay.basic_publish(body, exchange="", routing_key=queue.name, properties=raw_properties(),
                                         mandatory=True)
            arrived = await asyncio.wait_for(waiter, 10)
            if i >= 50:  # warm-up first
                trips.append(arrived - sent)
        waiter = None
        await consuming.cancel(tag)

        # publish rate: awaited one by one, until the broker holds them all
        start = time.perf_counter()
        for _ in range(publishes):
            await underlay.basic_publish(body, exchange="", routing_key=queue.name, properties=raw_properties(),
                                         mandatory=True)
        while True:
            declared = await channel.declare_queue(queue.name, passive=True)
            if declared.declaration_result.message_count >= publishes:
                break
            await asyncio.sleep(0.002)
        publish_s = time.perf_counter() - start

        consumed, expect = 0, publishes
        start = time.perf_counter()
        tag = await consuming.consume(on_message)
        await asyncio.wait_for(all_consumed, 60)
        consume_s = time.perf_counter() - start
        await consuming.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        return {
            "raw_roundtrip_p50_ms": ms_of_ns(percentile(trips, 50)),
            "raw_roundtrip_p99_ms": ms_of_ns(percentile(trips, 99)),
            "raw_roundtrips": roundtrips,
            "raw_publish_per_s": round(publishes / publish_s),
            "raw_consume_per_s": round(publishes / consume_s),
            "raw_body_bytes": len(body),
        }
    finally:
        await connection.close()


# ---------------------------------------------------------------- client processes


class LoopLag:
    """How late an event loop wakes a 5 ms sleeper."""

    def __init__(self, period: float = 0.005) -> None:
        self.samples: list[float] = []
        self._task = asyncio.ensure_future(self._run(period))

    async def _run(self, period: float) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(period)
            self.samples.append(time.perf_counter() - start - period)

    def stop(self) -> float | None:
        self._task.cancel()
        return ms_of_s(percentile(self.samples, 99))


class Side:
    """One end of a relay pair: its socket, and what it has sent that the
    peer has not received yet."""

    __slots__ = ("ws", "peer", "in_flight", "ready", "waiting")

    def __init__(self, ws) -> None:
        self.ws = ws
        self.peer: Side | None = None
        self.in_flight = 0
        self.ready = asyncio.Event()
        self.waiting = False


class Worker:
    """A client process: WebSocket sessions on the gateways, driven by
    commands from the bench over a pipe."""

    def __init__(self, conn, index: int) -> None:
        self.conn = conn
        self.index = index
        self.http: aiohttp.ClientSession | None = None
        self.idle: list = []
        self.idle_readers: set[asyncio.Task] = set()
        self.idle_closed = 0
        self.sides: list[Side] = []
        self.relay_readers: set[asyncio.Task] = set()
        self.relay_closed = 0
        self.delivered = 0
        self.record: list[int] | None = None
        self.other_frames: Counter = Counter()

    async def serve(self) -> None:
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False),
                                          timeout=aiohttp.ClientTimeout(total=None))
        try:
            while True:
                while not self.conn.poll():
                    await asyncio.sleep(0.02)
                try:
                    command, kwargs = self.conn.recv()
                except EOFError:
                    return  # the bench went away
                if command == "close":
                    await self.close_all()
                    self.conn.send({"closed": True})
                    return
                try:
                    result = await getattr(self, f"cmd_{command}")(**kwargs)
                except Exception as exc:  # noqa: BLE001 - reported to the bench
                    result = {"error": f"worker {self.index}: {command}: {type(exc).__name__}: {exc}"}
                self.conn.send(result)
        finally:
            await self.http.close()

    async def close_all(self) -> None:
        """No closing handshake for thousands of sockets: the connections are
        dropped with the client session (the gateway sees them go)."""
        for task in (*self.idle_readers, *self.relay_readers):
            task.cancel()
        await asyncio.gather(*self.idle_readers, *self.relay_readers, return_exceptions=True)

    async def open_session(self, url: str, compress: int):
        ws = await self.http.ws_connect(url, compress=compress, autoping=True)
        try:
            await ws.send_str(HELLO)
            message = await ws.receive(timeout=30)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"no welcome: {message.type.name} {message.data!r}"[:300])
            frame = json.loads(message.data)
            if "welcome" not in frame:
                raise RuntimeError(f"no welcome: {message.data[:300]}")
        except BaseException:
            await ws.close()
            raise
        return ws, frame["welcome"]

    # ------------------------------------------------------------ idle sessions

    async def _hold(self, ws) -> None:
        try:
            async for _message in ws:  # reading answers the gateway's pings
                pass
        finally:
            self.idle_closed += 1

    async def cmd_idle_open(self, url: str, count: int, concurrency: int, compress: int) -> dict:
        gate = asyncio.Semaphore(concurrency)
        took: list[float] = []
        failures: Counter = Counter()

        async def one() -> None:
            async with gate:
                start = time.perf_counter()
                try:
                    ws, _welcome = await asyncio.wait_for(self.open_session(url, compress), 60)
                except Exception as exc:  # noqa: BLE001 - counted
                    failures[f"{type(exc).__name__}: {exc}"[:160]] += 1
                    return
                took.append(time.perf_counter() - start)
                self.idle.append(ws)
                task = asyncio.create_task(self._hold(ws))
                self.idle_readers.add(task)

        lag = LoopLag()
        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        seconds = time.perf_counter() - start
        return {"opened": len(took), "seconds": seconds, "open_s": took, "failures": dict(failures),
                "loop_lag_p99_ms": lag.stop()}

    async def cmd_idle_status(self) -> dict:
        return {"held": len(self.idle) - self.idle_closed, "closed": self.idle_closed}

    async def cmd_idle_close(self) -> dict:
        for task in self.idle_readers:
            task.cancel()
        for start in range(0, len(self.idle), 500):
            await asyncio.gather(*(ws.close() for ws in self.idle[start:start + 500]), return_exceptions=True)
        closed = len(self.idle)
        self.idle.clear()
        self.idle_readers.clear()
        self.idle_closed = 0
        return {"closed": closed}

    # ------------------------------------------------------------ relay pairs

    async def _join(self, ws, welcome: dict, interest: str) -> None:
        join = {"mode": "MODE_TEXT", "ageBand": "AGE_BAND_ADULT", "language": "en",
                "interests": [interest], "interestsOnly": True}
        challenge = welcome.get("proofOfWork") or {}
        bits = int(challenge.get("difficultyBits", 0) or 0)
        if challenge.get("challenge") and bits:
            join["proofOfWork"] = proof_of_work.solve(challenge["challenge"], bits)
        await ws.send_str(json.dumps({"join": join}))

    @staticmethod
    async def _until_connected(ws, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            message = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            if message.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"socket {message.type.name} while waiting to be connected")
            frame = json.loads(message.data)
            if "connected" in frame:
                return
            if "waiting" not in frame and "typing" not in frame:
                raise RuntimeError(f"while waiting to be connected: {message.data[:300]}")

    async def cmd_pairs_open(self, url_a: str, url_b: str, interests: list[str], compress: int,
                             concurrency: int = 50) -> dict:
        gate = asyncio.Semaphore(concurrency)
        took: list[float] = []
        failures: Counter = Counter()

        async def one(interest: str) -> None:
            async with gate:
                start = time.perf_counter()
                sockets = []
                try:
                    ws_a, welcome_a = await self.open_session(url_a, compress)
                    sockets.append(ws_a)
                    ws_b, welcome_b = await self.open_session(url_b, compress)
                    sockets.append(ws_b)
                    await self._join(ws_a, welcome_a, interest)
                    await self._join(ws_b, welcome_b, interest)
                    await asyncio.gather(self._until_connected(ws_a, 30), self._until_connected(ws_b, 30))
                except Exception as exc:  # noqa: BLE001 - counted
                    failures[f"{type(exc).__name__}: {exc}"[:200]] += 1
                    for ws in sockets:
                        await ws.close()
                    return
                took.append(time.perf_counter() - start)
                a, b = Side(ws_a), Side(ws_b)
                a.peer, b.peer = b, a
                self.sides += [a, b]
                for side in (a, b):
                    self.relay_readers.add(asyncio.create_task(self._relay_reader(side)))

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in interests))
        return {"pairs": len(took), "seconds": time.perf_counter() - start, "pair_s": took,
                "failures": dict(failures)}

    async def _relay_reader(self, side: Side) -> None:
        """Lines from side.peer arrive on side.ws."""
        peer = side.peer
        try:
            async for message in side.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                now = time.perf_counter_ns()
                data = message.data
                if data.startswith('{"message"'):
                    text = json.loads(data)["message"]["text"]
                    self.delivered += 1
                    if self.record is not None:
                        self.record.append(now - int(text[:text.index(" ")]))
                    peer.in_flight -= 1
                    if peer.waiting:
                        peer.ready.set()
                else:
                    frame = json.loads(data)
                    kind = next(iter(frame), "?")
                    if kind == "error":
                        kind = f"error:{frame['error'].get('code', '?')}"
                    self.other_frames[kind] += 1
        finally:
            self.relay_closed += 1

    @staticmethod
    def _line() -> str:
        return '{"text": {"text": "%d%s"}}' % (time.perf_counter_ns(), LINE_TAIL)

    async def _ticker(self, samples: list[int]) -> None:
        last = self.delivered
        while True:
            await asyncio.sleep(1.0)
            samples.append(self.delivered - last)
            last = self.delivered

    def _relay_report(self, start_delivered: int, seconds: float, latencies: list[int], per_second,
                      lag: float | None, extra: dict) -> dict:
        return {"delivered": self.delivered - start_delivered, "seconds": seconds, "latencies_ns": latencies,
                "per_second": per_second, "loop_lag_p99_ms": lag,
                "in_flight_left": sum(max(0, s.in_flight) for s in self.sides),
                "relay_closed": self.relay_closed, "other_frames": dict(self.other_frames), **extra}

    async def _drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(s.in_flight > 0 for s in self.sides):
            await asyncio.sleep(0.05)

    async def cmd_saturate(self, seconds: float, warmup: float, window: int) -> dict:
        """Closed loop: each side keeps at most `window` lines in flight."""
        running = True
        sent = 0

        async def sender(side: Side) -> None:
            nonlocal sent
            ws = side.ws
            while running:
                if side.in_flight >= window:
                    side.ready.clear()
                    side.waiting = True
                    await side.ready.wait()
                    side.waiting = False
                    continue
                side.in_flight += 1
                sent += 1
                await ws.send_str(self._line())

        gc.collect()
        gc.disable()
        per_second: list[int] = []
        ticker = asyncio.create_task(self._ticker(per_second))
        senders = [asyncio.create_task(sender(side)) for side in self.sides]
        try:
            await asyncio.sleep(warmup)
            latencies: list[int] = []
            self.record = latencies
            lag = LoopLag()
            start_delivered, start = self.delivered, time.perf_counter()
            await asyncio.sleep(seconds)
            delivered, took = self.delivered - start_delivered, time.perf_counter() - start
            self.record = None
            lag_p99 = lag.stop()
        finally:
            running = False
            ticker.cancel()
            for side in self.sides:
                side.ready.set()
            await asyncio.gather(*senders, return_exceptions=True)
            gc.enable()
        await self._drain(20.0)
        report = self._relay_report(start_delivered, took, latencies, per_second, lag_p99, {"sent": sent})
        report["delivered"] = delivered
        return report

    async def cmd_paced(self, rate: float, seconds: float, warmup: float) -> dict:
        """Open loop: `rate` lines a second from this process, spread evenly
        over its sides, whatever comes back."""
        sides = self.sides
        count = len(sides)
        gc.collect()
        gc.disable()
        per_second: list[int] = []
        ticker = asyncio.create_task(self._ticker(per_second))
        latencies: list[int] = []
        sent = 0
        max_behind = 0.0
        turn = 0
        lag = None
        start = time.perf_counter()
        measure_from = start + warmup
        end = measure_from + seconds
        start_delivered = self.delivered
        measured_sent = 0
        try:
            while True:
                now = time.perf_counter()
                if now >= end:
                    break
                if lag is None and now >= measure_from:
                    self.record = latencies
                    lag = LoopLag()
                    start_delivered = self.delivered
                    measured_sent = sent
                due = int((now - start) * rate) + 1
                max_behind = max(max_behind, (due - sent) / rate) if lag is not None else max_behind
                while sent < due:
                    side = sides[turn]
                    turn = turn + 1 if turn + 1 < count else 0
                    side.in_flight += 1
                    sent += 1
                    await side.ws.send_str(self._line())
                await asyncio.sleep(0.001)
            took = time.perf_counter() - measure_from
            lag_p99 = lag.stop() if lag is not None else None
        finally:
            ticker.cancel()
            gc.enable()
        await self._drain(20.0)
        self.record = None
        return self._relay_report(start_delivered, took, latencies, per_second, lag_p99,
                                  {"sent": sent - measured_sent, "generator_behind_max_ms": ms_of_s(max_behind)})


def worker_main(conn, index: int) -> None:
    raise_nofile()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Worker(conn, index).serve())


class Workers:
    """The client processes, and calls to all of them at once."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns = []
        self.processes = []
        for index in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=worker_main, args=(theirs, index), daemon=True,
                                      name=f"bench-client-{index}")
            process.start()
            theirs.close()
            self.conns.append(ours)
            self.processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def __len__(self) -> int:
        return len(self.processes)

    async def call(self, command: str, kwargs_each: list[dict], timeout: float) -> list[dict]:
        for conn, kwargs in zip(self.conns, kwargs_each):
            conn.send((command, kwargs))
        deadline = time.monotonic() + timeout
        replies: list[dict | None] = [None] * len(self.conns)
        while any(r is None for r in replies):
            for i, conn in enumerate(self.conns):
                if replies[i] is None and conn.poll():
                    replies[i] = conn.recv()
            if time.monotonic() > deadline:
                raise TimeoutError(f"client processes did not answer {command} in {timeout:g} s")
            for process in self.processes:
                if not process.is_alive():
                    raise RuntimeError(f"client process {process.name} died (code {process.exitcode})")
            await asyncio.sleep(0.01)
        errors = [r["error"] for r in replies if "error" in r]
        if errors:
            raise RuntimeError("; ".join(errors))
        return replies

    async def call_all(self, command: str, timeout: float, **kwargs) -> list[dict]:
        return await self.call(command, [kwargs] * len(self.conns), timeout)

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(Exception):
                conn.send(("close", {}))
        deadline = time.monotonic() + 20
        for process in self.processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()  # by its pid
                process.join(5)
        for conn in self.conns:
            with contextlib.suppress(Exception):
                conn.close()


# ---------------------------------------------------------------- the run


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def bench(args, amqp_url: str, stack: Stack, workers: Workers, run_id: str) -> dict:
    gateway_a, gateway_b = stack.gateways
    groups = {"gateway_a": [gateway_a.pid], "gateway_b": [gateway_b.pid], "matcher": [stack.matcher.pid],
              "ban": [stack.ban.pid], "broker": [broker_pid()], "clients": workers.pids, "bench": [os.getpid()]}
    cpu = CpuMeter(groups)
    summary: dict = {}

    # ---- 1. the raw broker, quiet
    await declare_moderation_messages(amqp_url)
    body = relay_body(f"{time.perf_counter_ns()}{LINE_TAIL}")
    say(f"raw aio-pika on the quiet broker: {args.raw_roundtrips} round trips one at a time, "
        f"{args.raw_publishes} publishes, {len(body)}-byte relay envelopes ...")
    raw = await raw_broker(amqp_url, body, args.raw_roundtrips, args.raw_publishes)
    say(f"  round trip p50 {raw['raw_roundtrip_p50_ms']} ms p99 {raw['raw_roundtrip_p99_ms']} ms; "
        f"publish {raw['raw_publish_per_s']}/s, consume with acks {raw['raw_consume_per_s']}/s")
    summary.update(raw)
    stack.check_alive()

    # ---- 2. idle sessions on gateway A
    await asyncio.sleep(1.0)
    rss_before_kib = rss_kib(gateway_a.pid)
    rss_b_before_kib = rss_kib(gateway_b.pid)
    say(f"gateway A pid {gateway_a.pid}: VmRSS {rss_before_kib / 1024:.1f} MiB with no session; opening "
        f"{args.idle} idle WebSocket sessions ({args.open_concurrency} handshakes in flight, "
        f"{len(workers)} client processes, permessage-deflate {'offered' if args.compress else 'off'}) ...")
    cpu.take()
    replies = await workers.call("idle_open", [
        {"url": stack.ws_url(0), "count": n, "concurrency": max(1, args.open_concurrency // len(workers)),
         "compress": args.compress} for n in split(args.idle, len(workers))], timeout=args.deadline_left())
    wall, used = cpu.take()
    open_cpu = CpuMeter.percent(wall, used, groups)
    opened = sum(r["opened"] for r in replies)
    open_s = [s for r in replies for s in r["open_s"]]
    failures: Counter = Counter()
    for r in replies:
        failures.update(r["failures"])
    open_seconds = max(r["seconds"] for r in replies)
    await asyncio.sleep(1.0)  # settle
    cpu.take()
    await asyncio.sleep(3.0)  # what holding them costs with no traffic (pings, the 1 s tick)
    wall, used = cpu.take()
    hold_cpu = CpuMeter.percent(wall, used, groups)
    status = await workers.call_all("idle_status", 30)
    held = sum(r["held"] for r in status)
    rss_after_kib = rss_kib(gateway_a.pid)
    series_a = await asyncio.to_thread(gateway_a.metrics)
    gauge = metric_sum(series_a, "parley_gateway_sessions")
    per_session = (rss_after_kib - rss_before_kib) / held if held else None
    summary.update({
        "idle_sessions": held,
        "idle_sessions_asked": args.idle,
        "idle_open_failures": sum(failures.values()),
        "idle_open_failure_kinds": dict(failures.most_common(5)),
        "idle_gateway_sessions_gauge": gauge,
        "idle_open_per_s": round(opened / open_seconds) if open_seconds else None,
        "idle_open_p50_ms": ms_of_s(percentile(open_s, 50)),
        "idle_open_p99_ms": ms_of_s(percentile(open_s, 99)),
        "rss_mib_before": round(rss_before_kib / 1024, 1),
        "rss_mib": round(rss_after_kib / 1024, 1),
        "rss_kib_per_session": round(per_session, 1) if per_session is not None else None,
        "idle_open_cpu_percent": open_cpu,
        "idle_hold_gateway_cpu_percent": hold_cpu["gateway_a"],
        "idle_client_loop_lag_p99_ms": max((r["loop_lag_p99_ms"] or 0) for r in replies),
    })
    say(f"  held {held} sessions (gateway's gauge {gauge:.0f}; {sum(failures.values())} failed"
        f"{': ' + str(dict(failures.most_common(3))) if failures else ''}); opened in {open_seconds:.1f} s "
        f"({summary['idle_open_per_s']}/s, handshake+welcome p50 {summary['idle_open_p50_ms']} ms "
        f"p99 {summary['idle_open_p99_ms']} ms); VmRSS {rss_after_kib / 1024:.1f} MiB: "
        f"{summary['rss_kib_per_session']} KiB per session; cpu% while opening: gateway A {open_cpu['gateway_a']} "
        f"ban {open_cpu['ban']} clients {open_cpu['clients']} broker {open_cpu['broker']}; while holding them "
        f"idle: gateway A {hold_cpu['gateway_a']}")
    stack.check_alive()
    if args.close_idle_before_relay:
        await workers.call_all("idle_close", 60)
        say("  idle sessions closed before the relay phases (--close-idle-before-relay)")

    # ---- 3. relay pairs across the two gateways
    interests = [f"b{run_id}p{i}" for i in range(args.pairs)]
    chunks = [interests[i::len(workers)] for i in range(len(workers))]
    say(f"relay: {args.pairs} pairs, side A on gateway A and side B on gateway B (interest of their own, "
        f"interests-only) ...")
    replies = await workers.call("pairs_open", [
        {"url_a": stack.ws_url(0), "url_b": stack.ws_url(1), "interests": chunk, "compress": args.compress}
        for chunk in chunks], timeout=args.deadline_left())
    pairs = sum(r["pairs"] for r in replies)
    pairs_each = [r["pairs"] for r in replies]
    pair_failures: Counter = Counter()
    for r in replies:
        pair_failures.update(r["failures"])
    pair_s = [s for r in replies for s in r["pair_s"]]
    say(f"  {pairs} pairs connected in {max(r['seconds'] for r in replies):.1f} s (open, join, connected: "
        f"p50 {ms_of_s(percentile(pair_s, 50))} ms p99 {ms_of_s(percentile(pair_s, 99))} ms)"
        f"{'; failures: ' + str(dict(pair_failures.most_common(3))) if pair_failures else ''}")
    if pairs == 0:
        raise RuntimeError(f"no relay pair connected: {dict(pair_failures.most_common(3))}")
    summary.update({"relay_pairs": pairs, "relay_pair_failures": sum(pair_failures.values()),
                    "relay_connect_p50_ms": ms_of_s(percentile(pair_s, 50)),
                    "relay_connect_p99_ms": ms_of_s(percentile(pair_s, 99))})
    before_relay = await asyncio.to_thread(gateway_a.metrics), await asyncio.to_thread(gateway_b.metrics)

    async def relay_phase(command: str, seconds: float, warmup: float, each: list[dict]):
        """Run a relay command in every client process; CPU is measured over
        the measured window (after the warm-up)."""
        call = asyncio.create_task(workers.call(command, each, timeout=seconds + warmup + 60))
        await asyncio.sleep(warmup)
        cpu.take()
        await asyncio.sleep(seconds)
        wall, used = cpu.take()
        replies = await call
        return replies, wall, used

    say(f"  saturation: every side sends with at most {args.window} lines in flight, "
        f"{args.warmup:g} s warm-up then {args.relay_seconds:g} s measured ...")
    replies, wall, used = await relay_phase("saturate", args.relay_seconds, args.warmup, [
        {"seconds": args.relay_seconds, "warmup": args.warmup, "window": args.window}] * len(workers))
    sat_cpu = CpuMeter.percent(wall, used, groups)
    delivered = sum(r["delivered"] for r in replies)
    seconds = max(r["seconds"] for r in replies)
    total_rate = delivered / seconds
    sat_lat = [v for r in replies for v in r["latencies_ns"]]
    per_second = [sum(v) for v in zip(*(r["per_second"] for r in replies))]
    frames: Counter = Counter()
    for r in replies:
        frames.update(r["other_frames"])
    gateway_cpu_s = used["gateway_a"] + used["gateway_b"]
    us_per_msg = 1e6 * gateway_cpu_s * (seconds / wall) / delivered if delivered else None
    sys_share = (used["gateway_a_sys"] + used["gateway_b_sys"]) / gateway_cpu_s if gateway_cpu_s else None
    summary.update({
        "relay_transport": "websocket",
        "relay_msgs_per_s": round(total_rate / 2),
        "relay_msgs_per_s_total": round(total_rate),
        "relay_note": ("relay_msgs_per_s = lines delivered per second to the peers, all pairs, divided by the "
                       "2 gateways: each gateway takes that many lines a second in from its clients and "
                       "delivers as many to them; relay_msgs_per_s_total is the sum over both"),
        "relay_window": args.window,
        "relay_saturated_p50_ms": ms_of_ns(percentile(sat_lat, 50)),
        "relay_saturated_p99_ms": ms_of_ns(percentile(sat_lat, 99)),
        "relay_saturated_per_second": per_second,
        "relay_saturated_cpu_percent": sat_cpu,
        # both gateways' CPU (user + system) per line delivered: the ingress hop on one gateway
        # and the egress hop on the other
        "gateway_cpu_us_per_msg": round(us_per_msg, 1) if us_per_msg else None,
        "gateway_cpu_system_share": round(sys_share, 2) if sys_share is not None else None,
        # relay_msgs_per_s that one gateway with one core of its own would reach at that cost
        "relay_msgs_per_s_per_gateway_core": round(1e6 / us_per_msg) if us_per_msg else None,
        "relay_saturated_client_loop_lag_p99_ms": max((r["loop_lag_p99_ms"] or 0) for r in replies),
        "relay_saturated_in_flight_lost": sum(r["in_flight_left"] for r in replies),
    })
    say(f"    delivered {delivered} lines in {seconds:.1f} s: {total_rate:.0f}/s in all, "
        f"{total_rate / 2:.0f}/s per gateway (per second: {per_second}); latency at saturation p50 "
        f"{summary['relay_saturated_p50_ms']} ms p99 {summary['relay_saturated_p99_ms']} ms; cpu% gateway A "
        f"{sat_cpu['gateway_a']} B {sat_cpu['gateway_b']} broker {sat_cpu['broker']} clients {sat_cpu['clients']} "
        f"matcher {sat_cpu['matcher']} others {sat_cpu['others']}; gateways' CPU per line "
        f"{summary['gateway_cpu_us_per_msg']} us (both hops, {summary['gateway_cpu_system_share']} of it in the "
        f"kernel){'; other frames: ' + str(dict(frames)) if frames else ''}")
    stack.check_alive()

    loads: list[dict] = []
    for index, share in enumerate(args.paced_shares):
        offered = max(1.0, total_rate * share)
        say(f"  below saturation: {offered:.0f} lines/s offered in all ({100 * share:.0f}% of the "
            f"maximum), {args.warmup:g} s warm-up then {args.paced_seconds:g} s measured ...")
        replies, wall, used = await relay_phase("paced", args.paced_seconds, args.warmup, [
            {"rate": offered * n / pairs, "seconds": args.paced_seconds, "warmup": args.warmup}
            for n in pairs_each])
        paced_cpu = CpuMeter.percent(wall, used, groups)
        paced_lat = [v for r in replies for v in r["latencies_ns"]]
        paced_delivered = sum(r["delivered"] for r in replies)
        paced_seconds = max(r["seconds"] for r in replies)
        paced_sent = sum(r["sent"] for r in replies)
        paced_gateway_s = used["gateway_a"] + used["gateway_b"]
        paced_us = 1e6 * paced_gateway_s * (paced_seconds / wall) / paced_delivered if paced_delivered else None
        for r in replies:
            frames.update(r["other_frames"])
        load = {
            "share": share,
            "offered_per_s": round(offered),
            "sent_per_s": round(paced_sent / paced_seconds),
            "delivered_per_s": round(paced_delivered / paced_seconds),
            "p50_ms": ms_of_ns(percentile(paced_lat, 50)),
            "p90_ms": ms_of_ns(percentile(paced_lat, 90)),
            "p99_ms": ms_of_ns(percentile(paced_lat, 99)),
            "p999_ms": ms_of_ns(percentile(paced_lat, 99.9)),
            "max_ms": ms_of_ns(max(paced_lat) if paced_lat else None),
            "samples": len(paced_lat),
            "cpu_percent": paced_cpu,
            "gateway_cpu_us_per_msg": round(paced_us, 1) if paced_us else None,
            "generator_behind_max_ms": max((r["generator_behind_max_ms"] or 0) for r in replies),
            "client_loop_lag_p99_ms": max((r["loop_lag_p99_ms"] or 0) for r in replies),
            "in_flight_lost": sum(r["in_flight_left"] for r in replies),
        }
        loads.append(load)
        say(f"    sent {load['sent_per_s']}/s, delivered {load['delivered_per_s']}/s; latency p50 {load['p50_ms']} ms "
            f"p90 {load['p90_ms']} ms p99 {load['p99_ms']} ms max {load['max_ms']} ms; cpu% gateway A "
            f"{paced_cpu['gateway_a']} B {paced_cpu['gateway_b']} broker {paced_cpu['broker']} clients "
            f"{paced_cpu['clients']} others {paced_cpu['others']}; gateways' CPU per line "
            f"{load['gateway_cpu_us_per_msg']} us; client loop lag p99 {load['client_loop_lag_p99_ms']} ms")
        if index == 0:  # the headline: the first share (50 % of the maximum by default)
            summary.update({
                "relay_offered_per_s": load["offered_per_s"],
                "relay_offered_sent_per_s": load["sent_per_s"],
                "relay_paced_delivered_per_s": load["delivered_per_s"],
                "relay_p50_ms": load["p50_ms"],
                "relay_p90_ms": load["p90_ms"],
                "relay_p99_ms": load["p99_ms"],
                "relay_p999_ms": load["p999_ms"],
                "relay_max_ms": load["max_ms"],
                "relay_paced_samples": load["samples"],
                "relay_paced_cpu_percent": paced_cpu,
                "gateway_cpu_us_per_msg_paced": load["gateway_cpu_us_per_msg"],
                "relay_paced_generator_behind_max_ms": load["generator_behind_max_ms"],
                "relay_paced_client_loop_lag_p99_ms": load["client_loop_lag_p99_ms"],
                "relay_paced_in_flight_lost": load["in_flight_lost"],
            })
        stack.check_alive()
    summary["relay_latency_by_load"] = [
        {k: v for k, v in load.items() if k != "cpu_percent"} for load in loads]
    summary["relay_other_frames"] = dict(frames)

    after_relay = await asyncio.to_thread(gateway_a.metrics), await asyncio.to_thread(gateway_b.metrics)
    relayed = sum(metric_sum(after, "parley_gateway_messages_relayed_total")
                  - metric_sum(before, "parley_gateway_messages_relayed_total")
                  for before, after in zip(before_relay, after_relay))
    rejects: Counter = Counter()
    for series in after_relay:
        rejects.update(metric_by_label(series, "parley_gateway_rejects_total", "reason"))
    status = await workers.call_all("idle_status", 30)
    summary.update({
        "gateway_lines_relayed_counter": relayed,
        "gateway_rejects_total": dict(rejects),
        "gateway_ban_check_failures": sum(metric_sum(s, "parley_gateway_ban_check_failures_total")
                                          for s in after_relay),
        "idle_sessions_held_after_relay": sum(r["held"] for r in status),
        "rss_mib_after_relay": round(rss_kib(gateway_a.pid) / 1024, 1),
        "gateway_b_rss_mib_before": round(rss_b_before_kib / 1024, 1),
        "gateway_b_rss_mib_after_relay": round(rss_kib(gateway_b.pid) / 1024, 1),
    })
    stack.check_alive()

    phases = [open_cpu, sat_cpu] + [load["cpu_percent"] for load in loads]
    busy = max(phase["others"] for phase in phases)
    summary["others_cpu_percent_max"] = busy
    if busy > 20:
        say(f"WARNING: other processes took up to {busy}% CPU during the phases (100 = one core): the "
            "figures are not comparable with a run on a quiet machine")

    idle_ok = held >= TARGETS["idle_sessions"]
    rate_ok = summary["relay_msgs_per_s"] >= TARGETS["relay_msgs_per_s"]
    p99_ok = summary["relay_p99_ms"] is not None and summary["relay_p99_ms"] <= TARGETS["relay_p99_ms"]
    summary.update({
        "relay_vs_raw_publish": round(total_rate / raw["raw_publish_per_s"], 3),
        "targets": TARGETS,
        "targets_met": {"idle_sessions": idle_ok, "relay_msgs_per_s": rate_ok, "relay_p99_ms": p99_ok},
        "target_met": idle_ok and rate_ok and p99_ok,
    })
    return summary


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1,000 idle sessions, 40 pairs, 5 s relay phases")
    parser.add_argument("--idle", type=int, help="idle sessions on gateway A (default 10000; quick 1000)")
    parser.add_argument("--open-concurrency", type=int, default=200, help="WebSocket handshakes in flight")
    parser.add_argument("--pairs", type=int, help="relay pairs across the gateways (default 200; quick 40)")
    parser.add_argument("--window", type=int, default=2, help="lines in flight per direction at saturation")
    parser.add_argument("--relay-seconds", type=float, help="measured seconds at saturation (default 12; quick 5)")
    parser.add_argument("--paced-seconds", type=float,
                        help="measured seconds of each load below saturation (default 10; quick 4)")
    parser.add_argument("--paced-shares", default="0.5,0.25,0.1",
                        help="offered loads below saturation, as shares of the measured maximum, comma-"
                             "separated; the first gives relay_p50_ms/relay_p99_ms, the others "
                             "relay_latency_by_load")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--compress", type=int, default=0, choices=(0, 15),
                        help="offer permessage-deflate with this window (15, as browsers do) or not (0)")
    parser.add_argument("--close-idle-before-relay", action="store_true",
                        help="close the idle sessions before the relay phases")
    parser.add_argument("--raw-roundtrips", type=int, help="raw broker round trips (default 2000; quick 500)")
    parser.add_argument("--raw-publishes", type=int, help="raw broker publishes (default 20000; quick 5000)")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 180; quick 120)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"idle": (10_000, 1_000), "pairs": (200, 40), "relay_seconds": (12.0, 5.0),
                "paced_seconds": (10.0, 4.0), "raw_roundtrips": (2000, 500), "raw_publishes": (20_000, 5_000),
                "budget": (180.0, 120.0)}
    for name, (full, small) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    args.paced_shares = [float(x) for x in args.paced_shares.split(",") if x.strip()]
    if not args.paced_shares or not all(0 < x < 1 for x in args.paced_shares):
        parser.error("--paced-shares: shares between 0 and 1")
    if args.pairs < args.clients:
        args.clients = max(1, args.pairs)
    return args


def _terminated(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # as Ctrl-C: clean up, then exit


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    started = time.monotonic()
    deadline = started + args.budget
    args.deadline_left = lambda: max(5.0, deadline - time.monotonic())
    nofile = raise_nofile()
    run_id = uuid.uuid4().hex[:8]
    vhost = f"parley-bench-{run_id}"
    log_dir = Path(tempfile.mkdtemp(prefix="parley-bench-gw-"))
    stack: Stack | None = None
    workers: Workers | None = None
    summary: dict
    try:
        if nofile < args.idle + 1000:
            raise RuntimeError(f"open files limit {nofile} is too low for {args.idle} sessions (ulimit -n)")
        amqp_url = add_vhost(vhost)
        workers = Workers(args.clients)  # they start while the services do
        for attempt in range(3):
            stack = Stack(amqp_url, log_dir, run_id)
            try:
                stack.start()
                break
            except NotServing as exc:
                stack.stop()
                # free_port() hands out a port that another process on the
                # machine may take before the service binds it
                if attempt == 2 or "Address already in use" not in str(exc):
                    raise
                say("a port was taken meanwhile: starting the services again on other ports")
        say(f"vhost {vhost}: ban pid {stack.ban.pid}, matcher pid {stack.matcher.pid}, gateway A pid "
            f"{stack.gateways[0].pid}, gateway B pid {stack.gateways[1].pid}; client pids {workers.pids}; "
            f"open files limit {nofile}; {os.cpu_count()} cores")
        summary = asyncio.run(asyncio.wait_for(bench(args, amqp_url, stack, workers, run_id),
                                               args.deadline_left()))
    except BaseException as exc:  # noqa: BLE001 - reported in the JSON
        summary = {"error": f"{type(exc).__name__}: {exc}"[:4000]}
        if stack is not None:
            for service in stack.services:
                tail = service.tail(1500)
                if tail.strip():
                    say(f"{service.name} log (tail):\n{tail}")
    finally:
        if workers is not None:
            workers.close()
        if stack is not None:
            stack.stop()
        with contextlib.suppress(Exception):
            delete_vhost(vhost)
        if args.keep_logs:
            say(f"logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    summary.update({
        "settings": {
            "idle": args.idle, "open_concurrency": args.open_concurrency, "pairs": args.pairs,
            "window": args.window, "relay_seconds": args.relay_seconds, "paced_seconds": args.paced_seconds,
            "paced_shares": args.paced_shares, "warmup": args.warmup, "client_processes": args.clients,
            "ws_compress": args.compress, "idle_held_during_relay": not args.close_idle_before_relay,
            "quick": args.quick, "ban_service": "started (SQLite)", "log_level": "WARNING",
            "matcher_partitions": PARTITIONS,
        },
        "gateway_env": GATEWAY_BENCH_ENV,
        "cores": os.cpu_count(),
        "seconds": round(time.monotonic() - started, 1),
        "note": "clients, broker, matcher, ban and both gateways share this machine's cores: figures are lower bounds",
    })
    print(json.dumps(summary), flush=True)
    return 1 if "error" in summary else 0


if __name__ == "__main__":
    sys.exit(main())
