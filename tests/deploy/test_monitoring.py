"""The alerts and the dashboard, offline: `promtool check rules` on the
PrometheusRule, `promtool test rules` on what the main alerts must fire on
(and must not), a runbook entry for every alert, the dashboard JSON generated
by its script and every dashboard expression parsed by promtool.

That every metric they name is really exported is checked against running
services in test_metrics_exported.py.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import COMPONENTS, ROOT, build, find, of_kind
from tests.deploy.promql import substitute_grafana

MONITORING = COMPONENTS["monitoring"]
RUNBOOK = ROOT / "deploy" / "runbook.md"
DASHBOARD = MONITORING / "dashboards" / "parley.json"
BUILDER = MONITORING / "dashboards" / "build_dashboard.py"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: `make promtool` installs Debian's prometheus package "
                    "(deploy/local/ensure-promtool.sh)")
    return path


def rule_groups() -> list[dict]:
    docs = build("dev", ("monitoring",))
    (rule,) = of_kind(docs, "PrometheusRule")
    return rule["spec"]["groups"]


def alerts() -> list[dict]:
    return [r for g in rule_groups() for r in g["rules"] if "alert" in r]


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, check=False)


def test_promtool_checks_the_alert_rules(tmp_path):
    rules = tmp_path / "parley-rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups()}))
    result = run_promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in rule_groups())} rules found" in result.stdout


def test_every_alert_has_severity_summary_and_a_runbook_entry():
    runbook = RUNBOOK.read_text()
    anchors = {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-"))
               for h in re.findall(r"^### (.+)$", runbook, flags=re.M)}
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names)), "alert names are unique"
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("critical", "warning"), name
        assert alert["annotations"].get("summary") and alert["annotations"].get("description"), name
        url = alert["annotations"]["runbook_url"]
        assert url == f"deploy/runbook.md#{name.lower()}", f"{name}: runbook_url {url}"
        assert name.lower() in anchors, f"deploy/runbook.md has no entry '### {name}'"
        entry = runbook.split(f"### {name}\n", 1)[1].split("\n### ", 1)[0]
        assert "**Means:**" in entry and "**Do:**" in entry, f"runbook entry {name}: say what it means and what to do"


# ------------------------------------------------- the alerts fire on cue

def _series(name: str, values: str, **labels: str) -> dict:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


UNIT_TESTS = [
    {   # one service has no replica up, another has none at all
        "interval": "1m",
        "input_series": [
            _series("up", "0x10", job="parley-gateway", instance="g1"),
            _series("up", "1x10", job="parley-matcher", instance="m1"),
            _series("up", "1x10", job="parley-moderation", instance="o1"),
        ],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "ParleyServiceDown",
             "exp_alerts": [{"exp_labels": {"severity": "critical", "job": "parley-gateway"}},
                            {"exp_labels": {"severity": "critical", "job": "parley-ban"}}]},
        ],
    },
    {   # 10 % of ban checks fail open: critical; none fail: nothing
        "interval": "1m",
        "input_series": [
            _series("parley_gateway_ban_check_failures_total", "0+10x20", job="parley-gateway", instance="g1"),
            _series("parley_gateway_ban_checks_total", "0+100x20", job="parley-gateway", instance="g1"),
            _series("parley_gateway_ban_check_failures_total", "0x20", job="parley-gateway", instance="g2"),
        ],
        "alert_rule_test": [
            {"eval_time": "15m", "alertname": "ParleyBanChecksFailingOpen",
             "exp_alerts": [{"exp_labels": {"severity": "critical"}}]},
            {"eval_time": "2m", "alertname": "ParleyBanChecksFailingOpen", "exp_alerts": []},
        ],
    },
    {   # p99 time to pair far above 15 s with pairs flowing: fires for that mode only
        "interval": "1m",
        "input_series": [
            _series("parley_matcher_time_to_pair_seconds_bucket", "0+1x40", mode="MODE_TEXT", kind="random", le="1"),
            _series("parley_matcher_time_to_pair_seconds_bucket", "0+2x40", mode="MODE_TEXT", kind="random", le="15"),
            _series("parley_matcher_time_to_pair_seconds_bucket", "0+100x40", mode="MODE_TEXT", kind="random", le="30"),
            _series("parley_matcher_time_to_pair_seconds_bucket", "0+100x40", mode="MODE_TEXT", kind="random", le="+Inf"),
            _series("parley_matcher_pairs_total", "0+60x40", mode="MODE_TEXT", kind="random"),
            _series("parley_matcher_time_to_pair_seconds_bucket", "0+100x40", mode="MODE_VIDEO", kind="random", le="1"),
            _series("parley_matcher_time_to_pair_seconds_bucket", "0+100x40", mode="MODE_VIDEO", kind="random", le="+Inf"),
            _series("parley_matcher_pairs_total", "0+60x40", mode="MODE_VIDEO", kind="random"),
        ],
        "alert_rule_test": [
            {"eval_time": "35m", "alertname": "ParleyTimeToPairP99High",
             "exp_alerts": [{"exp_labels": {"severity": "warning", "mode": "MODE_TEXT"}}]},
        ],
    },
    {   # 200 users waiting while one pair a second is made (120 s of waiting): piling up;
        # 200 waiting at ten pairs a second (10 s): not
        "interval": "1m",
        "input_series": [
            _series("parley_matcher_waiting_users", "200x30", mode="MODE_VIDEO", age_band="AGE_BAND_ADULT", pod="m1"),
            _series("parley_matcher_pairs_total", "0+60x30", mode="MODE_VIDEO", kind="random", pod="m1"),
            _series("parley_matcher_waiting_users", "200x30", mode="MODE_TEXT", age_band="AGE_BAND_ADULT", pod="m1"),
            _series("parley_matcher_pairs_total", "0+600x30", mode="MODE_TEXT", kind="random", pod="m1"),
        ],
        "alert_rule_test": [
            {"eval_time": "25m", "alertname": "ParleyWaitingUsersPilingUp",
             "exp_alerts": [{"exp_labels": {"severity": "warning", "mode": "MODE_VIDEO"}}]},
        ],
    },
    {   # a decision in ban.decisions.dlq is critical; a relay frame in gateway.relay.dlq a warning
        "interval": "1m",
        "input_series": [
            _series("rabbitmq_detailed_queue_messages", "1x10", vhost="/", queue="ban.decisions.dlq"),
            _series("rabbitmq_detailed_queue_messages", "3x10", vhost="/", queue="gateway.relay.dlq"),
            _series("rabbitmq_detailed_queue_messages", "9x10", vhost="/", queue="ban.decisions"),
        ],
        "alert_rule_test": [
            {"eval_time": "6m", "alertname": "ParleyEnforcementDeadLetters",
             "exp_alerts": [{"exp_labels": {"severity": "critical", "vhost": "/", "queue": "ban.decisions.dlq"}}]},
            {"eval_time": "6m", "alertname": "ParleyDeadLetterQueueNotEmpty",
             "exp_alerts": [{"exp_labels": {"severity": "warning", "vhost": "/", "queue": "gateway.relay.dlq"}}]},
        ],
    },
    {   # a matcher partition nobody consumes
        "interval": "1m",
        "input_series": [
            _series("rabbitmq_detailed_queue_consumers", "0x10", vhost="/", queue="matcher.requests.p3"),
            _series("rabbitmq_detailed_queue_consumers", "2x10", vhost="/", queue="matcher.requests.p4"),
            _series("rabbitmq_detailed_queue_consumers", "0x10", vhost="/", queue="matcher.requests.dlq"),
        ],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "ParleyMatcherPartitionUnserved",
             "exp_alerts": [{"exp_labels": {"severity": "critical", "vhost": "/", "queue": "matcher.requests.p3"}}]},
        ],
    },
    {   # a replica without its broker connection
        "interval": "1m",
        "input_series": [
            _series("parley_matcher_bus_connected", "0x10", job="parley-matcher", instance="a", pod="matcher-a"),
            _series("parley_gateway_bus_connected", "1x10", job="parley-gateway", instance="b", pod="gateway-b"),
        ],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "ParleyBrokerConnectionLost",
             "exp_alerts": [{"exp_labels": {"severity": "critical", "job": "parley-matcher", "instance": "a",
                                            "pod": "matcher-a"}}]},
        ],
    },
    {   # a child-safety report waiting 20 minutes breaks the urgent SLA; spam 20 minutes does not
        "interval": "1m",
        "input_series": [
            _series("parley_moderation_review_oldest_open_seconds", "1200x5", category="CATEGORY_CHILD_SAFETY"),
            _series("parley_moderation_review_oldest_open_seconds", "1200x5", category="CATEGORY_SPAM"),
        ],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "ParleyReviewSLAMissedUrgent",
             "exp_alerts": [{"exp_labels": {"severity": "critical", "category": "CATEGORY_CHILD_SAFETY"}}]},
            {"eval_time": "1m", "alertname": "ParleyReviewSLAMissed", "exp_alerts": []},
        ],
    },
]


def test_the_main_alerts_fire_on_what_they_mean_and_not_otherwise(tmp_path):
    # annotations are templates of $value: promtool check rules checks them;
    # here only what fires, with which labels
    groups = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
              for g in rule_groups()]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": UNIT_TESTS}))
    result = subprocess.run([promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------- dashboard

def _builder():
    spec = importlib.util.spec_from_file_location("build_dashboard", BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict) and query.get("query", "").startswith("label_values("):
            exprs.append(re.match(r"label_values\(([^,]+),", query["query"]).group(1))
    return exprs


def test_the_dashboard_is_what_its_script_builds():
    assert DASHBOARD.read_text() == _builder().render(), (
        "deploy/k8s/components/monitoring/dashboards/parley.json is out of date: edit build_dashboard.py "
        "and run it")


def test_the_dashboard_is_shipped_as_a_grafana_configmap():
    docs = build("prod", ("monitoring",))
    cm = find(docs, "ConfigMap", "parley-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["parley.json"]) == json.loads(DASHBOARD.read_text())


def test_promtool_parses_every_dashboard_expression(tmp_path):
    exprs = dashboard_expressions()
    assert len(exprs) > 50
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expression_{i}", "expr": substitute_grafana(e)} for i, e in enumerate(exprs)]}]}
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump(rules))
    result = run_promtool("check", "rules", str(tmp_path / "dashboard.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_covers_the_areas_an_sre_watches():
    dashboard = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    for area in ("Pairing", "Sessions", "Relay", "Moderation", "Enforcement", "Broker"):
        assert any(area in r for r in rows), f"no {area} row: {rows}"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_job_names_match_the_service_monitors():
    docs = build("prod", ("monitoring",))
    jobs = {r["replacement"] for m in of_kind(docs, "ServiceMonitor") for e in m["spec"]["endpoints"]
            for r in e.get("relabelings", []) if r.get("targetLabel") == "job"}
    text = json.dumps(rule_groups()) + DASHBOARD.read_text()
    used = set(re.findall(r'job=\\?"(parley-[a-z-]+)', text))
    assert used and used <= jobs, f"alerts or dashboard name jobs {used - jobs} no monitor sets"
    alternation = re.findall(r"parley-\(([a-z|]+)\)", text)
    for group in alternation:
        assert {f"parley-{j}" for j in group.split("|")} <= jobs
