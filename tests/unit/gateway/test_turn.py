from services.gateway.turn import TurnCredentials, check_credential


def test_credentials_are_in_coturn_rest_form_and_expire():
    turn = TurnCredentials("shared", ("turn:t.example:3478?transport=udp",), ttl_seconds=600)
    config = turn.ice_config("session-1", now=1_000_000)
    assert config.transport_policy == "relay"
    (server,) = config.servers
    assert list(server.urls) == ["turn:t.example:3478?transport=udp"]
    assert server.username == "1000600:session-1"
    assert check_credential("shared", server.username, server.credential, now=1_000_500)
    assert not check_credential("shared", server.username, server.credential, now=1_000_601)
    assert not check_credential("other", server.username, server.credential, now=1_000_500)
    forged = "9999999999:session-1"
    assert not check_credential("shared", forged, server.credential, now=1_000_500)


def test_no_urls_no_servers_but_still_relay_only():
    config = TurnCredentials("s", (), 600).ice_config("x", 0)
    assert config.transport_policy == "relay" and not config.servers
