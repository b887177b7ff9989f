"""Prometheus metrics named `parley_<service>_<name>`, served on the
service's own metrics port. Metric objects are created once per process and
name, so code that builds a component twice (tests) gets the same series."""
from __future__ import annotations

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram

_created: dict[str, object] = {}


class Metrics:
    def __init__(self, service: str) -> None:
        self.service = service

    def _make(self, cls, name: str, doc: str, labels, **kwargs):
        full = f"parley_{self.service}_{name}"
        metric = _created.get(full)
        if metric is None:
            metric = cls(full, doc, tuple(labels), **kwargs)
            _created[full] = metric
        return metric

    def counter(self, name: str, doc: str, labels=()) -> Counter:
        # prometheus_client appends _total to counters itself.
        return self._make(Counter, name.removesuffix("_total"), doc, labels)

    def gauge(self, name: str, doc: str, labels=()) -> Gauge:
        return self._make(Gauge, name, doc, labels)

    def histogram(self, name: str, doc: str, labels=(), buckets=None) -> Histogram:
        kwargs = {"buckets": buckets} if buckets else {}
        return self._make(Histogram, name, doc, labels, **kwargs)


def serve_metrics(port: int, host: str = "0.0.0.0") -> int:
    """Start the /metrics HTTP server in a background thread; returns the port."""
    server, _thread = prometheus_client.start_http_server(port, addr=host)
    return server.server_address[1]
