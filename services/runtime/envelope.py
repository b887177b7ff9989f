"""Events on the wire: every message is a `parley.v1.Envelope`.

This module knows, for each kind of event, its routing key on the events
exchange and whether enforcement depends on it (durable, confirmed).
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from google.protobuf.message import DecodeError, Message

from parley.v1 import events_pb2

CONTENT_TYPE = "application/x-protobuf"


@dataclass(frozen=True)
class EventKind:
    field: str          # the Envelope oneof field
    routing_key: str    # "<service>.<event>" on the events exchange, "" for relay
    durable: bool       # enforcement depends on it: persistent, confirmed, quorum


EVENT_KINDS: dict[str, EventKind] = {k.field: k for k in (
    # match requests and cancels carry the matcher partition: see topology
    EventKind("match_requested", "gateway.match_requested", False),
    EventKind("match_cancelled", "gateway.match_cancelled", False),
    EventKind("match_found", "", False),        # relay exchange, to each gateway
    EventKind("relay", "", False),              # relay exchange, to one gateway
    EventKind("message_observed", "gateway.message_sent", False),
    EventKind("report_filed", "gateway.report_filed", True),
    EventKind("decision_made", "moderation.decision_made", True),
    EventKind("ban_issued", "ban.issued", True),
    EventKind("ban_lifted", "ban.lifted", True),
    EventKind("matcher_heartbeat", "matcher.heartbeat", False),
    EventKind("evader_suspected", "ban.evader_suspected", True),
    EventKind("snapshot_observed", "gateway.snapshot_sent", False),
    EventKind("session_action", "", False),     # relay exchange, to one gateway
)}

_FIELD_BY_TYPE = {
    events_pb2.Envelope.DESCRIPTOR.fields_by_name[name].message_type.full_name: name
    for name in EVENT_KINDS
}


class PoisonMessage(ValueError):
    """A message no retry can fix: it goes to the dead-letter queue with this
    exception's text as the reason."""


def wrap(event: Message, producer: str, event_id: str | None = None) -> events_pb2.Envelope:
    """Put `event` in an envelope. A republished event (an outbox retry)
    passes its original `event_id`, so consumers see the repeat as one."""
    field = _FIELD_BY_TYPE.get(event.DESCRIPTOR.full_name)
    if field is None:
        raise TypeError(f"{event.DESCRIPTOR.full_name} is not an event")
    envelope = events_pb2.Envelope(event_id=event_id or uuid.uuid4().hex, producer=producer)
    envelope.occurred_at.FromNanoseconds(time.time_ns())
    getattr(envelope, field).CopyFrom(event)
    return envelope


def kind_of(envelope: events_pb2.Envelope) -> EventKind:
    field = envelope.WhichOneof("event")
    if field is None:
        raise PoisonMessage("envelope carries no event")
    return EVENT_KINDS[field]


def payload(envelope: events_pb2.Envelope) -> Message:
    return getattr(envelope, kind_of(envelope).field)


def type_name(envelope: events_pb2.Envelope) -> str:
    return payload(envelope).DESCRIPTOR.full_name


def decode(body: bytes, content_type: str | None, declared_type: str | None) -> events_pb2.Envelope:
    """Parse a message body; anything unusable raises PoisonMessage."""
    if content_type and content_type != CONTENT_TYPE:
        raise PoisonMessage(f"content type {content_type!r}, expected {CONTENT_TYPE}")
    envelope = events_pb2.Envelope()
    try:
        envelope.ParseFromString(body)
    except DecodeError as exc:
        raise PoisonMessage(f"not a parley.v1.Envelope: {exc}") from None
    if not envelope.event_id:
        raise PoisonMessage("envelope without event_id")
    actual = type_name(envelope)
    if declared_type and declared_type != actual:
        raise PoisonMessage(f"type property {declared_type!r} but the envelope holds {actual}")
    return envelope
