"""The ban service process, wired in one place: the durable store, the
in-memory index CheckBan answers from (loaded at start, then kept current
from this replica's changes, every replica's ban events and a poll of the
store's change log), the gRPC API, the consumer that turns moderation
decisions into strikes and bans, the announcements to every gateway, the
suspected-evader flags, and the outbox that republishes what the broker did
not confirm."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.v1 import ban_pb2, ban_pb2_grpc, events_pb2
from services.ban.announce import AnnouncementFailed, Announcer
from services.ban.grpc_api import BanApi
from services.ban.index import BanIndex, ChangeCursor
from services.ban.metrics import BanMetrics
from services.ban.model import Ban, Clock, wall_clock_ms
from services.ban.policy import InvalidDecision
from services.ban.retry import retry_transient
from services.ban.settings import BanSettings
from services.ban.store import BanStore, migrate_store
from services.ban.suspicions import EvaderFlagger
from services.ban.wire import ban_from_proto, category_name
from services.runtime.bus import Bus
from services.runtime.db import is_transient_db_error, make_engine
from services.runtime.envelope import PoisonMessage
from services.runtime.topology import ban_decisions, ban_index, moderation_suspicions

log = logging.getLogger(__name__)

# Decisions are few and each is a write transaction; a small window keeps
# SQLite writers from queueing behind one another.
DECISIONS_PREFETCH = 16
# How often expired bans leave the index's memory (they stop counting at
# once: every answer checks the time).
SWEEP_SECONDS = 5.0


class BanService:
    grpc_service_names = [ban_pb2.DESCRIPTOR.services_by_name["Ban"].full_name]

    def __init__(self, settings: BanSettings, clock: Clock = wall_clock_ms) -> None:
        self.settings = settings
        self.clock = clock
        self.rules = settings.rules()
        self.metrics = BanMetrics()
        self.bus = Bus(settings.amqp_url, "ban", settings.instance_id)
        self.index = BanIndex()
        self.engine: AsyncEngine | None = None
        # set by start(), before the gRPC server starts
        self.store: BanStore | None = None
        self.announcer: Announcer | None = None
        self.flagger: EvaderFlagger | None = None
        self.cursor: ChangeCursor | None = None
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------ lifecycle

    def register(self, server: grpc.aio.Server) -> None:
        ban_pb2_grpc.add_BanServicer_to_server(BanApi(self), server)

    async def start(self) -> None:
        self.engine = make_engine(self.settings.database_url)
        await migrate_store(self.engine)
        self.store = BanStore(self.engine, self.clock, self.rules)
        self.announcer = Announcer(self.bus, self.metrics, timeout=self.settings.announce_timeout_seconds,
                                   mark_announced=self._mark_announced)
        self.flagger = EvaderFlagger(self.store, self.bus, self.metrics,
                                     publish_timeout=self.settings.announce_timeout_seconds)
        await self._load_index()

        await self.bus.connect()
        # Declared by the producer too, so a suspicion published before the
        # moderation service first starts waits in its queue.
        await self.bus.declare(moderation_suspicions())
        await self.bus.consume(ban_index(self.settings.instance_id), self.handle_index_event, prefetch=256)
        # Declaring the queue here also makes it exist (durable, bound) before
        # moderation's first decision, even if moderation starts first later.
        await self.bus.consume(ban_decisions(), self.handle_decision, prefetch=DECISIONS_PREFETCH,
                               is_transient=is_transient_db_error)
        self._tasks = [
            asyncio.create_task(self._every(self.settings.poll_interval_seconds, self.poll), name="ban-poll"),
            asyncio.create_task(self._every(SWEEP_SECONDS, self.sweep), name="ban-sweep"),
            asyncio.create_task(self._every(self.settings.outbox_interval_seconds, self.run_outbox),
                                name="ban-outbox"),
            asyncio.create_task(self.flagger.run(), name="ban-evader-flags"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.bus.close()
        if self.engine is not None:
            await self.engine.dispose()

    async def _load_index(self) -> None:
        """Every ban in force, into memory, before the gRPC server answers.
        The change log's position is read first: whatever changes while the
        bans load is read again by the first poll."""
        started = time.monotonic()
        self.cursor = ChangeCursor(await self.store.last_change_id())
        async for batch in self.store.active_bans(now_ms=self.clock()):
            self.index.load(batch, self.clock())
        # A million bans are a million long-lived objects: keep them out of
        # the garbage collector's full passes (which would stall CheckBan).
        gc.collect()
        gc.freeze()
        took = time.monotonic() - started
        self.metrics.index_loaded.set(took)
        self.metrics.index_bans.set(len(self.index))
        log.info("ban index loaded", extra={"bans": len(self.index), "seconds": round(took, 2),
                                            "change_position": self.cursor.position})

    # ------------------------------------------------------------ keeping the index current

    def _apply(self, bans: Iterable[Ban], source: str) -> None:
        now = self.clock()
        changed = sum(self.index.apply(ban, now) for ban in bans)
        if changed:
            self.metrics.index_updates.labels(source).inc(changed)
            self.metrics.index_bans.set(len(self.index))

    async def changed(self, bans: list[Ban], change: str) -> None:
        """This replica issued or lifted these bans (stored and committed):
        into its own index at once, then announced. A failed announcement is
        left to the outbox; the caller gets its answer either way."""
        self._apply(bans, "local")
        for ban in bans:
            with contextlib.suppress(AnnouncementFailed):
                await self.announcer.announce(ban, change)

    async def handle_index_event(self, envelope: events_pb2.Envelope) -> None:
        """A ban issued or lifted by any replica (this one included)."""
        field = envelope.WhichOneof("event")
        if field not in ("ban_issued", "ban_lifted"):
            raise PoisonMessage(f"{field} event on a ban index queue; expected ban_issued or ban_lifted")
        try:
            ban = ban_from_proto(getattr(envelope, field).ban)
        except ValueError as exc:
            raise PoisonMessage(str(exc)) from None
        if field == "ban_lifted" and ban.lifted_at_ms is None:
            raise PoisonMessage(f"ban_lifted for ban {ban.ban_id} without lifted_at_unix_ms")
        self._apply([ban], "event")

    async def poll(self) -> None:
        """Read the change log past the cursor into the index."""
        changes = await self.store.changes_after(self.cursor.position)
        if not changes:
            return
        self._apply((change.ban for change in changes), "poll")
        self.cursor.advance([change.change_id for change in changes], self.clock())

    async def sweep(self) -> None:
        dropped = self.index.sweep(self.clock())
        if dropped:
            self.metrics.index_updates.labels("expiry").inc(dropped)
            self.metrics.index_bans.set(len(self.index))

    # ------------------------------------------------------------ the outbox

    async def run_outbox(self) -> None:
        """Announce the changes, and publish the suspected evaders, that the
        broker has not confirmed (a call's own announcement gets a head start
        of its announce timeout)."""
        older_than = self.clock() - int(2 * self.settings.announce_timeout_seconds * 1000)
        for change in await self.store.unannounced(older_than_ms=older_than):
            try:
                await self.announcer.announce(change.ban, change.change)
            except AnnouncementFailed:
                return  # the broker is away: next round
            await self.store.mark_change_announced(change.change_id)
        for flag in await self.store.unpublished_flags(older_than_ms=older_than):
            if not await self.flagger.publish(flag):
                return

    async def _mark_announced(self, ban_id: str, change: str) -> None:
        # The announcement went out; failing to note it only means the
        # outbox announces it once more.
        try:
            await self.store.mark_announced(ban_id, change)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not mark a ban announced", extra={"ban_id": ban_id, "error": repr(exc)})

    async def _every(self, seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` every `seconds` for as long as the service runs; a
        failed round (the database away) is logged and the next one tries."""
        name = getattr(work, "__name__", "work")
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("%s failed; next round in %s s", name, seconds, extra={"error": repr(exc)})

    # ------------------------------------------------------------ decisions

    async def handle_decision(self, envelope: events_pb2.Envelope) -> None:
        """Apply a decision, then announce its bans. The runtime acks after
        this returns, i.e. after the commit; an announcement the broker did
        not confirm is left to the outbox."""
        field = envelope.WhichOneof("event")
        if field != "decision_made":
            raise PoisonMessage(f"{field} event on the ban decisions queue; expected decision_made")
        try:
            outcome = await retry_transient(
                lambda: self.store.apply_decision(envelope.decision_made, envelope.event_id),
                within=self.settings.store_retry_seconds, what="applying a decision")
        except InvalidDecision as exc:
            raise PoisonMessage(str(exc)) from None

        plan = outcome.plan
        result = "duplicate" if outcome.duplicate else "applied"
        self.metrics.decisions.labels(plan.action, result).inc()
        log.info("decision %s", result, extra={
            "decision_id": plan.decision_id, "action": plan.action, "event_id": envelope.event_id,
            "penalty": plan.penalty, "strike_number": plan.strike_number,
            "bans": [ban.ban_id for ban in outcome.bans]})
        if outcome.duplicate:
            # One strike, one set of bans: the first delivery made them (and
            # announced them, or left them to the outbox). Into the index
            # again in case this replica missed them; idempotent.
            self._apply(outcome.bans, "local")
            return
        self.metrics.penalties.labels(_penalty_label(plan.penalty)).inc()
        for ban in outcome.bans:
            self.metrics.bans_issued.labels(category_name(ban.category)).inc()
        await self.changed(outcome.bans, "issue")


def _penalty_label(penalty: str) -> str:
    if not penalty:
        return "none"
    if penalty == "warning":
        return "warning"
    return "permanent_ban" if penalty.startswith("permanent") else "timed_ban"
