"""What the store tests share: a clock the test moves, and filings as the
gateway, the ban service and the detectors send them."""
from __future__ import annotations

from parley.v1 import ban_pb2
from parley.v1 import common_pb2 as c
from parley.v1 import events_pb2
from services.moderation import review
from services.moderation.records import Identity

T0 = 1_700_000_000_000


class StepClock:
    """A clock that moves one second per reading: every write is later than
    the last. `advance` jumps ahead (a lease expiring, a retention period)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += 1000
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def make_report(report_id: str = "report-1", category: int = c.CATEGORY_HARASSMENT,
                lines: int = 3, hashes: int = 0, *, reporter: str = "dev-reporter", reported: str = "dev-reported",
                match_id: str | None = None) -> events_pb2.ReportFiled:
    report = events_pb2.ReportFiled(
        report_id=report_id,
        reporter=c.Identity(device_token=reporter, ip_hash="ip-a", ip_prefix_hash="pfx-a"),
        reported=c.Identity(device_token=reported, ip_hash="ip-b", ip_prefix_hash="pfx-b"),
        # one conversation per report unless a test says otherwise: reports merge per conversation
        match_id=match_id if match_id is not None else f"match-{report_id}", category=category,
        comment="said awful things",
        mode=c.MODE_TEXT, age_band=c.AGE_BAND_ADULT, reported_at_unix_ms=T0 - 5000)
    for i in range(lines):
        report.evidence.add(from_reporter=i % 2 == 0, text=f"line {i}", sent_at_unix_ms=T0 - 10_000 + i)
    report.snapshot_hashes.extend(f"pdq:{i:04x}" for i in range(hashes))
    return report


def make_suspicion(suspicion_id: str = "s1", device: str = "dev-new", ban_id: str = "ban-1"
                   ) -> events_pb2.EvaderSuspected:
    return events_pb2.EvaderSuspected(
        suspicion_id=suspicion_id, identity=c.Identity(device_token=device, ip_hash="ip-banned",
                                                       ip_prefix_hash="pfx-banned"),
        linked_ban_id=ban_id, linked_subject=ban_pb2.Subject(ip_hash="ip-banned"),
        linked_category=c.CATEGORY_HARASSMENT, reason="new device on a banned IP address",
        seen_at_unix_ms=T0 - 1000)


def make_escalation(escalation_id: str = "v1", *, subject: str = "dev-reported", match_id: str = "match-x",
                    category: int = c.CATEGORY_CHILD_SAFETY, risk: float = 0.9, **overrides) -> review.Escalation:
    fields = dict(escalation_id=escalation_id, detector="text.grooming",
                  subject=Identity(subject, "ip-b", "pfx-b"), category=category, risk_score=risk,
                  summary="asked a minor for photos", match_id=match_id, mode=c.MODE_TEXT,
                  age_band=c.AGE_BAND_MINOR,
                  lines=(review.Line("how old are you", T0 - 3000),
                         review.Line("13", T0 - 2000, from_subject=False),
                         review.Line("send a photo", T0 - 1000)),
                  snapshot_hashes=("pdq:ffee",), occurred_at_ms=T0 - 500)
    fields.update(overrides)
    return review.Escalation(**fields)
