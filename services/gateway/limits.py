"""Validation of what a client sends: sizes, encodings and enum values.
Each check returns an error text for the client, or None when the value is fine."""
from __future__ import annotations

import re

from parley.v1 import common_pb2, gateway_pb2

MAX_TEXT_BYTES = 2000
MAX_INTERESTS = 10
MAX_INTEREST_CHARS = 32
MAX_COMMENT_CHARS = 500
MAX_SIGNAL_BYTES = 16_384
MAX_SNAPSHOT_BYTES = 48 * 1024
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


def normalize_interests(interests) -> list[str]:
    seen: dict[str, None] = {}
    for interest in interests:
        cleaned = " ".join(interest.lower().split())
        if cleaned:
            seen.setdefault(cleaned, None)
    return list(seen)


def check_join(join: gateway_pb2.Join) -> str | None:
    if join.mode not in (common_pb2.MODE_TEXT, common_pb2.MODE_VIDEO):
        return f"join: mode must be MODE_TEXT or MODE_VIDEO, got {join.mode}"
    if join.age_band not in (common_pb2.AGE_BAND_MINOR, common_pb2.AGE_BAND_ADULT):
        return f"join: age_band must be AGE_BAND_MINOR or AGE_BAND_ADULT, got {join.age_band}"
    if join.language and not _LANGUAGE.match(join.language):
        return f"join: language must be an ISO 639 code such as 'en', got {join.language[:16]!r}"
    interests = normalize_interests(join.interests)
    if len(interests) > MAX_INTERESTS:
        return f"join: at most {MAX_INTERESTS} interests"
    if any(len(i) > MAX_INTEREST_CHARS for i in interests):
        return f"join: an interest is at most {MAX_INTEREST_CHARS} characters"
    return None


def check_text(text: str) -> tuple[int, str] | None:
    """(error code, message) or None."""
    if not text.strip():
        return gateway_pb2.Error.CODE_INVALID_FRAME, "text: empty message"
    if len(text.encode()) > MAX_TEXT_BYTES:
        return gateway_pb2.Error.CODE_TOO_LARGE, f"text: at most {MAX_TEXT_BYTES} bytes"
    return None


def check_signal(signal: gateway_pb2.Signal) -> tuple[int, str] | None:
    which = signal.WhichOneof("payload")
    if which is None:
        return gateway_pb2.Error.CODE_INVALID_FRAME, "signal: no offer, answer or candidate"
    if len(getattr(signal, which).encode()) > MAX_SIGNAL_BYTES:
        return gateway_pb2.Error.CODE_TOO_LARGE, f"signal: at most {MAX_SIGNAL_BYTES} bytes"
    return None


def check_snapshot(jpeg: bytes) -> tuple[int, str] | None:
    if not jpeg.startswith(b"\xff\xd8\xff"):
        return gateway_pb2.Error.CODE_INVALID_FRAME, "snapshot: not a JPEG image"
    if len(jpeg) > MAX_SNAPSHOT_BYTES:
        return gateway_pb2.Error.CODE_TOO_LARGE, f"snapshot: at most {MAX_SNAPSHOT_BYTES} bytes"
    return None


def check_report(report: gateway_pb2.Report) -> str | None:
    if report.category not in common_pb2.Category.values():
        return f"report: unknown category {report.category}"
    if len(report.comment) > MAX_COMMENT_CHARS:
        return f"report: comment at most {MAX_COMMENT_CHARS} characters"
    return None
