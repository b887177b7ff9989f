"""The metric names a PromQL expression reads, by a simple tokenizer (not a
parser: promtool checks the syntax), and what a /metrics text exports.

names_in("sum by (le) (rate(parley_x_bucket{job=~\"a\"}[5m])) > 0.5")
    -> {"parley_x_bucket"}
"""
from __future__ import annotations

import re

# Grafana's variables, replaced before tokenizing (and before promtool reads
# a dashboard expression)
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "atan2", "inf", "nan", "start", "end", "Inf", "NaN"}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*")
# what Prometheus makes up itself rather than scrapes
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"}


def substitute_grafana(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\{?\w+\}?", "x", expr)


def names_in(expr: str) -> set[str]:
    expr = substitute_grafana(expr)
    expr = _STRING.sub('""', expr)
    expr = _MATCHERS.sub("", expr)
    expr = _RANGES.sub("", expr)
    expr = _GROUPING.sub(" ", expr)
    names = set()
    for match in _IDENT.finditer(expr):
        word = match.group(0)
        rest = expr[match.end():].lstrip()
        if word in _KEYWORDS or rest.startswith("("):
            continue  # a keyword, or a function / aggregation call
        names.add(word)
    return names


def exported_names(text: str) -> set[str]:
    """Every series name a /metrics text exports, and those a family declared
    by HELP/TYPE would export once used (a labelled metric has no sample
    until a label value is first used): histogram X -> X_bucket, X_sum,
    X_count; counter X_total -> X_total."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            names.add(name)
            if kind in ("histogram", "gaugehistogram"):
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
            elif kind == "summary":
                names.update({f"{name}_sum", f"{name}_count"})
            elif kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names
