from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sqlalchemy.exc import ArgumentError

from services.runtime.db import async_url
from services.runtime.settings import CommonSettings, SettingsError, setting


@dataclass(frozen=True)
class BanSettings(CommonSettings):
    service = "ban"

    grpc_port: int = setting(50054, minimum=0, maximum=65535,
                             help="gRPC port (CheckBan for gateways, admin calls)")
    metrics_port: int = setting(9104, minimum=0, maximum=65535, help="Prometheus /metrics port")
    # secret: a PostgreSQL URL may carry a password, which must not reach the logs.
    database_url: str = setting("sqlite:///data/ban.db", secret=True,
                                help="bans store: sqlite:///path or postgresql://user:pass@host/db")
    announce_timeout_seconds: float = setting(
        5.0, minimum=0.1, maximum=60,
        help="how long IssueBan/LiftBan keep retrying the ban.issued/lifted publish before "
             "answering anyway (the ban stands either way)")
    store_retry_seconds: float = setting(
        30.0, minimum=0, maximum=600,
        help="how long a moderation decision retries a database outage in the handler; "
             "past it the bus keeps the message unacked and retries it")

    def __post_init__(self) -> None:
        # Fail at start with the variable's name, not at the first query.
        try:
            async_url(self.database_url)
        except (ValueError, ArgumentError) as exc:
            field = next(f for f in dataclasses.fields(self) if f.name == "database_url")
            raise SettingsError(f"bad ban configuration:\n  {self.env_name(field)}: {exc}") from None
