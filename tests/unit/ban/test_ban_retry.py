"""Waiting out transient store errors, and only those."""
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from services.ban.retry import is_transient, retry_transient


def operational() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception("database is locked"))


def test_which_errors_are_transient():
    assert is_transient(operational())
    assert is_transient(ConnectionRefusedError())
    # asyncpg's "cannot connect" errors arrive as a bare DBAPIError
    assert is_transient(DBAPIError("connect", {}, Exception('database "x" does not exist')))
    assert not is_transient(ProgrammingError("SELECT nope", {}, Exception("syntax error")))
    assert not is_transient(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_transient(ValueError("bad decision"))


async def test_retries_until_it_works():
    failures = [operational(), operational()]

    async def flaky():
        if failures:
            raise failures.pop()
        return "done"

    assert await retry_transient(flaky, within=5, what="test", first_delay=0.01) == "done"
    assert failures == []


async def test_gives_up_after_the_window_and_never_retries_real_errors():
    calls = []

    async def always(exc):
        calls.append(exc)
        raise exc

    with pytest.raises(OperationalError):
        await retry_transient(lambda: always(operational()), within=0.05, what="test", first_delay=0.01)
    assert 2 <= len(calls) <= 6
    calls.clear()
    with pytest.raises(ValueError):
        await retry_transient(lambda: always(ValueError("no")), within=5, what="test")
    assert len(calls) == 1
