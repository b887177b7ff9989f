"""The retention clock of the evidence vault, without I/O.

- An open case (not yet decided) is never purged: its evidence is what the
  moderator needs.
- A decided case keeps its evidence `retention_days` (default 90) after the
  decision, long enough for an appeal.
- A case escalated to child safety keeps it `child_safety_retention_days`
  (at least 365) after the escalation: since the REPORT Act (2024), US law
  asks providers to preserve the contents of a CyberTipline report for one
  year.
- A case under legal hold is never purged, whatever its date; lifting the
  hold lets the clock run again.
"""
from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 3600 * 1000
DEFAULT_RETENTION_DAYS = 90
CHILD_SAFETY_RETENTION_DAYS = 365


@dataclass(frozen=True)
class Retention:
    default_days: int = DEFAULT_RETENTION_DAYS
    child_safety_days: int = CHILD_SAFETY_RETENTION_DAYS

    def __post_init__(self) -> None:
        if self.default_days < 1:
            raise ValueError("retention must be at least one day")
        if self.child_safety_days < CHILD_SAFETY_RETENTION_DAYS:
            raise ValueError(f"child-safety cases are kept at least {CHILD_SAFETY_RETENTION_DAYS} days")

    def retain_until(self, decided_at_ms: int, *, escalated: bool, current_ms: int | None = None) -> int:
        """When the evidence of a case decided (or escalated) at `decided_at_ms`
        may go. Never earlier than a date already set (`current_ms`)."""
        days = self.child_safety_days if escalated else self.default_days
        until = decided_at_ms + days * DAY_MS
        return max(until, current_ms or 0)


def purgeable(*, decided: bool, retain_until_ms: int | None, legal_hold: bool, purged: bool,
              now_ms: int) -> bool:
    """May the retention purge delete this case's evidence now?"""
    if not decided or purged or legal_hold or retain_until_ms is None:
        return False
    return retain_until_ms <= now_ms
