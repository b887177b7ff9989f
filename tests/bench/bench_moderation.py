"""Benchmark: moderation's cost per message, through the real broker.

    make bench-moderation
    .venv/bin/python tests/bench/bench_moderation.py [--messages 60000] [--classify-in-thread]

It makes a RabbitMQ virtual host of its own and, in one run:

1. The raw broker: `--messages` chat-line envelopes in a queue of the kind
   moderation drains (durable classic, the same arguments), taken by a bare
   aio-pika consumer that acks each (`raw_consume_per_s`), and the publish
   rate that filled it (`raw_publish_per_s`).
2. ONE moderation process (`python -m services.moderation`, SQLite in a
   temporary folder, the nudity model as configured): started once to
   declare its topology and stopped, so that the `--messages` lines the
   bench then publishes as the gateway does (events exchange, the match id
   header, as fast as it can) wait in `moderation.messages`, where the
   consistent-hash exchange parks lines no replica takes; started again, it
   drains them through the same batching consumer as its own shard queue.
   `messages_per_s` is the rate of its `messages_classified_total` counter
   between 5 % and 95 % of the lines (the steady state, not start-up);
   `messages_per_cpu_s` the lines per CPU-second of that process; `drain_s`
   from its start to the last line judged, `actions_stored_s` until every
   escalation and ban request it made is stored (SQLite) and every decision
   published. The mix: conversations of two (`--conversations`), lines
   interleaved across them, 30 % in minors' pools, lines of the evaluation
   set that are benign in their pool, and `--flagged` (1 %) that break a
   rule; warnings, ended conversations, escalations and automatic bans
   follow and are counted in `actions` (the evaluation set's rule-breaking
   lines are mostly severe, so this is many more escalations than real
   traffic makes: hundreds per 60,000 lines).
3. The classifier alone, in this process: TextModerator.observe_batch on the
   same lines in batches of the service's size (`classifier_messages_per_s`,
   wall clock, and `classifier_messages_per_cpu_s`).
4. Snapshot matching against a bank of `--bank-size` PDQ hashes, and the
   rest of tests/bench/bench_snapshots.py (its functions, run here):
   `snapshot_matches_per_s`, `bank_size`, and its whole summary under
   `snapshots`.

Everything shares this machine's cores (2 on a developer's machine): the
broker, the bench and the service. Each phase shows the CPU of each
(100 = one core) and of the rest of the machine (`others`); the figures are
lower bounds. Progress goes to stdout; the last line is JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402
import aiormq  # noqa: E402

from parley.v1 import common_pb2, events_pb2  # noqa: E402
from services.moderation.detectors import ObservedMessage  # noqa: E402
from services.moderation.detectors.moderator import TextModerator  # noqa: E402
from services.moderation.settings import ModerationSettings  # noqa: E402
from services.moderation.sharding import parked_queue  # noqa: E402
from services.runtime import envelope as env  # noqa: E402
from services.runtime.health import wait_until_serving  # noqa: E402
from services.runtime.topology import EVENTS_EXCHANGE, MATCH_ID_HEADER, RELAY_EXCHANGE  # noqa: E402
from tests.bench import bench_snapshots  # noqa: E402
from tests.bench.bench_matcher import CpuMeter, broker_pid, cpu_seconds  # noqa: E402
from tests.eval.moderation.eval_moderation import POOLS, SPLITS, load, messages_of  # noqa: E402
from tests.support import add_vhost, delete_vhost, free_port, metric_value  # noqa: E402

TIME_BUDGET = 175.0    # seconds, the whole run
TARGET_PER_S = 5000.0
INSTANCE = "bench-moderation"


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- the lines

def texts_by_pool() -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """The evaluation set's lines by pool: (benign, breaking a rule). A
    line is benign in its own pool ("im 14" is, among minors)."""
    benign: dict[int, list[str]] = {band: [] for band in POOLS.values()}
    bad: dict[int, list[str]] = {band: [] for band in POOLS.values()}
    for split in SPLITS:
        for item in load(split):
            flagged = bool(item.get("labels") or item.get("severe"))
            band = POOLS[item["pool"]]
            if not flagged:
                benign[band].extend(text for _who, text, _t, _extra in messages_of(item))
            elif "text" in item:
                bad[band].append(item["text"])
    return benign, bad


def make_lines(count: int, conversations: int, flagged: float, seed: int) -> list[events_pb2.MessageObserved]:
    """Chat lines as gateways copy them: many conversations at once, two
    sides each, lines interleaved; mostly benign, `flagged` of them not."""
    rng = random.Random(seed)
    benign, bad = texts_by_pool()
    started = int(time.time() * 1000) - 3_600_000
    bands = [common_pb2.AGE_BAND_MINOR if rng.random() < 0.3 else common_pb2.AGE_BAND_ADULT
             for _ in range(conversations)]
    clock = [started + rng.randrange(60_000) for _ in range(conversations)]
    lines = []
    for _ in range(count):
        k = rng.randrange(conversations)
        side = rng.randrange(2)
        clock[k] += rng.randrange(2_000, 20_000)
        text = rng.choice(bad[bands[k]]) if rng.random() < flagged else rng.choice(benign[bands[k]])
        match_id = f"bench-m{k}"
        lines.append(events_pb2.MessageObserved(
            match_id=match_id, session=common_pb2.SessionRef(gateway_id="bench-gw", session_id=f"{match_id}/{side}"),
            device_token=f"bench-d{k}-{side}", mode=common_pb2.MODE_TEXT, age_band=bands[k], text=text,
            sent_at_unix_ms=clock[k], connected_at_unix_ms=started))
    return lines


def observed(line: events_pb2.MessageObserved) -> ObservedMessage:
    return ObservedMessage(line.match_id, line.session.session_id, line.device_token, line.mode, line.age_band,
                           line.text, line.sent_at_unix_ms, line.typing_started_at_unix_ms,
                           line.connected_at_unix_ms)


def bodies(lines) -> list[bytes]:
    return [env.wrap(line, "gateway/bench-gw").SerializeToString() for line in lines]


def properties(match_id: str | None = None) -> aiormq.spec.Basic.Properties:
    return aiormq.spec.Basic.Properties(
        content_type=env.CONTENT_TYPE, message_type="parley.v1.MessageObserved", message_id=uuid.uuid4().hex,
        app_id="gateway/bench-gw", delivery_mode=1,
        headers={MATCH_ID_HEADER: match_id} if match_id is not None else None)


async def publish_all(channel, payloads: list[bytes], exchange: str, routing_key: str,
                      match_ids: list[str] | None = None) -> float:
    """Publish as fast as the broker takes them (as the gateway's bus, no
    confirms); returns the publish rate."""
    underlay = await channel.get_underlay_channel()
    started = time.perf_counter()
    for i, body in enumerate(payloads):
        await underlay.basic_publish(body, exchange=exchange, routing_key=routing_key,
                                     properties=properties(match_ids[i] if match_ids else None), wait=False)
        if i % 2000 == 1999:
            await asyncio.sleep(0)  # let the writer drain
    elapsed = time.perf_counter() - started
    # the frames are on their way; a round trip makes sure the broker read them
    await channel.declare_queue(f"bench.sync.{uuid.uuid4().hex[:6]}", exclusive=True)
    return len(payloads) / max(elapsed, 1e-9)


async def queue_depth(channel, name: str) -> int:
    underlay = await channel.get_underlay_channel()
    return (await underlay.queue_declare(name, passive=True)).message_count


# ---------------------------------------------------------------- raw broker

async def raw_broker(url: str, payloads: list[bytes], prefetch: int) -> dict:
    """A bare aio-pika consumer (ack each) on a queue of the kind moderation
    drains, filled beforehand."""
    spec = parked_queue()
    name = f"bench.raw.{uuid.uuid4().hex[:6]}"
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=True, arguments=spec.arguments())
        publish_per_s = await publish_all(channel, payloads, "", name)
        while await queue_depth(channel, name) < len(payloads):
            await asyncio.sleep(0.05)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=prefetch)
        done = asyncio.Event()
        count = 0
        meter = CpuMeter({"bench": os.getpid(), "broker": broker_pid()})
        started = time.perf_counter()

        async def on_message(message) -> None:
            nonlocal count
            env.decode(message.body, message.content_type, message.type)
            await message.ack()
            count += 1
            if count >= len(payloads):
                done.set()
        target = await consumer.get_queue(name)
        await target.consume(on_message)
        await asyncio.wait_for(done.wait(), 120)
        consume_per_s = count / (time.perf_counter() - started)
        cpu = meter.percent()
        await consumer.close()
        await queue.delete(if_unused=False, if_empty=False)
        return {"raw_publish_per_s": round(publish_per_s), "raw_consume_per_s": round(consume_per_s),
                "raw_cpu_percent": cpu}
    finally:
        await connection.close()


# ---------------------------------------------------------------- the service

class Moderation:
    """One `python -m services.moderation` process on the bench's vhost."""

    def __init__(self, amqp_url: str, folder: Path, settings: dict[str, str]) -> None:
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.log_path = folder / "moderation.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        self.env.update({
            "PARLEY_AMQP_URL": amqp_url, "PARLEY_LOG_LEVEL": "WARNING", "PARLEY_DRAIN_SECONDS": "0.2",
            "PARLEY_INSTANCE_ID": INSTANCE,
            "PARLEY_MODERATION_GRPC_HOST": "127.0.0.1", "PARLEY_MODERATION_GRPC_PORT": str(self.grpc_port),
            "PARLEY_MODERATION_METRICS_PORT": str(self.metrics_port),
            "PARLEY_MODERATION_DATABASE_URL": f"sqlite:///{folder}/moderation.db",
        })
        self.env.update(settings)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "services.moderation"], env=self.env, cwd=ROOT,
                                        stdout=log, stderr=log)
        wait_until_serving(f"127.0.0.1:{self.grpc_port}", 60, name="moderation", poll=self.process.poll,
                           details=lambda: f"log:\n{self.log_path.read_text(errors='replace')[-4000:]}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def counter(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics_port, name, **labels)


async def service_rate(url: str, folder: Path, lines, payloads: list[bytes], settings: dict[str, str],
                       deadline: float) -> dict:
    service = Moderation(url, folder, settings)
    connection = await aio_pika.connect(url)
    try:
        service.start()  # declares the exchanges, the parked queue and its own shard
        sharded = service.counter("parley_moderation_message_sharding") == 1
        service.stop()   # its shard is unbound and deleted: lines now wait in moderation.messages
        if not sharded:
            raise RuntimeError("moderation did not shard (is rabbitmq_consistent_hash_exchange enabled? "
                               "`make broker` enables it)")
        channel = await connection.channel()
        parked = parked_queue().name
        # the gateway's relay queue, where warnings and ended conversations go
        relay = await channel.declare_exchange(RELAY_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
        sink = await channel.declare_queue("bench.gateway.relay", exclusive=True,
                                           arguments={"x-max-length": 1000})
        await sink.bind(relay, "bench-gw")
        say(f"  publishing {len(payloads):,} lines as the gateway does (events exchange, match id header)")
        publish_per_s = await publish_all(channel, payloads, EVENTS_EXCHANGE, "gateway.message_sent",
                                          [line.match_id for line in lines])
        while await queue_depth(channel, parked) < len(payloads):
            if time.monotonic() > deadline:
                raise RuntimeError("the lines did not all reach moderation.messages")
            await asyncio.sleep(0.05)
        say(f"  {publish_per_s:,.0f} published/s; {len(payloads):,} waiting; starting moderation again")

        started_at = time.perf_counter()
        service.start()
        meter = CpuMeter({"moderation": service.pid, "broker": broker_pid(), "bench": os.getpid()})
        cpu_before = cpu_seconds(service.pid)
        samples: list[tuple[float, float]] = []
        total = len(payloads)
        while True:
            value = service.counter("parley_moderation_messages_classified_total")
            samples.append((time.perf_counter(), value))
            if value >= total:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"moderation classified {value:,.0f} of {total:,} lines in time")
            await asyncio.sleep(0.05)
        cpu = meter.percent()
        busy = cpu_seconds(service.pid) - cpu_before
        low, high = _at(samples, 0.05 * total), _at(samples, 0.95 * total)
        rate = 0.9 * total / max(high - low, 1e-9)
        actions = {}
        for action in ("warn", "end_conversation", "escalate", "request_ban", "mask", "hold"):
            actions[action] = int(service.counter("parley_moderation_actions_total", action=action))
        batches = service.counter("parley_moderation_message_batch_size_count")
        # Escalations and ban requests are stored in the background: until
        # every one is, and every decision published.
        while (service.counter("parley_moderation_escalations_opened_total") < actions["escalate"]
               or service.counter("parley_moderation_decisions_total", action="ACTION_BAN") < actions["request_ban"]
               or service.counter("parley_moderation_events_published_total", event="decision_made")
               < actions["request_ban"]):
            if time.monotonic() > deadline:
                raise RuntimeError("the escalations and bans were not all stored in time")
            await asyncio.sleep(0.1)
        settled = time.perf_counter()
        return {
            "messages_per_s": round(rate),
            "messages_per_cpu_s": round(total / busy) if busy > 0 else None,
            "drain_s": round(samples[-1][0] - started_at, 2),
            "actions_stored_s": round(settled - started_at, 2),
            "publish_per_s": round(publish_per_s),
            "mean_batch": round(total / batches, 1) if batches else None,
            "actions": actions,
            "service_cpu_percent": cpu,
        }
    finally:
        service.stop()
        await connection.close()


def _at(samples: list[tuple[float, float]], value: float) -> float:
    """When the counter passed `value` (linear between samples)."""
    previous = samples[0]
    for sample in samples:
        if sample[1] >= value:
            t0, v0 = previous
            t1, v1 = sample
            return t1 if v1 == v0 else t0 + (t1 - t0) * (value - v0) / (v1 - v0)
        previous = sample
    return samples[-1][0]


# ---------------------------------------------------------------- the classifier alone

def classifier_rate(lines, batch: int) -> dict:
    moderator = TextModerator()
    messages = [observed(line) for line in lines]
    moderator.observe_batch(messages[:batch])  # warm up (the model's first call)
    moderator = TextModerator()
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(messages), batch):
        moderator.observe_batch(messages[i:i + batch])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"classifier_messages_per_s": round(len(messages) / wall),
            "classifier_messages_per_cpu_s": round(len(messages) / cpu)}


# ---------------------------------------------------------------- the run

async def bench(args, url: str, folder: Path, deadline: float) -> dict:
    defaults = ModerationSettings()
    batch_wait_ms = defaults.message_batch_wait_ms if args.batch_wait_ms is None else args.batch_wait_ms
    settings = {
        "PARLEY_MODERATION_MESSAGE_BATCH_WAIT_MS": str(batch_wait_ms),
        "PARLEY_MODERATION_CLASSIFY_IN_THREAD": "true" if args.classify_in_thread else "false",
        "PARLEY_MODERATION_NUDITY_ENABLED": "true" if not args.no_nudity else "false",
    }
    say(f"lines: {args.messages:,} in {args.conversations:,} conversations, {args.flagged:.0%} breaking a rule")
    lines = make_lines(args.messages, args.conversations, args.flagged, args.seed)
    payloads = bodies(lines)

    say("raw broker: a bare aio-pika consumer, an ack each, on a queue of the same kind")
    raw = await raw_broker(url, payloads, defaults.message_prefetch)
    say(f"  {raw['raw_consume_per_s']:,} consumed/s (published at {raw['raw_publish_per_s']:,}/s)")

    say("one moderation process")
    served = await service_rate(url, folder, lines, payloads, settings, deadline)
    say(f"  {served['messages_per_s']:,} classified/s ({served['messages_per_cpu_s']:,} per CPU-second), "
        f"mean batch {served['mean_batch']}, actions {served['actions']}")

    say("the classifier alone, in this process")
    alone = classifier_rate(lines, defaults.message_batch)
    say(f"  {alone['classifier_messages_per_s']:,}/s ({alone['classifier_messages_per_cpu_s']:,} per CPU-second)")

    say(f"snapshots (tests/bench/bench_snapshots.py): a bank of {args.bank_size:,} PDQ hashes")
    snapshots = bench_snapshots.run(args.bank_size, args.queries, planted=200, brute_queries=3,
                                    snapshots=20, seed=args.seed)
    summary = {
        "messages_per_s": served["messages_per_s"],
        "classifier_messages_per_s": alone["classifier_messages_per_s"],
        "snapshot_matches_per_s": snapshots["snapshot_matches_per_s"],
        "bank_size": snapshots["bank_size"],
        "raw_consume_per_s": raw["raw_consume_per_s"],
        "target_messages_per_s": TARGET_PER_S,
        "target_met": served["messages_per_s"] >= TARGET_PER_S,
        "messages_per_cpu_s": served["messages_per_cpu_s"],
        "classifier_messages_per_cpu_s": alone["classifier_messages_per_cpu_s"],
        "raw_publish_per_s": raw["raw_publish_per_s"],
        "service": served,
        "raw_cpu_percent": raw["raw_cpu_percent"],
        "snapshots": snapshots,
        "settings": {
            "messages": args.messages, "conversations": args.conversations, "flagged": args.flagged,
            "minors_share": 0.3, "message_prefetch": defaults.message_prefetch,
            "message_batch": defaults.message_batch, "message_batch_wait_ms": batch_wait_ms,
            "classify_in_thread": args.classify_in_thread,
            "nudity_enabled": not args.no_nudity, "sharded": True, "queue": parked_queue().name,
            "bank_queries": args.queries,
        },
    }
    return summary


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=60_000, help="chat lines (at most 100,000: the queue bound)")
    parser.add_argument("--conversations", type=int, default=5_000)
    parser.add_argument("--flagged", type=float, default=0.01, help="share of lines that break a rule")
    parser.add_argument("--classify-in-thread", action="store_true",
                        help="PARLEY_MODERATION_CLASSIFY_IN_THREAD=true for the service")
    parser.add_argument("--no-nudity", action="store_true", help="PARLEY_MODERATION_NUDITY_ENABLED=false")
    parser.add_argument("--batch-wait-ms", type=float, help="PARLEY_MODERATION_MESSAGE_BATCH_WAIT_MS for the service")
    parser.add_argument("--bank-size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-log", action="store_true", help="keep the service's log and database")
    args = parser.parse_args(argv)
    if not 1 <= args.messages <= 100_000:
        parser.error("--messages must be 1 to 100,000")
    return args


def _terminated(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # as Ctrl-C: clean up, then exit


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    deadline = time.monotonic() + TIME_BUDGET
    vhost = f"parley-bench-{uuid.uuid4().hex[:10]}"
    folder = Path(tempfile.mkdtemp(prefix="parley-bench-moderation-"))
    summary: dict
    try:
        url = add_vhost(vhost)
        summary = asyncio.run(asyncio.wait_for(bench(args, url, folder, deadline), deadline - time.monotonic()))
    except BaseException as exc:  # noqa: BLE001 - a benchmark reports, last line JSON either way
        summary = {"error": f"{type(exc).__name__}: {exc}"}
        log = folder / "moderation.log"
        if log.exists() and log.read_text(errors="replace").strip():
            say(f"moderation log (tail):\n{log.read_text(errors='replace')[-2000:]}")
    finally:
        with contextlib.suppress(Exception):
            delete_vhost(vhost)
        if args.keep_log:
            say(f"log and database kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(summary), flush=True)
    return 1 if "error" in summary else 0


if __name__ == "__main__":
    sys.exit(main())
