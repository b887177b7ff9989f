"""The ban service's Prometheus series (parley_ban_...). Labels are bounded:
results, categories and actions, never a device token or a ban id."""
from __future__ import annotations

from services.runtime.metrics import Metrics


class BanMetrics:
    def __init__(self) -> None:
        metrics = Metrics("ban")
        self.checks = metrics.counter("checks_total", "CheckBan answers", ["result"])  # banned | clear
        self.check_duration = metrics.histogram(
            "check_duration_seconds", "Time to answer CheckBan",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
        self.bans_issued = metrics.counter("bans_issued_total", "Bans issued", ["category"])
        self.bans_lifted = metrics.counter("bans_lifted_total", "Bans lifted")
        self.decisions = metrics.counter(
            "decisions_total", "Moderation decisions handled", ["action", "outcome"])  # applied | duplicate
        # The ban stands (CheckBan enforces it at the next connect) but live
        # sessions were not told: worth an alert.
        self.announce_failures = metrics.counter(
            "announce_failures_total", "ban.issued / ban.lifted events that could not be published",
            ["event"])
