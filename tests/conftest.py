"""Fixtures shared by the whole suite.

Integration tests run against the real RabbitMQ, in a virtual host made for
this run (so two runs on one broker never see each other's queues), the real
PostgreSQL in a database made for this run, and the real services started as
separate processes on free ports."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from services.runtime.health import wait_until_serving
from tests.support import BROKER, add_vhost, delete_vhost, free_port

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("PARLEY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="module")
def amqp_url():
    """A RabbitMQ virtual host of this test module's own, deleted at its end:
    runs, and test files within a run, never see each other's queues."""
    vhost = f"parley-test-{uuid.uuid4().hex[:10]}"
    yield add_vhost(vhost)
    delete_vhost(vhost)


@pytest.fixture(scope="session")
def pg_url():
    """A PostgreSQL database of this test run's own, dropped at the end."""
    import asyncpg

    name = f"parley_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def run(sql: str) -> None:
        # A loop of its own in a thread: this fixture may be set up while the
        # tests' event loop is running.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, admin(sql)).result(60)

    run(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ServiceProcess:
    """One Parley service as its own process, as `make run` starts it."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_path
        prefix = f"PARLEY_{name.upper()}_"
        self.grpc_port = int(env[prefix + "GRPC_PORT"])
        self.metrics_port = int(env[prefix + "METRICS_PORT"])
        self.grpc_addr = f"127.0.0.1:{self.grpc_port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "ServiceProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", f"services.{self.name}"],
                                        env=self.env, cwd=ROOT, stdout=log, stderr=log)
        self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float) -> None:
        wait_until_serving(self.grpc_addr, timeout, name=self.name, poll=self.process.poll,
                           details=lambda: f"log:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@pytest.fixture
def service_env(amqp_url, tmp_path):
    """Environment for a service process: this run's vhost, free ports, a
    short drain, stores under the test's own folder."""

    def make(name: str, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        prefix = f"PARLEY_{name.upper()}_"
        env.update({
            "PARLEY_AMQP_URL": amqp_url,
            "PARLEY_DRAIN_SECONDS": "0.2",
            "PARLEY_LOG_LEVEL": "INFO",
            "PARLEY_IP_PEPPER": "test-pepper",
            "PARLEY_DEVICE_TOKEN_SECRET": "test-device-secret",
            prefix + "GRPC_PORT": str(free_port()),
            prefix + "METRICS_PORT": str(free_port()),
            prefix + "GRPC_HOST": "127.0.0.1",
        })
        if name in ("ban", "moderation"):
            env[prefix + "DATABASE_URL"] = f"sqlite:///{tmp_path}/{name}-{uuid.uuid4().hex[:6]}.db"
        if name == "gateway":
            env[prefix + "HTTP_PORT"] = str(free_port())
            # A real proof of work, small enough for hundreds of test sessions;
            # tests of the door set their own.
            env[prefix + "POW_BITS"] = "8"
            env[prefix + "POW_FREE_SESSIONS_PER_MINUTE"] = "100000"
        env.update(overrides)
        return env

    return make


@pytest.fixture
def start_service(service_env, tmp_path):
    """Start services as processes; all are stopped (SIGTERM) at the end."""
    started: list[ServiceProcess] = []

    def start(name: str, **overrides: str) -> ServiceProcess:
        env = service_env(name, **overrides)
        process = ServiceProcess(name, env, tmp_path / f"{name}-{len(started)}.log")
        started.append(process)
        return process.start()

    yield start
    for process in reversed(started):
        process.stop()


class TcpProxy:
    """A loopback TCP proxy in front of the broker, so a test can make the
    broker "go away" for the services behind it and come back, without
    touching the real broker that other tests use. It runs its own event loop
    in a thread, so it keeps piping while the test blocks."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = None
        self._writers: set[asyncio.StreamWriter] = set()

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def start(self) -> None:
        self._call(self._start())

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src, dst) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self._call(self._cut())

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.start()

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def broker_proxy(amqp_url):
    host, port = BROKER.split(":")
    proxy = TcpProxy(host, int(port))
    proxy.start()
    vhost = amqp_url.rsplit("/", 1)[1]
    proxy.url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}"
    yield proxy
    proxy.close()
