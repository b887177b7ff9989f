"""Waiting for a service to come up: poll the standard gRPC health check
(grpc.health.v1 Check, the server as a whole) until it answers SERVING,
while watching the process that should be serving. Used by `make run`
(deploy/local/run_stack.py) and by the test suite's service processes."""
from __future__ import annotations

import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


class NotServing(RuntimeError):
    """The service did not answer SERVING: its process exited first
    (exit_code is set) or the time ran out (exit_code is None)."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def is_serving(address: str, timeout: float = 1.0) -> bool:
    """One health check: True if the server at *address* answers SERVING."""
    try:
        # A new channel each time: a reused one would wait out its reconnect backoff.
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.RpcError:
        return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def wait_until_serving(address: str, timeout: float, *, name: str | None = None,
                       poll: Callable[[], int | None] | None = None,
                       details: Callable[[], str] | None = None, interval: float = 0.1) -> None:
    """Return once the server at *address* answers SERVING.

    *poll* watches the process that should serve (a `subprocess.Popen.poll`:
    None while it runs, its exit code once it has exited). Raises NotServing
    when that process exits first or after *timeout* seconds; the message
    names *name* and the address and ends with *details()*, if given,
    called at that moment (e.g. the tail of the service's log)."""
    what = f"{name} at {address}" if name else address
    deadline = time.monotonic() + timeout
    while True:
        exit_code = poll() if poll is not None else None
        if exit_code is not None:
            message = f"{what} exited with code {exit_code} before serving"
        elif is_serving(address, timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
            return
        elif time.monotonic() >= deadline:
            message = f"{what} not serving after {timeout:g} s"
        else:
            time.sleep(interval)
            continue
        raise NotServing(f"{message}; {details()}" if details is not None else message, exit_code)
