"""What every service process does the same way: health, reflection,
metrics, graceful stop, fail-fast settings."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.chat.client import ChatClient
from tests.support import metric_value, scrape_metrics

pytestmark = pytest.mark.integration

SERVICES = {"gateway": "parley.v1.Gateway", "matcher": "parley.v1.Matcher",
            "moderation": "parley.v1.Moderation", "ban": "parley.v1.Ban"}


@pytest.mark.parametrize("name", SERVICES)
def test_health_reflection_metrics_and_graceful_stop(start_service, name):
    service = start_service(name, PARLEY_DRAIN_SECONDS="1.5")
    with grpc.insecure_channel(service.grpc_addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=SERVICES[name]), timeout=2).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            list_services="")]), timeout=2)
        listed = {s.name for reply in replies for s in reply.list_services_response.service}
        assert {SERVICES[name], "grpc.health.v1.Health"} <= listed

        text = scrape_metrics(service.metrics_port)
        assert f"parley_{name}_" in text

        service.process.send_signal(signal.SIGTERM)
        # During the drain the service says NOT_SERVING but still answers.
        deadline = time.monotonic() + 1.2
        seen = None
        while time.monotonic() < deadline:
            seen = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
            if seen == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            time.sleep(0.05)
        assert seen == health_pb2.HealthCheckResponse.NOT_SERVING
    assert service.process.wait(15) == 0


def test_bad_settings_stop_the_service_with_every_bad_variable_named(service_env):
    env = service_env("matcher", PARLEY_MATCHER_GRPC_PORT="not-a-port",
                      PARLEY_MATCHER_FALLBACK_AFTER_SECONDS="-3")
    result = subprocess.run([sys.executable, "-m", "services.matcher"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "PARLEY_MATCHER_GRPC_PORT" in result.stderr
    assert "PARLEY_MATCHER_FALLBACK_AFTER_SECONDS" in result.stderr


async def test_chat_shows_in_the_metrics(start_service):
    matcher = start_service("matcher")
    gateway = start_service("gateway")
    a, b = await ChatClient.connect(gateway.grpc_addr), await ChatClient.connect(gateway.grpc_addr)
    await a.join(), await b.join()
    await a.expect("connected", timeout=10, skip=("waiting",))
    await b.expect("connected", timeout=10, skip=("waiting",))
    await a.say("counted")
    await b.expect("message")
    await a.typing()
    await b.expect("typing", skip=())
    port = gateway.metrics_port
    assert metric_value(port, "parley_gateway_messages_relayed_total") == 1
    assert metric_value(port, "parley_gateway_matches_connected_total") == 2
    assert metric_value(port, "parley_gateway_sessions_opened_total", transport="grpc") == 2
    deadline = time.monotonic() + 5  # the gauge is refreshed every second
    while metric_value(port, "parley_gateway_sessions", phase="connected", transport="grpc") != 2:
        assert time.monotonic() < deadline, "the sessions gauge never showed two connected sessions"
        await asyncio.sleep(0.2)
    # The line and the typing signal: two relayed frames timed, each well under a second.
    assert metric_value(port, "parley_gateway_relay_latency_seconds_count") == 2
    assert metric_value(port, "parley_gateway_relay_latency_seconds_bucket", le="1.0") == 2
    assert metric_value(port, "parley_gateway_proof_of_work_difficulty_count") == 2
    assert metric_value(matcher.metrics_port, "parley_matcher_pairs_total", kind="random", mode="MODE_TEXT") == 1
    assert metric_value(matcher.metrics_port, "parley_matcher_time_to_pair_seconds_count") == 2
    await a.close(), await b.close()
