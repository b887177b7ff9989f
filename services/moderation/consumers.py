"""The detectors on what moderation receives: every chat line
(MessageObserved, in batches through services/moderation/batching.py) and
every video snapshot (SnapshotObserved), each verdict carried out by the
Enforcer (services/moderation/actions.py).

Chat lines: a batch is what arrived within PARLEY_MODERATION_MESSAGE_BATCH_WAIT_MS
(at most PARLEY_MODERATION_MESSAGE_BATCH); TextModerator.observe_batch judges it on
the event loop (PARLEY_MODERATION_CLASSIFY_IN_THREAD moves it to one worker
thread: the classifier is pure Python, so a thread only adds switching
under the GIL; see README). Then, per verdict: WARN or END_CONVERSATION go
to the user's gateway at once; ESCALATE and REQUEST_BAN are stored (review
item, enforcement record and its decision) in the background, retried
through a database outage, and the batch is acked once judged. (Holding a
line unacked until its escalation is stored was measured: a queue of store
writes then holds back the acks of every line behind it, and one ack frame
per line halves the rate; and a line redelivered after a crash is judged by
a process that has lost the conversation's state anyway.) MASK
and HOLD are counted only: in minors' pools the gateway has masked the line
before relaying it. Shadow rules' findings and actions are counted only.

The detectors keep no text, so the consumer keeps the last
PARLEY_MODERATION_EVIDENCE_LINES lines of each conversation (both sides;
bounded like the detectors' state: at most the policy's max_conversations,
each forgotten after its idle time) as an escalation's evidence.

Snapshots: SnapshotAnalyzer.analyze in a thread pool (it is thread-safe),
PARLEY_MODERATION_SNAPSHOT_WORKERS at once. A bank match
(CATEGORY_KNOWN_BAD_HASH) or nudity in a minors' pool (CATEGORY_CHILD_SAFETY)
is severe: the conversation ends, a top-priority review item holds the frame
(in the evidence vault) and its PDQ hash, and a permanent ban is asked for.
Nudity among adults warns the user and opens a review item, once per
conversation. A frame that is not an image is dead-lettered with the reason.
Each conversation's last snapshot hashes (sha256 and PDQ, per side) are
kept, so that a user's report of that conversation gets the reported side's
hashes attached.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from parley.v1 import common_pb2, events_pb2
from services.moderation import review
from services.moderation.actions import Enforcer
from services.moderation.batching import Batch
from services.moderation.detectors import ObservedMessage
from services.moderation.detectors.base import DETECTOR_CATEGORY
from services.moderation.detectors.moderator import TextModerator, Verdict
from services.moderation.detectors.state import BoundedLRU
from services.moderation.enums import enum_name
from services.moderation.metrics import ModerationMetrics
from services.moderation.policy import TOP_PRIORITY, Action, ActionKind
from services.moderation.records import Identity
from services.moderation.snapshots import SnapshotAnalyzer, SnapshotError, SnapshotVerdict
from services.runtime.envelope import PoisonMessage

log = logging.getLogger(__name__)

Kind = events_pb2.SessionAction.Kind
MAX_LINE_CHARS = 4_000
# Escalations and ban requests waiting to be stored (a database outage):
# past this, new ones are dropped and counted, not queued without end.
MAX_STORE_BACKLOG = 10_000
SNAPSHOT_HASHES_KEPT = 10          # per side of a conversation
MAX_SNAPSHOT_CONVERSATIONS = 50_000
SNAPSHOT_IDLE_MS = 30 * 60 * 1000

NUDITY_NOTICE = "Nudity is not allowed here."


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def lag_seconds(envelope: events_pb2.Envelope) -> float:
    occurred = envelope.occurred_at.ToNanoseconds()
    return max(0.0, (time.time_ns() - occurred) / 1e9) if occurred else 0.0


class MessageIntake:
    def __init__(self, moderator: TextModerator, enforcer: Enforcer, metrics: ModerationMetrics, *,
                 evidence_lines: int = 30, classify_in_thread: bool = False) -> None:
        self.moderator = moderator
        self.enforcer = enforcer
        self.metrics = metrics
        self.evidence_lines = evidence_lines
        limits = moderator.config.limits
        # match id -> its last lines: (session id, text, sent at ms)
        self.conversations: BoundedLRU[str, deque[tuple[str, str, int]]] = BoundedLRU(
            limits.max_conversations, int(limits.conversation_idle_s * 1000))
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="classify") if classify_in_thread else None
        self._tasks: set[asyncio.Task] = set()
        self._store_work: set[asyncio.Task] = set()
        self._observed_children: dict[tuple[int, int], object] = {}
        self._lag = metrics.event_lag.labels("message")
        self._batch_seconds = metrics.classification_seconds.labels("message_batch")
        self._detections: dict[tuple[str, int, str], object] = {}

    def _new_lines(self) -> deque:
        return deque(maxlen=self.evidence_lines)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ a batch

    async def handle(self, batch: Batch) -> None:
        now_ms = _wall_ms()
        observed: list[ObservedMessage] = []
        indexes: list[int] = []
        for index, delivery in enumerate(batch.deliveries):
            m = delivery.envelope.message_observed
            self._count_observed(m.mode, m.age_band)
            if not m.match_id:
                # every conversation's state is keyed by it
                batch.dead_letter(index, "message_observed without match_id")
                continue
            self.conversations.get_or_create(m.match_id, now_ms, self._new_lines).append(
                (m.session.session_id, m.text[:MAX_LINE_CHARS], m.sent_at_unix_ms))
            observed.append(ObservedMessage(
                m.match_id, m.session.session_id, m.device_token, m.mode, m.age_band, m.text, m.sent_at_unix_ms,
                m.typing_started_at_unix_ms, m.connected_at_unix_ms))
            indexes.append(index)
        if not observed:
            return
        started = time.perf_counter()
        if self._executor is not None:
            verdicts = await asyncio.get_running_loop().run_in_executor(self._executor, self._classify, observed)
        else:
            verdicts = self._classify(observed)
        self._batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(observed))
        self.metrics.messages_classified.inc(len(observed))
        self.metrics.conversations_tracked.set(len(self.conversations))
        for index, verdict in zip(indexes, verdicts):
            delivery = batch.deliveries[index]
            if verdict is None:
                batch.dead_letter(index, "the text detectors failed on this line (see the log)")
                continue
            if verdict.signals or verdict.shadow_signals:
                self._count_findings(verdict)
            if verdict.actions:
                self._act(delivery.envelope, verdict)
            if verdict.shadow_actions:
                for action in verdict.shadow_actions:
                    self.metrics.shadow_actions.labels(action.kind.value).inc()
            self._lag.observe(lag_seconds(delivery.envelope))

    def _classify(self, observed: list[ObservedMessage]) -> list[Verdict | None]:
        try:
            return self.moderator.observe_batch(observed)
        except Exception:  # noqa: BLE001 - a detector bug: find the line, judge the others
            log.exception("text detectors failed on a batch; judging its lines one by one")
        verdicts: list[Verdict | None] = []
        for message in observed:
            try:
                verdicts.append(self.moderator.observe(message))
            except Exception:  # noqa: BLE001
                log.exception("text detectors failed on a line", extra={"match_id": message.match_id})
                verdicts.append(None)
        return verdicts

    def _count_observed(self, mode: int, age_band: int) -> None:
        child = self._observed_children.get((mode, age_band))
        if child is None:
            child = self._observed_children[(mode, age_band)] = self.metrics.messages_observed.labels(
                enum_name(common_pb2.Mode, mode), enum_name(common_pb2.AgeBand, age_band))
        child.inc()

    def _count_findings(self, verdict: Verdict) -> None:
        for mode, signals in (("live", verdict.signals), ("shadow", verdict.shadow_signals)):
            seen = set()
            for signal in signals:
                if mode == "live" and signal.score <= 0:
                    continue  # a cue or a remembered age: not a finding by itself
                self.metrics.rule_hits.labels(signal.rule, mode).inc()
                key = (signal.detector, signal.category or DETECTOR_CATEGORY.get(signal.detector, 0), mode)
                if key in seen:
                    continue
                seen.add(key)
                child = self._detections.get(key)
                if child is None:
                    child = self._detections[key] = self.metrics.detections.labels(
                        key[0], enum_name(common_pb2.Category, key[1]), mode)
                child.inc()

    # ------------------------------------------------------------ a verdict

    def _act(self, envelope: events_pb2.Envelope, verdict: Verdict) -> None:
        """Send the session action, and store the escalation and the ban
        request, in the background (the batch goes on)."""
        m = envelope.message_observed
        kinds = {action.kind: action for action in verdict.actions}
        for action in verdict.actions:
            self.enforcer.count(action.kind.value)
        end, warn = kinds.get(ActionKind.END_CONVERSATION), kinds.get(ActionKind.WARN)
        if end is not None or warn is not None:
            chosen = end or warn
            kind = Kind.KIND_END_CONVERSATION if end is not None else Kind.KIND_WARN
            self._spawn(self.enforcer.session_action(m.session, m.match_id, kind, chosen.category, chosen.notice))
            log.info("session action", extra={"session_id": m.session.session_id, "match_id": m.match_id,
                                               "kind": Kind.Name(kind), "rules": list(chosen.rules),
                                               "severe": chosen.severe})
        escalate, ban = kinds.get(ActionKind.ESCALATE), kinds.get(ActionKind.REQUEST_BAN)
        if escalate is None and ban is None:
            return
        if len(self._store_work) >= MAX_STORE_BACKLOG:
            self.metrics.actions_dropped.inc()
            log.error("too many escalations waiting for the store; dropping one", extra={
                "match_id": m.match_id, "waiting": len(self._store_work)})
            return
        # the evidence as it is now, before later lines come in
        lines = self._evidence(m.match_id, m.session.session_id) if escalate is not None else ()
        self._spawn(self._escalate_and_ban(envelope, verdict, escalate, ban, lines), self._store_work)

    def _spawn(self, coroutine, into: set | None = None) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        tasks = self._tasks if into is None else into
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(_log_failure)

    async def drain(self, timeout: float = 10.0) -> None:
        """Let the actions in hand finish (at stop, before the store closes)."""
        pending = self._tasks | self._store_work
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    async def _escalate_and_ban(self, envelope: events_pb2.Envelope, verdict: Verdict, escalate: Action | None,
                                ban: Action | None, lines: tuple[review.Line, ...]) -> None:
        m = envelope.message_observed
        subject = Identity(m.device_token)
        item_id = ""
        if escalate is not None:
            intake = await self.enforcer.escalate(review.Escalation(
                escalation_id=f"text:{envelope.event_id}", detector=escalate.detector, subject=subject,
                category=escalate.category, risk_score=min(1.0, max(0.0, escalate.risk_score)),
                summary=_summary(escalate, verdict), match_id=m.match_id, mode=m.mode, age_band=m.age_band,
                lines=lines,
                child_safety=escalate.severe and escalate.category in (common_pb2.CATEGORY_CHILD_SAFETY,
                                                                       common_pb2.CATEGORY_KNOWN_BAD_HASH),
                priority_floor=escalate.priority, occurred_at_ms=m.sent_at_unix_ms))
            item_id = intake.item.item_id
        if ban is not None:
            await self.enforcer.request_ban(
                record_id=f"ban:text:{envelope.event_id}", detector=ban.detector, subject=subject,
                category=ban.category, permanent=ban.permanent, match_id=m.match_id, mode=m.mode,
                age_band=m.age_band, why=_summary(ban, verdict), review_item_id=item_id,
                occurred_at_ms=m.sent_at_unix_ms)

    def _evidence(self, match_id: str, subject_session: str) -> tuple[review.Line, ...]:
        lines = self.conversations.get(match_id, _wall_ms())
        if lines is None:
            return ()
        return tuple(review.Line(text, sent_at, from_subject=session_id == subject_session)
                     for session_id, text, sent_at in lines)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("moderation action failed", exc_info=task.exception())


def _summary(action: Action, verdict: Verdict) -> str:
    rules = ", ".join(action.rules) or "conversation risk"
    severe = "severe; " if action.severe else ""
    return f"{severe}rules {rules}; risk {verdict.risk.total:.2f}"


# ---------------------------------------------------------------- snapshots

class _SnapshotConversation:
    __slots__ = ("hashes", "acted")

    def __init__(self) -> None:
        self.hashes: dict[str, deque[str]] = {}     # session id -> recent "sha256:..." and "pdq:..."
        self.acted: set[tuple[str, int]] = set()    # (session id, category) already acted on


class SnapshotIntake:
    def __init__(self, analyzer: SnapshotAnalyzer, enforcer: Enforcer, metrics: ModerationMetrics, *,
                 workers: int = 2) -> None:
        self.analyzer = analyzer
        self.enforcer = enforcer
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="snapshot")
        self.conversations: BoundedLRU[str, _SnapshotConversation] = BoundedLRU(
            MAX_SNAPSHOT_CONVERSATIONS, SNAPSHOT_IDLE_MS)
        self._lag = metrics.event_lag.labels("snapshot")
        self._seconds = metrics.classification_seconds.labels("snapshot")

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def recent_hashes(self, match_id: str, session_id: str) -> list[str]:
        """The last snapshot hashes of one side of a conversation, oldest first."""
        conversation = self.conversations.get(match_id, _wall_ms())
        if conversation is None:
            return []
        return list(conversation.hashes.get(session_id, ()))

    async def handle(self, envelope: events_pb2.Envelope) -> None:
        """Bus handler for moderation.snapshots: acked when this returns."""
        field = envelope.WhichOneof("event")
        if field != "snapshot_observed":
            raise PoisonMessage(f"{field} on the snapshots queue, expected snapshot_observed")
        s = envelope.snapshot_observed
        started = time.perf_counter()
        try:
            verdict = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.analyzer.analyze, s.jpeg, s.age_band, s.mode or common_pb2.MODE_VIDEO)
        except SnapshotError as exc:
            self.metrics.snapshots_classified.labels("invalid").inc()
            raise PoisonMessage(f"snapshot {exc.reason}: {exc}") from None
        self._seconds.observe(time.perf_counter() - started)
        outcome = "severe" if verdict.severe else "flagged" if verdict.flagged else "clean"
        self.metrics.snapshots_classified.labels(outcome).inc()
        self._remember(s, verdict)
        if verdict.flagged:
            await self._act(envelope, verdict)
        self._lag.observe(lag_seconds(envelope))

    def _remember(self, s: events_pb2.SnapshotObserved, verdict: SnapshotVerdict) -> None:
        if not s.match_id:
            return
        conversation = self.conversations.get_or_create(s.match_id, _wall_ms(), _SnapshotConversation)
        side = conversation.hashes.get(s.session.session_id)
        if side is None:
            if len(conversation.hashes) >= 4:
                return
            side = conversation.hashes[s.session.session_id] = deque(maxlen=2 * SNAPSHOT_HASHES_KEPT)
        if s.sha256:
            side.append(f"sha256:{s.sha256}")
        side.append(f"pdq:{verdict.pdq_hex}")

    async def _act(self, envelope: events_pb2.Envelope, verdict: SnapshotVerdict) -> None:
        s = envelope.snapshot_observed
        finding = verdict.findings[0]
        matched = bool(verdict.matches) and finding.category == common_pb2.CATEGORY_KNOWN_BAD_HASH
        detector = "snapshot.hash_bank" if matched else "snapshot.nudity"
        self.metrics.detections.labels("hash_bank" if matched else "nudity",
                                       enum_name(common_pb2.Category, finding.category), "live").inc()
        conversation = self.conversations.get(s.match_id, _wall_ms()) if s.match_id else None
        key = (s.session.session_id, finding.category)
        if conversation is not None and key in conversation.acted:
            return  # acted on this side of this conversation for this already
        subject = Identity(s.identity.device_token, s.identity.ip_hash, s.identity.ip_prefix_hash)
        hashes = (f"pdq:{verdict.pdq_hex}",) + ((f"sha256:{s.sha256}",) if s.sha256 else ())
        reasons = "; ".join(f.reason for f in verdict.findings)
        log.warning("snapshot flagged", extra={
            "session_id": s.session.session_id, "match_id": s.match_id, "severe": finding.severe,
            "category": enum_name(common_pb2.Category, finding.category), "reason": reasons})
        if finding.severe:
            self.enforcer.count(ActionKind.END_CONVERSATION.value)
            await self.enforcer.session_action(s.session, s.match_id, Kind.KIND_END_CONVERSATION, finding.category,
                                               "This conversation was ended: this video is not allowed here.")
        else:
            self.enforcer.count(ActionKind.WARN.value)
            await self.enforcer.session_action(s.session, s.match_id, Kind.KIND_WARN, finding.category,
                                               NUDITY_NOTICE)
        self.enforcer.count(ActionKind.ESCALATE.value)
        score = verdict.nudity.score if verdict.nudity is not None and not matched else 1.0
        intake = await self.enforcer.escalate(review.Escalation(
            escalation_id=f"snapshot:{envelope.event_id}", detector=detector, subject=subject,
            category=finding.category, risk_score=1.0 if finding.severe else min(1.0, max(0.0, score)),
            summary=(("severe; " if finding.severe else "") + reasons)[:review.MAX_COMMENT_CHARS],
            match_id=s.match_id, mode=s.mode, age_band=s.age_band, snapshot_hashes=hashes, snapshots=(s.jpeg,),
            child_safety=finding.severe, priority_floor=TOP_PRIORITY if finding.severe else 0,
            occurred_at_ms=s.taken_at_unix_ms))
        if finding.severe:
            self.enforcer.count(ActionKind.REQUEST_BAN.value)
            await self.enforcer.request_ban(
                record_id=f"ban:snapshot:{envelope.event_id}", detector=detector, subject=subject,
                category=finding.category, permanent=True, match_id=s.match_id, mode=s.mode,
                age_band=s.age_band, why=reasons, review_item_id=intake.item.item_id,
                occurred_at_ms=s.taken_at_unix_ms)
        if conversation is not None:
            # once done (a failure before this is retried in full: the ids are stable)
            conversation.acted.add(key)


def attach_snapshot_hashes(report: events_pb2.ReportFiled, recent: list[str]) -> events_pb2.ReportFiled:
    """The report with the reported side's recent snapshot hashes added (those
    not there yet, within the review queue's limit)."""
    have = set(report.snapshot_hashes)
    extra = [h for h in recent if h not in have]
    room = review.MAX_SNAPSHOT_HASHES - len(report.snapshot_hashes)
    if not extra or room <= 0:
        return report
    enriched = events_pb2.ReportFiled()
    enriched.CopyFrom(report)
    enriched.snapshot_hashes.extend(extra[-room:])
    return enriched
