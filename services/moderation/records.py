"""Plain records shared by the pure rules and the store."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    device_token: str
    ip_hash: str = ""
    ip_prefix_hash: str = ""


@dataclass(frozen=True)
class EvidenceLine:
    from_reporter: bool  # False: the reported user (the subject) wrote it
    text: str
    sent_at_ms: int
