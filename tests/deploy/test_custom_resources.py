"""The operators' custom resources (RabbitmqCluster, CloudNativePG Cluster,
ServiceMonitor, PodMonitor, PrometheusRule, Gateway API routes) against the
fields their operators document (tests/deploy/crd_fields.py), since their
CRDs are not part of the Kubernetes schemas and no cluster is at hand."""
from __future__ import annotations

import pytest

from services.runtime import topology
from tests.deploy.crd_fields import SCHEMAS, Enum, Obj, Str, check
from tests.deploy.manifests import OVERLAYS, SERVICES, everything, find, of_kind


def custom_resources(overlay: str) -> list[dict]:
    return [d for d in everything(overlay)
            if d["apiVersion"].split("/")[0] not in ("v1", "apps", "policy", "autoscaling", "networking.k8s.io")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_use_documented_fields_only(overlay):
    resources = custom_resources(overlay)
    assert resources, "the overlay with every component has custom resources"
    problems = []
    for doc in resources:
        schema = SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        what = f"{doc['apiVersion']} {doc['kind']} {doc['metadata']['name']}"
        if schema is None:
            problems.append(f"{what}: no documented field list (tests/deploy/crd_fields.py)")
            continue
        assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, f"{what}: {set(doc)}"
        problems.extend(f"{what}: {p}" for p in check(doc.get("spec", {}), schema))
    assert not problems, "\n".join(problems)


def test_the_field_check_is_not_vacuous():
    schema = Obj({"replicas": Enum((1, 3, 5)), "name": Str()}, required=("name",))
    assert check({"name": "x", "replicas": 3}, schema) == []
    errors = check({"replicas": 2, "replicaz": 3}, schema)
    assert any("replicaz: not a documented field" in e for e in errors)
    assert any("not one of" in e for e in errors)
    assert any("name: required" in e for e in errors)
    bad_resources = {"resources": {"limits": {"cpu": "1"}, "requestz": {}}}
    assert check(bad_resources, SCHEMAS[("rabbitmq.com/v1beta1", "RabbitmqCluster")]), (
        "an embedded Kubernetes type is validated against its schema")


def test_prod_rabbitmq_is_a_three_node_cluster_for_quorum_queues():
    docs = everything("prod")
    cluster = find(docs, "RabbitmqCluster", "rabbitmq")
    assert cluster["spec"]["replicas"] == 3, "a quorum queue survives one node's loss with three"
    assert "StatefulSet" not in {d["kind"] for d in docs if d["metadata"]["name"] == "rabbitmq"}
    # the enforcement queues the services declare are quorum queues
    quorum = [spec.name for spec in (topology.moderation_reports(), topology.moderation_suspicions(),
                                     topology.ban_decisions())
              if spec.arguments().get("x-queue-type") == "quorum"]
    assert quorum == ["moderation.reports", "moderation.suspicions", "ban.decisions"]
    config = cluster["spec"]["rabbitmq"]["additionalConfig"]
    assert "cluster_partition_handling = pause_minority" in config
    # the services' AMQP host is the operator's Service, named after the cluster
    gateway = find(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
    url = next(v["value"] for v in gateway["env"] if v["name"] == "PARLEY_AMQP_URL")
    assert "@rabbitmq:5672/" in url


def test_prod_postgresql_is_one_cloudnativepg_cluster_per_service():
    docs = everything("prod")
    clusters = {c["metadata"]["name"]: c for c in of_kind(docs, "Cluster")}
    assert set(clusters) == {"moderation-db", "ban-db"}
    for name, cluster in clusters.items():
        spec = cluster["spec"]
        assert spec["instances"] >= 3, f"{name}: a primary and two standbys"
        assert spec["postgresql"]["synchronous"]["number"] >= 1, f"{name}: a committed write survives failover"
        assert spec["affinity"]["podAntiAffinityType"] == "required"
        assert spec["enableSuperuserAccess"] is False
        service = name.removesuffix("-db")
        assert spec["inheritedMetadata"]["labels"]["parley.io/postgres"] == service
        deployment = find(docs, "Deployment", service)
        env = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        ref = env[f"PARLEY_{service.upper()}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"{name}-app", "key": "uri"}, "CloudNativePG's app Secret holds the URL"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_metrics_port_has_a_service_monitor(overlay):
    docs = everything(overlay)
    monitors = of_kind(docs, "ServiceMonitor")
    for name, (_, metrics_port) in SERVICES.items():
        service = find(docs, "Service", name)
        matching = [m for m in monitors
                    if m["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()]
        assert len(matching) == 1, f"{name}: {len(matching)} ServiceMonitors"
        ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
        endpoint = matching[0]["spec"]["endpoints"][0]
        assert ports[endpoint["port"]] == metrics_port
        assert {"targetLabel": "job", "replacement": f"parley-{name}"} in endpoint["relabelings"]
    # RabbitMQ: the dev Service names its metrics port as the operator does
    rabbit_monitor = find(docs, "ServiceMonitor", "rabbitmq")
    if overlay == "dev":
        ports = {p["name"] for p in find(docs, "Service", "rabbitmq")["spec"]["ports"]}
        assert {e["port"] for e in rabbit_monitor["spec"]["endpoints"]} <= ports
