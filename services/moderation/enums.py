"""Names of protobuf enum values for logs, audit rows, metric labels and the
CLI. proto3 enums are open: a peer on a newer contract may send a number we
do not know, and a name lookup must not crash on it."""
from __future__ import annotations

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

UNKNOWN = "UNKNOWN"


def enum_name(enum: EnumTypeWrapper, value: int) -> str:
    """`enum`'s name for `value`, or UNKNOWN: a bounded set, safe as a metric label."""
    try:
        return enum.Name(value)
    except ValueError:
        return UNKNOWN
