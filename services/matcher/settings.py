from __future__ import annotations

from dataclasses import dataclass

from services.runtime.settings import CommonSettings, setting


@dataclass(frozen=True)
class MatcherSettings(CommonSettings):
    service = "matcher"

    grpc_port: int = setting(50052, minimum=0, maximum=65535, help="gRPC port (stats, admin)")
    metrics_port: int = setting(9102, minimum=0, maximum=65535, help="Prometheus /metrics port")
    fallback_after_seconds: float = setting(
        5.0, minimum=0, maximum=600,
        help="seconds a user with interests waits for a shared one before a random stranger")
    sweep_interval_seconds: float = setting(0.25, minimum=0.01, maximum=10,
                                            help="how often waiting users are re-examined")
