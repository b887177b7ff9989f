"""A real TURN relay on this machine: coturn's `turnserver`, on loopback only,
with the same shared-secret ("TURN REST API") credentials the gateway hands
out. `make run` starts one for the web client's video, and the web client's
end-to-end test starts its own.

Installed by deploy/local/ensure-browser.sh (Debian's coturn). Started as a
process of our own, never as the system service, and stopped by its pid."""
from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

REALM = "parley.test"


def turnserver_binary() -> str | None:
    return shutil.which("turnserver") or next(
        (path for path in ("/usr/bin/turnserver", "/usr/sbin/turnserver") if os.access(path, os.X_OK)), None)


def _free_udp_port() -> int:
    """A loopback port free for UDP (what the TURN listener binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stun_binding_ok(port: int, timeout: float = 0.3) -> bool:
    """Does a STUN server answer a Binding request at 127.0.0.1:port (UDP)?"""
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, ("127.0.0.1", port))
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    return len(data) >= 20 and data[:2] == b"\x01\x01" and data[8:20] == transaction


class TurnServer:
    """turnserver on 127.0.0.1 that relays between loopback peers only."""

    def __init__(self, workdir: Path, secret: str | None = None, port: int | None = None) -> None:
        self.workdir = workdir
        self.secret = secret or secrets.token_hex(16)
        self.fixed_port = port is not None
        self.port = port if port is not None else _free_udp_port()
        # A small relay range of its own, away from the ephemeral ports that
        # free_port() hands out for the services (32768 and up on Linux).
        self.min_port = random.randrange(20000, 30000, 50)
        self.max_port = self.min_port + 49
        self.log_path = workdir / "turnserver.log"
        self.pid_path = workdir / "turnserver.pid"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def args(self) -> list[str]:
        return [
            turnserver_binary() or "turnserver",
            "-n",  # no configuration file: everything is on this command line
            "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
            f"--listening-port={self.port}",
            f"--min-port={self.min_port}", f"--max-port={self.max_port}",
            "--use-auth-secret", f"--static-auth-secret={self.secret}", f"--realm={REALM}",
            "--fingerprint",
            # UDP only, one port: no TCP/TLS/DTLS listeners, no RFC 5780
            # alternative port (listening port + 1), no telnet CLI (port 5766).
            "--no-tcp", "--no-tls", "--no-dtls", "--no-rfc5780", "--no-cli",
            # Both browsers' relayed addresses are 127.0.0.1: coturn refuses
            # loopback peers unless told otherwise.
            "--allow-loopback-peers", "--no-multicast-peers",
            f"--userdb={self.workdir / 'turndb'}",
            "--log-file=stdout", "--simple-log",
            f"--pidfile={self.pid_path}",
        ]

    def start(self, attempts: int = 3) -> "TurnServer":
        """Start on a free port; another free one if something took it first."""
        for attempt in range(attempts):
            try:
                return self._start_once()
            except RuntimeError:
                if attempt == attempts - 1 or self.fixed_port:
                    raise
                self.port = _free_udp_port()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float = 5.0) -> "TurnServer":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"turnserver exited with {self.process.returncode}:\n{self.logs()}")
            if stun_binding_ok(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"turnserver did not answer STUN on 127.0.0.1:{self.port}:\n{self.logs()}")

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
