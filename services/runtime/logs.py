"""Structured JSON logs, one object per line, with the session id when the
code runs on behalf of a session (set through `session_context`)."""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time

session_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("session_id", default=None)

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, instance_id: str) -> None:
        super().__init__()
        self.service = service
        self.instance_id = instance_id

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "instance": self.instance_id,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        session_id = session_id_var.get()
        if session_id:
            entry["session_id"] = session_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, instance_id: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, instance_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiormq logs every reconnect attempt at WARNING with a traceback; our own
    # bus logs the outage once.
    logging.getLogger("aiormq").setLevel(logging.ERROR)
    logging.getLogger("aio_pika").setLevel(logging.ERROR)


@contextlib.contextmanager
def session_context(session_id: str):
    token = session_id_var.set(session_id)
    try:
        yield
    finally:
        session_id_var.reset(token)
