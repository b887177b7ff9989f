"""Helpers the tests and the benchmarks share: free loopback ports and
RabbitMQ virtual hosts of their own (made with rabbitmqctl)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

BROKER = os.environ.get("PARLEY_TEST_BROKER", "127.0.0.1:5672")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    result = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr or result.stdout}")


def add_vhost(vhost: str) -> str:
    """Make `vhost` for guest and return its AMQP URL."""
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return f"amqp://guest:guest@{BROKER}/{vhost}"


def delete_vhost(vhost: str) -> None:
    rabbitmqctl("delete_vhost", vhost)


def scrape_metrics(port: int) -> str:
    """The text of a service's Prometheus /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def metric_value(port: int, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`
    (0 when there are none)."""
    return sum(sample.value
               for family in text_string_to_metric_families(scrape_metrics(port))
               for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))
