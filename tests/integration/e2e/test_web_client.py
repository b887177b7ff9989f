"""The web client served by the gateway at `/`, driven in headless Chromium
as people use it: two (or three) browser pages, each its own browser
context, against a real gateway and matcher on the real broker, with video
through a real TURN relay (coturn) on loopback and relay-only ICE.

Chromium is Debian's (/usr/bin/chromium) and coturn's `turnserver` is
Debian's, both installed by deploy/local/ensure-browser.sh (a prerequisite of
`make test`). Playwright only drives that Chromium: it never downloads one.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import time

import grpc
import pytest
from playwright.async_api import async_playwright

from deploy.local.coturn import TurnServer, turnserver_binary
from parley.v1 import ban_pb2, ban_pb2_grpc, common_pb2
from services.gateway import proof_of_work
from tests.support import free_port, metric_value

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container: no user namespaces for the sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--no-pings",
    # Camera and microphone: allowed without a prompt, and fed by Chromium's
    # own test pattern and beep instead of real devices.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
POW_BITS = 12  # real work (4,096 hashes on average), quick enough for a test
WAIT_MS = 15_000
CONNECTED_LINE = "You're now chatting with a random stranger"
SCREENSHOT = os.environ.get("PARLEY_WEB_SCREENSHOT", "/tmp/parley-web.png")


def _require_tools() -> None:
    missing = [name for name, ok in (("chromium", os.access(CHROMIUM, os.X_OK)),
                                     ("turnserver (coturn)", turnserver_binary() is not None)) if not ok]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run deploy/local/ensure-browser.sh (make test does)")


@pytest.fixture(scope="module")
def turn(tmp_path_factory):
    _require_tools()
    server = TurnServer(tmp_path_factory.mktemp("turn")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def browser():
    _require_tools()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


class Web(str):
    """The web client's base URL, and the gateway behind it."""

    def __new__(cls, url: str, gateway) -> "Web":
        web = super().__new__(cls, url)
        web.gateway = gateway
        return web


@pytest.fixture
def web(start_service, turn):
    """A matcher and a gateway whose video users get credentials for `turn`;
    the base URL of the gateway's web client."""
    start_service("matcher")
    gateway = start_service(
        "gateway",
        PARLEY_TURN_SECRET=turn.secret,
        PARLEY_GATEWAY_TURN_URLS=turn.url,
        PARLEY_GATEWAY_POW_BITS=str(POW_BITS),
        # Nothing listens there: the ban check fails open at once.
        PARLEY_GATEWAY_BAN_ADDR=f"127.0.0.1:{free_port()}",
        # A burst of 10 chat lines, then 3 a second (the rate-limit test sends 14 at once).
        PARLEY_GATEWAY_TEXT_BURST="10",
        PARLEY_GATEWAY_TEXT_PER_SECOND="3",
    )
    return Web(f"http://127.0.0.1:{gateway.env['PARLEY_GATEWAY_HTTP_PORT']}", gateway)


class Page:
    """One person: a browser context of their own with the web client open."""

    def __init__(self, context, page) -> None:
        self.context = context
        self.page = page
        self.problems: list[str] = []
        self.sent: list[dict] = []  # every frame the page sent on its WebSocket
        self.received: list[dict] = []  # and every frame the gateway sent it
        self.hold_offers = False
        self.held: list[str] = []
        self.candidates_before_offer = 0
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", self._console)

    async def relay_socket(self) -> None:
        """Stand between the page and the gateway's /ws: note what the page
        sends, and, while `hold_offers` is set, keep a stranger's offer back
        (letting the ICE candidates that follow it through) until
        release_offer(): a relay path may reorder them, and the page must
        queue such candidates, not lose them."""
        async def route(socket) -> None:
            server = socket.connect_to_server()
            self._to_page = socket

            def from_page(message) -> None:
                self.sent.append(json.loads(message))
                server.send(message)

            def from_server(message) -> None:
                frame = json.loads(message)
                self.received.append(frame)
                signal = frame.get("signal", {})
                if "offerSdp" in signal and self.hold_offers:
                    self.held.append(message)
                    return
                if "iceCandidateJson" in signal and self.held:
                    self.candidates_before_offer += 1
                socket.send(message)

            socket.on_message(from_page)
            server.on_message(from_server)

        await self.page.route_web_socket("**/ws", route)

    def release_offer(self) -> None:
        self.hold_offers = False
        while self.held:
            self._to_page.send(self.held.pop(0))

    def _console(self, message) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            self.problems.append(f"console {message.type}: {message.text}")

    @classmethod
    async def open(cls, browser, base: str, *, mode: str, interests: str) -> "Page":
        context = await browser.new_context(viewport={"width": 1100, "height": 760})
        self = cls(context, await context.new_page())
        await self.relay_socket()
        await self.page.goto(base + "/")
        await self.page.check(f"#mode-{mode}")
        await self.page.fill("#interests", interests)
        await self.page.select_option("#age-band", "AGE_BAND_ADULT")
        await self.page.select_option("#language", "en")
        return self

    async def log(self) -> list[str]:
        return await self.page.evaluate("() => window.parley.log.slice()")

    async def wait_line(self, text: str, timeout: int = WAIT_MS) -> None:
        """Until a line of the chat log starts with `text`."""
        try:
            await self.page.wait_for_function(
                "text => window.parley.log.some(line => line.startsWith(text))", arg=text, timeout=timeout)
        except Exception as exc:
            raise AssertionError(f"no line {text!r} in {await self.log()}; problems: {self.problems}") from exc

    async def wait_state(self, state: str, timeout: int = WAIT_MS) -> None:
        await self.page.wait_for_function("state => window.parley.state === state", arg=state, timeout=timeout)

    async def say(self, text: str) -> None:
        await self.page.fill("#text", text)
        await self.page.press("#text", "Enter")

    async def close(self) -> None:
        await self.context.close()


async def until(condition, what: str, timeout: float = WAIT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


SELECTED_PAIR = """async () => {
  const stats = await window.parley.pc.getStats();
  let pair = null;
  stats.forEach(report => {
    if (report.type === "transport" && report.selectedCandidatePairId) pair = stats.get(report.selectedCandidatePairId);
  });
  if (!pair) stats.forEach(report => {
    if (report.type === "candidate-pair" && report.state === "succeeded" && report.nominated) pair = report;
  });
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
  return {state: pair.state, local: local.candidateType, remote: remote.candidateType,
          localAddress: local.address, relayProtocol: local.relayProtocol || ""};
}"""


async def test_two_strangers_video_chat_through_the_turn_relay(browser, web, turn):
    a = await Page.open(browser, web, mode="video", interests="music, films")
    b = await Page.open(browser, web, mode="video", interests="Music")
    try:
        a.hold_offers = b.hold_offers = True
        await a.page.click("#start")
        await b.page.click("#start")
        for page in (a, b):
            await page.wait_line(CONNECTED_LINE)
            await page.wait_line("You both like music.")
            # The session's proof of work was solved by the worker and accepted.
            pow_done = await page.page.evaluate("() => window.parley.pow")
            assert pow_done["bits"] == POW_BITS
            assert proof_of_work.verify(pow_done["challenge"], pow_done["nonce"], POW_BITS)
            (join,) = [frame["join"] for frame in page.sent if "join" in frame]
            assert join["proofOfWork"] == pow_done["nonce"] and join["mode"] == "MODE_VIDEO"

        # Typing shows on the other side, once, then goes with the message.
        await a.page.type("#text", "hello ", delay=20)
        await b.page.wait_for_selector("#typing", state="visible", timeout=WAIT_MS)
        await a.page.type("#text", "from a")
        await a.page.press("#text", "Enter")
        await b.wait_line("Stranger: hello from a")
        await b.page.wait_for_selector("#typing", state="hidden", timeout=WAIT_MS)
        await a.wait_line("You: hello from a")
        # Twelve keystrokes, one line: one "typing" and one "stopped", nothing per key.
        assert [f["typing"] for f in a.sent if "typing" in f] == [{"typing": True}, {"typing": False}]
        await b.page.fill("#text", "hi back from b")
        await b.page.click("#send")
        await a.wait_line("Stranger: hi back from b")

        # The offerer's candidates reach the answerer before its offer does.
        await until(lambda: a.held or b.held, "an offer to hold")
        offerer, answerer = (b, a) if a.held else (a, b)
        await offerer.page.wait_for_function(
            "() => window.parley.pc && window.parley.pc.iceGatheringState === 'complete'", timeout=WAIT_MS)

        def candidates_sent() -> int:
            return sum("iceCandidateJson" in frame.get("signal", {}) for frame in offerer.sent)

        await until(lambda: 0 < candidates_sent() == answerer.candidates_before_offer,
                    "the offerer's candidates to reach the answerer")
        answerer.release_offer()

        # Video: relay-only ICE through coturn on loopback, on both sides.
        for page in (a, b):
            try:
                await page.page.wait_for_function(
                    "() => window.parley.pc && window.parley.pc.connectionState === 'connected'", timeout=20_000)
            except Exception as exc:
                state = await page.page.evaluate(
                    "() => window.parley.pc && [window.parley.pc.connectionState, window.parley.pc.iceConnectionState]")
                raise AssertionError(f"no WebRTC connection: {state}; problems: {page.problems}; "
                                     f"turnserver log:\n{turn.logs()[-3000:]}") from exc
            # Connected can be reported a moment before the pair's stats say succeeded.
            deadline = time.monotonic() + 5
            while True:
                pair = await page.page.evaluate(SELECTED_PAIR)
                if (pair is not None and pair["state"] == "succeeded") or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert pair is not None and pair["state"] == "succeeded", pair
            assert pair["local"] == "relay" and pair["remote"] == "relay", pair
            assert pair["localAddress"] == "127.0.0.1", pair
            # Frames of the stranger's (fake) camera arrive and play.
            await page.page.wait_for_function(
                "() => document.getElementById('remote-video').videoWidth > 0", timeout=WAIT_MS)

        # A still of a's camera goes to moderation through the gateway.
        await a.page.evaluate("() => window.parley.sendSnapshot()")
        await until(lambda: metric_value(web.gateway.metrics_port, "parley_gateway_snapshots_forwarded_total") == 1,
                    "the gateway to forward a's snapshot")
        (snapshot,) = [f["snapshot"] for f in a.sent if "snapshot" in f]
        assert base64.b64decode(snapshot["jpeg"]).startswith(b"\xff\xd8\xff")  # a JPEG, as the gateway wants

        # Exactly one side offered, the other answered; both sent candidates.
        signals = {name: [next(iter(f["signal"])) for f in page.sent if "signal" in f]
                   for name, page in (("a", a), ("b", b))}
        assert sorted(kinds.count("offerSdp") for kinds in signals.values()) == [0, 1], signals
        assert sorted(kinds.count("answerSdp") for kinds in signals.values()) == [0, 1], signals
        assert all("iceCandidateJson" in kinds for kinds in signals.values()), signals

        if SCREENSHOT:
            await a.page.screenshot(path=SCREENSHOT)
        assert a.problems == [] and b.problems == []
    finally:
        await a.close()
        await b.close()


async def test_stop_asks_really_then_the_stranger_is_told_and_new_pairs_again(browser, web):
    a = await Page.open(browser, web, mode="text", interests="chess")
    b = await Page.open(browser, web, mode="text", interests="chess")
    c = None
    try:
        await a.page.click("#start")
        await b.page.click("#start")
        await a.wait_line(CONNECTED_LINE)
        await b.wait_line(CONNECTED_LINE)

        # Stop: the first click only asks.
        await a.page.click("#stop")
        assert await a.page.text_content("#stop") == "Really?"
        assert await a.page.evaluate("() => window.parley.state") == "connected"
        await a.page.click("#stop")
        await a.wait_line("You have disconnected.")
        assert await a.page.text_content("#stop") == "New"
        await b.wait_line("Stranger has disconnected.")
        await b.wait_state("ended")
        assert await b.page.text_content("#stop") == "New"
        assert await b.page.is_disabled("#text")

        # B presses New (a next), C arrives: they meet (A was B's last partner).
        c = await Page.open(browser, web, mode="text", interests="chess")
        await c.page.click("#start")
        await c.wait_line("Looking for someone you can chat with...")
        await b.page.click("#stop")
        await b.wait_line(CONNECTED_LINE)
        await c.wait_line(CONNECTED_LINE)
        await b.say("second stranger")
        await c.wait_line("Stranger: second stranger")

        # Too fast for the gateway: the person is told when to try again.
        for n in range(14):
            await b.page.fill("#text", f"line {n}")
            await b.page.press("#text", "Enter")
        await b.wait_line("You're going too fast. Try again in")
        assert await b.page.evaluate("() => window.parley.state") == "connected"

        # Escape works the button: from "New" it looks for a stranger again...
        await a.page.keyboard.press("Escape")
        await a.wait_line("Looking for someone you can chat with...")
        # ...and Escape, Escape ("Really?") stops looking.
        await a.page.keyboard.press("Escape")
        assert await a.page.text_content("#stop") == "Really?"
        await a.page.keyboard.press("Escape")
        await a.wait_line("You have stopped looking.")
        # New settings after a conversation: a join of its own, no proof again.
        await a.page.click("#settings")
        await a.page.fill("#interests", "go, baduk")
        await a.page.click("#start")
        await a.wait_state("waiting")
        assert await a.page.is_hidden("#setup")

        # C reports B: the gateway acknowledges; then B blocks C.
        await c.page.select_option("#report-category", "CATEGORY_SPAM")
        await c.page.fill("#report-comment", "sends the same line to everyone")
        await c.page.click("#report")
        await c.wait_line("Thanks: your report was sent")
        assert await c.page.evaluate("() => window.parley.state") == "connected"
        await b.page.click("#block")
        await b.wait_line("Blocked: you won't be paired with this stranger again.")
        await c.wait_line("Stranger has disconnected.")
        for page in (a, b, c):
            assert page.problems == []
    finally:
        for page in (a, b, c):
            if page is not None:
                await page.close()


async def test_the_worker_solves_challenges_the_gateway_accepts(browser, web):
    """Both hash codes of the worker (crypto.subtle, and plain JS for pages
    that are not a secure context) find nonces the gateway's rule accepts."""
    page = await Page.open(browser, web, mode="text", interests="")
    try:
        for impl in ("subtle", "js"):
            challenge = proof_of_work.new_challenge()
            found = await page.page.evaluate(
                "([c, bits, impl]) => window.parley.solvePow(c, bits, impl)", [challenge, 10, impl])
            assert found["impl"] == impl
            assert proof_of_work.verify(challenge, found["nonce"], 10)
            # The first such nonce, as the reference solver counts.
            assert found["nonce"] == proof_of_work.solve(challenge, 10)
        assert page.problems == []
    finally:
        await page.close()


# A stand-in for the worker's first load: slow, then it fails, as a worker
# might on a device that kills background work. The page must wait for it
# (Start pressed before the proof is ready), get CODE_PROOF_REQUIRED for the
# join it then sends without a proof, solve again and retry once.
FAILING_WORKER = """
self.onmessage = () => setTimeout(() => self.postMessage({error: "worker stopped"}), 700);
"""


async def test_start_waits_for_the_proof_and_a_refused_proof_is_solved_again(browser, web):
    context = await browser.new_context()
    loads = []

    async def worker(route):
        loads.append(route.request.url)
        if len(loads) == 1:
            await route.fulfill(status=200, content_type="text/javascript", body=FAILING_WORKER)
        else:
            await route.continue_()

    await context.route("**/pow-worker.js", worker)
    person = Page(context, await context.new_page())
    await person.relay_socket()
    try:
        page = person.page
        await page.goto(web + "/")
        await page.select_option("#age-band", "AGE_BAND_ADULT")
        await page.click("#start")  # before the (slow, failing) proof is done
        await person.wait_state("waiting")
        assert len(loads) == 2
        errors = [frame["error"]["code"] for frame in person.received if "error" in frame]
        assert errors == ["CODE_PROOF_REQUIRED"]
        assert [bool(frame["join"].get("proofOfWork")) for frame in person.sent if "join" in frame] == [False, True]
        assert await person.log() == ["Getting ready…", "Looking for someone you can chat with..."]
        solved = await page.evaluate("() => window.parley.pow")
        assert proof_of_work.verify(solved["challenge"], solved["nonce"], POW_BITS)
        assert person.problems == []
    finally:
        await context.close()


async def test_a_ban_shows_its_reason_and_expiry_and_disables_the_page(browser, start_service):
    ban = start_service("ban")
    gateway = start_service("gateway", PARLEY_GATEWAY_BAN_ADDR=ban.grpc_addr,
                            PARLEY_GATEWAY_POW_BITS=str(POW_BITS))
    base = f"http://127.0.0.1:{gateway.env['PARLEY_GATEWAY_HTTP_PORT']}"
    person = await Page.open(browser, base, mode="text", interests="")
    try:
        page = person.page
        await person.wait_state("idle")
        token = await page.evaluate("() => localStorage.getItem('parley.deviceToken')")
        assert token
        async with grpc.aio.insecure_channel(ban.grpc_addr) as channel:
            await ban_pb2_grpc.BanStub(channel).IssueBan(ban_pb2.IssueBanRequest(
                subject=ban_pb2.Subject(device_token=token), scope=common_pb2.BAN_SCOPE_ALL,
                category=common_pb2.CATEGORY_HARASSMENT, duration_s=3600, reason="abusive messages",
                issued_by="test"))
        await person.wait_state("banned")
        banner = await page.text_content("#banned")
        assert "for harassment: abusive messages." in banner and "The ban ends" in banner
        for control in ("#start", "#stop", "#text", "#send", "#interests", "#mode-video", "#report"):
            assert await page.is_disabled(control), control
        # The next visit is refused at hello, with the same explanation.
        await page.reload()
        await person.wait_state("banned")
        assert "abusive messages" in await page.text_content("#banned")
        assert await page.is_disabled("#start")
        # The banned person appeals from the page, once.
        await page.fill("#appeal-statement", "That was my little brother, sorry.")
        await page.click("#appeal-send")
        await page.wait_for_function(
            "() => document.getElementById('appeal-result').textContent.includes('appeal was sent')", timeout=WAIT_MS)
        async with grpc.aio.insecure_channel(ban.grpc_addr) as channel:
            listed = await ban_pb2_grpc.BanStub(channel).ListAppeals(ban_pb2.ListAppealsRequest())
        (appeal,) = listed.appeals
        assert appeal.statement == "That was my little brother, sorry." and appeal.device_token == token
    finally:
        await person.close()
