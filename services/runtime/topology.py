"""The RabbitMQ topology, declared idempotently by each service at start.

- `parley.events`: topic exchange for domain events, key "<service>.<event>".
- `parley.relay`: direct exchange; each gateway replica's queue is bound by its
  instance id, so a message for a peer on another replica goes straight there.
- Each consumer queue `<consumer>.<what>` has a dead-letter queue
  `<queue>.dlq`; the queue's own dead-lettering (delivery limit, overflow)
  lands there too.
- Enforcement-critical queues are durable quorum queues.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from enum import Enum

EVENTS_EXCHANGE = "parley.events"
RELAY_EXCHANGE = "parley.relay"

# A quorum queue hands a message to the dead-letter queue after this many
# failed deliveries: a message that crashes its consumer cannot loop forever.
DELIVERY_LIMIT = 5


class QueueKind(Enum):
    QUORUM = "quorum"        # replicated, durable: enforcement events
    DURABLE = "durable"      # classic, survives a broker restart
    TRANSIENT = "transient"  # classic, goes away when unused (per-replica queues)


@dataclass(frozen=True)
class QueueSpec:
    name: str
    kind: QueueKind
    bindings: tuple[tuple[str, str], ...]  # (exchange, routing key)
    dead_letter_queue: str = ""            # default: "<name>.dlq"
    single_active_consumer: bool = False   # one consumer at a time; others stand by
    expires_ms: int | None = None          # delete the queue after this long unused
    max_length: int | None = None          # drop the oldest past this many
    extra_arguments: dict = field(default_factory=dict)
    label: str = ""                        # metric label; default: the name

    @property
    def metric_label(self) -> str:
        return self.label or self.name

    @property
    def dlq(self) -> str:
        return self.dead_letter_queue or f"{self.name}.dlq"

    def arguments(self) -> dict:
        args: dict = {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dlq,
        }
        if self.kind is QueueKind.QUORUM:
            args["x-queue-type"] = "quorum"
            args["x-delivery-limit"] = DELIVERY_LIMIT
        if self.single_active_consumer:
            args["x-single-active-consumer"] = True
        if self.expires_ms is not None:
            args["x-expires"] = self.expires_ms
        if self.max_length is not None:
            args["x-max-length"] = self.max_length
        args.update(self.extra_arguments)
        return args

    def dlq_arguments(self) -> dict:
        return {"x-queue-type": "quorum"} if self.kind is QueueKind.QUORUM else {}


# Gateways and matchers must agree on it (PARLEY_MATCHER_PARTITIONS).
DEFAULT_MATCHER_PARTITIONS = 8


def matcher_partition(mode: int, age_band: int, language: str, partitions: int) -> int:
    """The partition of a pool key: stable across processes and restarts."""
    return zlib.crc32(f"{mode}|{age_band}|{language}".encode()) % partitions


def match_routing_key(event: str, partition: int) -> str:
    """`event` is "match_requested" or "match_cancelled"."""
    return f"gateway.{event}.p{partition}"


def matcher_requests(partition: int) -> QueueSpec:
    """One queue per partition. Single active consumer: every matcher replica
    subscribes, one at a time receives; when it dies its unacked tickets
    return to the queue and the next replica takes over with them."""
    return QueueSpec(
        name=f"matcher.requests.p{partition}",
        kind=QueueKind.DURABLE,
        bindings=((EVENTS_EXCHANGE, match_routing_key("match_requested", partition)),
                  (EVENTS_EXCHANGE, match_routing_key("match_cancelled", partition))),
        dead_letter_queue="matcher.requests.dlq",
        label="matcher.requests",
        single_active_consumer=True,
    )


def matcher_members(instance_id: str) -> QueueSpec:
    """Each matcher replica hears every replica's heartbeat."""
    return QueueSpec(
        name=f"matcher.members.{instance_id}",
        kind=QueueKind.TRANSIENT,
        bindings=((EVENTS_EXCHANGE, "matcher.heartbeat"),),
        dead_letter_queue="matcher.members.dlq",
        label="matcher.members",
        expires_ms=30_000,
        max_length=10_000,
    )


def gateway_relay(instance_id: str) -> QueueSpec:
    """One per gateway replica: peer traffic for its sessions, match results,
    and every ban and lift (a ban must reach every gateway)."""
    return QueueSpec(
        name=f"gateway.relay.{instance_id}",
        kind=QueueKind.TRANSIENT,
        bindings=((RELAY_EXCHANGE, instance_id),
                  (EVENTS_EXCHANGE, "ban.issued"),
                  (EVENTS_EXCHANGE, "ban.lifted")),
        dead_letter_queue="gateway.relay.dlq",
        label="gateway.relay",
        # A replica that dies leaves no queue behind.
        expires_ms=60_000,
    )


def moderation_reports() -> QueueSpec:
    return QueueSpec(name="moderation.reports", kind=QueueKind.QUORUM,
                     bindings=((EVENTS_EXCHANGE, "gateway.report_filed"),))


def moderation_suspicions() -> QueueSpec:
    """Suspected ban evaders, from the ban service, for human review."""
    return QueueSpec(name="moderation.suspicions", kind=QueueKind.QUORUM,
                     bindings=((EVENTS_EXCHANGE, "ban.evader_suspected"),))


def moderation_snapshots() -> QueueSpec:
    # Video frames are ephemeral and heavy: a short bounded queue; under
    # overload the oldest frames go first (newer ones are coming anyway).
    return QueueSpec(name="moderation.snapshots", kind=QueueKind.DURABLE,
                     bindings=((EVENTS_EXCHANGE, "gateway.snapshot_sent"),),
                     max_length=10_000)


def moderation_messages() -> QueueSpec:
    # Chat text is ephemeral: bounded, and the oldest goes first under load.
    return QueueSpec(name="moderation.messages", kind=QueueKind.DURABLE,
                     bindings=((EVENTS_EXCHANGE, "gateway.message_sent"),),
                     max_length=100_000)


# Chat lines sharded by conversation, so that each conversation's state lives
# in one moderation replica: `parley.events` (key gateway.message_sent) is
# bound to a consistent-hash exchange (RabbitMQ's rabbitmq_consistent_hash_exchange
# plugin) that hashes the header the gateway sets to the match id, and each
# replica binds a queue of its own to it. What no replica's queue takes (none
# is running) goes to the alternate exchange and waits in `moderation.messages`
# (bounded), which every replica also drains. Without the plugin, moderation
# binds `moderation.messages` to the events exchange directly (one shared
# queue). The moderation service declares all of it (services/moderation/sharding.py).
MODERATION_MESSAGES_EXCHANGE = "parley.moderation.messages"
MODERATION_MESSAGES_UNROUTED_EXCHANGE = "parley.moderation.messages.unrouted"
MATCH_ID_HEADER = "x-parley-match-id"


def moderation_message_shard(instance_id: str) -> QueueSpec:
    """One per moderation replica, bound with weight 1 to the consistent-hash
    exchange: the chat lines of its share of the conversations."""
    return QueueSpec(
        name=f"moderation.messages.{instance_id}",
        kind=QueueKind.TRANSIENT,
        bindings=((MODERATION_MESSAGES_EXCHANGE, "1"),),
        dead_letter_queue="moderation.messages.dlq",
        label="moderation.messages",
        # A replica that stops unbinds and deletes it; one that dies stops
        # taking its share soon after (the ring gives its conversations to
        # the others): long enough to ride out a reconnection.
        expires_ms=15_000,
        max_length=100_000,
    )


def ban_decisions() -> QueueSpec:
    return QueueSpec(name="ban.decisions", kind=QueueKind.QUORUM,
                     bindings=((EVENTS_EXCHANGE, "moderation.decision_made"),))


# Watch bans (address bans that only flag suspected evaders, see ban.proto)
# are announced to ban replicas only: a gateway never ends a session for one.
BAN_WATCH_ISSUED = "ban.watch_issued"
BAN_WATCH_LIFTED = "ban.watch_lifted"


def ban_index(instance_id: str) -> QueueSpec:
    """One per ban replica: every ban issued or lifted by any replica, to
    keep its CheckBan index current (a poll of the store backs it up)."""
    return QueueSpec(
        name=f"ban.index.{instance_id}",
        kind=QueueKind.TRANSIENT,
        bindings=((EVENTS_EXCHANGE, "ban.issued"), (EVENTS_EXCHANGE, "ban.lifted"),
                  (EVENTS_EXCHANGE, BAN_WATCH_ISSUED), (EVENTS_EXCHANGE, BAN_WATCH_LIFTED)),
        dead_letter_queue="ban.index.dlq",
        label="ban.index",
        expires_ms=60_000,
    )
