from __future__ import annotations

from dataclasses import dataclass

from services.runtime.settings import CommonSettings, setting
from services.runtime.topology import DEFAULT_MATCHER_PARTITIONS


@dataclass(frozen=True)
class MatcherSettings(CommonSettings):
    service = "matcher"

    grpc_port: int = setting(50052, minimum=0, maximum=65535, help="gRPC port (stats, admin)")
    metrics_port: int = setting(9102, minimum=0, maximum=65535, help="Prometheus /metrics port")
    matcher_partitions: int = setting(
        DEFAULT_MATCHER_PARTITIONS, shared=True, minimum=1, maximum=1024,
        help="number of matcher partitions; gateways and matchers must agree")
    fallback_after_seconds: float = setting(
        5.0, minimum=0, maximum=600,
        help="seconds a user with interests waits for a shared one before a random stranger")
    sweep_interval_seconds: float = setting(0.1, minimum=0.01, maximum=10,
                                            help="how often waiting users are re-examined")
    ticket_ttl_seconds: float = setting(
        30.0, minimum=1, maximum=3600,
        help="a waiting ticket its gateway stops renewing is dropped after this")
    recent_partner_window_seconds: float = setting(
        600.0, minimum=0, maximum=86400, help="how long the last partners are not paired again")
    recent_partner_count: int = setting(3, minimum=0, maximum=100,
                                        help="how many last partners are avoided")
    heartbeat_seconds: float = setting(0.5, minimum=0.05, maximum=10,
                                       help="how often this replica tells the others it is alive")
    member_dead_after_seconds: float = setting(
        1.5, minimum=0.1, maximum=60, help="a replica not heard of for this long is gone")
    max_waiting_per_partition: int = setting(
        50_000, minimum=10, maximum=10_000_000,
        help="requests held per partition; past it new requests wait in the queue")
