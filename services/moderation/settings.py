from __future__ import annotations

from dataclasses import dataclass

from services.runtime.settings import CommonSettings, setting


@dataclass(frozen=True)
class ModerationSettings(CommonSettings):
    service = "moderation"

    grpc_port: int = setting(50053, minimum=0, maximum=65535, help="gRPC port (moderator API)")
    metrics_port: int = setting(9103, minimum=0, maximum=65535, help="Prometheus /metrics port")
    database_url: str = setting(
        "sqlite:///data/moderation.db", secret=True,
        help="reports, review items, decisions: sqlite:///path or postgresql://user:pass@host/db")
    publish_timeout_seconds: float = setting(
        3.0, minimum=0.1, maximum=60,
        help="how long Decide waits for the broker before leaving a decision to the outbox")
    outbox_interval_seconds: float = setting(
        2.0, minimum=0.05, maximum=300,
        help="how often unpublished decisions are published again and queue gauges refreshed")
