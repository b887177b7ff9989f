"""Every metric an alert or the dashboard names is really exported, and each
service's /metrics passes `promtool check metrics`.

The four services run as processes on this module's RabbitMQ virtual host
(ban and moderation on SQLite in a temporary folder), and are exercised
lightly: two strangers pair through the gateway, talk, type, and one reports
the other (so the matcher's histograms, the relay, the ban check and the
review queue have samples). A labelled metric that has never been used has
no sample yet, only its HELP and TYPE lines: a family declared that way
counts as exported (its name is in the text, and promtool sees it).

RabbitMQ's own series (rabbitmq_*, used by the DLQ, backlog and broker
panels) come from the broker's rabbitmq_prometheus plugin on
127.0.0.1:15692 (`make broker-metrics` enables it, loopback only): scraped
the way the ServiceMonitor scrapes it (/metrics and /metrics/detailed).
Without the plugin those names are skipped, and the skip says so.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from parley.v1 import common_pb2
from services.chat.client import ChatClient
from services.runtime.health import wait_until_serving
from tests.deploy.manifests import COMPONENTS, ROOT, build, of_kind
from tests.deploy.promql import SYNTHETIC, exported_names, names_in
from tests.support import free_port, metric_value, scrape_metrics

pytestmark = pytest.mark.integration

RABBITMQ_METRICS = "http://127.0.0.1:15692"
# what the rabbitmq ServiceMonitor scrapes (components/monitoring/monitors.yaml)
RABBITMQ_PATHS = ("/metrics", "/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count")

# Metrics the alerts and the dashboard use that the services do not export
# yet, proposed to the services' owners (deploy/README.md, "Metrics the alerts
# need"): none at the moment. A name added here must be used by an alert or a
# panel (test_the_only_unexported_names_are_the_proposed_ones).
PROPOSED: set[str] = set()




def lint(text: str) -> list[str]:
    """promtool check metrics' findings on a /metrics text."""
    result = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True,
                            timeout=60, check=False)
    findings = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    assert result.returncode == 0 or findings, f"promtool check metrics failed without a finding: {result}"
    return findings


def referenced_names() -> dict[str, set[str]]:
    """Metric name -> where it is used (alert names, "dashboard")."""
    used: dict[str, set[str]] = {}
    docs = build("dev", ("monitoring",))
    (rule,) = of_kind(docs, "PrometheusRule")
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            for name in names_in(r["expr"]):
                used.setdefault(name, set()).add(r.get("alert") or r.get("record"))
    dashboard = json.loads((COMPONENTS["monitoring"] / "dashboards" / "parley.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"].removeprefix("label_values(").split(",")[0]
              for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    for expr in exprs:
        for name in names_in(expr):
            used.setdefault(name, set()).add("dashboard")
    return used


# ------------------------------------------------------------ running stack

class Running:
    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name, self.env, self.log = name, env, log
        prefix = f"PARLEY_{name.upper()}_"
        self.grpc_addr = f"127.0.0.1:{env[prefix + 'GRPC_PORT']}"
        self.metrics_port = int(env[prefix + "METRICS_PORT"])
        with open(log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=env, cwd=ROOT,
                                            stdout=out, stderr=out)
        wait_until_serving(self.grpc_addr, 30, name=name, poll=self.process.poll,
                           details=lambda: log.read_text(errors="replace")[-4000:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _env(name: str, amqp_url: str, folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    prefix = f"PARLEY_{name.upper()}_"
    env.update({"PARLEY_AMQP_URL": amqp_url, "PARLEY_DRAIN_SECONDS": "0.2", "PARLEY_LOG_LEVEL": "INFO",
                "PARLEY_IP_PEPPER": "test-pepper", "PARLEY_DEVICE_TOKEN_SECRET": "test-device-secret",
                prefix + "GRPC_PORT": str(free_port()), prefix + "METRICS_PORT": str(free_port()),
                prefix + "GRPC_HOST": "127.0.0.1"})
    if name in ("ban", "moderation"):
        env[prefix + "DATABASE_URL"] = f"sqlite:///{folder}/{name}-{uuid.uuid4().hex[:6]}.db"
    if name == "gateway":
        env.update({prefix + "HTTP_PORT": str(free_port()), prefix + "POW_BITS": "8",
                    prefix + "POW_FREE_SESSIONS_PER_MINUTE": "100000", "PARLEY_TURN_SECRET": "turn-test",
                    prefix + "TURN_URLS": "turn:127.0.0.1:3478?transport=udp"})
    env.update(extra)
    return env


async def _exercise(gateways: list[Running], moderation: Running) -> None:
    """Two strangers on two gateways: pair, talk, type, report."""
    a = await ChatClient.connect(gateways[0].grpc_addr)
    b = await ChatClient.connect(gateways[1].grpc_addr)
    try:
        await a.join(), await b.join()
        await a.expect("connected", timeout=10, skip=("waiting",))
        await b.expect("connected", timeout=10, skip=("waiting",))
        await a.typing(True)
        await a.say("hello from the deploy tests")
        await b.expect("message")
        await b.say("hi")
        await a.expect("message")
        await a.report(common_pb2.CATEGORY_SPAM, "a test report")
        await a.expect("ack")
        for _ in range(100):  # the report reaches moderation through the broker
            if metric_value(moderation.metrics_port, "parley_moderation_reports_received_total") >= 1:
                break
            await asyncio.sleep(0.1)
    finally:
        await a.close(), await b.close()


@pytest.fixture(scope="module")
async def stack(amqp_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("live-metrics")
    started: list[Running] = []

    def start(name: str, **extra: str) -> Running:
        service = Running(name, _env(name, amqp_url, folder, **extra), folder / f"{name}-{len(started)}.log")
        started.append(service)
        return service

    try:
        ban = start("ban")
        moderation = start("moderation")
        matcher = start("matcher")
        gateways = [start("gateway", PARLEY_GATEWAY_BAN_ADDR=ban.grpc_addr) for _ in range(2)]
        await _exercise(gateways, moderation)
        yield {"gateway": gateways[0], "matcher": matcher, "moderation": moderation, "ban": ban}
    finally:
        for service in reversed(started):
            service.stop()


@pytest.fixture(scope="module")
def scrapes(stack) -> dict[str, str]:
    return {name: scrape_metrics(service.metrics_port) for name, service in stack.items()}


def rabbitmq_scrape() -> str | None:
    texts = []
    for path in RABBITMQ_PATHS:
        try:
            with urllib.request.urlopen(RABBITMQ_METRICS + path, timeout=10) as reply:
                texts.append(reply.read().decode())
        except (urllib.error.URLError, OSError):
            return None
    return "\n".join(texts)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: `make promtool` (Debian's prometheus package)")
    return path


# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("name", ["gateway", "matcher", "moderation", "ban"])
def test_promtool_check_metrics_passes_on_each_service(scrapes, name):
    findings = lint(scrapes[name])
    assert not findings, f"promtool check metrics on {name}:\n" + "\n".join(findings)


def test_the_exercise_left_samples_where_the_alerts_look(scrapes):
    """Not only declared: the histograms and counters the main alerts read
    have real samples after a pair, a chat and a report."""
    for service, sample in (("matcher", "parley_matcher_time_to_pair_seconds_bucket"),
                            ("matcher", "parley_matcher_pairs_total"),
                            ("gateway", "parley_gateway_ban_checks_total"),
                            ("gateway", "parley_gateway_messages_relayed_total"),
                            ("ban", "parley_ban_check_duration_seconds_bucket"),
                            ("moderation", "parley_moderation_reports_received_total")):
        lines = [ln for ln in scrapes[service].splitlines() if ln.startswith(sample)]
        assert lines and any(float(ln.rsplit(" ", 1)[1]) > 0 for ln in lines), f"{service}: no {sample} sample"


def test_every_parley_metric_the_alerts_and_dashboard_name_is_exported(scrapes):
    exported = set().union(*(exported_names(text) for text in scrapes.values()))
    used = referenced_names()
    missing = {name: sorted(where) for name, where in used.items()
               if not name.startswith("rabbitmq_") and name not in SYNTHETIC
               and name not in PROPOSED and name not in exported}
    assert not missing, f"named by alerts or the dashboard but exported by no running service: {missing}"
    assert {n for n in used if n.startswith("parley_")} - PROPOSED, "the tokenizer found the names"


def test_every_rabbitmq_metric_the_alerts_and_dashboard_name_is_exported(stack):
    text = rabbitmq_scrape()
    if text is None:
        pytest.fail("RabbitMQ's Prometheus plugin does not answer on 127.0.0.1:15692 (`make broker-metrics` "
                    "enables it): the rabbitmq_* names of the alerts and the dashboard are not checked")
    exported = exported_names(text)
    used = {n: sorted(w) for n, w in referenced_names().items() if n.startswith("rabbitmq_")}
    assert used, "the DLQ alerts and the broker row use RabbitMQ's metrics"
    missing = {n: w for n, w in used.items() if n not in exported}
    assert not missing, f"named by alerts or the dashboard but not exported by RabbitMQ: {missing}"
    # per-queue series of this module's own virtual host, as the DLQ alerts read them
    vhost = stack["gateway"].env["PARLEY_AMQP_URL"].rsplit("/", 1)[1]
    assert f'vhost="{vhost}",queue="gateway.relay.dlq"' in text.replace(", ", ",")


def test_the_only_unexported_names_are_the_proposed_ones():
    used = referenced_names()
    assert PROPOSED <= set(used), f"proposed metrics no alert or panel uses: {PROPOSED - set(used)}"
