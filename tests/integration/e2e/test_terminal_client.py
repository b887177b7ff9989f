"""The terminal client as a person uses it: two `parley-chat` processes,
lines typed on standard input, what they print on standard output."""
from __future__ import annotations

import fcntl
import os
import pty
import queue
import re
import struct
import subprocess
import sys
import termios
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
    alice = Terminal(gateway.grpc_addr, "--new-device", "--interests", "music", "chess")
    bob = Terminal(gateway.grpc_addr, "--new-device", "--interests", "chess")
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


class PtyTerminal:
    """parley-chat at a real (pseudo) terminal, as a person runs it: the
    interactive prompt, keystrokes one by one."""

    ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[>=()][0-9A-Za-z]?|\r")

    def __init__(self, gateway_addr: str, *args: str) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.chat", "--addr", gateway_addr, *args],
            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.screen = ""
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            if b"\x1b[6n" in data:  # answer the cursor position request like a terminal
                os.write(self.master, b"\x1b[1;1R")
            with self._lock:
                self.screen += self.ANSI.sub("", data.decode(errors="replace"))

    def keys(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_for(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if text in self.screen:
                    self.screen = self.screen[self.screen.index(text) + len(text):]
                    return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never shown; screen: {self.screen[-2000:]!r}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        os.close(self.master)


def test_at_a_terminal_typing_shows_and_escape_stops_after_really(start_service):
    start_service("matcher")
    gateway = start_service("gateway")
    alice = PtyTerminal(gateway.grpc_addr, "--new-device", "--interests", "tea")
    bob = Terminal(gateway.grpc_addr, "--new-device", "--interests", "tea")
    try:
        alice.wait_for("You both like tea.")
        bob.wait_for("You both like tea.")
        alice.keys("hel")
        bob.wait_for("Stranger is typing...")
        alice.keys("lo\r")
        bob.wait_for("Stranger: hello")
        bob.type("hi there")
        alice.wait_for("Stranger: hi there")
        bob.type("/interests tea cake")
        bob.wait_for("Interests for the next stranger: tea, cake.")
        alice.keys("\x1b")
        alice.wait_for("Really?")
        alice.keys("\x1b")
        alice.wait_for("You have disconnected.")
        bob.wait_for("Stranger has disconnected.")
        alice.keys("/quit\r")
        assert alice.process.wait(10) == 0
        assert bob.quit() == 0
    finally:
        alice.close()
        if bob.process.poll() is None:
            bob.process.kill()


def test_the_device_token_is_kept_between_runs(start_service, tmp_path):
    gateway = start_service("gateway")
    token_file = tmp_path / "config" / "device-token"
    first = Terminal(gateway.grpc_addr, "--token-file", str(token_file))
    first.wait_for("Connected to Parley")
    assert first.quit() == 0
    token = token_file.read_text()
    assert token and oct(token_file.stat().st_mode & 0o777) == "0o600"
    second = Terminal(gateway.grpc_addr, "--token-file", str(token_file))
    second.wait_for("Connected to Parley")
    assert second.quit() == 0
    assert token_file.read_text() == token  # the gateway kept the signed token it was shown
