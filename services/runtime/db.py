"""Durable stores: one SQLAlchemy (async) code path for SQLite, the default,
and PostgreSQL, when replicas share a database; the URL setting chooses.
Schema changes are Alembic migrations, run at start."""
from __future__ import annotations

import hashlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from sqlalchemy import event, text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, NotSupportedError, ProgrammingError
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg",
                  "postgres": "postgresql+asyncpg"}


def async_url(url: str) -> str:
    """Accept plain `sqlite:///path` and `postgresql://...` URLs and name the
    async driver for them."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver:
        parsed = parsed.set(drivername=driver)
    if parsed.drivername not in _ASYNC_DRIVERS.values():
        raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)}: "
                         "use sqlite:///path or postgresql://user@host/db")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


async def migrate(engine: AsyncEngine, migrations: Path, version_table: str) -> None:
    """Bring the schema to the newest migration. On PostgreSQL an advisory
    lock makes replicas that start together migrate one at a time."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["version_table"] = version_table

    def upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                     {"key": _lock_key(version_table)})
        await connection.run_sync(upgrade)


def run_migrations_online(context: EnvironmentContext, target_metadata) -> None:
    """The body of every service's alembic `env.py`: migrate on the connection
    that `migrate` hands over."""
    config = context.config
    connection = config.attributes["connection"]
    context.configure(connection=connection, target_metadata=target_metadata,
                      version_table=config.attributes["version_table"],
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


# Errors in what we sent, which no retry fixes.
_OUR_FAULT = (IntegrityError, DataError, ProgrammingError, NotSupportedError)


def is_transient_db_error(exc: BaseException) -> bool:
    """Could the same statement succeed once the database is back? Connection
    loss, a locked SQLite file, a database restarting or unreachable (asyncpg's
    connect failures arrive as a bare DBAPIError); not a constraint violation
    or a bad statement."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, DBAPIError) and not isinstance(exc, _OUR_FAULT)
