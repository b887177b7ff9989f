"""Fixtures of the ban service's integration tests."""
from __future__ import annotations

import pytest

from services.runtime.bus import Bus
from tests.integration.ban.ban_support import Broker


@pytest.fixture
async def broker(amqp_url):
    async with Broker(amqp_url) as broker:
        yield broker


@pytest.fixture
async def publisher(amqp_url):
    """Publishes events the way every Parley service does."""
    bus = Bus(amqp_url, "bantest", "publisher")
    await bus.connect()
    yield bus
    await bus.close()
