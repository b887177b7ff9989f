from services.gateway.identity import AddressHasher, DeviceTokens, peer_ip


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
