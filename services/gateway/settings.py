from __future__ import annotations

from dataclasses import dataclass

from services.runtime.settings import CommonSettings, setting
from services.runtime.topology import DEFAULT_MATCHER_PARTITIONS

# Used only when the variables are unset, so that `make run` works out of the
# box; the gateway logs a warning when it falls back to them.
DEV_IP_PEPPER = "parley-development-pepper"
DEV_DEVICE_TOKEN_SECRET = "parley-development-device-secret"
DEV_TURN_SECRET = "parley-development-turn-secret"


@dataclass(frozen=True)
class GatewaySettings(CommonSettings):
    service = "gateway"

    grpc_port: int = setting(50051, minimum=0, maximum=65535, help="gRPC port (client sessions)")
    http_port: int = setting(8080, minimum=0, maximum=65535, help="HTTP port (WebSocket sessions at /ws, /healthz)")
    http_host: str = setting("0.0.0.0", help="address the HTTP server binds")
    metrics_port: int = setting(9101, minimum=0, maximum=65535, help="Prometheus /metrics port")
    ban_addr: str = setting("127.0.0.1:50054", help="host:port of the ban service")
    ban_check_timeout_seconds: float = setting(0.5, minimum=0.01, maximum=10,
                                               help="CheckBan deadline before failing open")
    ip_pepper: str = setting("", shared=True, secret=True,
                             help="secret key for IP address hashes (HMAC-SHA256)")
    device_token_secret: str = setting("", shared=True, secret=True,
                                       help="secret key that signs device tokens")
    hello_timeout_seconds: float = setting(10.0, minimum=0.1, maximum=120,
                                           help="a new session must say hello within this")
    publish_timeout_seconds: float = setting(
        3.0, minimum=0.1, maximum=60,
        help="how long a client's request waits for the broker before it gets an error")
    matcher_partitions: int = setting(
        DEFAULT_MATCHER_PARTITIONS, shared=True, minimum=1, maximum=1024,
        help="number of matcher partitions; gateways and matchers must agree")
    ticket_renew_seconds: float = setting(
        10.0, minimum=0.1, maximum=600,
        help="how often a waiting session renews its ticket (keep well under the matcher's TTL)")
    language_fallback_seconds: float = setting(
        10.0, minimum=0, maximum=3600,
        help="a user waiting this long in a small language's pool moves to the fallback "
             "language's pool (0: never); interests-only users stay")
    fallback_language: str = setting("en", help="the pool that users of small languages fall back to")
    turn_secret: str = setting("", shared=True, secret=True,
                               help="secret shared with coturn (use-auth-secret) for TURN credentials")
    turn_urls: tuple[str, ...] = setting(
        (), help="TURN URLs handed to video clients, comma-separated, e.g. "
                 "turn:turn.example.org:3478?transport=udp,turns:turn.example.org:5349?transport=tcp")
    turn_ttl_seconds: int = setting(600, minimum=60, maximum=86400,
                                    help="how long a TURN credential is valid")
    proposal_timeout_seconds: float = setting(
        5.0, minimum=0.1, maximum=60,
        help="a proposed match the other gateway does not answer is given up after this")
