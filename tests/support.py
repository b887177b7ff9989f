"""Helpers the tests and the benchmarks share: free loopback ports and
RabbitMQ virtual hosts of their own (made with rabbitmqctl)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess

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
