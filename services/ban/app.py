"""The ban service process: the durable ban store, the gRPC API gateways and
moderators call, and the consumer that turns moderation decisions into bans
and announces them to every gateway."""
from __future__ import annotations

import logging

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.v1 import ban_pb2, ban_pb2_grpc, events_pb2
from services.ban.announce import Announcer
from services.ban.grpc_api import BanApi
from services.ban.metrics import BanMetrics
from services.ban.model import Clock, wall_clock_ms
from services.ban.policy import InvalidDecision
from services.ban.retry import retry_transient
from services.ban.settings import BanSettings
from services.ban.store import BanStore, migrate_store
from services.ban.wire import category_name
from services.runtime.bus import Bus
from services.runtime.db import is_transient_db_error, make_engine
from services.runtime.envelope import PoisonMessage
from services.runtime.topology import ban_decisions

log = logging.getLogger(__name__)

# Decisions are few and each is a write transaction; a small window keeps
# SQLite writers from queueing behind one another.
DECISIONS_PREFETCH = 16


class BanService:
    grpc_service_names = [ban_pb2.DESCRIPTOR.services_by_name["Ban"].full_name]

    def __init__(self, settings: BanSettings, clock: Clock = wall_clock_ms) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = BanMetrics()
        self.bus = Bus(settings.amqp_url, "ban", settings.instance_id)
        self.announcer = Announcer(self.bus, self.metrics, timeout=settings.announce_timeout_seconds)
        self.engine: AsyncEngine | None = None
        self.store: BanStore | None = None  # set by start(), before the gRPC server starts

    # ------------------------------------------------------------ lifecycle

    def register(self, server: grpc.aio.Server) -> None:
        ban_pb2_grpc.add_BanServicer_to_server(BanApi(self), server)

    async def start(self) -> None:
        self.engine = make_engine(self.settings.database_url)
        await migrate_store(self.engine)
        self.store = BanStore(self.engine, self.clock)
        await self.bus.connect()
        # Declaring the queue here also makes it exist (durable, bound) before
        # moderation's first decision, even if moderation starts first later.
        await self.bus.consume(ban_decisions(), self.handle_decision, prefetch=DECISIONS_PREFETCH,
                               is_transient=is_transient_db_error)

    async def stop(self) -> None:
        await self.bus.close()
        if self.engine is not None:
            await self.engine.dispose()

    # ------------------------------------------------------------ events

    async def handle_decision(self, envelope: events_pb2.Envelope) -> None:
        """Apply a decision, then announce its bans. The runtime acks after
        this returns, i.e. after the commit; if the announcement fails this
        raises, the message comes back, and the (now duplicate) decision
        announces its bans again."""
        field = envelope.WhichOneof("event")
        if field != "decision_made":
            raise PoisonMessage(f"{field} event on the ban decisions queue; expected decision_made")
        try:
            outcome = await retry_transient(
                lambda: self.store.apply_decision(envelope.decision_made, envelope.event_id),
                within=self.settings.store_retry_seconds, what="applying a decision")
        except InvalidDecision as exc:
            raise PoisonMessage(str(exc)) from None

        result = "duplicate" if outcome.duplicate else "applied"
        self.metrics.decisions.labels(outcome.plan.action, result).inc()
        if not outcome.duplicate:
            for ban in outcome.bans:
                self.metrics.bans_issued.labels(category_name(ban.category)).inc()
        log.info("decision %s", result, extra={
            "decision_id": outcome.plan.decision_id, "action": outcome.plan.action,
            "event_id": envelope.event_id, "bans": [ban.ban_id for ban in outcome.bans]})
        for ban in outcome.bans:
            await self.announcer.issued(ban)
