"""The one place where a service process is put together: settings, logs,
metrics endpoint, a `grpc.aio` server with health and reflection, the
service's own start and stop, and the graceful stop on SIGTERM:
NOT_SERVING first, then drain, then stop."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from services.runtime.logs import configure_logging
from services.runtime.metrics import serve_metrics
from services.runtime.settings import CommonSettings, SettingsError, load_settings

log = logging.getLogger(__name__)


class Service(Protocol):
    """What a service gives the runtime."""

    #: full gRPC service names, e.g. "parley.v1.Ban", for health and reflection
    grpc_service_names: list[str]

    def register(self, server: grpc.aio.Server) -> None:
        """Add the service's servicers to the gRPC server."""

    async def start(self) -> None:
        """Connect to the broker and stores, start consumers. Raise to abort."""

    async def stop(self) -> None:
        """Close connections, once the gRPC server has stopped."""

    # Optional: `async def drain(self)`, called after the drain wait and before
    # the gRPC server stops, for work that must end first (the gateway closes
    # its long-lived session streams, telling each stranger).


async def serve(settings: CommonSettings, service: Service, *, ready: Callable[[dict], None] | None = None,
                stop_event: asyncio.Event | None = None) -> None:
    metrics_port = serve_metrics(settings.metrics_port)
    server = grpc.aio.server(options=getattr(service, "grpc_options", None))
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    service.register(server)
    reflection.enable_server_reflection(
        [*service.grpc_service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME], server)
    grpc_port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")

    stop_event = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_event.set)

    await service.start()
    await server.start()
    for name in ("", *service.grpc_service_names):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    listening = {"grpc_port": grpc_port, "metrics_port": metrics_port}
    listening.update(getattr(service, "extra_ports", lambda: {})())
    log.info("listening", extra=listening)
    if ready:
        ready(listening)

    await stop_event.wait()
    log.info("stopping: NOT_SERVING, draining", extra={"drain_seconds": settings.drain_seconds})
    await health.enter_graceful_shutdown()
    await asyncio.sleep(settings.drain_seconds)
    drain = getattr(service, "drain", None)
    if drain is not None:
        await drain()
    # In-flight calls finish within the grace, while the service's broker and
    # store connections are still open for them.
    await server.stop(grace=settings.drain_seconds)
    await service.stop()
    log.info("stopped")


async def _build_and_serve(settings: CommonSettings, build: Callable[[CommonSettings], Service]) -> None:
    # Built inside the running loop: grpc.aio channels and asyncio objects
    # bind to the loop that exists when they are made.
    await serve(settings, build(settings))


def main(settings_cls: type[CommonSettings], build: Callable[[CommonSettings], Service]) -> None:
    """Entry point of a service process."""
    if "--help" in sys.argv[1:]:
        print(f"parley {settings_cls.service}: configuration from environment variables\n")
        for name, default, text in settings_cls.describe():
            print(f"  {name:<40} {text} (default: {default!r})")
        return
    try:
        settings = load_settings(settings_cls)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    configure_logging(settings_cls.service, settings.instance_id, settings.log_level)
    log.info("starting", extra={"settings": settings.redacted()})
    try:
        asyncio.run(_build_and_serve(settings, build))
    except Exception as exc:  # noqa: BLE001 - the last word before exiting
        log.exception("service failed", extra={"error": str(exc)})
        sys.exit(1)
