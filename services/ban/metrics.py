"""The ban service's Prometheus series (parley_ban_...). Labels are bounded:
results, categories and actions, never a device token or a ban id."""
from __future__ import annotations

from services.runtime.metrics import Metrics


class BanMetrics:
    def __init__(self) -> None:
        metrics = Metrics("ban")
        self.checks = metrics.counter("checks_total", "CheckBan answers",
                                      ["result"])  # banned | clear | suspected
        self.check_duration = metrics.histogram(
            "check_duration_seconds", "Time to answer CheckBan, inside the service",
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1))
        self.bans_issued = metrics.counter("bans_issued_total", "Bans issued", ["category"])
        self.bans_lifted = metrics.counter("bans_lifted_total", "Bans lifted")
        self.decisions = metrics.counter(
            "decisions_total", "Moderation decisions handled", ["action", "outcome"])  # applied | duplicate
        self.penalties = metrics.counter(
            "penalties_total", "What applied decisions came to on the ladder",
            ["penalty"])  # none | warning | timed_ban | permanent_ban
        # The ban stands (CheckBan enforces it at the next connect, the
        # outbox announces it later) but live sessions were not told yet.
        self.announce_failures = metrics.counter(
            "announce_failures_total", "ban.issued / ban.lifted events that could not be published",
            ["event"])
        self.index_bans = metrics.gauge("index_bans", "Bans in this replica's CheckBan index")
        self.index_updates = metrics.counter(
            "index_updates_total", "Changes to the CheckBan index, by where they came from",
            ["source"])  # local | event | poll | expiry
        self.index_loaded = metrics.gauge(
            "index_load_seconds", "How long loading the index from the store took at start")
        self.suspicions = metrics.counter(
            "suspected_evaders_total", "Suspected evaders, by what became of them",
            ["outcome"])  # published | duplicate | failed | publish_failed | backlog_full
        self.appeals = metrics.counter("appeals_total", "Appeals filed and decided",
                                       ["event"])  # filed | upheld | lifted
