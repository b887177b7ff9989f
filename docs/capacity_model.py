"""Parley's capacity model: replicas per service and broker load for a number
of concurrent users, from the benchmarks' per-process figures.

    .venv/bin/python docs/capacity_model.py                 # the tables of docs/capacity.md
    .venv/bin/python docs/capacity_model.py --gateway-json g.json --ban-json b.json --snapshots-json s.json

The --*-json options take the last line (JSON) of `make bench-gateway`,
`make bench-ban` and tests/bench/bench_snapshots.py; without them the
figures below are used, and a figure not measured yet is None: its cells
print as a placeholder to fill in. docs/capacity.md holds this script's
output between its markers (a test checks they agree): after changing a
figure, run the script with --write.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

DOC = Path(__file__).with_name("capacity.md")
BEGIN, END = "<!-- capacity_model.py: begin -->", "<!-- capacity_model.py: end -->"
USERS = (10_000, 100_000, 1_000_000)

# ------------------------------------------------------------ measured figures
# Per process, on the 2-core development machine (everything sharing its
# cores: lower bounds). Source beside each.
MEASURED = {
    # make bench-matcher: highest sustained step with p99 within target
    "matcher_requests_per_s": 3_000,
    # raw aio-pika on this machine (bench-matcher / bench-gateway raw phase):
    # one connection, publishes awaited one by one / consumes with acks
    "broker_publish_per_s_per_connection": 15_700,
    "broker_consume_per_s_per_connection": 10_500,
    # make bench-gateway: relay_msgs_per_s_per_gateway_core, rss_kib_per_session
    # (2026-11-21: 1,086 lines/s per core in a full run beside other jobs,
    # about 1,600 on a quiet machine; the lower figure is used)
    "gateway_lines_per_s_per_core": 1_086,
    "gateway_kib_per_session": 26.3,
    # make bench-ban: checks_per_s (one process, 16 calls in flight)
    "ban_checks_per_s": 3_968,
    # tests/bench/bench_snapshots.py: analyze_ms (decode, hash, match, nudity) per frame
    "moderation_snapshot_ms": 20.05,
}

# ------------------------------------------------------------ assumptions
# The workload at peak, per concurrent user. Change them to your traffic.
WORKLOAD = {
    "video_share": 0.6,            # users in video (the rest in text)
    "text_conversation_s": 120,    # a text conversation lasts this long before stop/next
    "video_conversation_s": 60,    # a video one (strangers "next" fast)
    "session_s": 600,              # a visit: one hello and ban check per session
    "text_lines_per_s": 0.2,       # a line every 5 s per user chatting in text
    "typing_per_line": 2,          # typing started / stopped frames per line
    "video_signals_per_conversation": 12,  # offer/answer and ICE candidates, per side
    "video_lines_per_s": 0.05,     # the odd chat line in video
    "snapshot_interval_s": 5,      # the web client's still to moderation
    "requests_overhead": 0.05,     # renewals, requeues, cancels on top of one request per conversation
    "hottest_pool_share": 0.35,    # share of match requests in the largest pool (video, adult, English)
    "video_kbps_each_way": 300,    # a low-resolution call, relayed by TURN
}
HEADROOM = 0.6          # plan every process at 60 % of what it does flat out (the HPA's CPU target)
PARTITIONS = 8          # PARLEY_MATCHER_PARTITIONS
MIN_REPLICAS = 2
GATEWAY_MEMORY_MIB = 2048   # overlays/prod gateway limit; sessions fill 70 % of it
# Planning figures for RabbitMQ itself (not measured on a cluster here): a
# classic queue is one Erlang process; one broker core routes and delivers
# about this many small non-persistent messages per second.
QUEUE_MSGS_PER_S = 20_000
BROKER_MSGS_PER_S_PER_CORE = 10_000
BROKER_NODE_CORES = 4       # overlays/prod RabbitmqCluster
TURN_NODE_GBPS = 8


def per_user(w: dict) -> dict[str, float]:
    """Rates per concurrent user per second."""
    v, t = w["video_share"], 1 - w["video_share"]
    text_relay = w["text_lines_per_s"] * (1 + w["typing_per_line"])
    video_relay = (w["video_signals_per_conversation"] / w["video_conversation_s"]
                   + w["video_lines_per_s"] * (1 + w["typing_per_line"]))
    requests = (t / w["text_conversation_s"] + v / w["video_conversation_s"]) * (1 + w["requests_overhead"])
    return {
        "relay": t * text_relay + v * video_relay,        # frames a user sends to the peer
        "lines": t * w["text_lines_per_s"] + v * w["video_lines_per_s"],  # copies to moderation
        "snapshots": v / w["snapshot_interval_s"],
        "requests": requests,                            # match requests
        "match_results": 2 * requests,                    # MatchFound to both gateways + accept/refuse
        "checks": 1 / w["session_s"] + requests,          # CheckBan at hello and each join
    }


def model(figures: dict, w: dict) -> dict:
    r = per_user(w)
    publishes = r["relay"] + r["lines"] + r["snapshots"] + r["requests"] + r["match_results"]
    # what one gateway replica consumes from the broker per session: its users'
    # peers' frames and the match results
    gateway_consumes = r["relay"] + r["match_results"] / 2
    out = {"per_user": r, "publishes_per_user": publishes, "rows": {}}
    for users in USERS:
        row: dict[str, object] = {}
        # gateway: the least of the memory, CPU and broker-connection bounds
        by_connection = HEADROOM * figures["broker_consume_per_s_per_connection"] / gateway_consumes
        bounds = {"broker connection": by_connection}
        if figures["gateway_kib_per_session"]:
            bounds["memory"] = 0.7 * GATEWAY_MEMORY_MIB * 1024 / figures["gateway_kib_per_session"]
        if figures["gateway_lines_per_s_per_core"]:
            work = r["relay"] + r["lines"] + r["snapshots"]
            bounds["CPU (1 core)"] = HEADROOM * figures["gateway_lines_per_s_per_core"] / work
        limit = min(bounds, key=bounds.get)
        row["sessions_per_gateway"] = (round(bounds[limit]), limit,
                                       not (figures["gateway_kib_per_session"]
                                            and figures["gateway_lines_per_s_per_core"]))
        row["gateways"] = max(MIN_REPLICAS, math.ceil(users / bounds[limit]))
        # matcher
        requests = users * r["requests"]
        per_process = HEADROOM * figures["matcher_requests_per_s"]
        row["requests_per_s"] = requests
        row["matchers"] = max(MIN_REPLICAS, math.ceil(requests / per_process))
        row["hottest_pool_per_s"] = requests * w["hottest_pool_share"]
        row["hottest_pool_fits"] = row["hottest_pool_per_s"] <= per_process
        # ban
        checks = users * r["checks"]
        row["checks_per_s"] = checks
        row["bans"] = (max(MIN_REPLICAS, math.ceil(checks / (HEADROOM * figures["ban_checks_per_s"])))
                       if figures["ban_checks_per_s"] else None)
        # moderation: snapshots dominate; chat lines are cheap next to them
        snapshots = users * r["snapshots"]
        row["snapshots_per_s"] = snapshots
        row["lines_per_s"] = users * r["lines"]
        row["moderation_cores"] = (snapshots * figures["moderation_snapshot_ms"] / 1000 / HEADROOM
                                   if figures["moderation_snapshot_ms"] else None)
        # broker
        msgs = users * publishes
        row["broker_msgs_per_s"] = msgs
        row["broker_cores"] = msgs / (HEADROOM * BROKER_MSGS_PER_S_PER_CORE)
        row["broker_nodes"] = max(3, math.ceil(row["broker_cores"] / BROKER_NODE_CORES))
        row["moderation_queue_per_s"] = max(users * r["lines"], snapshots)
        row["gateway_queue_per_s"] = bounds[limit] * gateway_consumes
        # TURN: every video user's media goes in and out of a relay
        gbps = users * w["video_share"] * w["video_kbps_each_way"] * 2 * 2 / 1e6
        row["turn_gbps"] = gbps
        row["turn_nodes"] = max(2, math.ceil(gbps / (HEADROOM * TURN_NODE_GBPS)) + 1)
        out["rows"][users] = row
    return out


def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:,.1f}"


def tables(figures: dict, w: dict) -> str:
    m = model(figures, w)
    r = m["per_user"]
    head = "| | " + " | ".join(f"{u:,} users" for u in USERS) + " |\n|---|" + "---|" * len(USERS) + "\n"
    todo = "**?** (needs {})"

    def line(label: str, cells) -> str:
        return f"| {label} | " + " | ".join(cells) + " |\n"

    rows = m["rows"]
    out = ["Per concurrent user per second (from the workload assumptions): "
           f"{r['relay']:.3f} relayed frames, {r['lines']:.3f} chat lines and {r['snapshots']:.3f} snapshots "
           f"to moderation, {r['requests']:.4f} match requests, {r['checks']:.4f} ban checks; "
           f"{m['publishes_per_user']:.3f} broker messages in all.\n\n", head]
    out.append(line("match requests/s", [_n(rows[u]["requests_per_s"]) for u in USERS]))
    out.append(line("ban checks/s", [_n(rows[u]["checks_per_s"]) for u in USERS]))
    out.append(line("chat lines/s to moderation", [_n(rows[u]["lines_per_s"]) for u in USERS]))
    out.append(line("snapshots/s to moderation", [_n(rows[u]["snapshots_per_s"]) for u in USERS]))
    out.append(line("broker messages/s (published, each delivered once)",
                    [_n(rows[u]["broker_msgs_per_s"]) for u in USERS]))
    out.append(line("TURN relay traffic", [f"{rows[u]['turn_gbps']:,.1f} Gbit/s" for u in USERS]))
    out.append("\n" + head)
    sessions, limit, provisional = rows[USERS[0]]["sessions_per_gateway"]
    note = f" (bound: {limit}" + ("; CPU and memory bounds need bench-gateway" if provisional else "") + ")"
    out.append(line(f"**gateway** replicas, {sessions:,} sessions each{note}",
                    [f"{rows[u]['gateways']:,}" + (" or more" if provisional else "") for u in USERS]))
    out.append(line("**matcher** replicas (at most the partitions, "
                    f"{PARTITIONS})", [f"{min(rows[u]['matchers'], PARTITIONS)}"
                                       + (" **over**: needs " + str(rows[u]['matchers'])
                                          if rows[u]['matchers'] > PARTITIONS else "") for u in USERS]))
    out.append(line("hottest pool, requests/s (one matcher process holds a pool: "
                    f"{_n(HEADROOM * figures['matcher_requests_per_s'])}/s planned)",
                    [_n(rows[u]["hottest_pool_per_s"]) + ("" if rows[u]["hottest_pool_fits"] else " **over**")
                     for u in USERS]))
    out.append(line("**ban** replicas", [str(rows[u]["bans"]) if rows[u]["bans"] else todo.format("bench-ban")
                                         for u in USERS]))
    out.append(line("**moderation** cores for snapshots",
                    [_n(rows[u]["moderation_cores"]) if rows[u]["moderation_cores"] is not None
                     else todo.format("bench_snapshots analyze_ms") for u in USERS]))
    out.append(line("broker cores (planning figure) / RabbitMQ nodes of "
                    f"{BROKER_NODE_CORES} cores", [f"{rows[u]['broker_cores']:,.1f} / {rows[u]['broker_nodes']}"
                                                   for u in USERS]))
    out.append(line("busiest single queue (moderation.messages or .snapshots), msgs/s; "
                    f"planning limit {QUEUE_MSGS_PER_S:,}",
                    [_n(rows[u]["moderation_queue_per_s"])
                     + (" **over**" if rows[u]["moderation_queue_per_s"] > QUEUE_MSGS_PER_S else "")
                     for u in USERS]))
    out.append(line(f"coturn nodes ({TURN_NODE_GBPS} Gbit/s each, one spare)",
                    [str(rows[u]["turn_nodes"]) for u in USERS]))
    return "".join(out)


def load(args) -> dict:
    figures = dict(MEASURED)
    if args.gateway_json:
        g = json.loads(Path(args.gateway_json).read_text().strip().splitlines()[-1])
        figures["gateway_lines_per_s_per_core"] = g.get("relay_msgs_per_s_per_gateway_core")
        figures["gateway_kib_per_session"] = g.get("rss_kib_per_session")
        figures["broker_publish_per_s_per_connection"] = g.get("raw_publish_per_s",
                                                               figures["broker_publish_per_s_per_connection"])
        figures["broker_consume_per_s_per_connection"] = g.get("raw_consume_per_s",
                                                               figures["broker_consume_per_s_per_connection"])
    if args.ban_json:
        figures["ban_checks_per_s"] = json.loads(Path(args.ban_json).read_text().strip().splitlines()[-1]).get(
            "checks_per_s")
    if args.snapshots_json:
        figures["moderation_snapshot_ms"] = json.loads(
            Path(args.snapshots_json).read_text().strip().splitlines()[-1]).get("analyze_ms")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateway-json")
    parser.add_argument("--ban-json")
    parser.add_argument("--snapshots-json")
    parser.add_argument("--write", action="store_true", help="replace the tables in docs/capacity.md")
    args = parser.parse_args()
    text = tables(load(args), WORKLOAD)
    if args.write:
        doc = DOC.read_text()
        before, rest = doc.split(BEGIN, 1)
        _, after = rest.split(END, 1)
        DOC.write_text(f"{before}{BEGIN}\n{text}{END}{after}")
    print(text, end="")


if __name__ == "__main__":
    main()
