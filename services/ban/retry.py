"""Transient store errors: telling them from real ones (the gRPC API answers
UNAVAILABLE for them) and riding them out in the decision handler.

The gRPC calls retry a short while before answering UNAVAILABLE; the
decision consumer retries here first and then, past its window, the bus
keeps the message unacked and retries it (never dead-letters it) for as
long as the database is away."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.runtime.db import is_transient_db_error as is_transient

log = logging.getLogger(__name__)

T = TypeVar("T")


async def retry_transient(operation: Callable[[], Awaitable[T]], *, within: float, what: str,
                          first_delay: float = 0.2, max_delay: float = 5.0) -> T:
    """Run `operation`, retrying transient errors with backoff for up to
    `within` seconds; the last error is raised."""
    deadline = time.monotonic() + within
    delay = first_delay
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed; retrying", what, extra={"error": repr(exc), "retry_in_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
