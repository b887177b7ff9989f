"""The network policies, evaluated: deny by default, only the gateway takes
traffic from outside the namespace, each service reaches only what it talks
to. A small evaluator of NetworkPolicy semantics (pod and namespace
selectors, ipBlock, ports and port ranges; a connection needs the sender's
egress and the receiver's ingress) runs the design's conversation matrix
against the rendered policies of each overlay."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest

from tests.deploy.manifests import NAMESPACE, build, of_kind


@dataclass(frozen=True)
class Peer:
    name: str
    namespace: str | None                  # None: outside the cluster
    labels: dict = field(default_factory=dict, hash=False)
    ip: str = "10.0.0.10"


NAMESPACE_LABELS = {
    NAMESPACE: {"kubernetes.io/metadata.name": NAMESPACE},
    "monitoring": {"kubernetes.io/metadata.name": "monitoring"},
    "kube-system": {"kubernetes.io/metadata.name": "kube-system"},
    "cnpg-system": {"kubernetes.io/metadata.name": "cnpg-system"},
    "rabbitmq-system": {"kubernetes.io/metadata.name": "rabbitmq-system"},
    "default": {"kubernetes.io/metadata.name": "default"},
}


def selector_matches(selector: dict | None, labels: dict) -> bool:
    if selector is None:
        return True
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def peer_matches(rule_peer: dict, policy_ns: str, other: Peer) -> bool:
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        return (address in ipaddress.ip_network(block["cidr"])
                and not any(address in ipaddress.ip_network(e) for e in block.get("except", [])))
    if other.namespace is None:
        return False  # selectors only ever match pods
    ns_selector = rule_peer.get("namespaceSelector")
    pod_selector = rule_peer.get("podSelector")
    if ns_selector is None:
        ns_ok = other.namespace == policy_ns
    else:
        ns_ok = selector_matches(ns_selector, NAMESPACE_LABELS.get(other.namespace, {}))
    return ns_ok and selector_matches(pod_selector, other.labels)


def port_matches(rule_ports: list | None, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        low, high = p["port"], p.get("endPort", p["port"])
        if low <= port <= high:
            return True
    return False


def allowed_side(policies, pod: Peer, other: Peer, port: int, protocol: str, direction: str) -> bool:
    """Whether `pod`'s policies let the connection through on its side."""
    if pod.namespace != NAMESPACE:
        return True  # only namespace parley has policies
    kind, rules_key, peers_key = ("Ingress", "ingress", "from") if direction == "in" else ("Egress", "egress", "to")
    selecting = [p for p in policies if selector_matches(p["spec"]["podSelector"], pod.labels)
                 and kind in p["spec"].get("policyTypes", ["Ingress"])]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key)
            if (not peers or any(peer_matches(pr, policy["metadata"]["namespace"], other) for pr in peers)) \
                    and port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def connects(policies, src: Peer, dst: Peer, port: int, protocol: str = "TCP") -> bool:
    return (allowed_side(policies, src, dst, port, protocol, "out")
            and allowed_side(policies, dst, src, port, protocol, "in"))


def pods(overlay: str) -> dict[str, Peer]:
    def app(name, **extra):
        return Peer(name, NAMESPACE, {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "parley", **extra})
    out = {name: app(name) for name in ("gateway", "matcher", "moderation", "ban")}
    out["rabbitmq"] = app("rabbitmq")  # the dev StatefulSet and the operator's pods carry this label
    if overlay == "dev":
        out["postgres-moderation"] = out["postgres-ban"] = app("postgres", **{"parley.io/postgres": "shared"})
    else:  # CloudNativePG instances, with the labels inheritedMetadata gives them
        for service in ("moderation", "ban"):
            out[f"postgres-{service}"] = Peer(f"{service}-db-1", NAMESPACE, {
                "cnpg.io/cluster": f"{service}-db", "cnpg.io/podRole": "instance", "parley.io/postgres": service})
    out.update({
        "internet": Peer("a browser", None, ip="203.0.113.7"),
        "prometheus": Peer("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}),
        "dns": Peer("coredns", "kube-system", {"k8s-app": "kube-dns"}),
        "stranger-pod": Peer("some pod", "default", {"app": "curious"}),
        "moderator-tools": app("modctl", **{"parley.io/moderation-client": "true"}),
        "admin-tools": app("debug", **{"parley.io/admin-client": "true"}),
        "cnpg-operator": Peer("cnpg", "cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg"}),
        "rabbitmq-operator": Peer("operator", "rabbitmq-system", {"app.kubernetes.io/name": "rabbitmq-cluster-operator"}),
    })
    # the design's workloads must be what the manifests label them
    docs = build(overlay)
    labelled = [w["spec"]["template"]["metadata"]["labels"] for w in docs
                if w["kind"] in ("Deployment", "StatefulSet") and w["metadata"]["namespace"] == NAMESPACE]
    for name in ("gateway", "matcher", "moderation", "ban"):
        assert any(out[name].labels.items() <= labels.items() for labels in labelled), name
    return out


# (from, to, port, protocol): what the design has the pieces say to each other
ALLOWED = [
    ("internet", "gateway", 8080), ("internet", "gateway", 50051),
    ("stranger-pod", "gateway", 8080),
    ("gateway", "ban", 50054), ("gateway", "rabbitmq", 5672),
    ("matcher", "rabbitmq", 5672), ("moderation", "rabbitmq", 5672), ("ban", "rabbitmq", 5672),
    ("moderation", "postgres-moderation", 5432), ("ban", "postgres-ban", 5432),
    ("prometheus", "gateway", 9101), ("prometheus", "matcher", 9102), ("prometheus", "moderation", 9103),
    ("prometheus", "ban", 9104), ("prometheus", "rabbitmq", 15692),
    ("moderator-tools", "moderation", 50053), ("admin-tools", "ban", 50054), ("admin-tools", "matcher", 50052),
    ("rabbitmq", "rabbitmq", 25672), ("rabbitmq", "rabbitmq", 4369), ("rabbitmq", "rabbitmq", 35680),
    ("rabbitmq-operator", "rabbitmq", 15672),
    ("cnpg-operator", "postgres-moderation", 8000),
]
DENIED = [
    # nothing but the gateway takes traffic from outside
    ("internet", "matcher", 50052), ("internet", "moderation", 50053), ("internet", "ban", 50054),
    ("internet", "rabbitmq", 5672), ("internet", "rabbitmq", 15672), ("internet", "postgres-ban", 5432),
    ("internet", "gateway", 9101), ("stranger-pod", "ban", 50054), ("stranger-pod", "rabbitmq", 5672),
    ("stranger-pod", "gateway", 9101), ("stranger-pod", "moderation", 50053),
    # each service reaches only what it talks to
    ("gateway", "postgres-ban", 5432), ("gateway", "moderation", 50053), ("gateway", "matcher", 50052),
    ("gateway", "rabbitmq", 15672), ("matcher", "ban", 50054), ("matcher", "postgres-moderation", 5432),
    ("moderation", "ban", 50054), ("ban", "moderation", 50053), ("ban", "gateway", 50051),
    ("gateway", "internet", 443), ("matcher", "internet", 443), ("moderation", "internet", 443),
    ("ban", "internet", 443), ("gateway", "stranger-pod", 8080),
    ("moderator-tools", "ban", 50054), ("prometheus", "rabbitmq", 5672), ("admin-tools", "rabbitmq", 5672),
]
DENIED_PROD_ONLY = [("moderation", "postgres-ban", 5432), ("ban", "postgres-moderation", 5432)]


def policies_of(overlay: str):
    return of_kind(build(overlay, ("network-policies",)), "NetworkPolicy")


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_design_conversations_are_allowed(overlay):
    policies, peers = policies_of(overlay), pods(overlay)
    refused = [(a, b, port) for a, b, port in ALLOWED if not connects(policies, peers[a], peers[b], port)]
    assert not refused, f"the network policies refuse conversations of the design: {refused}"
    for name in ("gateway", "matcher", "moderation", "ban", "rabbitmq", "postgres-ban"):
        for protocol in ("UDP", "TCP"):
            assert connects(policies, peers[name], peers["dns"], 53, protocol), f"{name} cannot resolve names"


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_everything_else_is_denied(overlay):
    policies, peers = policies_of(overlay), pods(overlay)
    denied = DENIED + (DENIED_PROD_ONLY if overlay == "prod" else [])
    let_through = [(a, b, port) for a, b, port in denied if connects(policies, peers[a], peers[b], port)]
    assert not let_through, f"the network policies let through: {let_through}"


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_deny_by_default(overlay):
    policies = policies_of(overlay)
    default = [p for p in policies if p["spec"]["podSelector"] == {}
               and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert len(default) == 1, "one policy selects every pod and allows nothing"
    # a new, unlabelled pod in the namespace talks to nobody and nobody to it
    newcomer = Peer("newcomer", NAMESPACE, {"app.kubernetes.io/name": "newcomer"})
    peers = pods(overlay)
    assert not connects(policies, peers["internet"], newcomer, 8080)
    assert not connects(policies, newcomer, peers["rabbitmq"], 5672)
    assert not connects(policies, newcomer, peers["internet"], 443)


def test_only_the_gateway_accepts_traffic_from_outside_the_namespace():
    policies = policies_of("prod")
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            if not peers:  # from anywhere
                assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "gateway"}}, (
                    f"{policy['metadata']['name']} admits anyone")
                assert {p["port"] for p in rule["ports"]} == {8080, 50051}
