"""Where a moderation replica takes chat lines from (see the topology notes in
services/runtime/topology.py).

Sharded (the default, when the broker has the rabbitmq_consistent_hash_exchange
plugin): `parley.events` --gateway.message_sent--> `parley.moderation.messages`
(x-consistent-hash on the gateway's x-parley-match-id header) --> one queue
per replica, `moderation.messages.<instance>`, so that every line of a
conversation reaches the replica holding that conversation's risk, ages and
recent lines. What the hash exchange cannot route (no replica is up) goes to
its alternate exchange, `parley.moderation.messages.unrouted` (fanout), and
waits in `moderation.messages` (bounded), which every replica also drains:
the gateways never see their chat copies returned, and a restart of the
last replica loses nothing but the oldest lines past the bound.

Shared (no plugin, or PARLEY_MODERATION_SHARD_MESSAGES=false):
`moderation.messages` bound to the events exchange, consumed by every
replica; a conversation's lines are spread over the replicas, so each sees
part of its state (what the detectors decide across lines, such as
grooming, is weaker).

Either way the declarations are idempotent, and switching one way undoes the
other's binding, so a line is never delivered twice."""
from __future__ import annotations

import dataclasses
import logging

import aio_pika
import aiormq

from services.runtime.topology import (EVENTS_EXCHANGE, MATCH_ID_HEADER, MODERATION_MESSAGES_EXCHANGE,
                                       MODERATION_MESSAGES_UNROUTED_EXCHANGE, QueueSpec, moderation_message_shard,
                                       moderation_messages)

log = logging.getLogger(__name__)

MESSAGE_ROUTING_KEY = "gateway.message_sent"
CONSISTENT_HASH = "x-consistent-hash"
_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, OSError, RuntimeError)


@dataclasses.dataclass(frozen=True)
class MessageQueues:
    sharded: bool
    queues: tuple[QueueSpec, ...]   # to consume, in this order
    note: str = ""


def parked_queue() -> QueueSpec:
    """`moderation.messages` as the hash exchange's overflow: fed by the
    alternate exchange only."""
    return dataclasses.replace(moderation_messages(), bindings=((MODERATION_MESSAGES_UNROUTED_EXCHANGE, ""),))


async def declare_message_routing(url: str, instance_id: str, shard: bool = True) -> MessageQueues:
    """Declare the exchanges and bindings the chosen way; the queues
    themselves are declared by their consumers."""
    if shard:
        try:
            await _declare_sharded(url)
            return MessageQueues(True, (moderation_message_shard(instance_id), parked_queue()))
        except _ERRORS as exc:
            note = (f"the broker refused the {CONSISTENT_HASH} exchange ({exc!r}); is the "
                    "rabbitmq_consistent_hash_exchange plugin enabled? Falling back to one shared queue: "
                    "a conversation's lines are spread over the replicas")
            log.error(note)
    else:
        note = "PARLEY_MODERATION_SHARD_MESSAGES=false: one shared queue"
        log.info(note)
    await _declare_shared(url)
    return MessageQueues(False, (moderation_messages(),), note)


async def _declare_sharded(url: str) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel()
        events = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        unrouted = await channel.declare_exchange(MODERATION_MESSAGES_UNROUTED_EXCHANGE,
                                                  aio_pika.ExchangeType.FANOUT, durable=True)
        by_match = await channel.declare_exchange(
            MODERATION_MESSAGES_EXCHANGE, CONSISTENT_HASH, durable=True,
            arguments={"hash-header": MATCH_ID_HEADER, "alternate-exchange": MODERATION_MESSAGES_UNROUTED_EXCHANGE})
        parked = parked_queue()
        queue = await channel.declare_queue(parked.name, durable=True, arguments=parked.arguments())
        await channel.declare_queue(parked.dlq, durable=True, arguments=parked.dlq_arguments())
        await queue.bind(unrouted, "")
        # The shared queue's direct binding (from an unsharded run) would
        # deliver every line twice.
        await queue.unbind(events, MESSAGE_ROUTING_KEY)
        await by_match.bind(events, MESSAGE_ROUTING_KEY)
    finally:
        await connection.close()


async def _declare_shared(url: str) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel()
        await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        try:
            # The hash exchange of a sharded run, if there is one, would
            # deliver every line twice (through its alternate exchange). On a
            # channel of its own: unbinding from a missing exchange closes it.
            probe = await connection.channel()
            underlay = await probe.get_underlay_channel()
            await underlay.exchange_unbind(destination=MODERATION_MESSAGES_EXCHANGE, source=EVENTS_EXCHANGE,
                                           routing_key=MESSAGE_ROUTING_KEY)
            await probe.close()
        except _ERRORS:
            pass  # no such exchange: nothing to undo
    finally:
        await connection.close()
