"""parley-chat: talk to a stranger from the terminal.

Type a line and press Enter to send it; the stranger sees you typing.
Commands start with a slash:
  /next, /new      leave this stranger and meet a new one
  /stop            leave and stay idle (/next or /join to wait again); in a
                   terminal, Escape does the same after a "Really?"
  /join [a b c]    wait for a stranger, optionally with new interests
  /interests a b c set the interests of the next /join or /next
  /report [reason] [comment]
                   report the stranger (reasons: spam harassment sexual
                   contact underage child_safety other), e.g. /report spam bot
  /block           never meet this stranger again
  /help            this text
  /quit            leave
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import grpc

from parley.v1 import common_pb2, gateway_pb2
from services.chat.client import ChatClient, SessionClosed, file_appeal

CATEGORIES = {
    "spam": common_pb2.CATEGORY_SPAM,
    "harassment": common_pb2.CATEGORY_HARASSMENT,
    "sexual": common_pb2.CATEGORY_SEXUAL_CONTENT,
    "contact": common_pb2.CATEGORY_CONTACT_SOLICITATION,
    "underage": common_pb2.CATEGORY_UNDERAGE,
    "child_safety": common_pb2.CATEGORY_CHILD_SAFETY,
    "other": common_pb2.CATEGORY_OTHER,
}
HELP = __doc__.split("\n", 2)[2]
TYPING_IDLE_SECONDS = 3.0  # "stopped typing" after this long without a keystroke


def default_token_file() -> Path:
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "parley" / "device-token"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="parley-chat", description="Chat with a stranger on Parley.",
                                     epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addr", default=os.environ.get("PARLEY_GATEWAY_ADDR", "127.0.0.1:50051"),
                        help="gateway gRPC address (default %(default)s)")
    parser.add_argument("--interests", nargs="*", default=[], help="e.g. --interests music chess")
    parser.add_argument("--interests-only", action="store_true",
                        help="never fall back to a random stranger")
    parser.add_argument("--age-band", choices=["adult", "minor"], default="adult",
                        help="adult (18+) or minor (13-17); minors only meet minors")
    parser.add_argument("--lang", default="en", help="language code (default en)")
    parser.add_argument("--token-file", type=Path, default=None,
                        help=f"where this device's token is kept (default {default_token_file()})")
    # The matcher never pairs a device with itself: a second terminal on the
    # same machine needs a device of its own to meet the first.
    parser.add_argument("--new-device", action="store_true",
                        help="use a new device token this run and keep none")
    parser.add_argument("--appeal", metavar="BAN_ID",
                        help="appeal a ban of this device (once per ban), with --statement, then exit")
    parser.add_argument("--statement", default="", help="why the ban is wrong (with --appeal)")
    args = parser.parse_args(argv)
    if args.token_file is None and not args.new_device:
        args.token_file = default_token_file()
    return args


def show(text: str) -> None:
    print(text, flush=True)


class TypingSignal:
    """When to tell the stranger we are typing: on the first keystroke, and
    that we stopped after a pause or on sending; never once per keystroke."""

    def __init__(self) -> None:
        self.typing = False
        self.last_edit = 0.0

    def edited(self, text: str, now: float) -> bool | None:
        """The state to send after an edit, or None when nothing changes."""
        self.last_edit = now
        typing = bool(text.strip())
        if typing != self.typing:
            self.typing = typing
            return typing
        return None

    def idle(self, now: float) -> bool | None:
        if self.typing and now - self.last_edit >= TYPING_IDLE_SECONDS:
            self.typing = False
            return False
        return None

    def sent(self) -> None:
        # The stranger's client clears the indicator when the line arrives.
        self.typing = False


class Terminal:
    """What a person sees and what their lines do; the same whether input is
    an interactive prompt or a pipe."""

    def __init__(self, client: ChatClient, args: argparse.Namespace) -> None:
        self.client = client
        self.args = args
        self.interests = list(args.interests)
        self.joined = False
        self.stranger_typing = False
        self.on_change = lambda: None  # the prompt redraws its status line

    async def join(self) -> None:
        band = common_pb2.AGE_BAND_ADULT if self.args.age_band == "adult" else common_pb2.AGE_BAND_MINOR
        await self.client.join(mode=common_pb2.MODE_TEXT, age_band=band, language=self.args.lang,
                               interests=self.interests, interests_only=self.args.interests_only)
        self.joined = True

    async def show_frames(self) -> None:
        try:
            while True:
                frame = await self.client.receive()
                self.render(frame)
                if frame.WhichOneof("frame") == "banned":
                    return
        except SessionClosed:
            show("* The gateway closed the session.")

    def _set_stranger_typing(self, typing: bool) -> None:
        if typing != self.stranger_typing:
            self.stranger_typing = typing
            self.on_change()

    def render(self, frame: gateway_pb2.ServerFrame) -> None:
        kind = frame.WhichOneof("frame")
        if kind != "typing":
            self._set_stranger_typing(False)
        if kind == "waiting":
            show("* Looking for someone you can chat with...")
        elif kind == "connected":
            c = frame.connected
            show("* You're now chatting with a random stranger. Say hi!")
            if c.common_interests:
                show(f"* You both like {', '.join(c.common_interests)}.")
            elif c.random_fallback:
                show("* No one shares your interests right now; this is a random stranger.")
        elif kind == "message":
            show(f"Stranger: {frame.message.text}")
        elif kind == "typing":
            self._set_stranger_typing(frame.typing.typing)
            if frame.typing.typing and not sys.stdin.isatty():
                show("* Stranger is typing...")
        elif kind == "stranger_disconnected":
            show("* Stranger has disconnected. /next for a new one, /quit to leave.")
        elif kind == "error":
            self.render_error(frame.error)
        elif kind == "banned":
            banned = frame.banned
            if banned.expires_at_unix_ms:
                until = "until " + time.strftime("%Y-%m-%d %H:%M", time.localtime(banned.expires_at_unix_ms / 1000))
            else:
                until = "for good"
            show(f"! You are banned {until}: {banned.reason}")
            if banned.ban_id and banned.appealable_until_unix_ms > time.time() * 1000:
                by = time.strftime("%Y-%m-%d", time.localtime(banned.appealable_until_unix_ms / 1000))
                show(f"  To appeal (until {by}): parley-chat --appeal {banned.ban_id} --statement \"...\"")
        elif kind == "notice":
            notice = frame.notice
            if notice.conversation_ended:
                show(f"! Moderation ended this conversation: {notice.message} /next to meet someone.")
            else:
                show(f"! Warning from moderation: {notice.message}")
        elif kind == "ack":
            show("* Reported. Thank you." if frame.ack.what == "report" else "* Blocked: you will not meet them again.")

    def render_error(self, error: gateway_pb2.Error) -> None:
        if error.code == gateway_pb2.Error.CODE_RATE_LIMITED:
            show(f"! Slow down: {error.message} (try again in {error.retry_after_ms / 1000:.1f} s)")
        elif error.code == gateway_pb2.Error.CODE_NOT_CONNECTED:
            show("! You are not talking to anyone. /next to meet someone.")
        else:
            show(f"! {error.message}")

    async def handle_line(self, line: str) -> bool:
        """Act on one input line; False ends the client."""
        line = line.rstrip("\n")
        if not line.startswith("/"):
            if line.strip():
                await self.client.say(line)
                show(f"You: {line}")
            return True
        command, _, rest = line[1:].partition(" ")
        if command in ("quit", "exit", "q"):
            return False
        if command in ("next", "new"):
            if self.joined:
                await self.client.next()
            else:
                await self.join()
        elif command == "stop":
            await self.stop()
        elif command == "join":
            if rest.split():
                self.interests = rest.split()
            await self.join()
        elif command == "interests":
            self.interests = rest.split()
            show(f"* Interests for the next stranger: {', '.join(self.interests) or 'none'}.")
        elif command == "report":
            reason, _, comment = rest.partition(" ")
            category = CATEGORIES.get(reason or "other")
            if category is None:
                show(f"! unknown reason {reason!r}; one of: {' '.join(CATEGORIES)}")
            else:
                await self.client.report(category, comment)
        elif command == "block":
            await self.client.block()
        else:
            show(HELP)
        return True

    async def stop(self) -> None:
        await self.client.stop()
        show("* You have disconnected. /next to meet someone.")


async def open_stdin() -> asyncio.StreamReader:
    """Standard input as an asyncio stream, so that a closed session ends the
    client at once instead of waiting for the next line."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def read_lines(terminal: Terminal, frames: asyncio.Task) -> None:
    """Input from a pipe: one line at a time, no typing indicator."""
    stdin = await open_stdin()
    while not frames.done():
        reader = asyncio.create_task(stdin.readline())
        done, _ = await asyncio.wait({reader, frames}, return_when=asyncio.FIRST_COMPLETED)
        if frames in done:
            reader.cancel()
            return
        line = reader.result().decode(errors="replace")
        if not line or not await terminal.handle_line(line):
            return


async def prompt_lines(terminal: Terminal, frames: asyncio.Task) -> None:
    """Input from a person at a terminal: a prompt that stays at the bottom,
    a status line for the stranger's typing, typing signals sent as the person
    types, and Escape (twice) to stop."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.patch_stdout import patch_stdout

    signal = TypingSignal()
    pending: set[asyncio.Task] = set()
    really = {"asked": False}

    def send_typing(state: bool | None) -> None:
        if state is not None:
            task = asyncio.ensure_future(terminal.client.typing(state))
            pending.add(task)
            task.add_done_callback(pending.discard)

    bindings = KeyBindings()

    @bindings.add("escape", eager=True)
    def _(event) -> None:
        if really["asked"]:
            really["asked"] = False
            task = asyncio.ensure_future(terminal.stop())
            pending.add(task)
            task.add_done_callback(pending.discard)
        else:
            really["asked"] = True
        session.app.invalidate()

    def toolbar() -> str:
        if really["asked"]:
            return "Really? Press Escape again to stop, or keep typing."
        return "Stranger is typing..." if terminal.stranger_typing else ""

    session = PromptSession("> ", key_bindings=bindings, bottom_toolbar=toolbar)
    session.default_buffer.on_text_changed += lambda buffer: (
        really.update(asked=False), send_typing(signal.edited(buffer.text, time.monotonic())))
    terminal.on_change = session.app.invalidate

    async def idle_watch() -> None:
        while True:
            await asyncio.sleep(0.5)
            send_typing(signal.idle(time.monotonic()))

    watcher = asyncio.create_task(idle_watch())
    try:
        with patch_stdout():
            while not frames.done():
                prompt = asyncio.create_task(session.prompt_async())
                done, _ = await asyncio.wait({prompt, frames}, return_when=asyncio.FIRST_COMPLETED)
                if frames in done:
                    prompt.cancel()
                    return
                try:
                    line = prompt.result()
                except (EOFError, KeyboardInterrupt):
                    return
                signal.sent()
                if not await terminal.handle_line(line):
                    return
    finally:
        watcher.cancel()


async def appeal(args: argparse.Namespace, token: str) -> int:
    if not token:
        show("! No device token here to appeal with (see --token-file).")
        return 1
    try:
        appeal_id = await file_appeal(args.addr, token, args.appeal, args.statement)
    except grpc.aio.AioRpcError as exc:
        show(f"! Appeal not filed: {exc.details() or exc.code().name}")
        return 1
    show(f"* Appeal {appeal_id} filed. A moderator will review the ban.")
    return 0


async def run(args: argparse.Namespace) -> int:
    token_file = None if args.new_device else args.token_file
    token = token_file.read_text().strip() if token_file and token_file.exists() else ""
    if args.appeal:
        return await appeal(args, token)
    try:
        client = await ChatClient.connect(args.addr, token)
    except SessionClosed as exc:
        show(f"! Refused: {exc}")
        return 1
    except Exception as exc:  # noqa: BLE001 - a person reads this, not a program
        show(f"! Cannot reach the gateway at {args.addr}: {exc}")
        return 1
    if token_file and client.device_token != token:
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(client.device_token)
        token_file.chmod(0o600)
    terminal = Terminal(client, args)
    show("* Connected to Parley. Type /help for commands.")
    await terminal.join()
    frames = asyncio.create_task(terminal.show_frames())
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    try:
        await (prompt_lines if interactive else read_lines)(terminal, frames)
    finally:
        frames.cancel()
        await client.close()
    return 0


def main() -> None:
    try:
        sys.exit(asyncio.run(run(parse_args())))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
