"""parley-chat: talk to a stranger from the terminal.

Type a line and press Enter to send it. Commands start with a slash:
  /next            leave this stranger and meet a new one
  /stop            leave and stay idle (/join to wait again)
  /join [a b c]    wait for a stranger, optionally with new interests
  /report [reason] report the stranger (reasons: spam harassment sexual
                   contact underage child_safety other), e.g. /report spam bot
  /block           never meet this stranger again
  /quit            leave
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from parley.v1 import common_pb2
from services.chat.client import ChatClient, SessionClosed

CATEGORIES = {
    "spam": common_pb2.CATEGORY_SPAM,
    "harassment": common_pb2.CATEGORY_HARASSMENT,
    "sexual": common_pb2.CATEGORY_SEXUAL_CONTENT,
    "contact": common_pb2.CATEGORY_CONTACT_SOLICITATION,
    "underage": common_pb2.CATEGORY_UNDERAGE,
    "child_safety": common_pb2.CATEGORY_CHILD_SAFETY,
    "other": common_pb2.CATEGORY_OTHER,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="parley-chat", description="Chat with a stranger on Parley.",
                                     epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addr", default=os.environ.get("PARLEY_GATEWAY_ADDR", "127.0.0.1:50051"),
                        help="gateway gRPC address (default %(default)s)")
    parser.add_argument("--interests", nargs="*", default=[], help="e.g. --interests music chess")
    parser.add_argument("--interests-only", action="store_true",
                        help="never fall back to a random stranger")
    parser.add_argument("--age-band", choices=["adult", "minor"], default="adult",
                        help="adult (18+) or minor (13-17); minors only meet minors")
    parser.add_argument("--lang", default="en", help="language code (default en)")
    # Without a file every run is a new device: two terminals on one machine
    # can then meet each other (the matcher never pairs a device with itself).
    parser.add_argument("--token-file", type=Path, default=None,
                        help="keep this device's token in FILE across runs (default: a new device each run)")
    return parser.parse_args(argv)


def show(text: str) -> None:
    print(text, flush=True)


class Terminal:
    def __init__(self, client: ChatClient, args: argparse.Namespace) -> None:
        self.client = client
        self.args = args
        self.interests = list(args.interests)

    async def join(self) -> None:
        band = common_pb2.AGE_BAND_ADULT if self.args.age_band == "adult" else common_pb2.AGE_BAND_MINOR
        await self.client.join(mode=common_pb2.MODE_TEXT, age_band=band, language=self.args.lang,
                               interests=self.interests, interests_only=self.args.interests_only)

    async def show_frames(self) -> None:
        try:
            while True:
                frame = await self.client.receive()
                self.render(frame)
                if frame.WhichOneof("frame") == "banned":
                    return
        except SessionClosed:
            show("* The gateway closed the session.")

    def render(self, frame) -> None:
        kind = frame.WhichOneof("frame")
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
            if frame.typing.typing:
                show("* Stranger is typing...")
        elif kind == "stranger_disconnected":
            show("* Stranger has disconnected. /next for a new one, /quit to leave.")
        elif kind == "error":
            show(f"! {frame.error.message}")
        elif kind == "banned":
            until = "for good" if not frame.banned.expires_at_unix_ms else "for now"
            show(f"! You are banned {until}: {frame.banned.reason}")
        elif kind == "ack":
            show("* Reported. Thank you." if frame.ack.what == "report" else "* Blocked.")

    async def handle_line(self, line: str) -> bool:
        """Act on one input line; False ends the client."""
        line = line.rstrip("\n")
        if not line.startswith("/"):
            if line.strip():
                await self.client.say(line)
                if sys.stdin.isatty():
                    print("\033[1A\033[2K", end="")  # replace the echoed line with "You: ..."
                show(f"You: {line}")
            return True
        command, _, rest = line[1:].partition(" ")
        if command in ("quit", "exit", "q"):
            return False
        if command == "next":
            await self.client.next()
        elif command == "stop":
            await self.client.stop()
            show("* You have disconnected. /join to meet someone.")
        elif command == "join":
            if rest.split():
                self.interests = rest.split()
            await self.join()
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
            show(__doc__.split("\n", 2)[2])
        return True


async def open_stdin() -> asyncio.StreamReader:
    """Standard input as an asyncio stream, so that a closed session ends the
    client at once instead of waiting for the next line."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run(args: argparse.Namespace) -> int:
    token_file = args.token_file
    token = token_file.read_text().strip() if token_file and token_file.exists() else ""
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
    terminal = Terminal(client, args)
    show("* Connected to Parley. Type /help for commands.")
    await terminal.join()
    frames = asyncio.create_task(terminal.show_frames())
    stdin = await open_stdin()
    try:
        while not frames.done():
            reader = asyncio.create_task(stdin.readline())
            done, _ = await asyncio.wait({reader, frames}, return_when=asyncio.FIRST_COMPLETED)
            if frames in done:
                reader.cancel()
                break
            line = reader.result().decode(errors="replace")
            if not line or not await terminal.handle_line(line):
                break
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
