import pytest

from services.gateway.identity import AddressHasher, ClientAddress, DeviceTokens, peer_ip
from services.gateway.settings import GatewaySettings
from services.runtime.settings import SettingsError, load_settings


def test_device_tokens_are_signed_and_forgeries_replaced():
    tokens = DeviceTokens("secret")
    token = tokens.issue()
    assert tokens.is_valid(token) and tokens.keep_or_issue(token) == token
    forged = token.split(".")[0] + ".AAAA"
    assert not tokens.is_valid(forged) and tokens.keep_or_issue(forged) != forged
    assert not DeviceTokens("other").is_valid(token)
    assert tokens.keep_or_issue("") and not tokens.is_valid("no-dot")


def test_addresses_are_hashed_never_kept_and_share_a_prefix_hash():
    hasher = AddressHasher("pepper")
    one = hasher.identity("203.0.113.7", "d")
    two = hasher.identity("203.0.113.99", "d")
    assert "203.0.113" not in str(one)
    assert one.ip_hash != two.ip_hash and one.ip_prefix_hash == two.ip_prefix_hash
    assert AddressHasher("other").identity("203.0.113.7", "d").ip_hash != one.ip_hash
    v6a, v6b = hasher.identity("2001:db8:1:2::1", "d"), hasher.identity("2001:db8:1:ffff::1", "d")
    assert v6a.ip_prefix_hash == v6b.ip_prefix_hash  # same /48
    assert hasher.identity("::ffff:203.0.113.7", "d").ip_hash == one.ip_hash


def test_peer_strings():
    assert peer_ip("ipv4:127.0.0.1:5555") == "127.0.0.1"
    assert peer_ip("ipv6:[::1]:5555") == "::1"
    assert peer_ip("unix:/tmp/sock") == ""


def test_the_client_address_comes_from_forwarded_for_only_through_a_trusted_proxy():
    addresses = ClientAddress(["10.0.0.0/8", "fd00::/8"])
    # Straight from the client: its own socket address, whatever it claims.
    assert addresses.resolve("203.0.113.9", "198.51.100.1") == "203.0.113.9"
    # Through our proxy: the nearest address the proxy saw.
    assert addresses.resolve("10.1.2.3", "198.51.100.7") == "198.51.100.7"
    # A client that forges a header before our proxy appends the real one.
    assert addresses.resolve("10.1.2.3", "1.2.3.4, 198.51.100.7") == "198.51.100.7"
    # Two of our proxies in a row.
    assert addresses.resolve("10.1.2.3", "198.51.100.7, 10.9.9.9") == "198.51.100.7"
    assert addresses.resolve("::ffff:10.1.2.3", "2001:db8::5") == "2001:db8::5"
    assert addresses.resolve("10.1.2.3", None) == "10.1.2.3"
    assert ClientAddress().resolve("10.1.2.3", "198.51.100.7") == "10.1.2.3"


def test_a_bad_trusted_proxy_stops_the_gateway_with_its_name(monkeypatch):
    monkeypatch.setenv("PARLEY_GATEWAY_TRUSTED_PROXIES", "10.0.0.0/8,not-a-network")
    with pytest.raises(SettingsError, match="PARLEY_GATEWAY_TRUSTED_PROXIES"):
        load_settings(GatewaySettings)
