"""Writes parley.json, the Grafana dashboard of Parley, beside this file.

    .venv/bin/python deploy/k8s/components/monitoring/dashboards/build_dashboard.py

The JSON is generated (edit this file, not the JSON): a test checks that the
two agree, that every expression parses, and that every metric named here is
exported by a running service (tests/deploy). Rows: overview, pairing,
sessions, relay, moderation, enforcement, Parley's side of the broker, and
RabbitMQ itself (rabbitmq_prometheus).
"""
from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("parley.json")
NS = 'namespace=~"$namespace"'
RI = "$__rate_interval"
SERVICES = ("gateway", "matcher", "moderation", "ban")

_panels: list[dict] = []
_y = 0
_x = 0
_row_h = 0


def _place(w: int, h: int) -> dict:
    global _x, _y, _row_h
    if _x + w > 24:
        _x, _y, _row_h = 0, _y + _row_h, 0
    pos = {"x": _x, "y": _y, "w": w, "h": h}
    _x += w
    _row_h = max(_row_h, h)
    return pos


def row(title: str) -> None:
    global _x, _y, _row_h
    _y += _row_h
    _x, _row_h = 0, 0
    _panels.append({"type": "row", "title": title, "collapsed": False,
                    "gridPos": {"x": 0, "y": _y, "w": 24, "h": 1}, "panels": []})
    _y += 1


def panel(title: str, targets: list[tuple[str, str]], *, unit: str = "short", kind: str = "timeseries",
          w: int = 8, h: int = 8, description: str = "", stack: bool = False) -> None:
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": _place(w, h),
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for i, (expr, legend) in enumerate(targets)],
    }
    if kind == "timeseries" and stack:
        p["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "normal"}, "fillOpacity": 20}
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    _panels.append(p)


def quantiles(metric: str, by: str = "", qs=(0.5, 0.99)) -> list[tuple[str, str]]:
    group = f"le{', ' + by if by else ''}"
    legend_by = "".join(f" {{{{{b.strip()}}}}}" for b in by.split(",") if b.strip())
    return [(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{NS}}}[{RI}])))",
             f"p{int(q * 100)}{legend_by}") for q in qs]


def per_service(template: str, legend: str) -> list[tuple[str, str]]:
    """The same bus series of each service (parley_<service>_...)."""
    return [(template.format(s=s, ns=NS, ri=RI), legend.format(s=s)) for s in SERVICES]


def build() -> dict:
    # ------------------------------------------------------------ overview
    row("Overview")
    panel("Live sessions", [(f"sum(parley_gateway_sessions{{{NS}}})", "sessions")], kind="stat", w=4, h=5)
    panel("Pairs per second", [(f"sum(rate(parley_matcher_pairs_total{{{NS}}}[{RI}]))", "pairs/s")],
          kind="stat", w=4, h=5, unit="ops")
    panel("Time to pair p99", [(f"histogram_quantile(0.99, sum by (le) (rate("
                                f"parley_matcher_time_to_pair_seconds_bucket{{{NS}}}[{RI}])))", "p99")],
          kind="stat", w=4, h=5, unit="s")
    panel("Waiting users", [(f"sum(parley_matcher_waiting_users{{{NS}}})", "waiting")], kind="stat", w=4, h=5)
    panel("Ban checks failing open", [(f"sum(rate(parley_gateway_ban_check_failures_total{{{NS}}}[{RI}]))",
                                       "failures/s")], kind="stat", w=4, h=5, unit="ops")
    panel("Replicas up", [(f'sum by (job) (up{{{NS}, job=~"parley-.*"}})', "{{job}}")],
          kind="stat", w=4, h=5)

    # ------------------------------------------------------------- pairing
    row("Pairing (matcher)")
    panel("Pairs per second by mode and kind",
          [(f"sum by (mode, kind) (rate(parley_matcher_pairs_total{{{NS}}}[{RI}]))", "{{mode}} {{kind}}")],
          unit="ops", stack=True)
    panel("Time to pair by mode", quantiles("parley_matcher_time_to_pair_seconds", "mode"), unit="s",
          description="From a user's match request to their pair (interest fallback included).")
    panel("Waiting users by pool",
          [(f"sum by (mode, age_band) (parley_matcher_waiting_users{{{NS}}})", "{{mode}} {{age_band}}")])
    panel("Match requests by kind",
          [(f"sum by (kind) (rate(parley_matcher_requests_total{{{NS}}}[{RI}]))", "{{kind}}")], unit="ops")
    panel("Tickets expired, failovers, rebalances",
          [(f"sum(rate(parley_matcher_tickets_expired_total{{{NS}}}[{RI}]))", "tickets expired/s"),
           (f"sum(increase(parley_matcher_failovers_total{{{NS}}}[{RI}]))", "failovers"),
           (f"sum(increase(parley_matcher_rebalances_total{{{NS}}}[{RI}]))", "rebalances")])
    panel("Partitions per replica",
          [(f"sum by (pod) (parley_matcher_partitions_active{{{NS}}})", "active {{pod}}"),
           (f"sum by (pod) (parley_matcher_partitions_owned{{{NS}}})", "owned {{pod}}"),
           (f"max(parley_matcher_members{{{NS}}})", "replicas alive")])

    # ------------------------------------------------------------ sessions
    row("Sessions (gateway)")
    panel("Live sessions by phase",
          [(f"sum by (phase) (parley_gateway_sessions{{{NS}}})", "{{phase}}")], stack=True)
    panel("Live sessions by transport and replica",
          [(f"sum by (transport, pod) (parley_gateway_sessions{{{NS}}})", "{{transport}} {{pod}}")])
    panel("Sessions opened per second",
          [(f"sum by (transport) (rate(parley_gateway_sessions_opened_total{{{NS}}}[{RI}]))", "{{transport}}")],
          unit="ops")
    panel("Refused requests by reason",
          [(f"sum by (reason) (rate(parley_gateway_rejects_total{{{NS}}}[{RI}]))", "{{reason}}")], unit="ops")
    panel("Matches connected and refused",
          [(f"sum(rate(parley_gateway_matches_connected_total{{{NS}}}[{RI}]))", "connected/s"),
           (f"sum(rate(parley_gateway_matches_refused_total{{{NS}}}[{RI}]))", "refused/s")], unit="ops")
    panel("Proof-of-work difficulty asked",
          quantiles("parley_gateway_proof_of_work_difficulty", qs=(0.5, 0.99)), unit="none",
          description="Leading zero bits asked of new sessions; it rises for addresses opening sessions fast.")

    # --------------------------------------------------------------- relay
    row("Relay")
    panel("Chat lines relayed per second",
          [(f"sum(rate(parley_gateway_messages_relayed_total{{{NS}}}[{RI}]))", "lines/s")], unit="ops")
    panel("Relay latency between gateways", quantiles("parley_gateway_relay_latency_seconds",
                                                       qs=(0.5, 0.9, 0.99)), unit="s",
          description="From the sending gateway's publish to the receiving gateway (target p99 10 ms).")
    panel("Video snapshots to moderation",
          [(f"sum(rate(parley_gateway_snapshots_forwarded_total{{{NS}}}[{RI}]))", "snapshots/s")], unit="ops")

    # ---------------------------------------------------------- moderation
    row("Moderation")
    panel("Chat lines observed by mode and age band",
          [(f"sum by (mode, age_band) (rate(parley_moderation_messages_observed_total{{{NS}}}[{RI}]))",
            "{{mode}} {{age_band}}")], unit="ops")
    panel("Reports received",
          [(f"sum by (category, outcome) (rate(parley_moderation_reports_received_total{{{NS}}}[{RI}]))",
            "{{category}} {{outcome}}")], unit="ops")
    panel("Review queue",
          [(f"max(parley_moderation_review_queue_open{{{NS}}})", "open items"),
           (f"max(parley_moderation_decisions_unpublished{{{NS}}})", "decisions not yet published")])
    panel("Oldest open review item by category",
          [(f"max by (category) (parley_moderation_review_oldest_open_seconds{{{NS}}})", "{{category}}")],
          unit="s", description="The review SLA: 15 min for child safety and underage, 24 h for the rest.")
    panel("Moderation lag", quantiles("parley_moderation_event_lag_seconds", "event"), unit="s",
          description="From an event's occurrence to moderation having handled it.")
    panel("Decisions by action",
          [(f"sum by (action) (rate(parley_moderation_decisions_total{{{NS}}}[{RI}]))", "{{action}}")],
          unit="ops")
    panel("Verdicts carried out on live sessions",
          [(f"sum by (kind) (rate(parley_gateway_moderation_actions_total{{{NS}}}[{RI}]))", "{{kind}}")],
          unit="ops")

    # --------------------------------------------------------- enforcement
    row("Enforcement (ban)")
    panel("Ban checks at the gateways",
          [(f"sum by (result) (rate(parley_gateway_ban_checks_total{{{NS}}}[{RI}]))", "{{result}}"),
           (f"sum(rate(parley_gateway_ban_check_failures_total{{{NS}}}[{RI}]))", "failed open")], unit="ops")
    panel("CheckBan duration", quantiles("parley_ban_check_duration_seconds", qs=(0.5, 0.99)), unit="s")
    panel("CheckBan answers",
          [(f"sum by (result) (rate(parley_ban_checks_total{{{NS}}}[{RI}]))", "{{result}}")], unit="ops")
    panel("Bans issued and lifted",
          [(f"sum by (category) (rate(parley_ban_bans_issued_total{{{NS}}}[{RI}]))", "issued {{category}}"),
           (f"sum(rate(parley_ban_bans_lifted_total{{{NS}}}[{RI}]))", "lifted")], unit="ops")
    panel("Decisions applied",
          [(f"sum by (action, outcome) (rate(parley_ban_decisions_total{{{NS}}}[{RI}]))",
            "{{action}} {{outcome}}")], unit="ops")
    panel("Ban announcements that failed",
          [(f"sum by (event) (increase(parley_ban_announce_failures_total{{{NS}}}[{RI}]))", "{{event}}")])

    # ---------------------------------------------------- broker (Parley)
    row("Broker: Parley's side")
    panel("Connected to RabbitMQ",
          per_service("min(parley_{s}_bus_connected{{{ns}}})", "{s}"), unit="bool",
          description="1 while every replica of the service has its broker connection.")
    panel("Events published per second",
          per_service("sum(rate(parley_{s}_events_published_total{{{ns}}}[{ri}]))", "{s}"), unit="ops")
    panel("Events consumed per second by outcome",
          per_service("sum by (outcome) (rate(parley_{s}_events_consumed_total{{{ns}}}[{ri}]))",
                      "{s} {{{{outcome}}}}"), unit="ops")
    panel("Dead-lettered by the services",
          per_service("sum by (queue) (increase(parley_{s}_events_dead_lettered_total{{{ns}}}[{ri}]))",
                      "{s} {{{{queue}}}}"))
    panel("Publish failures",
          per_service("sum(increase(parley_{s}_bus_publish_failures_total{{{ns}}}[{ri}]))", "{s}")
          + [(f"sum(increase(parley_matcher_announce_failures_total{{{NS}}}[{RI}]))", "matcher MatchFound")])

    # ---------------------------------------------------- broker (RabbitMQ)
    row("Broker: RabbitMQ")
    panel("Queue depth (ready)",
          [(f'topk(15, sum by (queue) (rabbitmq_detailed_queue_messages_ready{{{NS}, queue!~".+\\\\.dlq"}}))',
            "{{queue}}")])
    panel("Unacked (waiting tickets, work in progress)",
          [(f"topk(15, sum by (queue) (rabbitmq_detailed_queue_messages_unacked{{{NS}}}))", "{{queue}}")])
    panel("Dead-letter queues",
          [(f'sum by (queue) (rabbitmq_detailed_queue_messages{{{NS}, queue=~".+\\\\.dlq"}})', "{{queue}}")])
    panel("Consumers per matcher partition",
          [(f'sum by (queue) (rabbitmq_detailed_queue_consumers{{{NS}, queue=~"matcher\\\\.requests\\\\.p[0-9]+"}})',
            "{{queue}}")])
    panel("Messages in and out per second",
          [(f"sum(rate(rabbitmq_global_messages_received_total{{{NS}}}[{RI}]))", "received"),
           (f"sum(rate(rabbitmq_global_messages_routed_total{{{NS}}}[{RI}]))", "routed"),
           (f"sum(rate(rabbitmq_global_messages_delivered_total{{{NS}}}[{RI}]))", "delivered"),
           (f"sum(rate(rabbitmq_global_messages_confirmed_total{{{NS}}}[{RI}]))", "confirmed"),
           (f"sum(rate(rabbitmq_global_messages_unroutable_dropped_total{{{NS}}}[{RI}]))", "unroutable dropped")],
          unit="ops")
    panel("Connections, channels, queues",
          [(f"sum(rabbitmq_connections{{{NS}}})", "connections"),
           (f"sum(rabbitmq_channels{{{NS}}})", "channels"),
           (f"sum(rabbitmq_queues{{{NS}}})", "queues")])
    panel("Memory used of the alarm limit",
          [(f"sum by (instance) (rabbitmq_process_resident_memory_bytes{{{NS}}}) / "
            f"sum by (instance) (rabbitmq_resident_memory_limit_bytes{{{NS}}})", "{{instance}}")],
          unit="percentunit")
    panel("Disk free above the alarm limit",
          [(f"sum by (instance) (rabbitmq_disk_space_available_bytes{{{NS}}}) - "
            f"sum by (instance) (rabbitmq_disk_space_available_limit_bytes{{{NS}}})", "{{instance}}")],
          unit="bytes")
    panel("Resource alarms",
          [(f"max(rabbitmq_alarms_memory_used_watermark{{{NS}}})", "memory"),
           (f"max(rabbitmq_alarms_free_disk_space_watermark{{{NS}}})", "disk"),
           (f"max(rabbitmq_alarms_file_descriptor_limit{{{NS}}})", "file descriptors")])

    return {
        "title": "Parley",
        "uid": "parley-overview",
        "description": "Parley: pairing, sessions, relay, moderation, enforcement and the broker.",
        "tags": ["parley"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            {"name": "namespace", "label": "Namespace", "type": "query",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(parley_gateway_bus_connected, namespace)", "refId": "namespace"},
             "definition": "label_values(parley_gateway_bus_connected, namespace)",
             "refresh": 2, "includeAll": True, "multi": False, "current": {}, "hide": 0},
        ]},
        "annotations": {"list": []},
        "panels": _panels,
    }


def render() -> str:
    global _panels, _x, _y, _row_h
    _panels, _x, _y, _row_h = [], 0, 0, 0
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
