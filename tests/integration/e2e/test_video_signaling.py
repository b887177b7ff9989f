"""Video over real gateways: relay-only TURN credentials and WebRTC
signaling relayed between two gateways, candidates before the description
included."""
from __future__ import annotations

import time

import pytest

from parley.v1 import common_pb2, gateway_pb2
from services.chat.client import ChatClient
from services.gateway.turn import check_credential

pytestmark = pytest.mark.integration
TURN = {"PARLEY_TURN_SECRET": "turn-test-secret",
        "PARLEY_GATEWAY_TURN_URLS": "turn:127.0.0.1:3478?transport=udp,turn:127.0.0.1:3478?transport=tcp"}


async def test_video_pair_gets_turn_credentials_and_signaling_flows(start_service):
    start_service("matcher")
    g1, g2 = start_service("gateway", **TURN), start_service("gateway", **TURN)
    a, b = await ChatClient.connect(g1.grpc_addr), await ChatClient.connect(g2.grpc_addr)
    await a.join(mode=common_pb2.MODE_VIDEO)
    await b.join(mode=common_pb2.MODE_VIDEO)
    ca = (await a.expect("connected", timeout=10, skip=("waiting",))).connected
    cb = (await b.expect("connected", timeout=10, skip=("waiting",))).connected
    assert {ca.offerer, cb.offerer} == {True, False}
    for connected, client in ((ca, a), (cb, b)):
        assert connected.ice.transport_policy == "relay"
        (server,) = connected.ice.servers
        assert list(server.urls) == TURN["PARLEY_GATEWAY_TURN_URLS"].split(",")
        assert server.username.endswith(":" + client.session_id)
        assert check_credential(TURN["PARLEY_TURN_SECRET"], server.username, server.credential, time.time())

    offerer, answerer = (a, b) if ca.offerer else (b, a)
    # The offerer's candidates may go out before its description: all arrive, in order.
    await offerer.send(signal=gateway_pb2.Signal(ice_candidate_json='{"candidate":"c1"}'))
    await offerer.send(signal=gateway_pb2.Signal(offer_sdp="v=0 offer"))
    await offerer.send(signal=gateway_pb2.Signal(ice_candidate_json='{"candidate":"c2"}'))
    got = [(await answerer.expect("signal")).signal for _ in range(3)]
    assert [s.WhichOneof("payload") for s in got] == ["ice_candidate_json", "offer_sdp", "ice_candidate_json"]
    assert got[1].offer_sdp == "v=0 offer"
    await answerer.send(signal=gateway_pb2.Signal(answer_sdp="v=0 answer"))
    assert (await offerer.expect("signal")).signal.answer_sdp == "v=0 answer"
    await a.close(), await b.close()
