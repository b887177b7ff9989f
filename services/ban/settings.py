from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sqlalchemy.exc import ArgumentError

from services.ban.model import DAY_MS
from services.ban.policy import DEFAULT_LADDER, Ladder, Rules
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
             "answering anyway (the ban stands either way; the outbox announces it later)")
    store_retry_seconds: float = setting(
        30.0, minimum=0, maximum=600,
        help="how long a moderation decision retries a database outage in the handler; "
             "past it the bus keeps the message unacked and retries it")
    ladder: tuple[str, ...] = setting(
        DEFAULT_LADDER,
        help="the escalation ladder: the penalty of the 1st, 2nd, ... strike that counts "
             "(warn, a duration such as 1h/24h/7d/30d, or permanent), comma-separated; "
             "past its end, its last step")
    strike_expiry_days: float = setting(90.0, minimum=0.001, maximum=3650,
                                        help="a strike stops counting on the ladder after this")
    appeal_window_days: float = setting(20.0, minimum=0.001, maximum=3650,
                                        help="how long after its issue a ban can be appealed")
    session_ban_max_seconds: int = setting(
        86400, minimum=60, maximum=30 * 86400,
        help="the longest a ban on one session lasts (0 in IssueBan asks for this)")
    poll_interval_seconds: float = setting(
        0.5, minimum=0.05, maximum=60,
        help="how often each replica reads the store's change log into its CheckBan index "
             "(the backstop of the ban events; replicas agree within about this)")
    outbox_interval_seconds: float = setting(
        2.0, minimum=0.1, maximum=300,
        help="how often bans not yet announced, and suspected evaders not yet published, "
             "are published again")

    def __post_init__(self) -> None:
        # Fail at start with the variable's name, not at the first query.
        errors = []
        try:
            async_url(self.database_url)
        except (ValueError, ArgumentError) as exc:
            errors.append(f"{self._env('database_url')}: {exc}")
        try:
            Ladder.parse(self.ladder)
        except ValueError as exc:
            errors.append(f"{self._env('ladder')}={','.join(self.ladder)!r}: {exc}")
        if errors:
            raise SettingsError("bad ban configuration:\n  " + "\n  ".join(errors)) from None

    @classmethod
    def _env(cls, name: str) -> str:
        return cls.env_name(next(f for f in dataclasses.fields(cls) if f.name == name))

    def rules(self) -> Rules:
        return Rules(ladder=Ladder.parse(self.ladder),
                     strike_expiry_ms=int(self.strike_expiry_days * DAY_MS),
                     appeal_window_ms=int(self.appeal_window_days * DAY_MS),
                     session_ban_max_s=self.session_ban_max_seconds)
