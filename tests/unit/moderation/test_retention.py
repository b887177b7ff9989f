"""The retention clock: when a case's evidence may be purged."""
from __future__ import annotations

import pytest

from services.moderation.retention import DAY_MS, Retention, purgeable

T0 = 1_700_000_000_000


def test_a_decided_case_is_kept_ninety_days_by_default_and_an_escalated_one_a_year():
    retention = Retention()
    assert retention.retain_until(T0, escalated=False) == T0 + 90 * DAY_MS
    assert retention.retain_until(T0, escalated=True) == T0 + 365 * DAY_MS


def test_the_periods_are_configurable_but_child_safety_never_under_a_year():
    assert Retention(30, 400).retain_until(T0, escalated=False) == T0 + 30 * DAY_MS
    assert Retention(30, 400).retain_until(T0, escalated=True) == T0 + 400 * DAY_MS
    with pytest.raises(ValueError, match="365"):
        Retention(30, 364)
    with pytest.raises(ValueError, match="one day"):
        Retention(0, 365)


def test_a_date_already_set_is_never_brought_forward():
    assert Retention().retain_until(T0, escalated=False, current_ms=T0 + 200 * DAY_MS) == T0 + 200 * DAY_MS


def test_only_decided_unheld_cases_past_their_date_are_purgeable():
    due = dict(decided=True, retain_until_ms=T0, legal_hold=False, purged=False)
    assert purgeable(**due, now_ms=T0)
    assert purgeable(**due, now_ms=T0 + 1)
    assert not purgeable(**due, now_ms=T0 - 1)
    assert not purgeable(**{**due, "decided": False}, now_ms=T0 + DAY_MS)   # open: never
    assert not purgeable(**{**due, "legal_hold": True}, now_ms=T0 + 10_000 * DAY_MS)
    assert not purgeable(**{**due, "purged": True}, now_ms=T0 + DAY_MS)
    assert not purgeable(**{**due, "retain_until_ms": None}, now_ms=T0 + DAY_MS)
