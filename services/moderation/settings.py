from __future__ import annotations

from dataclasses import dataclass

from services.moderation.retention import CHILD_SAFETY_RETENTION_DAYS, DEFAULT_RETENTION_DAYS, Retention
from services.runtime.settings import CommonSettings, setting


@dataclass(frozen=True)
class ModerationSettings(CommonSettings):
    service = "moderation"

    grpc_port: int = setting(50053, minimum=0, maximum=65535, help="gRPC port (moderator API)")
    metrics_port: int = setting(9103, minimum=0, maximum=65535, help="Prometheus /metrics port")
    database_url: str = setting(
        "sqlite:///data/moderation.db", secret=True,
        help="reports, review items, decisions, the evidence vault: "
             "sqlite:///path or postgresql://user:pass@host/db")
    publish_timeout_seconds: float = setting(
        3.0, minimum=0.1, maximum=60,
        help="how long Decide waits for the broker before leaving a decision to the outbox")
    outbox_interval_seconds: float = setting(
        2.0, minimum=0.05, maximum=300,
        help="how often unpublished decisions are published again and queue gauges refreshed")
    moderator_tokens: str = setting(
        "", secret=True,
        help="moderator API tokens, inline: sha256hex:name:role entries separated by commas or new lines "
             "(roles moderator, child_safety, admin); with this and the file unset, the development "
             "tokens are accepted, with a warning")
    moderator_tokens_file: str = setting(
        "", help="a file of moderator token entries (sha256hex:name:role, one a line, # comments), "
                 "re-read when it changes")
    claim_seconds: float = setting(
        900.0, minimum=1, maximum=86400,
        help="how long a moderator's claim on a review item lasts before the item returns to the queue")
    retention_days: int = setting(
        DEFAULT_RETENTION_DAYS, minimum=1, maximum=3650,
        help="how long the evidence of a decided case is kept after the decision")
    child_safety_retention_days: int = setting(
        CHILD_SAFETY_RETENTION_DAYS, minimum=CHILD_SAFETY_RETENTION_DAYS, maximum=3650,
        help="how long the evidence of a case escalated to child safety is kept (at least one year)")
    purge_interval_seconds: float = setting(
        3600.0, minimum=1, maximum=86400,
        help="how often evidence past its retention date is purged")

    def retention(self) -> Retention:
        return Retention(self.retention_days, self.child_safety_retention_days)
