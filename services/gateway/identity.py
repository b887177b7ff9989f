"""Who a client is, without accounts and without keeping IP addresses:
device tokens the gateway signs, and keyed hashes of the address and its
prefix (DESIGN.md, invariant 5)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets

from parley.v1 import common_pb2


class DeviceTokens:
    """Tokens of the form `<random id>.<signature>`; a token the gateway did
    not sign is replaced by a new one, so a client cannot pick an identity."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _sign(self, device_id: str) -> str:
        digest = hmac.new(self._key, device_id.encode(), hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self) -> str:
        device_id = secrets.token_urlsafe(12)
        return f"{device_id}.{self._sign(device_id)}"

    def is_valid(self, token: str) -> bool:
        device_id, dot, signature = token.partition(".")
        return bool(dot and device_id) and hmac.compare_digest(signature, self._sign(device_id))

    def keep_or_issue(self, token: str) -> str:
        return token if token and self.is_valid(token) else self.issue()


class AddressHasher:
    def __init__(self, pepper: str) -> None:
        self._key = pepper.encode()

    def _hash(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    def identity(self, ip: str, device_token: str) -> common_pb2.Identity:
        """Hash the address and its /24 (IPv4) or /48 (IPv6) prefix."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return common_pb2.Identity(device_token=device_token)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        prefix_len = 24 if address.version == 4 else 48
        prefix = ipaddress.ip_network(f"{address}/{prefix_len}", strict=False)
        return common_pb2.Identity(device_token=device_token,
                                   ip_hash=self._hash(f"ip:{address}"),
                                   ip_prefix_hash=self._hash(f"prefix:{prefix}"))


def peer_ip(peer: str) -> str:
    """The address in a gRPC peer string: 'ipv4:1.2.3.4:5', 'ipv6:[::1]:5'."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return ""


class ClientAddress:
    """The client's address as the gateway should see it. Behind a proxy
    (a load balancer, the Gateway API route) the socket's peer is the proxy;
    when that peer is one of the trusted proxies, the client is the nearest
    address in X-Forwarded-For that is not itself a trusted proxy. A header
    from anyone else is ignored, so a client cannot choose its own address
    (and so dodge an IP ban or the per-address limits)."""

    def __init__(self, trusted_proxies=()) -> None:
        self._trusted = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies]

    def _is_trusted(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self._trusted)

    def resolve(self, peer: str, forwarded_for: str | None) -> str:
        if not forwarded_for or not self._is_trusted(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):  # the proxy nearest to us appended last
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer
