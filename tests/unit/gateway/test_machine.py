"""The session state machine and the arbitration between two gateways,
without a broker: effects are delivered by hand."""
from __future__ import annotations

import hashlib
import itertools

from parley.v1 import ban_pb2, common_pb2, events_pb2, gateway_pb2
from services.gateway.machine import Close, Phase, Publish, Relay, SessionMachine, ToClient, ban_applies

ADULT, MINOR = common_pb2.AGE_BAND_ADULT, common_pb2.AGE_BAND_MINOR
Err = gateway_pb2.Error


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def machine(session="s1", gateway="g1", device=None, clock=None) -> SessionMachine:
    counter = itertools.count()
    return SessionMachine(
        common_pb2.SessionRef(gateway_id=gateway, session_id=session),
        common_pb2.Identity(device_token=device or f"dev-{session}", ip_hash=f"ip-{session}"),
        new_id=lambda: f"{session}-id{next(counter)}", now=clock or Clock())


def frame(**kw) -> gateway_pb2.ClientFrame:
    return gateway_pb2.ClientFrame(**kw)


def join(band=ADULT, mode=common_pb2.MODE_TEXT, **kw) -> gateway_pb2.ClientFrame:
    return frame(join=gateway_pb2.Join(mode=mode, age_band=band, **kw))


def to_client(effects) -> list[str]:
    return [e.frame.WhichOneof("frame") for e in effects if isinstance(e, ToClient)]


def errors(effects) -> list[int]:
    return [e.frame.error.code for e in effects if isinstance(e, ToClient) and e.frame.HasField("error")]


def published(effects, kind):
    return [e.event for e in effects if isinstance(e, Publish) and e.event.DESCRIPTOR.name == kind]


def relays(effects) -> list[events_pb2.RelayFrame]:
    return [e.frame for e in effects if isinstance(e, Relay)]


def found(a: SessionMachine, b: SessionMachine, match_id="m1") -> events_pb2.MatchFound:
    def part(m):
        return events_pb2.MatchParticipant(ticket_id=m.ticket_id, session=m.ref,
                                           device_token=m.identity.device_token, age_band=m.join.age_band)
    return events_pb2.MatchFound(match_id=match_id, a=part(a), b=part(b), mode=a.join.mode)


def deliver(effects, machines: dict[str, SessionMachine]) -> list:
    """Carry relay frames to their target machines, as the broker would."""
    out = []
    for frame_ in relays(effects):
        out += machines[frame_.to.session_id].on_relay(frame_)
    return out


def connect(a: SessionMachine, b: SessionMachine) -> None:
    a.on_frame(join()), b.on_frame(join())
    machines = {a.ref.session_id: a, b.ref.session_id: b}
    fa, fb = a.on_match_found(found(a, b)), b.on_match_found(found(a, b))
    deliver(fa + fb, machines)
    assert a.phase is b.phase is Phase.CONNECTED


# ---------------------------------------------------------------- client frames

def test_join_publishes_a_match_request_and_says_waiting():
    m = machine()
    effects = m.on_frame(join(interests=["Chess ", "chess", "Music"], language="de"))
    (request,) = published(effects, "MatchRequested")
    assert request.interests == ["chess", "music"] and request.language == "de"
    assert request.age_band == ADULT and request.ticket_id == m.ticket_id
    assert to_client(effects) == ["waiting"] and m.phase is Phase.WAITING


def test_frames_out_of_order_get_clear_errors_and_change_nothing():
    m = machine()
    assert errors(m.on_frame(frame(text=gateway_pb2.SendText(text="hi")))) == [Err.CODE_NOT_CONNECTED]
    assert errors(m.on_frame(frame(stop=gateway_pb2.Stop()))) == [Err.CODE_OUT_OF_ORDER]
    assert errors(m.on_frame(frame(next=gateway_pb2.Next()))) == [Err.CODE_OUT_OF_ORDER]
    assert errors(m.on_frame(frame(hello=gateway_pb2.Hello()))) == [Err.CODE_OUT_OF_ORDER]
    m.on_frame(join())
    assert errors(m.on_frame(join())) == [Err.CODE_OUT_OF_ORDER]
    assert m.phase is Phase.WAITING


def test_bad_join_values_are_refused():
    m = machine()
    assert errors(m.on_frame(join(band=7))) == [Err.CODE_INVALID_FRAME]
    assert errors(m.on_frame(join(mode=0))) == [Err.CODE_INVALID_FRAME]
    assert errors(m.on_frame(join(language="english!"))) == [Err.CODE_INVALID_FRAME]
    assert errors(m.on_frame(join(interests=[str(i) for i in range(11)]))) == [Err.CODE_INVALID_FRAME]
    assert errors(m.on_frame(frame())) == [Err.CODE_INVALID_FRAME]
    assert m.phase is Phase.IDLE


def test_oversized_and_empty_text_are_refused():
    a, b = machine("a"), machine("b")
    connect(a, b)
    assert errors(a.on_frame(frame(text=gateway_pb2.SendText(text="x" * 2001)))) == [Err.CODE_TOO_LARGE]
    assert errors(a.on_frame(frame(text=gateway_pb2.SendText(text="é" * 1001)))) == [Err.CODE_TOO_LARGE]
    assert errors(a.on_frame(frame(text=gateway_pb2.SendText(text="  ")))) == [Err.CODE_INVALID_FRAME]
    assert a.phase is Phase.CONNECTED


# ---------------------------------------------------------------- arbitration

def test_both_accept_then_both_connected_with_one_offerer():
    a, b = machine("a", "g1"), machine("b", "g2")
    a.on_frame(join(interests=["chess"])), b.on_frame(join(interests=["chess"]))
    match = found(a, b)
    match.common_interests.append("chess")
    fa = a.on_match_found(match)
    assert a.phase is Phase.PROPOSED and relays(fa)[0].HasField("accept")
    assert relays(fa)[0].to.gateway_id == "g2"
    fb = b.on_match_found(match)
    got_a, got_b = deliver(fb, {"a": a}), deliver(fa, {"b": b})
    ca, cb = got_a[0].frame.connected, got_b[0].frame.connected
    assert ca.offerer and not cb.offerer and list(ca.common_interests) == ["chess"]


def test_accept_that_arrives_before_our_match_result_is_kept():
    a, b = machine("a"), machine("b")
    a.on_frame(join()), b.on_frame(join())
    match = found(a, b)
    fb = b.on_match_found(match)
    assert deliver(fb, {"a": a}) == []  # a has not seen the MatchFound yet
    fa = a.on_match_found(match)
    assert "connected" in to_client(fa)
    deliver(fa, {"b": b})
    assert a.phase is b.phase is Phase.CONNECTED


def test_a_session_no_longer_waiting_refuses_and_the_other_is_requeued_at_the_head():
    a, b = machine("a"), machine("b")
    a.on_frame(join()), b.on_frame(join())
    match = found(a, b)
    a.on_frame(frame(stop=gateway_pb2.Stop()))  # a left before the result came
    fa = a.on_match_found(match)
    assert relays(fa)[0].HasField("refuse") and a.phase is Phase.IDLE
    fb = b.on_match_found(match)
    requeue = deliver(fa, {"b": b})
    (request,) = published(requeue, "MatchRequested")
    assert request.at_head and b.phase is Phase.WAITING
    deliver(fb, {"a": a})  # b's accept reaches a, which ignores it
    assert a.phase is Phase.IDLE


def test_duplicate_match_result_never_makes_two_conversations():
    a, b, c = machine("a"), machine("b"), machine("c")
    connect(a, b)
    c.on_frame(join())
    # A replayed request paired a again, with c: a refuses, c goes back.
    match2 = events_pb2.MatchFound(
        match_id="m2", a=events_pb2.MatchParticipant(ticket_id="old", session=a.ref, age_band=ADULT,
                                                     device_token=a.identity.device_token),
        b=events_pb2.MatchParticipant(ticket_id=c.ticket_id, session=c.ref, age_band=ADULT,
                                      device_token=c.identity.device_token))
    fa = a.on_match_found(match2)
    fc = c.on_match_found(match2)
    assert relays(fa)[0].HasField("refuse") and a.phase is Phase.CONNECTED
    deliver(fa, {"c": c})
    assert c.phase is Phase.WAITING
    assert deliver(fc, {"a": a}) == [] and a.conversation.peer.session_id == "b"


def test_age_band_is_checked_again_at_the_gateway():
    adult, minor = machine("a"), machine("m")
    adult.on_frame(join(band=ADULT)), minor.on_frame(join(band=MINOR))
    bad = found(adult, minor)  # a matcher bug or a forged event
    fa, fm = adult.on_match_found(bad), minor.on_match_found(bad)
    assert all(r.HasField("refuse") for r in relays(fa) + relays(fm))
    assert adult.phase is Phase.WAITING and minor.phase is Phase.WAITING
    assert published(fa, "MatchRequested")[0].at_head


def test_unanswered_proposal_times_out_and_requeues_keeping_the_wait():
    clock = Clock()
    a, b = machine("a", clock=clock), machine("b")
    first = published(a.on_frame(join()), "MatchRequested")[0]
    b.on_frame(join())
    a.on_match_found(found(a, b))
    assert a.on_tick() == []
    clock.t += 6
    effects = a.on_tick()
    assert relays(effects)[0].HasField("refuse")
    requeued = published(effects, "MatchRequested")[0]
    assert requeued.at_head and requeued.ticket_id != first.ticket_id
    assert requeued.requested_at_unix_ms == first.requested_at_unix_ms


def test_a_waiting_ticket_is_renewed_with_the_same_request():
    clock = Clock()
    a = machine("a", clock=clock)
    first = published(a.on_frame(join()), "MatchRequested")[0]
    clock.t += 5
    assert a.on_tick() == []
    clock.t += 6
    (renewal,) = published(a.on_tick(), "MatchRequested")
    assert renewal == first


# ---------------------------------------------------------------- conversation

def test_text_typing_and_leaving_reach_the_stranger():
    a, b = machine("a"), machine("b")
    connect(a, b)
    sent = a.on_frame(frame(text=gateway_pb2.SendText(text="hello")))
    (observed,) = published(sent, "MessageObserved")
    assert observed.text == "hello" and observed.age_band == ADULT
    got = deliver(sent, {"b": b})
    assert got[0].frame.message.text == "hello"
    got = deliver(a.on_frame(frame(typing=gateway_pb2.SetTyping(typing=True))), {"b": b})
    assert got[0].frame.typing.typing
    got = deliver(a.on_frame(frame(stop=gateway_pb2.Stop())), {"b": b})
    assert to_client(got) == ["stranger_disconnected"] and b.phase is Phase.IDLE


def test_next_leaves_and_waits_again_with_the_same_settings():
    a, b = machine("a"), machine("b")
    connect(a, b)
    effects = a.on_frame(frame(next=gateway_pb2.Next()))
    assert relays(effects)[0].HasField("left")
    assert published(effects, "MatchRequested") and a.phase is Phase.WAITING


def test_report_carries_both_sides_lines_and_the_stranger_is_avoided():
    a, b = machine("a"), machine("b")
    connect(a, b)
    deliver(a.on_frame(frame(text=gateway_pb2.SendText(text="hi"))), {"b": b})
    deliver(b.on_frame(frame(text=gateway_pb2.SendText(text="send pics"))), {"a": a})
    deliver(b.on_frame(frame(stop=gateway_pb2.Stop())), {"a": a})
    effects = a.on_frame(frame(report=gateway_pb2.Report(category=common_pb2.CATEGORY_HARASSMENT,
                                                         comment="creepy")))
    (report,) = published(effects, "ReportFiled")
    assert [(l.from_reporter, l.text) for l in report.evidence] == [(True, "hi"), (False, "send pics")]
    assert report.reported.device_token == "dev-b" and report.reporter.device_token == "dev-a"
    assert to_client(effects) == ["ack"]
    request = published(a.on_frame(join()), "MatchRequested")[0]
    assert "dev-b" in request.avoid_device_tokens


def test_ban_ends_the_session_and_tells_the_stranger():
    a, b = machine("a"), machine("b")
    connect(a, b)
    ban = ban_pb2.BanRecord(ban_id="x", subject=ban_pb2.Subject(device_token="dev-a"),
                            scope=common_pb2.BAN_SCOPE_ALL, reason="abuse")
    effects = a.on_ban(ban)
    assert to_client(effects) == ["banned"] and any(isinstance(e, Close) for e in effects)
    assert to_client(deliver(effects, {"b": b})) == ["stranger_disconnected"]
    assert a.phase is Phase.CLOSED and a.on_frame(join()) == []


def test_video_only_ban_spares_text_sessions():
    a = machine("a")
    a.on_frame(join())
    ban = ban_pb2.BanRecord(ban_id="x", subject=ban_pb2.Subject(ip_hash="ip-a"),
                            scope=common_pb2.BAN_SCOPE_VIDEO, enforce_on_address=True)
    assert a.on_ban(ban) == []
    v = machine("v", device="dev-v")
    v.on_frame(join(mode=common_pb2.MODE_VIDEO))
    assert to_client(v.on_ban(ban_pb2.BanRecord(ban_id="x", subject=ban_pb2.Subject(ip_hash="ip-v"),
                                                scope=common_pb2.BAN_SCOPE_VIDEO,
                                                enforce_on_address=True))) == ["banned"]
    lifted = ban_pb2.BanRecord(ban_id="y", subject=ban_pb2.Subject(device_token="dev-a"),
                               lifted_at_unix_ms=5)
    assert a.on_ban(lifted) == []


def test_video_strangers_get_relay_only_turn_credentials_text_ones_none():
    def ice(session_id, now):
        return gateway_pb2.IceConfig(transport_policy="relay", servers=[gateway_pb2.IceServer(
            urls=["turn:t:3478"], username=f"{int(now) + 600}:{session_id}", credential="c")])

    def video_machine(name):
        counter = itertools.count()
        return SessionMachine(common_pb2.SessionRef(gateway_id="g", session_id=name),
                              common_pb2.Identity(device_token=f"dev-{name}"),
                              new_id=lambda: f"{name}-{next(counter)}", now=Clock(), ice_config=ice)
    v1, v2 = video_machine("v1"), video_machine("v2")
    v1.on_frame(join(mode=common_pb2.MODE_VIDEO)), v2.on_frame(join(mode=common_pb2.MODE_VIDEO))
    got = deliver(v1.on_match_found(found(v1, v2)) + v2.on_match_found(found(v1, v2)), {"v1": v1, "v2": v2})
    connected = {e.frame.connected.offerer: e.frame.connected for e in got}
    assert set(connected) == {True, False}
    for c in connected.values():
        assert c.ice.transport_policy == "relay" and c.ice.servers[0].urls == ["turn:t:3478"]
    t1, t2 = video_machine("t1"), video_machine("t2")
    t1.on_frame(join()), t2.on_frame(join())
    got = deliver(t1.on_match_found(found(t1, t2)) + t2.on_match_found(found(t1, t2)), {"t1": t1, "t2": t2})
    assert all(not e.frame.connected.HasField("ice") for e in got)


def test_signaling_is_relayed_only_in_video_mode():
    a, b = machine("a"), machine("b")
    connect(a, b)
    assert errors(a.on_frame(frame(signal=gateway_pb2.Signal(offer_sdp="v=0")))) == [Err.CODE_OUT_OF_ORDER]
    v1, v2 = machine("v1"), machine("v2")
    v1.on_frame(join(mode=common_pb2.MODE_VIDEO)), v2.on_frame(join(mode=common_pb2.MODE_VIDEO))
    deliver(v1.on_match_found(found(v1, v2)) + v2.on_match_found(found(v1, v2)), {"v1": v1, "v2": v2})
    got = deliver(v1.on_frame(frame(signal=gateway_pb2.Signal(offer_sdp="v=0"))), {"v2": v2})
    assert got[0].frame.signal.offer_sdp == "v=0"


def test_a_user_alone_in_a_small_language_falls_back_to_the_fallback_language():
    clock = Clock()
    counter = itertools.count()
    m = SessionMachine(common_pb2.SessionRef(gateway_id="g1", session_id="s1"),
                       common_pb2.Identity(device_token="d1"), new_id=lambda: f"id{next(counter)}",
                       now=clock, language_fallback_after=10, fallback_language="en")
    first = published(m.on_frame(join(language="is")), "MatchRequested")[0]
    clock.t += 9
    assert m.on_tick() == []
    clock.t += 2
    effects = m.on_tick()
    (cancel,) = published(effects, "MatchCancelled")
    (moved,) = published(effects, "MatchRequested")
    assert (cancel.ticket_id, cancel.language) == (first.ticket_id, "is")  # reaches the old partition
    assert moved.language == "en" and moved.at_head and moved.age_band == first.age_band
    assert moved.requested_at_unix_ms == first.requested_at_unix_ms
    clock.t += 20
    assert published(m.on_tick(), "MatchCancelled") == []  # once only
    only = SessionMachine(common_pb2.SessionRef(gateway_id="g1", session_id="s2"),
                          common_pb2.Identity(device_token="d2"), new_id=lambda: "x", now=clock,
                          language_fallback_after=10)
    only.on_frame(join(language="is", interests=["sagas"], interests_only=True))
    clock.t += 60
    assert published(only.on_tick(), "MatchCancelled") == []  # interests-only users stay


# ---------------------------------------------------------------- moderation

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100


def video_pair() -> tuple[SessionMachine, SessionMachine]:
    a, b = machine("a"), machine("b")
    a.on_frame(join(mode=common_pb2.MODE_VIDEO)), b.on_frame(join(mode=common_pb2.MODE_VIDEO))
    machines = {"a": a, "b": b}
    deliver(a.on_match_found(found(a, b)) + b.on_match_found(found(a, b)), machines)
    assert a.phase is b.phase is Phase.CONNECTED
    return a, b


def test_video_snapshots_go_to_moderation_with_their_hash_and_the_pool():
    a, _ = video_pair()
    (observed,) = published(a.on_frame(frame(snapshot=gateway_pb2.Snapshot(jpeg=JPEG))), "SnapshotObserved")
    assert observed.jpeg == JPEG and observed.match_id == "m1" and observed.session.session_id == "a"
    assert observed.sha256 == hashlib.sha256(JPEG).hexdigest()
    assert observed.age_band == ADULT and observed.identity.device_token == "dev-a"


def test_snapshots_that_are_not_jpeg_too_big_or_out_of_place_are_refused():
    a, _ = video_pair()
    assert errors(a.on_frame(frame(snapshot=gateway_pb2.Snapshot(jpeg=b"GIF89a")))) == [Err.CODE_INVALID_FRAME]
    big = JPEG + b"\x00" * 48 * 1024
    assert errors(a.on_frame(frame(snapshot=gateway_pb2.Snapshot(jpeg=big)))) == [Err.CODE_TOO_LARGE]
    t1, t2 = machine("t1"), machine("t2")
    connect(t1, t2)  # text mode
    assert errors(t1.on_frame(frame(snapshot=gateway_pb2.Snapshot(jpeg=JPEG)))) == [Err.CODE_OUT_OF_ORDER]
    assert errors(machine().on_frame(frame(snapshot=gateway_pb2.Snapshot(jpeg=JPEG)))) == [Err.CODE_NOT_CONNECTED]


def action(kind, match_id="m1", session="a"):
    return events_pb2.SessionAction(session=common_pb2.SessionRef(gateway_id="g1", session_id=session),
                                    match_id=match_id, kind=kind, category=common_pb2.CATEGORY_SPAM,
                                    message="no links, please")


def test_a_moderation_warning_reaches_the_user_and_the_conversation_goes_on():
    a, b = machine("a"), machine("b")
    connect(a, b)
    effects = a.on_session_action(action(events_pb2.SessionAction.KIND_WARN))
    (notice,) = [e.frame.notice for e in effects if isinstance(e, ToClient)]
    assert notice.message == "no links, please" and not notice.conversation_ended
    assert a.phase is Phase.CONNECTED and not relays(effects)


def test_moderation_ends_a_conversation_and_the_stranger_is_told():
    a, b = machine("a"), machine("b")
    connect(a, b)
    effects = a.on_session_action(action(events_pb2.SessionAction.KIND_END_CONVERSATION))
    assert a.phase is Phase.IDLE
    (notice,) = [e.frame.notice for e in effects if isinstance(e, ToClient)]
    assert notice.conversation_ended and notice.category == common_pb2.CATEGORY_SPAM
    assert to_client(deliver(effects, {"b": b})) == ["stranger_disconnected"]
    # A verdict that comes after the conversation ended acts on nothing.
    assert a.on_session_action(action(events_pb2.SessionAction.KIND_END_CONVERSATION)) == []
    a.on_frame(frame(next=gateway_pb2.Next()))
    assert a.on_session_action(action(events_pb2.SessionAction.KIND_WARN, match_id="old")) == []


def test_in_a_minors_pool_contact_details_never_reach_the_stranger():
    from services.moderation.detectors.contact import mask_contacts

    counter = itertools.count()

    def masking(session):
        return SessionMachine(common_pb2.SessionRef(gateway_id="g1", session_id=session),
                              common_pb2.Identity(device_token=f"dev-{session}"),
                              new_id=lambda: f"{session}-id{next(counter)}", now=Clock(),
                              mask_contacts=mask_contacts)

    a, b = masking("a"), masking("b")
    a.on_frame(join(band=MINOR)), b.on_frame(join(band=MINOR))
    deliver(a.on_match_found(found(a, b)) + b.on_match_found(found(a, b)), {"a": a, "b": b})
    a.on_frame(frame(typing=gateway_pb2.SetTyping(typing=True)))
    effects = a.on_frame(frame(text=gateway_pb2.SendText(text="text me 415-867-5309 ok")))
    (relayed,) = relays(effects)
    assert "415" not in relayed.text.text and relayed.text.text.startswith("text me ")
    (observed,) = published(effects, "MessageObserved")
    assert observed.text == "text me 415-867-5309 ok" and observed.masked  # moderation sees what was written
    assert observed.typing_started_at_unix_ms and observed.connected_at_unix_ms
    (notice,) = [e.frame.notice for e in effects if isinstance(e, ToClient)]
    assert notice.category == common_pb2.CATEGORY_CONTACT_SOLICITATION and not notice.conversation_ended
    # Lines without contact details pass as they are, and adults' pools are not masked.
    (plain,) = relays(a.on_frame(frame(text=gateway_pb2.SendText(text="what games do you play"))))
    assert plain.text.text == "what games do you play"
    x, y = masking("x"), masking("y")
    connect(x, y)
    (adult,) = relays(x.on_frame(frame(text=gateway_pb2.SendText(text="text me 415-867-5309"))))
    assert adult.text.text == "text me 415-867-5309"


def test_a_ban_on_a_session_ends_that_session_only():
    a, b = machine("a"), machine("b")
    connect(a, b)
    ban = ban_pb2.BanRecord(ban_id="s-ban", subject=ban_pb2.Subject(session_id="a"), reason="flood",
                            scope=common_pb2.BAN_SCOPE_ALL)
    assert b.on_ban(ban) == []
    effects = a.on_ban(ban)
    assert a.phase is Phase.CLOSED and any(isinstance(e, Close) for e in effects)
    (banned,) = [e.frame.banned for e in effects if isinstance(e, ToClient) and e.frame.HasField("banned")]
    assert banned.ban_id == "s-ban"


def test_an_address_ban_that_only_watches_shuts_no_one_out():
    a = machine("a")
    a.on_frame(join())
    watch = ban_pb2.BanRecord(ban_id="w", subject=ban_pb2.Subject(ip_prefix_hash="ip-a"))
    assert not ban_applies(watch, a.identity, a.mode)
    a.identity.ip_prefix_hash = "ip-a"
    assert a.on_ban(watch) == []
    watch.enforce_on_address = True
    assert to_client(a.on_ban(watch)) == ["banned"]
