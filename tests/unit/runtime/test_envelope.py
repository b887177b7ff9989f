import pytest

from parley.v1 import events_pb2
from services.runtime import envelope as env
from services.runtime.topology import QueueKind, gateway_relay, moderation_reports


def test_wrap_fills_id_time_producer_and_routing():
    wrapped = env.wrap(events_pb2.ReportFiled(report_id="r1"), "gateway/g1")
    assert len(wrapped.event_id) == 32 and wrapped.producer == "gateway/g1"
    assert wrapped.occurred_at.seconds > 0
    kind = env.kind_of(wrapped)
    assert (kind.routing_key, kind.durable) == ("gateway.report_filed", True)
    assert env.type_name(wrapped) == "parley.v1.ReportFiled"


def test_decode_round_trip():
    wrapped = env.wrap(events_pb2.MatchCancelled(ticket_id="t"), "x")
    back = env.decode(wrapped.SerializeToString(), env.CONTENT_TYPE, "parley.v1.MatchCancelled")
    assert back == wrapped


@pytest.mark.parametrize("body, content_type, declared, reason", [
    (b"\xff\xff\xff", env.CONTENT_TYPE, None, "not a parley.v1.Envelope"),
    (b"{}", "application/json", None, "content type"),
    (events_pb2.Envelope(event_id="e").SerializeToString(), None, None, "no event"),
    (events_pb2.Envelope(match_cancelled=events_pb2.MatchCancelled()).SerializeToString(), None, None,
     "without event_id"),
    (env.wrap(events_pb2.MatchCancelled(), "x").SerializeToString(), None, "parley.v1.BanIssued",
     "type property"),
])
def test_poison_is_named(body, content_type, declared, reason):
    with pytest.raises(env.PoisonMessage, match=reason):
        env.decode(body, content_type, declared)


def test_wrapping_a_non_event_is_a_programming_error():
    with pytest.raises(TypeError):
        env.wrap(events_pb2.MatchParticipant(), "x")


def test_enforcement_queues_are_quorum_with_a_dead_letter_queue():
    spec = moderation_reports()
    args = spec.arguments()
    assert spec.kind is QueueKind.QUORUM and args["x-queue-type"] == "quorum"
    assert args["x-dead-letter-routing-key"] == "moderation.reports.dlq" and args["x-delivery-limit"] > 0


def test_gateway_relay_queue_gets_its_own_id_and_every_ban():
    spec = gateway_relay("gw-7")
    assert ("parley.relay", "gw-7") in spec.bindings
    assert ("parley.events", "ban.issued") in spec.bindings and ("parley.events", "ban.lifted") in spec.bindings
    assert spec.metric_label == "gateway.relay" and spec.arguments()["x-expires"] > 0
