from __future__ import annotations

from parley.v1 import common_pb2
from services.matcher.pairing import Pair, PoolKey
from services.runtime.metrics import Metrics

MODES = (common_pb2.MODE_TEXT, common_pb2.MODE_VIDEO)
BANDS = (common_pb2.AGE_BAND_MINOR, common_pb2.AGE_BAND_ADULT)


def mode_name(mode: int) -> str:
    return common_pb2.Mode.Name(mode) if mode in MODES else "MODE_UNKNOWN"


def band_name(band: int) -> str:
    return common_pb2.AgeBand.Name(band) if band in BANDS else "AGE_BAND_UNKNOWN"


class MatcherMetrics:
    """Labels are bounded: mode, age band, pair kind, request kind."""

    def __init__(self) -> None:
        m = Metrics("matcher")
        self.waiting = m.gauge("waiting_users", "Users waiting, by pool", ["mode", "age_band"])
        self.pairs = m.counter("pairs_total", "Pairs made", ["mode", "kind"])
        self.time_to_pair = m.histogram(
            "time_to_pair_seconds", "From a user's match request to their pair", ["mode", "kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 7.5, 10, 30, 60))
        self.requests = m.counter(
            "requests_total", "Match requests by kind (new, renewal, duplicate, requeue, cancel)", ["kind"])
        self.expired = m.counter("tickets_expired_total", "Tickets dropped because their gateway stopped renewing")
        self.partitions_active = m.gauge("partitions_active", "Partitions this replica is working")
        self.partitions_owned = m.gauge("partitions_owned", "Partitions this replica should work")
        self.members = m.gauge("members", "Matcher replicas alive, as this replica sees them")
        self.failovers = m.counter(
            "failovers_total", "Partitions taken over with waiting users handed back by the broker")
        self.rebalances = m.counter("rebalances_total", "Partitions handed to their owner replica")
        self.announce_failures = m.counter("announce_failures_total", "Pairs whose MatchFound could not be sent")

        # label children looked up once, not on every request and pair
        self._requests: dict = {}
        self._paired: dict = {}

    def request(self, kind: str):
        """The requests_total child of `kind`."""
        child = self._requests.get(kind)
        if child is None:
            child = self._requests[kind] = self.requests.labels(kind)
        return child

    def paired(self, pair: Pair, now: float) -> None:
        children = self._paired.get((pair.a.mode, pair.kind))
        if children is None:
            mode = mode_name(pair.a.mode)
            children = self._paired[(pair.a.mode, pair.kind)] = (
                self.pairs.labels(mode, pair.kind.value), self.time_to_pair.labels(mode, pair.kind.value))
        pairs, time_to_pair = children
        pairs.inc()
        for ticket in (pair.a, pair.b):
            time_to_pair.observe(max(0.0, now - ticket.enqueued_at))

    def set_waiting(self, waiting: dict[PoolKey, int]) -> None:
        totals: dict[tuple[int, int], int] = {}
        for (mode, band, _language), count in waiting.items():
            totals[(mode, band)] = totals.get((mode, band), 0) + count
        for mode in MODES:
            for band in BANDS:
                self.waiting.labels(mode_name(mode), band_name(band)).set(totals.get((mode, band), 0))
