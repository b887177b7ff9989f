"""The moderation process: every chat line and video snapshot through the
detectors (consumers.py) and their verdicts carried out (actions.py);
reports and evader suspicions in from the broker into the review store; the
moderator API over gRPC; decisions out through the outbox; hash banks loaded
and added to (bank_sync.py); and the evidence vault's retention purge."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import aio_pika
import grpc
from yarl import URL

from parley.v1 import common_pb2, events_pb2, moderation_pb2, moderation_pb2_grpc
from services.moderation import review
from services.moderation.actions import Enforcer
from services.moderation.auth import DEV_TOKENS, TokenBook, TokenConfigError
from services.moderation.bank_sync import BankRegistry
from services.moderation.batching import BatchConsumer
from services.moderation.consumers import MessageIntake, SnapshotIntake, attach_snapshot_hashes, lag_seconds
from services.moderation.detectors.moderator import TextModerator
from services.moderation.enums import enum_name
from services.moderation.grpc_api import ModerationApi
from services.moderation.metrics import ModerationMetrics
from services.moderation.outbox import DecisionOutbox
from services.moderation.policy import PolicyConfig, PolicyError, load_policy
from services.moderation.settings import POLICY_FILE_VARIABLE, ModerationSettings
from services.moderation.sharding import declare_message_routing
from services.moderation.snapshots import (ClassifierUnavailable, HashBanks, NudityClassifier, SnapshotAnalyzer,
                                           SnapshotConfig)
from services.moderation.store import Intake, ReviewStore
from services.runtime.bus import Bus
from services.runtime.coalescing import CoalescingRobustConnection, CoalescingTransportFactory
from services.runtime.db import is_transient_db_error, make_engine, migrate
from services.runtime.envelope import PoisonMessage
from services.runtime.settings import SettingsError
from services.runtime.topology import ban_decisions, moderation_reports, moderation_snapshots, moderation_suspicions

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
        policy = _policy(settings.policy_file)
        bank_files = settings.bank_files()
        classifier = None
        if settings.nudity_enabled:
            try:
                classifier = NudityClassifier(threshold=settings.nudity_threshold, threads=1)
            except ClassifierUnavailable as exc:
                raise SettingsError(f"bad moderation configuration:\n  PARLEY_MODERATION_NUDITY_ENABLED=true but "
                                    f"the nudity classifier cannot load: {exc}") from None
        self.engine = make_engine(settings.database_url)
        self.store = ReviewStore(self.engine, retention=settings.retention())
        self.bus = Bus(settings.amqp_url, "moderation", settings.instance_id)
        self.outbox = DecisionOutbox(self.store, self.bus, publish_timeout=settings.publish_timeout_seconds)
        self.metrics = ModerationMetrics()
        self.enforcer = Enforcer(self.bus, self.store, self.outbox, self.metrics, self.open_escalation,
                                 auto_ban_seconds=settings.auto_ban_seconds,
                                 publish_timeout=settings.publish_timeout_seconds,
                                 store_concurrency=1 if self.engine.dialect.name == "sqlite" else 8)
        self.messages = MessageIntake(TextModerator(policy), self.enforcer, self.metrics,
                                      evidence_lines=settings.evidence_lines,
                                      classify_in_thread=settings.classify_in_thread)
        self.hash_banks = HashBanks()
        self.banks = BankRegistry(self.hash_banks, self.store, bank_files, self.metrics)
        self.snapshots = SnapshotIntake(
            SnapshotAnalyzer(self.hash_banks, classifier,
                             SnapshotConfig(minor_nudity_threshold=settings.minor_nudity_threshold)),
            self.enforcer, self.metrics, workers=settings.snapshot_workers)
        self._message_connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._message_consumers: list[BatchConsumer] = []
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------ lifecycle

    def register(self, server: grpc.aio.Server) -> None:
        moderation_pb2_grpc.add_ModerationServicer_to_server(
            ModerationApi(self.store, self.outbox, self.metrics, self.tokens, self.settings.claim_seconds,
                          banks=self.banks),
            server)

    async def start(self) -> None:
        await migrate(self.engine, MIGRATIONS, VERSION_TABLE)
        # Every bank before the first snapshot: a bad file stops the start.
        await self.banks.load_files()
        await self.banks.sync()
        await self.bus.connect()
        # Declared here as well as by the ban service, so that decisions made
        # before the ban service first starts wait in its queue, not nowhere.
        await self.bus.declare(ban_decisions())
        await self.bus.consume(moderation_reports(), self.on_report, prefetch=20,
                               is_transient=is_transient_db_error)
        await self.bus.consume(moderation_suspicions(), self.on_suspicion, prefetch=20,
                               is_transient=is_transient_db_error)
        await self.bus.consume(moderation_snapshots(), self.snapshots.handle,
                               prefetch=2 * self.settings.snapshot_workers, is_transient=is_transient_db_error)
        await self._consume_messages()
        # Their first passes publish what a crash left in the outbox and
        # purge what expired while the service was down.
        self._tasks = [asyncio.create_task(self._maintain_forever()),
                       asyncio.create_task(self._purge_forever()),
                       asyncio.create_task(self._sync_banks_forever())]

    async def _consume_messages(self) -> None:
        """Chat lines, on a connection of their own (the busiest traffic by
        far), sharded by conversation when the broker can (sharding.py)."""
        routing = await declare_message_routing(self.settings.amqp_url, self.settings.instance_id,
                                                self.settings.shard_messages)
        self.metrics.message_sharding.set(1 if routing.sharded else 0)
        log.info("consuming chat lines", extra={
            "sharded": routing.sharded, "queues": [q.name for q in routing.queues], "note": routing.note})
        # Many small frames (acks, mostly): each turn's frames in one write.
        self._message_connection = CoalescingRobustConnection(
            URL(self.settings.amqp_url),
            client_properties={"connection_name": f"moderation/{self.settings.instance_id}/messages"},
            transport_factory=CoalescingTransportFactory())
        await self._message_connection.connect(timeout=10)
        for spec in routing.queues:
            consumer = BatchConsumer(self._message_connection, spec, self.messages.handle,
                                     expected=frozenset({"message_observed"}),
                                     prefetch=self.settings.message_prefetch, max_batch=self.settings.message_batch,
                                     linger=self.settings.message_batch_wait_ms / 1000)
            await consumer.start()
            self._message_consumers.append(consumer)

    async def stop(self) -> None:
        for consumer in self._message_consumers:
            with contextlib.suppress(Exception):
                await consumer.stop()
        await self.messages.drain()
        if self._message_connection is not None:
            with contextlib.suppress(Exception):
                await self._message_connection.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.messages.close()
        self.snapshots.close()
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
            # The reported side's last snapshot hashes, if this replica saw
            # that conversation's video (the gateway has only its own side's).
            report = attach_snapshot_hashes(report, self.snapshots.recent_hashes(
                report.match_id, report.reported_session.session_id))
            intake = await self.store.add_report(report, envelope.event_id)
        except review.InvalidReport as exc:
            raise PoisonMessage(str(exc)) from None
        category = enum_name(common_pb2.Category, report.category)
        self.metrics.reports_received.labels(category, _outcome(intake)).inc()
        await self._log_intake("report", report.report_id, intake)
        self.metrics.event_lag.labels("report").observe(lag_seconds(envelope))

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
        self.metrics.event_lag.labels("suspicion").observe(lag_seconds(envelope))

    async def open_escalation(self, escalation: review.Escalation) -> Intake:
        """For the detectors' consumers: file a verdict into the review queue
        (see ReviewStore.open_escalation)."""
        intake = await self.store.open_escalation(escalation)
        self.metrics.escalations_opened.labels(_outcome(intake)).inc()
        # Detectors escalate in bursts: the queue gauges wait for the
        # housekeeping pass (every PARLEY_MODERATION_OUTBOX_INTERVAL_SECONDS).
        await self._log_intake("escalation", escalation.escalation_id, intake, refresh=False)
        return intake

    async def _log_intake(self, what: str, filing_id: str, intake: Intake, refresh: bool = True) -> None:
        item = intake.item
        if intake.created:
            log.info(f"{what} filed for review", extra={
                "filing_id": filing_id, "item_id": item.item_id, "merged": intake.merged,
                "queued": not intake.suppressed,
                "category": enum_name(common_pb2.Category, item.category), "priority": item.priority,
                "kind": item.kind, "evidence": item.evidence_count})
            if refresh:
                await self.metrics.refresh_gauges(self.store)
        else:
            log.info(f"{what} already stored", extra={"filing_id": filing_id, "item_id": item.item_id})

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

    async def _sync_banks_forever(self) -> None:
        """Hashes other replicas took in at run time (AddBankHashes)."""
        while True:
            await asyncio.sleep(self.settings.bank_sync_interval_seconds)
            try:
                await self.banks.sync()
            except Exception:  # a store outage must not end the loop
                log.exception("hash bank sync failed")

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


def _policy(path: str) -> PolicyConfig:
    if not path:
        return PolicyConfig()
    try:
        return load_policy(path)
    except PolicyError as exc:
        raise SettingsError(f"bad moderation configuration:\n  {POLICY_FILE_VARIABLE}={path!r}: {exc}") from None


def _outcome(intake: Intake) -> str:
    if not intake.created:
        return "duplicate"
    if intake.suppressed:
        return "suppressed"
    return "merged" if intake.merged else "stored"
