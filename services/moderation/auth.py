"""Who may call the moderator API, and what each role may do.

A moderator sends a bearer token in the gRPC metadata
(`authorization: Bearer <token>`). The service knows tokens only by their
SHA-256: its configuration holds lines `sha256hex:name:role`, inline in
PARLEY_MODERATION_MODERATOR_TOKENS (separated by commas or new lines) or in
the file PARLEY_MODERATION_MODERATOR_TOKENS_FILE (one a line, `#` comments;
re-read when it changes, so a moderator is added or removed without a
restart). A leaked configuration gives away no token.

`parley-modctl token new --name alice --role moderator` makes a token and
prints the line to add.

Roles:

- moderator: the review queue (list, view, claim, release, decide), except
  child-safety cases.
- child_safety: all of that, child-safety cases too, law-enforcement
  exports, legal holds, vault verification.
- admin: the review queue (not child-safety cases), the audit log, vault
  verification and purge, legal holds (on any case: a hold shows nothing
  of it).

Child-safety evidence is kept from admins on purpose: access to it is
limited to the people trained and cleared for it.

With neither variable set the service accepts three development tokens
(DEV_TOKENS, one per role) and logs a warning at start, as the gateway does
for its development secrets: good for `make run`, never for production.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

log = logging.getLogger(__name__)


class Permission(Enum):
    REVIEW = "review the queue"
    CHILD_SAFETY = "see child-safety evidence"
    EXPORT = "export a law-enforcement package"
    AUDIT = "read the audit log"
    VERIFY = "verify the evidence vault"
    PURGE = "purge expired evidence"
    HOLD = "set a legal hold"


MODERATOR = "moderator"
CHILD_SAFETY = "child_safety"
ADMIN = "admin"

ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    MODERATOR: frozenset({Permission.REVIEW}),
    CHILD_SAFETY: frozenset({Permission.REVIEW, Permission.CHILD_SAFETY, Permission.EXPORT,
                             Permission.VERIFY, Permission.HOLD}),
    ADMIN: frozenset({Permission.REVIEW, Permission.AUDIT, Permission.VERIFY, Permission.PURGE,
                      Permission.HOLD}),
}
ROLES = tuple(ROLE_PERMISSIONS)

# Development only: used when no tokens are configured, with a warning.
DEV_TOKENS = {
    "parley-dev-moderator": ("dev-moderator", MODERATOR),
    "parley-dev-child-safety": ("dev-child-safety", CHILD_SAFETY),
    "parley-dev-admin": ("dev-admin", ADMIN),
}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_TOKEN_CHARS = 512


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS.get(self.role, frozenset())

    @property
    def actor(self) -> str:
        """How the audit log names them."""
        return f"moderator:{self.name}"


def roles_with(permission: Permission) -> list[str]:
    return [role for role, permissions in ROLE_PERMISSIONS.items() if permission in permissions]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return "pmt_" + secrets.token_urlsafe(32)


def entry_line(token: str, name: str, role: str) -> str:
    """The configuration line for a token: sha256hex:name:role."""
    check_name_and_role(name, role)
    return f"{token_digest(token)}:{name}:{role}"


def check_name_and_role(name: str, role: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"bad moderator name {name!r}: letters, digits, '.', '_', '@', '-'; at most 64")
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")


class TokenConfigError(ValueError):
    """The token configuration cannot be used; the message names the place."""


def parse_entries(text: str, origin: str) -> dict[str, Principal]:
    """`sha256hex:name:role` entries separated by commas or new lines; blank
    lines and `#` comments are skipped. Raises TokenConfigError naming the
    bad entry by its position (never echoing it: it may be a raw token
    pasted by mistake)."""
    book: dict[str, Principal] = {}
    entries = []
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0]
        for part in line.split(","):
            if part.strip():
                entries.append((line_no, part.strip()))
    for line_no, entry in entries:
        where = f"{origin}, line {line_no}"
        parts = entry.split(":")
        if len(parts) != 3:
            raise TokenConfigError(f"{where}: expected sha256hex:name:role")
        digest, name, role = (p.strip() for p in parts)
        digest = digest.lower()
        if not _DIGEST.fullmatch(digest):
            raise TokenConfigError(f"{where}: the first field must be the token's SHA-256 in hex "
                                   "(64 characters), not the token itself")
        try:
            check_name_and_role(name, role)
        except ValueError as exc:
            raise TokenConfigError(f"{where}: {exc}") from None
        if digest in book:
            raise TokenConfigError(f"{where}: the same token is listed twice")
        book[digest] = Principal(name, role)
    return book


class TokenBook:
    """Token digests -> principals, from the inline setting and the file."""

    def __init__(self, inline: str = "", path: str = "") -> None:
        self.inline = inline
        self.path = path
        self._inline_book = parse_entries(inline, "PARLEY_MODERATION_MODERATOR_TOKENS") if inline else {}
        self._file_book: dict[str, Principal] = {}
        self._file_stamp: tuple[int, int] | None = None
        self.development = not inline and not path
        if path:
            self._load_file(strict=True)
        if self.development:
            self._inline_book = {token_digest(token): Principal(name, role)
                                 for token, (name, role) in DEV_TOKENS.items()}
        elif not self._inline_book and not self._file_book:
            log.warning("no moderator tokens configured: every moderator call will be refused")

    @classmethod
    def from_entries(cls, principals: Iterable[tuple[str, str, str]]) -> "TokenBook":
        """For tests: (token, name, role) triples."""
        return cls(inline="\n".join(entry_line(t, n, r) for t, n, r in principals))

    def _load_file(self, strict: bool) -> None:
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._file_stamp:
                return
            with open(self.path, encoding="utf-8") as handle:
                book = parse_entries(handle.read(), self.path)
        except (OSError, TokenConfigError, UnicodeDecodeError) as exc:
            if strict:
                raise TokenConfigError(f"moderator tokens file {self.path}: {exc}") from None
            # A bad edit of a live file keeps the tokens we had.
            log.error("moderator tokens file unreadable; keeping the previous tokens",
                      extra={"path": self.path, "error": str(exc)})
            return
        if self._file_stamp is not None:
            log.info("moderator tokens file reloaded", extra={"path": self.path, "tokens": len(book)})
        self._file_book, self._file_stamp = book, stamp

    def authenticate(self, token: str | None) -> Principal | None:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        if self.path:
            self._load_file(strict=False)
        digest = token_digest(token)
        return self._inline_book.get(digest) or self._file_book.get(digest)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an `authorization: Bearer <token>` metadata entry."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None
