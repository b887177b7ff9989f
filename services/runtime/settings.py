"""Settings from environment variables, one frozen object per service.

A service declares a dataclass of its settings; `load_settings` reads each
field from the environment, converts it by the field's type and collects every
bad value into one `SettingsError`, so a misconfigured pod fails at start with
a message that names all the variables to fix.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import typing
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar


class SettingsError(ValueError):
    """One or more environment variables hold a value the service cannot use."""


def setting(default: Any, *, help: str, shared: bool = False, minimum: float | None = None,
            maximum: float | None = None, secret: bool = False) -> Any:
    """Declare a setting. `shared` settings have no service prefix in their
    variable name (PARLEY_AMQP_URL rather than PARLEY_GATEWAY_AMQP_URL)."""
    return dataclasses.field(default=default, metadata={
        "help": help, "shared": shared, "minimum": minimum, "maximum": maximum, "secret": secret})


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


@dataclasses.dataclass(frozen=True)
class CommonSettings:
    """What every service reads. Subclasses add their own fields and set
    `service` (the variable prefix is PARLEY_<SERVICE>_)."""

    service: ClassVar[str] = ""

    amqp_url: str = setting("amqp://guest:guest@127.0.0.1:5672/", shared=True, secret=True,
                            help="RabbitMQ URL (amqp://user:pass@host:port/vhost)")
    instance_id: str = setting("", shared=True,
                               help="this replica's id; default: host name and a random suffix")
    log_level: str = setting("INFO", shared=True, help="DEBUG, INFO, WARNING or ERROR")
    drain_seconds: float = setting(5.0, shared=True, minimum=0, maximum=300,
                                   help="on SIGTERM: seconds between NOT_SERVING and stop")
    grpc_host: str = setting("0.0.0.0", help="address the gRPC server binds")
    grpc_port: int = setting(0, minimum=0, maximum=65535, help="gRPC port")
    metrics_port: int = setting(0, minimum=0, maximum=65535, help="Prometheus /metrics port")

    @classmethod
    def env_name(cls, field: dataclasses.Field) -> str:
        if field.metadata.get("shared"):
            return f"PARLEY_{field.name.upper()}"
        return f"PARLEY_{cls.service.upper()}_{field.name.upper()}"

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(variable, default, help) for every setting: for --help and docs."""
        return [(cls.env_name(f), str(f.default), f.metadata.get("help", ""))
                for f in dataclasses.fields(cls)]

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict, secrets masked: safe to log at start."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if f.metadata.get("secret") and value else value
        return out


S = TypeVar("S", bound=CommonSettings)


def _convert(raw: str, kind: Any) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if kind is int:
        return int(raw.strip())
    if kind is float:
        return float(raw.strip())
    if kind is str:
        return raw
    if typing.get_origin(kind) is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    raise TypeError(f"unsupported setting type {kind!r}")


def load_settings(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    errors: list[str] = []
    for field in dataclasses.fields(cls):
        name = cls.env_name(field)
        if name not in environ:
            continue
        raw = environ[name]
        try:
            value = _convert(raw, hints[field.name])
        except ValueError as exc:
            shown = "***" if field.metadata.get("secret") else repr(raw)
            errors.append(f"{name}={shown}: {exc}")
            continue
        low, high = field.metadata.get("minimum"), field.metadata.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            errors.append(f"{name}={raw!r}: must be between {low} and {high}")
            continue
        values[field.name] = value
    if "log_level" in values and values["log_level"].upper() not in (
            "DEBUG", "INFO", "WARNING", "ERROR"):
        errors.append(f"PARLEY_LOG_LEVEL={values['log_level']!r}: expected DEBUG, INFO, WARNING or ERROR")
    if errors:
        raise SettingsError(f"bad {cls.service or 'parley'} configuration:\n  " + "\n  ".join(errors))
    settings = cls(**values)
    if not settings.instance_id:
        settings = dataclasses.replace(settings, instance_id=default_instance_id())
    return settings
