from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from services.gateway.rate_limits import RateLimits
from services.runtime.settings import CommonSettings, SettingsError, setting
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
    trusted_proxies: tuple[str, ...] = setting(
        (), help="CIDRs of the proxies in front of the gateway (comma-separated, e.g. 10.0.0.0/8); from "
                 "them, the client's address is taken from X-Forwarded-For, from anyone else never")
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
    # ---- at the door: proof of work and rate limits (per gateway replica)
    pow_bits: int = setting(16, minimum=0, maximum=32,
                            help="proof-of-work difficulty in leading zero bits before a session's first "
                                 "join (0: none); 16 bits is ~65,000 hashes, well under a second in a browser")
    pow_max_bits: int = setting(24, minimum=0, maximum=32,
                                help="the most bits asked of an address that opens sessions too fast")
    pow_free_sessions_per_minute: float = setting(
        10.0, minimum=0, maximum=1e9,
        help="sessions an address may open per minute at the base difficulty; each doubling "
             "beyond adds two bits (0: never raise)")
    text_per_second: float = setting(3.0, minimum=0.01, maximum=1e9, help="chat lines per second per session")
    text_burst: int = setting(10, minimum=1, maximum=10**9, help="chat lines a session may send at once")
    frames_per_second: float = setting(30.0, minimum=0.01, maximum=1e9,
                                       help="frames per second per session, typing and video signaling included")
    frames_burst: int = setting(100, minimum=1, maximum=10**9, help="frames a session may send at once")
    joins_per_minute: float = setting(20.0, minimum=0.01, maximum=1e9, help="joins and nexts per minute per session")
    ip_joins_per_minute: float = setting(300.0, minimum=0.01, maximum=1e9,
                                         help="joins and nexts per minute per IP hash, all its sessions together")
    sessions_per_ip: int = setting(100, minimum=1, maximum=10**9,
                                   help="sessions open at once per IP hash on one gateway (NATs share addresses)")

    def __post_init__(self) -> None:
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise SettingsError(f"PARLEY_GATEWAY_TRUSTED_PROXIES: {cidr!r} is not an address or CIDR") from None

    def rate_limits(self) -> RateLimits:
        return RateLimits(text_per_second=self.text_per_second, text_burst=self.text_burst,
                          frames_per_second=self.frames_per_second, frames_burst=self.frames_burst,
                          joins_per_minute=self.joins_per_minute, ip_joins_per_minute=self.ip_joins_per_minute,
                          sessions_per_ip=self.sessions_per_ip)
