"""Time-limited TURN credentials in the form coturn checks with
`use-auth-secret` (the "TURN REST API"): the username carries its expiry,
the password is an HMAC of the username under a secret shared with coturn,
so coturn needs no user database and a leaked credential soon expires."""
from __future__ import annotations

import base64
import hashlib
import hmac

from parley.v1 import gateway_pb2


class TurnCredentials:
    def __init__(self, secret: str, urls: tuple[str, ...], ttl_seconds: int) -> None:
        self._key = secret.encode()
        self.urls = urls
        self.ttl_seconds = ttl_seconds

    def ice_config(self, session_id: str, now: float) -> gateway_pb2.IceConfig:
        username = f"{int(now) + self.ttl_seconds}:{session_id}"
        credential = base64.b64encode(hmac.new(self._key, username.encode(), hashlib.sha1).digest()).decode()
        config = gateway_pb2.IceConfig(transport_policy="relay")
        if self.urls:
            config.servers.add(urls=list(self.urls), username=username, credential=credential)
        return config


def check_credential(secret: str, username: str, credential: str, now: float) -> bool:
    """What coturn does with the pair: the test side of the contract."""
    expiry, _, _ = username.partition(":")
    if not expiry.isdigit() or int(expiry) < now:
        return False
    expected = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
    return hmac.compare_digest(expected, credential)
