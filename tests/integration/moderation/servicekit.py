"""What the service tests share: moderators with tokens, a stub that sends
them, reports as the gateway files them, waiting for things that happen
over the broker, and parley-modctl as a process."""
from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

from parley.v1 import common_pb2 as c
from parley.v1 import events_pb2
from parley.v1 import moderation_pb2 as m
from parley.v1 import moderation_pb2_grpc
from services.moderation import auth
from services.runtime import envelope as env

ROOT = Path(__file__).resolve().parents[3]


async def eventually(probe, timeout: float = 8.0, interval: float = 0.1):
    """Call `probe` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {probe.__name__}")
        await asyncio.sleep(interval)


def make_report(category: int = c.CATEGORY_HARASSMENT) -> events_pb2.ReportFiled:
    report = events_pb2.ReportFiled(
        report_id=uuid.uuid4().hex,
        reporter=c.Identity(device_token="dev-reporter", ip_hash="ip-a", ip_prefix_hash="pfx-a"),
        reported=c.Identity(device_token=f"dev-{uuid.uuid4().hex[:8]}", ip_hash="ip-b", ip_prefix_hash="pfx-b"),
        match_id="match-1", category=category, comment="kept insulting me",
        mode=c.MODE_TEXT, age_band=c.AGE_BAND_ADULT, reported_at_unix_ms=int(time.time() * 1000))
    report.evidence.add(from_reporter=True, text="hi", sent_at_unix_ms=1)
    report.evidence.add(from_reporter=False, text="you are an idiot", sent_at_unix_ms=2)
    report.evidence.add(from_reporter=True, text="bye", sent_at_unix_ms=3)
    report.snapshot_hashes.append("pdq:abcd")
    return report


# Moderators of these tests: name -> (token, role). The service knows only
# the tokens' SHA-256 (PARLEY_MODERATION_MODERATOR_TOKENS).
MODERATORS = {"alice": ("alice-token-0001", "moderator"), "bob": ("bob-token-0002", "moderator"),
              "carol": ("carol-token-0003", "child_safety"), "dana": ("dana-token-0004", "admin")}
TOKENS_SETTING = ",".join(auth.entry_line(token, name, role) for name, (token, role) in MODERATORS.items())


class As:
    """A Moderation stub that sends one moderator's token with every call."""

    def __init__(self, stub: moderation_pb2_grpc.ModerationStub, name: str | None) -> None:
        self.stub = stub
        self.metadata = (("authorization", f"Bearer {MODERATORS[name][0]}"),) if name else ()

    def __getattr__(self, method: str):
        call = getattr(self.stub, method)
        return lambda request, **kwargs: call(request, metadata=self.metadata, **kwargs)


def start_moderation(start_service, **overrides):
    return start_service("moderation", PARLEY_MODERATION_MODERATOR_TOKENS=TOKENS_SETTING, **overrides)


async def item_for(api, report_id: str, status: int = m.REVIEW_STATUS_UNSPECIFIED):
    reply = await api.ListReviewItems(m.ListReviewItemsRequest(status=status, limit=500), timeout=5)
    found = [item for item in reply.items if item.report_id == report_id]
    assert len(found) <= 1, f"{len(found)} items for one report"
    return found[0] if found else None


async def wait_listed(api, report_id: str) -> m.ReviewItem:
    async def listed():
        return await item_for(api, report_id, m.REVIEW_STATUS_OPEN)
    return await eventually(listed)


async def take_from_queue(channel, queue_name: str, match, timeout: float = 8.0):
    """Take messages from `queue_name` until `match(message)` is true."""
    queue = await channel.get_queue(queue_name, ensure=True)

    async def next_match():
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            if match(message):
                return message
        return None
    next_match.__name__ = f"a matching message on {queue_name}"
    return await eventually(next_match, timeout)


def decision_with_id(decision_id: str):
    def match(message) -> bool:
        envelope = env.decode(message.body, message.content_type, message.type)
        return (envelope.WhichOneof("event") == "decision_made"
                and envelope.decision_made.decision_id == decision_id)
    return match


async def modctl(addr: str, *args: str, who: str | None = "bob", extra_env: dict | None = None
                 ) -> tuple[int, str, str]:
    """parley-modctl as a process, with `who`'s token in PARLEY_MODCTL_TOKEN."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    if who:
        environ["PARLEY_MODCTL_TOKEN"] = MODERATORS[who][0]
    environ.update(extra_env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.moderation.cli", "--addr", addr, *args, cwd=ROOT, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, out.decode(), err.decode()
