"""The moderation process: reports and evader suspicions in from the broker
into the review store, chat copies observed, the moderator API over gRPC,
decisions out through the outbox, and the evidence vault's retention purge."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import grpc

from parley.v1 import common_pb2, events_pb2, moderation_pb2, moderation_pb2_grpc
from services.moderation import review
from services.moderation.auth import DEV_TOKENS, TokenBook, TokenConfigError
from services.moderation.enums import enum_name
from services.moderation.grpc_api import ModerationApi
from services.moderation.metrics import ModerationMetrics
from services.moderation.outbox import DecisionOutbox
from services.moderation.settings import ModerationSettings
from services.moderation.store import Intake, ReviewStore
from services.runtime.bus import Bus
from services.runtime.db import is_transient_db_error, make_engine, migrate
from services.runtime.envelope import PoisonMessage
from services.runtime.settings import SettingsError
from services.runtime.topology import ban_decisions, moderation_messages, moderation_reports, moderation_suspicions

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_moderation"
RETENTION_ACTOR = "retention"


class ModerationService:
    grpc_service_names = [moderation_pb2.DESCRIPTOR.services_by_name["Moderation"].full_name]
    # A law-enforcement export carries evidence blobs (up to 16 MiB each).
    grpc_options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]

    def __init__(self, settings: ModerationSettings) -> None:
        self.settings = settings
        try:
            self.tokens = TokenBook(settings.moderator_tokens, settings.moderator_tokens_file)
        except TokenConfigError as exc:
            raise SettingsError(f"bad moderation configuration: {exc}") from None
        if self.tokens.development:
            log.warning("PARLEY_MODERATION_MODERATOR_TOKENS and PARLEY_MODERATION_MODERATOR_TOKENS_FILE unset: "
                        "accepting the development moderator tokens (%s); set real tokens in production",
                        ", ".join(DEV_TOKENS))
        self.engine = make_engine(settings.database_url)
        self.store = ReviewStore(self.engine, retention=settings.retention())
        self.bus = Bus(settings.amqp_url, "moderation", settings.instance_id)
        self.outbox = DecisionOutbox(self.store, self.bus, publish_timeout=settings.publish_timeout_seconds)
        self.metrics = ModerationMetrics()
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------ lifecycle

    def register(self, server: grpc.aio.Server) -> None:
        moderation_pb2_grpc.add_ModerationServicer_to_server(
            ModerationApi(self.store, self.outbox, self.metrics, self.tokens, self.settings.claim_seconds),
            server)

    async def start(self) -> None:
        await migrate(self.engine, MIGRATIONS, VERSION_TABLE)
        await self.bus.connect()
        # Declared here as well as by the ban service, so that decisions made
        # before the ban service first starts wait in its queue, not nowhere.
        await self.bus.declare(ban_decisions())
        await self.bus.consume(moderation_reports(), self.on_report, prefetch=20,
                               is_transient=is_transient_db_error)
        await self.bus.consume(moderation_suspicions(), self.on_suspicion, prefetch=20,
                               is_transient=is_transient_db_error)
        await self.bus.consume(moderation_messages(), self.on_message, prefetch=500)
        # Their first passes publish what a crash left in the outbox and
        # purge what expired while the service was down.
        self._tasks = [asyncio.create_task(self._maintain_forever()),
                       asyncio.create_task(self._purge_forever())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.bus.close()
        await self.engine.dispose()

    # ------------------------------------------------------------ events

    async def on_report(self, envelope: events_pb2.Envelope) -> None:
        """Store a report and file it into the review queue. Returning acks
        it, and the store has committed by then; a redelivery finds the
        report stored."""
        field = envelope.WhichOneof("event")
        if field != "report_filed":
            raise PoisonMessage(f"{field} on the reports queue, expected report_filed")
        report = envelope.report_filed
        try:
            review.check_report(report)
            intake = await self.store.add_report(report, envelope.event_id)
        except review.InvalidReport as exc:
            raise PoisonMessage(str(exc)) from None
        category = enum_name(common_pb2.Category, report.category)
        self.metrics.reports_received.labels(category, _outcome(intake)).inc()
        await self._log_intake("report", report.report_id, intake)

    async def on_suspicion(self, envelope: events_pb2.Envelope) -> None:
        """A suspected ban evader becomes a review item (kind
        suspected_evader). Idempotent on suspicion_id; acked once stored."""
        field = envelope.WhichOneof("event")
        if field != "evader_suspected":
            raise PoisonMessage(f"{field} on the suspicions queue, expected evader_suspected")
        suspicion = envelope.evader_suspected
        try:
            review.check_suspicion(suspicion)
            intake = await self.store.add_suspicion(suspicion, envelope.event_id)
        except review.InvalidReport as exc:
            raise PoisonMessage(str(exc)) from None
        self.metrics.suspicions_received.labels(_outcome(intake)).inc()
        await self._log_intake("suspicion", suspicion.suspicion_id, intake)

    async def open_escalation(self, escalation: review.Escalation) -> Intake:
        """For the detectors' consumers: file a verdict into the review queue
        (see ReviewStore.open_escalation)."""
        intake = await self.store.open_escalation(escalation)
        self.metrics.escalations_opened.labels(_outcome(intake)).inc()
        await self._log_intake("escalation", escalation.escalation_id, intake)
        return intake

    async def _log_intake(self, what: str, filing_id: str, intake: Intake) -> None:
        item = intake.item
        if intake.created:
            log.info(f"{what} filed for review", extra={
                "filing_id": filing_id, "item_id": item.item_id, "merged": intake.merged,
                "queued": not intake.suppressed,
                "category": enum_name(common_pb2.Category, item.category), "priority": item.priority,
                "kind": item.kind, "evidence": item.evidence_count})
            await self.metrics.refresh_gauges(self.store)
        else:
            log.info(f"{what} already stored", extra={"filing_id": filing_id, "item_id": item.item_id})

    async def on_message(self, envelope: events_pb2.Envelope) -> None:
        """A copy of a chat line. Ephemeral: counted, never stored. The
        detectors (contact solicitation, age signals, grooming) will read
        these and call open_escalation for what needs a human."""
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

    async def _purge_forever(self) -> None:
        """The retention clock: evidence of decided cases past their date goes.
        Replicas may run it side by side; each case is purged once."""
        while True:
            try:
                while True:
                    result = await self.store.purge_expired(RETENTION_ACTOR, "retention period over")
                    if result.purged_item_ids:
                        self.metrics.evidence_purged.inc(len(result.purged_item_ids))
                        log.info("evidence purged", extra={"items": len(result.purged_item_ids),
                                                           "blobs": result.blobs_deleted})
                    if len(result.purged_item_ids) < 100:
                        break
            except Exception:  # a store outage must not end the loop
                log.exception("retention purge failed")
            await asyncio.sleep(self.settings.purge_interval_seconds)


def _outcome(intake: Intake) -> str:
    if not intake.created:
        return "duplicate"
    if intake.suppressed:
        return "suppressed"
    return "merged" if intake.merged else "stored"
