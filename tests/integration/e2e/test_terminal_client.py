"""The terminal client as a person uses it: two `parley-chat` processes,
lines typed on standard input, what they print on standard output."""
from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.integration


class Terminal:
    def __init__(self, gateway_addr: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.chat", "--addr", gateway_addr, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def type(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} never printed; got: {self.seen}")

    def quit(self) -> int:
        self.type("/quit")
        return self.process.wait(10)


def test_two_people_chat_report_and_move_on(start_service):
    start_service("matcher")
    gateway = start_service("gateway")
    alice = Terminal(gateway.grpc_addr, "--interests", "music", "chess")
    bob = Terminal(gateway.grpc_addr, "--interests", "chess")
    try:
        alice.wait_for("You both like chess.")
        bob.wait_for("You both like chess.")
        alice.type("hi, chess player?")
        bob.wait_for("Stranger: hi, chess player?")
        bob.type("yes")
        alice.wait_for("Stranger: yes")
        alice.type("/report spam bot-like")
        alice.wait_for("Reported. Thank you.")
        alice.type("/next")
        bob.wait_for("Stranger has disconnected.")
        alice.wait_for("Looking for someone")
        bob.type("/stop")
        bob.wait_for("You have disconnected.")
        bob.type("/report nonsense")
        bob.wait_for("unknown reason 'nonsense'")
        assert alice.quit() == 0 and bob.quit() == 0
    finally:
        for terminal in (alice, bob):
            if terminal.process.poll() is None:
                terminal.process.kill()
