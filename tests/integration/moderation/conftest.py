"""Fixtures of the moderation tests. Store tests get a fresh schema, on
SQLite in a file and on the real PostgreSQL (a database of this run's own,
emptied before each test); service tests get the moderation service as a
process with the test moderators' tokens, a stub, and the broker."""
from __future__ import annotations

import uuid

import aio_pika
import grpc
import pytest
import sqlalchemy as sa

from parley.v1 import moderation_pb2_grpc

from services.moderation.app import MIGRATIONS, VERSION_TABLE
from services.moderation.store import ReviewStore, metadata
from services.runtime.db import make_engine, migrate
from services.runtime.bus import Bus
from tests.integration.moderation.servicekit import As, start_moderation
from tests.integration.moderation.storekit import StepClock


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    # A sync fixture: pg_url creates its database with asyncio.run, which
    # cannot run inside the test loop.
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/moderation.db"
    return request.getfixturevalue("pg_url")


async def reset_schema(engine) -> None:
    """Drop the moderation tables (the PostgreSQL database is shared by the run)."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.execute(sa.text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))


@pytest.fixture
async def engine(database_url):
    engine = make_engine(database_url)
    await reset_schema(engine)
    await migrate(engine, MIGRATIONS, VERSION_TABLE)
    yield engine
    await engine.dispose()


@pytest.fixture
def clock():
    return StepClock()


@pytest.fixture
def store(engine, clock):
    return ReviewStore(engine, clock=clock)


# ---------------------------------------------------------------- the service

@pytest.fixture
async def gateway_bus(amqp_url):
    """The test plays the gateway: it publishes reports as the gateway does."""
    bus = Bus(amqp_url, "gateway", f"test-{uuid.uuid4().hex[:6]}")
    await bus.connect(timeout=10)
    yield bus
    await bus.close()


@pytest.fixture
async def channel(amqp_url):
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    yield channel
    await connection.close()


@pytest.fixture
def moderation(start_service):
    return start_moderation(start_service)


@pytest.fixture
async def stub(moderation):
    async with grpc.aio.insecure_channel(moderation.grpc_addr) as grpc_channel:
        yield moderation_pb2_grpc.ModerationStub(grpc_channel)


@pytest.fixture
def api(stub):
    """Alice, a moderator."""
    return As(stub, "alice")
