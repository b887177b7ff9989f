"""Moderator tokens and roles, without a server."""
from __future__ import annotations

import hashlib
import os

import pytest

from services.moderation import auth
from services.moderation.auth import Permission, Principal, TokenBook, TokenConfigError


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_the_configuration_holds_digests_not_tokens():
    book = TokenBook(inline=f"{digest('s3cret-a')}:alice:moderator,\n{digest('s3cret-b')}:bob:child_safety")
    assert book.authenticate("s3cret-a") == Principal("alice", "moderator")
    assert book.authenticate("s3cret-b") == Principal("bob", "child_safety")
    assert book.authenticate(digest("s3cret-a")) is None  # the digest itself is not a token
    assert book.authenticate("wrong") is None and book.authenticate("") is None
    assert book.authenticate(None) is None and book.authenticate("x" * 10_000) is None
    assert not book.development


@pytest.mark.parametrize("text, message", [
    ("s3cret:alice:moderator", "not the token itself"),
    (f"{'a' * 64}:alice", "sha256hex:name:role"),
    (f"{'a' * 64}:alice:root", "unknown role"),
    (f"{'a' * 64}:al ice:admin", "bad moderator name"),
    (f"{'a' * 64}:alice:admin\n{'a' * 64}:bob:admin", "listed twice"),
])
def test_bad_entries_are_refused_by_position_without_echoing_them(text, message):
    with pytest.raises(TokenConfigError, match=message) as error:
        auth.parse_entries(text, "PARLEY_MODERATION_MODERATOR_TOKENS")
    assert "line" in str(error.value) and "s3cret" not in str(error.value)


def test_comments_and_blank_lines_are_skipped():
    book = auth.parse_entries(f"# moderators\n\n{digest('t')}:alice:admin  # on call\n", "file")
    assert book == {digest("t"): Principal("alice", "admin")}


def test_the_file_is_reread_when_it_changes(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"{digest('t1')}:alice:moderator\n")
    book = TokenBook(path=str(path))
    assert book.authenticate("t1").name == "alice" and book.authenticate("t2") is None
    path.write_text(f"{digest('t2')}:bob:admin\n")
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))  # a different mtime, whatever the clock's resolution
    assert book.authenticate("t2") == Principal("bob", "admin")
    assert book.authenticate("t1") is None
    # a broken edit keeps the tokens that worked
    path.write_text("garbage")
    os.utime(path, ns=(1, 3_000_000_000_000_000_000))
    assert book.authenticate("t2") == Principal("bob", "admin")


def test_an_unreadable_file_stops_the_start(tmp_path):
    with pytest.raises(TokenConfigError, match="tokens file"):
        TokenBook(path=str(tmp_path / "missing"))


def test_without_configuration_the_development_tokens_work():
    book = TokenBook()
    assert book.development
    assert book.authenticate("parley-dev-moderator") == Principal("dev-moderator", "moderator")
    assert book.authenticate("parley-dev-child-safety").role == "child_safety"
    assert book.authenticate("parley-dev-admin").role == "admin"
    configured = TokenBook(inline=f"{digest('t')}:alice:admin")
    assert configured.authenticate("parley-dev-admin") is None


def test_roles():
    moderator, child_safety, admin = (Principal("x", role) for role in auth.ROLES)
    assert moderator.can(Permission.REVIEW) and not moderator.can(Permission.CHILD_SAFETY)
    assert not moderator.can(Permission.AUDIT) and not moderator.can(Permission.EXPORT)
    assert child_safety.can(Permission.CHILD_SAFETY) and child_safety.can(Permission.EXPORT)
    assert not child_safety.can(Permission.PURGE) and not child_safety.can(Permission.AUDIT)
    assert admin.can(Permission.AUDIT) and admin.can(Permission.PURGE) and admin.can(Permission.VERIFY)
    # child-safety evidence and exports stay with the child-safety team
    assert not admin.can(Permission.CHILD_SAFETY) and not admin.can(Permission.EXPORT)
    assert auth.roles_with(Permission.EXPORT) == ["child_safety"]
    assert not Principal("x", "root").can(Permission.REVIEW)


@pytest.mark.parametrize("metadata, token", [
    ([("authorization", "Bearer abc")], "abc"),
    ([("x-other", "1"), ("Authorization", "bearer  abc ")], "abc"),
    ([("authorization", b"Bearer abc")], "abc"),
    ([("authorization", "Basic abc")], None),
    ([("authorization", "Bearer ")], None),
    ([], None),
    (None, None),
])
def test_the_bearer_token_is_read_from_metadata(metadata, token):
    assert auth.bearer_token(metadata) == token


def test_a_new_token_and_its_line():
    token = auth.new_token()
    assert len(token) > 40 and token != auth.new_token()
    line = auth.entry_line(token, "alice", "moderator")
    assert auth.parse_entries(line, "x") == {digest(token): Principal("alice", "moderator")}
    with pytest.raises(ValueError):
        auth.entry_line(token, "alice", "superuser")
