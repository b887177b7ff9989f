"""The moderation process: reports in from the broker into the review store,
chat copies observed, the moderator API over gRPC, and decisions out through
the outbox."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import grpc

from parley.v1 import common_pb2, events_pb2, moderation_pb2, moderation_pb2_grpc
from services.moderation import review
from services.moderation.enums import enum_name
from services.moderation.grpc_api import ModerationApi
from services.moderation.metrics import ModerationMetrics
from services.moderation.outbox import DecisionOutbox
from services.moderation.settings import ModerationSettings
from services.moderation.store import ReviewStore
from services.runtime.bus import Bus
from services.runtime.db import is_transient_db_error, make_engine, migrate
from services.runtime.envelope import PoisonMessage
from services.runtime.topology import ban_decisions, moderation_messages, moderation_reports

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_moderation"


class ModerationService:
    grpc_service_names = [moderation_pb2.DESCRIPTOR.services_by_name["Moderation"].full_name]

    def __init__(self, settings: ModerationSettings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.store = ReviewStore(self.engine)
        self.bus = Bus(settings.amqp_url, "moderation", settings.instance_id)
        self.outbox = DecisionOutbox(self.store, self.bus, publish_timeout=settings.publish_timeout_seconds)
        self.metrics = ModerationMetrics()
        self._maintainer: asyncio.Task | None = None

    # ------------------------------------------------------------ lifecycle

    def register(self, server: grpc.aio.Server) -> None:
        moderation_pb2_grpc.add_ModerationServicer_to_server(
            ModerationApi(self.store, self.outbox, self.metrics), server)

    async def start(self) -> None:
        await migrate(self.engine, MIGRATIONS, VERSION_TABLE)
        await self.bus.connect()
        # Declared here as well as by the ban service, so that decisions made
        # before the ban service first starts wait in its queue, not nowhere.
        await self.bus.declare(ban_decisions())
        await self.bus.consume(moderation_reports(), self.on_report, prefetch=20,
                               is_transient=is_transient_db_error)
        await self.bus.consume(moderation_messages(), self.on_message, prefetch=500)
        # Its first pass publishes what a crash left in the outbox.
        self._maintainer = asyncio.create_task(self._maintain_forever())

    async def stop(self) -> None:
        if self._maintainer:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        await self.bus.close()
        await self.engine.dispose()

    # ------------------------------------------------------------ events

    async def on_report(self, envelope: events_pb2.Envelope) -> None:
        """Store a report and open its review item. Returning acks it, and the
        store has committed by then; a redelivery finds the report stored."""
        field = envelope.WhichOneof("event")
        if field != "report_filed":
            raise PoisonMessage(f"{field} on the reports queue, expected report_filed")
        report = envelope.report_filed
        try:
            review.check_report(report)
        except review.InvalidReport as exc:
            raise PoisonMessage(str(exc)) from None
        item, created = await self.store.add_report(report, envelope.event_id)
        category = enum_name(common_pb2.Category, report.category)
        self.metrics.reports_received.labels(category, "stored" if created else "duplicate").inc()
        if created:
            log.info("report queued for review", extra={
                "report_id": report.report_id, "item_id": item.item_id, "category": category,
                "priority": item.priority, "evidence_lines": len(item.evidence)})
            await self.metrics.refresh_gauges(self.store)
        else:
            log.info("report already stored", extra={"report_id": report.report_id, "item_id": item.item_id})

    async def on_message(self, envelope: events_pb2.Envelope) -> None:
        """A copy of a chat line. Ephemeral: counted, never stored. The
        detectors (contact solicitation, age signals, grooming) will read
        these."""
        field = envelope.WhichOneof("event")
        if field != "message_observed":
            raise PoisonMessage(f"{field} on the messages queue, expected message_observed")
        message = envelope.message_observed
        self.metrics.messages_observed.labels(
            enum_name(common_pb2.Mode, message.mode), enum_name(common_pb2.AgeBand, message.age_band)).inc()

    # ------------------------------------------------------------ housekeeping

    async def _maintain_forever(self) -> None:
        while True:
            try:
                published = await self.outbox.flush()
                if published:
                    log.info("outbox flushed", extra={"published": published})
                await self.metrics.refresh_gauges(self.store)
            except Exception:  # a store outage must not end the loop
                log.exception("housekeeping failed")
            await asyncio.sleep(self.settings.outbox_interval_seconds)
