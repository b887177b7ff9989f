"""`make run`: the whole Parley stack on this machine, one process per
service, as in production. Logs go to data/logs/<service>.log; Ctrl-C stops
every service cleanly (SIGTERM, then drain)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from deploy.local.coturn import TurnServer, turnserver_binary
from services.gateway.settings import DEV_TURN_SECRET
from services.runtime.health import wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("PARLEY_DATA_DIR", ROOT / "data"))

# (service, default gRPC port, default metrics port), in start order: the
# gateway checks bans at the door, so the ban service comes first.
SERVICES = [("ban", 50054, 9104), ("moderation", 50053, 9103), ("matcher", 50052, 9102),
            ("gateway", 50051, 9101)]


def port(service: str, kind: str, default: int) -> int:
    return int(os.environ.get(f"PARLEY_{service.upper()}_{kind}_PORT", default))


def wait_serving(name: str, process: subprocess.Popen, grpc_port: int, log: Path, timeout=60.0) -> None:
    def log_tail() -> str:
        return f"last lines of {log}:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])

    wait_until_serving(f"127.0.0.1:{grpc_port}", timeout, name=name, poll=process.poll, details=log_tail)


def stop_all(processes: list[tuple[str, subprocess.Popen]]) -> None:
    for _name, process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for name, process in reversed(processes):
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            print(f"  {name} did not stop in 20 s; killing it", flush=True)
            process.kill()
            process.wait()
        print(f"  {name} stopped", flush=True)


def start_turn(env: dict[str, str]) -> TurnServer | None:
    """A TURN relay for the web client's video (relay-only ICE needs one), on
    127.0.0.1:3478, unless TURN is configured already or coturn is missing."""
    if env.get("PARLEY_GATEWAY_TURN_URLS"):
        return None
    if turnserver_binary() is None:
        print("coturn (turnserver) is not installed: text chat works, video cannot connect. "
              "Install it with deploy/local/ensure-browser.sh, or set PARLEY_GATEWAY_TURN_URLS.", flush=True)
        return None
    workdir = DATA / "turn"
    workdir.mkdir(parents=True, exist_ok=True)
    port = int(env.get("PARLEY_LOCAL_TURN_PORT", "3478"))
    turn = TurnServer(workdir, secret=env.get("PARLEY_TURN_SECRET") or DEV_TURN_SECRET, port=port)
    try:
        turn.start()
    except RuntimeError as exc:
        print(f"coturn did not start, so video cannot connect: {exc}", flush=True)
        return None
    env["PARLEY_GATEWAY_TURN_URLS"] = turn.url
    return turn


def main() -> int:
    logs = DATA / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("PARLEY_DRAIN_SECONDS", "1")
    env.setdefault("PARLEY_BAN_DATABASE_URL", f"sqlite:///{DATA}/ban.db")
    env.setdefault("PARLEY_MODERATION_DATABASE_URL", f"sqlite:///{DATA}/moderation.db")
    turn = start_turn(env)
    processes: list[tuple[str, subprocess.Popen]] = []
    # The services run in sessions of their own, so a Ctrl-C during start-up
    # does not hit them half-started; they are stopped by SIGTERM from here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        for name, grpc_default, _metrics in SERVICES:
            log = logs / f"{name}.log"
            with open(log, "ab") as out:
                process = subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=ROOT, env=env,
                                           stdout=out, stderr=out, start_new_session=True)
            processes.append((name, process))
            wait_serving(name, process, port(name, "GRPC", grpc_default), log)
    except RuntimeError as exc:
        print(f"Parley did not start: {exc}", file=sys.stderr, flush=True)
        stop_all(processes)
        if turn:
            turn.stop()
        return 1

    print("\nParley is running:", flush=True)
    for name, grpc_default, metrics_default in SERVICES:
        extra = (f"  HTTP 127.0.0.1:{port(name, 'HTTP', 8080)}" if name == "gateway" else "")
        print(f"  {name:<11} gRPC 127.0.0.1:{port(name, 'GRPC', grpc_default)}{extra}  "
              f"metrics :{port(name, 'METRICS', metrics_default)}/metrics  log {logs / (name + '.log')}")
    if turn:
        print(f"  {'turn':<11} {turn.url}  log {turn.log_path}")
    print(f"\nChat in a browser:  http://127.0.0.1:{port('gateway', 'HTTP', 8080)}/  (two windows meet)")
    print("Chat from terminals:  make chat   and   make chat ARGS=--new-device")
    print("Moderators: PARLEY_MODCTL_TOKEN=parley-dev-moderator .venv/bin/parley-modctl list   "
          "(development tokens: parley-dev-moderator, parley-dev-child-safety, parley-dev-admin)")
    print("Bans: .venv/bin/parley-banctl list")
    print("Press Ctrl-C to stop.\n", flush=True)

    stopping = False

    def request_stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not stopping:
        for name, process in processes:
            if process.poll() is not None:
                print(f"{name} exited with code {process.returncode}; stopping the stack. "
                      f"See {logs / (name + '.log')}", file=sys.stderr, flush=True)
                stopping = True
                break
        time.sleep(0.5)
    print("Stopping Parley...", flush=True)
    stop_all(processes)
    if turn:
        turn.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
