"""The Kubernetes manifests: every overlay and component combination builds,
every built-in object validates against the Kubernetes schemas (offline, with
kubernetes-validate), and the objects say what the services need: native
gRPC probes on the ports they listen on, non-root read-only containers,
secrets by reference only, a grace longer than the drain, a disruption
budget, autoscaling within the matcher's partitions, spread over nodes.

The operators' custom resources are checked in test_custom_resources.py, the
network policies in test_network_policies.py, monitoring in test_monitoring.py.
"""
from __future__ import annotations

import json
import re
import tomllib

import functools

import kubernetes_validate
import kubernetes_validate.utils
import pytest

from tests.deploy.manifests import (
    NAMESPACE, ROOT, SERVICES, TURN_NAMESPACE, build, build_base, combination_id, combinations,
    container, environment, everything, find, of_kind,
)

# Validated against the oldest Kubernetes we support and a current one. 1.30:
# PodDisruptionBudget.unhealthyPodEvictionPolicy (beta, on by default since
# 1.27), NetworkPolicy endPort (1.25), gRPC probes (1.27) and
# HorizontalPodAutoscaler v2 are all there.
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")

# API groups whose objects Kubernetes itself serves: these must validate.
BUILT_IN_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io",
                   "rbac.authorization.k8s.io", "storage.k8s.io"}
# Custom resources we ship, checked against their operators' documented fields
# in test_custom_resources.py.
CUSTOM_KINDS = {"rabbitmq.com/RabbitmqCluster", "postgresql.cnpg.io/Cluster",
                "monitoring.coreos.com/ServiceMonitor", "monitoring.coreos.com/PodMonitor",
                "monitoring.coreos.com/PrometheusRule", "gateway.networking.k8s.io/Gateway",
                "gateway.networking.k8s.io/HTTPRoute", "gateway.networking.k8s.io/GRPCRoute"}

SECRET_NAME = "parley-secrets"
DEFAULT_DRAIN_SECONDS = 5.0
COMBINATIONS = combinations()
OVERLAYS = ("dev", "prod")

# Where each overlay takes each secret setting from: (Secret, key).
SECRET_SOURCES = {
    "dev": {
        "gateway": {"PARLEY_AMQP_URL": (SECRET_NAME, "amqp-url"), "PARLEY_IP_PEPPER": (SECRET_NAME, "ip-pepper"),
                    "PARLEY_DEVICE_TOKEN_SECRET": (SECRET_NAME, "device-token-secret"),
                    "PARLEY_TURN_SECRET": (SECRET_NAME, "turn-secret")},
        "matcher": {"PARLEY_AMQP_URL": (SECRET_NAME, "amqp-url")},
        "moderation": {"PARLEY_AMQP_URL": (SECRET_NAME, "amqp-url"),
                       "PARLEY_MODERATION_DATABASE_URL": (SECRET_NAME, "moderation-database-url")},
        "ban": {"PARLEY_AMQP_URL": (SECRET_NAME, "amqp-url"),
                "PARLEY_BAN_DATABASE_URL": (SECRET_NAME, "ban-database-url")},
    },
    "prod": {
        # the AMQP URL is composed in the pod from the operator's Secret
        "gateway": {"RABBITMQ_PASSWORD": ("rabbitmq-default-user", "password"),
                    "PARLEY_IP_PEPPER": (SECRET_NAME, "ip-pepper"),
                    "PARLEY_DEVICE_TOKEN_SECRET": (SECRET_NAME, "device-token-secret"),
                    "PARLEY_TURN_SECRET": (SECRET_NAME, "turn-secret")},
        "matcher": {"RABBITMQ_PASSWORD": ("rabbitmq-default-user", "password")},
        "moderation": {"RABBITMQ_PASSWORD": ("rabbitmq-default-user", "password"),
                       "PARLEY_MODERATION_DATABASE_URL": ("moderation-db-app", "uri")},
        "ban": {"RABBITMQ_PASSWORD": ("rabbitmq-default-user", "password"),
                "PARLEY_BAN_DATABASE_URL": ("ban-db-app", "uri")},
    },
}
SECRET_VARS = {"PARLEY_AMQP_URL", "PARLEY_IP_PEPPER", "PARLEY_DEVICE_TOKEN_SECRET", "PARLEY_TURN_SECRET",
               "PARLEY_MODERATION_DATABASE_URL", "PARLEY_BAN_DATABASE_URL", "RABBITMQ_PASSWORD",
               "PARLEY_MODERATION_MODERATOR_TOKENS", "POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_PASS"}


def group_kind(doc: dict) -> str:
    group = doc["apiVersion"].rpartition("/")[0]
    return f"{group}/{doc['kind']}" if group else doc["kind"]


def workloads(docs) -> list[dict]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


# ------------------------------------------------------------ build, validate

@pytest.mark.parametrize("overlay,components", COMBINATIONS,
                         ids=[combination_id(o, c) for o, c in COMBINATIONS])
def test_every_combination_builds_and_validates_offline(overlay, components):
    docs = build(overlay, components)
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "an object is defined twice"
    for doc in docs:
        _validate(json.dumps(doc, sort_keys=True))


_validated: set[str] = set()
# kubernetes-validate reads its (large) schema files on every call: read each once.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
    kubernetes_validate.utils.schema_contents)


def _validate(doc_json: str) -> None:
    """Strict schema validation of one built-in object, once per distinct
    object (the combinations share most of theirs)."""
    if doc_json in _validated:
        return
    doc = json.loads(doc_json)
    what = f"{doc['kind']} {doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}"
    gk = group_kind(doc)
    group = doc["apiVersion"].rpartition("/")[0]
    if group not in BUILT_IN_GROUPS:
        assert gk in CUSTOM_KINDS, f"{what}: custom resource {gk} has no field check (test_custom_resources.py)"
        _validated.add(doc_json)
        return
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            pytest.fail(f"{what} is not valid Kubernetes {version}: {exc.message} (at {path})")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{what}: Kubernetes {version} has no {doc['apiVersion']} {doc['kind']}")
    _validated.add(doc_json)


def test_the_base_builds_and_holds_no_data_store():
    docs = build_base()
    kinds = {d["kind"] for d in docs}
    assert "StatefulSet" not in kinds, "brokers and databases belong to the overlays"
    for name in SERVICES:
        find(docs, "Deployment", name)


# ------------------------------------------------------------ each service

@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICES)
def test_each_service_has_a_deployment_and_a_service(overlay, name):
    docs = build(overlay)
    grpc_port, metrics_port = SERVICES[name]
    deployment = find(docs, "Deployment", name)
    service = find(docs, "Service", name)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector and all(pod_labels.get(k) == v for k, v in selector.items()), (
        f"Service {name} selects {selector}, pods are labelled {pod_labels}")
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports.get("grpc") == grpc_port, f"Service {name} ports: {ports}"
    assert ports.get("metrics") == metrics_port, f"Service {name} ports: {ports}"
    if name == "gateway":
        assert ports.get("http") == 8080, f"Service gateway ports: {ports}"
    assert container(deployment)["command"] == [f"parley-{name}"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICES)
def test_grpc_probes_on_the_port_the_service_listens_on(overlay, name):
    docs = build(overlay)
    grpc_port, metrics_port = SERVICES[name]
    c = container(find(docs, "Deployment", name))
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c.get(probe, {}).get("grpc", {}).get("port") == grpc_port, (
            f"{name}: {probe} must be a native gRPC probe on {grpc_port}, got {c.get(probe)}")
    assert grpc_port in {p["containerPort"] for p in c["ports"]}
    env = environment(docs, c)
    prefix = f"PARLEY_{name.upper()}_"
    assert env.get(prefix + "GRPC_PORT", {}).get("value") == str(grpc_port), (
        f"{name}: {prefix}GRPC_PORT must be {grpc_port}, the probed port")
    assert env.get(prefix + "METRICS_PORT", {}).get("value") == str(metrics_port)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICES)
def test_runs_unprivileged_and_bounded(overlay, name):
    docs = build(overlay)
    deployment = find(docs, "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    assert sc.get("runAsNonRoot") is True, f"{name}: runAsNonRoot"
    assert sc.get("runAsUser", 10001) != 0, f"{name}: runAsUser 0"
    assert sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem"
    assert sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation"
    assert "ALL" in sc.get("capabilities", {}).get("drop", []), f"{name}: capabilities not dropped"
    assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: seccomp"
    limits = c.get("resources", {}).get("limits", {})
    requests = c.get("resources", {}).get("requests", {})
    assert {"cpu", "memory"} <= limits.keys(), f"{name}: limits {limits}"
    assert {"cpu", "memory"} <= requests.keys(), f"{name}: requests {requests}"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICES)
def test_service_account_mounts_nothing(overlay, name):
    docs = build(overlay)
    pod = find(docs, "Deployment", name)["spec"]["template"]["spec"]
    assert pod.get("serviceAccountName") == name
    assert find(docs, "ServiceAccount", name).get("automountServiceAccountToken") is False
    assert pod.get("automountServiceAccountToken") is False, f"{name}: service account token mounted"
    assert pod.get("enableServiceLinks") is False, f"{name}: service links inject every Service as env"
    mounted = {v["name"] for c in pod["containers"] for v in c.get("volumeMounts", [])}
    declared = {v["name"] for v in pod.get("volumes", [])}
    assert mounted == declared, f"{name}: volumes {declared - mounted} declared but not mounted"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICES)
def test_termination_grace_covers_the_drain(overlay, name):
    docs = build(overlay)
    deployment = find(docs, "Deployment", name)
    env = environment(docs, container(deployment))
    drain = float(env.get("PARLEY_DRAIN_SECONDS", {}).get("value", DEFAULT_DRAIN_SECONDS))
    grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    # the runtime sleeps `drain` after NOT_SERVING, then stops the server with
    # grace=`drain`: the pod must outlive both, with room for the service's stop
    assert grace > 2 * drain, f"{name}: terminationGracePeriodSeconds {grace} <= 2 x drain {drain}"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICES)
def test_secrets_come_from_secrets_and_nowhere_else(overlay, name):
    docs = build(overlay)
    env = environment(docs, container(find(docs, "Deployment", name)))
    for var, (secret, key) in SECRET_SOURCES[overlay][name].items():
        ref = env.get(var, {}).get("secretKeyRef")
        assert ref is not None, f"{name}: {var} must come from a secretKeyRef, got {env.get(var)}"
        assert (ref["name"], ref["key"]) == (secret, key), f"{name}: {var} from {ref}"
    amqp = env["PARLEY_AMQP_URL"]
    if "value" in amqp:  # composed in the pod: only references, no literal password
        assert re.fullmatch(r"amqp://\$\(RABBITMQ_USERNAME\):\$\(RABBITMQ_PASSWORD\)@[\w.-]+:5672/",
                            amqp["value"]), f"{name}: PARLEY_AMQP_URL {amqp['value']!r}"
    instance = env.get("PARLEY_INSTANCE_ID", {}).get("fieldRef", {})
    assert instance.get("fieldPath") == "metadata.name", f"{name}: PARLEY_INSTANCE_ID {instance}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_variable_references_resolve(overlay):
    """Kubernetes expands $(VAR) only from variables defined before it in the
    same container; anything else stays literally in the value."""
    for workload in workloads(build(overlay)):
        spec = workload["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            defined: set[str] = set()
            for var in c.get("env", []):
                for ref in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", var.get("value", "")):
                    assert ref in defined, (f"{workload['metadata']['name']}/{c['name']}: {var['name']} "
                                            f"uses $({ref}) before it is defined")
                defined.add(var["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_values_anywhere(overlay):
    docs = everything(overlay)
    secrets = [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"]
    assert not secrets, f"manifests must only reference Secrets, found {secrets}"
    for cm in of_kind(docs, "ConfigMap"):
        leaked = SECRET_VARS & set(cm.get("data", {}))
        assert not leaked, f"ConfigMap {cm['metadata']['name']} holds secret settings {leaked}"
        for key, value in cm.get("data", {}).items():
            assert not re.search(r"://[^/@\s:$]+:[^/@\s$]+@", value), f"ConfigMap {cm['metadata']['name']}/{key}"
    for workload in workloads(docs):
        spec = workload["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            for var in c.get("env", []):
                value = var.get("value", "")
                assert not re.search(r"://[^/@\s:]+:(?!\$\()[^/@\s]+@", value), (
                    f"{workload['metadata']['name']}: {var['name']} has a password inline")
                assert var["name"] not in SECRET_VARS or "valueFrom" in var or "$(" in value, (
                    f"{workload['metadata']['name']}: {var['name']} set inline")
            assert not any("secret" in arg.lower() for arg in c.get("args", []) + c.get("command", [])
                           if "=" in arg), f"{workload['metadata']['name']}: a secret on the command line"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_sqlite_in_a_cluster(overlay):
    """The SQLite default is for one machine: every store in a cluster is PostgreSQL."""
    docs = build(overlay)
    for name in ("moderation", "ban"):
        env = environment(docs, container(find(docs, "Deployment", name)))
        assert f"PARLEY_{name.upper()}_DATABASE_URL" in env, f"{name} would fall back to SQLite"
    for workload in workloads(docs):
        for c in workload["spec"]["template"]["spec"]["containers"]:
            for var in c.get("env", []):
                assert "sqlite" not in var.get("value", "").lower(), f"{workload['metadata']['name']}: {var}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_image_for_the_four_services(overlay):
    docs = build(overlay)
    images = {name: container(find(docs, "Deployment", name))["image"] for name in SERVICES}
    assert len(set(images.values())) == 1, f"the services must share one image: {images}"
    assert images["gateway"] == "parley:0.1.0"


def test_commands_are_console_scripts_of_the_project():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    docs = build("dev")
    for name in SERVICES:
        command = container(find(docs, "Deployment", name))["command"][0]
        assert command in scripts, f"{name}: {command} is not in [project.scripts]"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_reaches_ban_through_its_service(overlay):
    docs = build(overlay)
    env = environment(docs, container(find(docs, "Deployment", "gateway")))
    host, _, port = env["PARLEY_GATEWAY_BAN_ADDR"]["value"].rpartition(":")
    ban = find(docs, "Service", host)
    assert int(port) in {p["port"] for p in ban["spec"]["ports"] if p["name"] == "grpc"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_moderation_has_its_token_file_and_a_vault_volume(overlay):
    docs = build(overlay)
    deployment = find(docs, "Deployment", "moderation")
    pod = deployment["spec"]["template"]["spec"]
    env = environment(docs, container(deployment))
    path = env["PARLEY_MODERATION_MODERATOR_TOKENS_FILE"]["value"]
    mounts = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert path.startswith(mounts["moderator-tokens"] + "/")
    secret = volumes["moderator-tokens"]["secret"]
    assert secret["secretName"] == SECRET_NAME and secret["items"][0]["key"] == "moderator-tokens"
    evidence = volumes["evidence"]
    if overlay == "prod":
        claim = evidence["persistentVolumeClaim"]["claimName"]
        pvc = find(docs, "PersistentVolumeClaim", claim)
        assert "ReadWriteMany" in pvc["spec"]["accessModes"], "every moderation replica writes the vault"
        assert "emptyDir" not in evidence
    else:
        assert "emptyDir" in evidence


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_is_namespaced_and_labelled(overlay):
    for d in everything(overlay):
        labels = d["metadata"].get("labels", {})
        what = f"{d['kind']} {d['metadata']['name']}"
        assert labels.get("app.kubernetes.io/part-of") == "parley", what
        if d["kind"] != "Namespace":
            expected = TURN_NAMESPACE if d["metadata"]["name"].startswith("coturn") else NAMESPACE
            assert d["metadata"].get("namespace") == expected, what


# ------------------------------------------------------------ replicas, scaling

def _partitions(docs) -> int:
    return int(find(docs, "ConfigMap", next(d["metadata"]["name"] for d in of_kind(docs, "ConfigMap")
                                            if d["metadata"]["name"].startswith("parley-config")))
               ["data"]["PARLEY_MATCHER_PARTITIONS"])


def test_dev_runs_one_replica_of_everything():
    docs = build("dev")
    for workload in workloads(docs):
        assert workload["spec"].get("replicas") == 1, f"{workload['metadata']['name']}: dev runs one replica"
    assert not of_kind(docs, "HorizontalPodAutoscaler")
    assert find(docs, "StatefulSet", "rabbitmq")["spec"]["volumeClaimTemplates"]
    assert find(docs, "StatefulSet", "postgres")["spec"]["volumeClaimTemplates"]


@pytest.mark.parametrize("name", SERVICES)
def test_prod_autoscales_every_service_with_two_or_more_replicas(name):
    docs = build("prod")
    deployment = find(docs, "Deployment", name)
    assert "replicas" not in deployment["spec"], (
        f"{name}: the autoscaler owns the replica count; `replicas` would reset it on every apply")
    hpas = [h for h in of_kind(docs, "HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}]
    assert len(hpas) == 1, f"{name}: expected one HorizontalPodAutoscaler"
    spec = hpas[0]["spec"]
    assert 2 <= spec["minReplicas"] <= spec["maxReplicas"], f"{name}: {spec}"
    resources = {m["resource"]["name"] for m in spec["metrics"] if m["type"] == "Resource"}
    if name in ("gateway", "moderation"):
        assert "cpu" in resources, f"{name} scales on CPU"
    if name == "matcher":
        assert spec["maxReplicas"] <= _partitions(docs), (
            "a matcher beyond PARLEY_MATCHER_PARTITIONS would own no partition")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_a_disruption_budget_that_allows_a_drain(overlay):
    docs = build(overlay)
    budgets = of_kind(docs, "PodDisruptionBudget")
    for workload in workloads(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        ns = workload["metadata"]["namespace"]
        matching = [b for b in budgets if b["metadata"]["namespace"] == ns
                    and b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, f"{workload['metadata']['name']}: {len(matching)} budgets"
        spec = matching[0]["spec"]
        # minAvailable 1 with one replica would block every node drain
        assert spec.get("maxUnavailable", 0) >= 1, f"{workload['metadata']['name']}: {spec}"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICES)
def test_replicas_spread_over_nodes_and_zones(overlay, name):
    pod = find(build(overlay), "Deployment", name)["spec"]["template"]["spec"]
    keys = {c["topologyKey"] for c in pod.get("topologySpreadConstraints", [])
            if c["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": name}}
    assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys


# ------------------------------------------------------------ pod security

def _restricted_violations(pod: dict) -> list[str]:
    """The restricted Pod Security Standard, as far as a manifest shows it."""
    out = []
    pod_sc = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            out.append(flag)
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                       "projected", "secret"}
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= allowed_volumes:
            out.append(f"volume {volume['name']}: {kinds}")
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext", {})
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
            out.append(f"{c['name']}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            out.append(f"{c['name']}: runAsUser 0")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            out.append(f"{c['name']}: capabilities.drop")
        if set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{c['name']}: capabilities.add")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{c['name']}: seccompProfile")
        if sc.get("privileged"):
            out.append(f"{c['name']}: privileged")
        if any("hostPort" in p for p in c.get("ports", [])):
            out.append(f"{c['name']}: hostPort")
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_meet_the_namespaces_pod_security_standard(overlay):
    docs = build(overlay)
    assert find(docs, "Namespace", NAMESPACE)["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        violations = _restricted_violations(pod)
        if workload["metadata"]["namespace"] == NAMESPACE:
            assert not violations, f"{workload['metadata']['name']}: {violations}"
        else:  # coturn: the host network and nothing else
            assert violations == ["hostNetwork"], f"{workload['metadata']['name']}: {violations}"


# ------------------------------------------------------------ TURN, ingress

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_coturn_runs_on_the_host_network_with_the_shared_secret(overlay):
    docs = build(overlay)
    coturn = find(docs, "Deployment", "coturn", TURN_NAMESPACE)
    namespace = find(docs, "Namespace", TURN_NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    pod = coturn["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert coturn["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0, "host ports are taken until the old pod goes"
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname", "two coturns cannot share a node's ports"
    init = pod["initContainers"][0]
    env = environment(docs, init)
    assert env["TURN_SECRET"]["secretKeyRef"] == {"name": "parley-turn-secret", "key": "turn-secret"}
    config = find(docs, "ConfigMap", next(d["metadata"]["name"] for d in of_kind(docs, "ConfigMap")
                                          if d["metadata"]["name"].startswith("coturn-config")))
    conf = config["data"]["turnserver.conf"]
    for line in ("use-auth-secret", "denied-peer-ip=10.0.0.0-10.255.255.255",
                 "denied-peer-ip=169.254.0.0-169.254.255.255", "no-cli"):
        assert line in conf.splitlines(), f"turnserver.conf lacks {line}"
    assert not any(line.startswith("static-auth-secret") for line in conf.splitlines()), (
        "the secret is added at start, from the Secret")
    # the gateway hands out TURN URLs on the port coturn listens on
    gateway_env = environment(docs, container(find(docs, "Deployment", "gateway")))
    urls = gateway_env["PARLEY_GATEWAY_TURN_URLS"]["value"].split(",")
    assert urls and all(re.fullmatch(r"turns?:[\w.-]+:3478\?transport=(udp|tcp)", u) for u in urls), urls


def test_prod_exposes_the_gateway_through_gateway_api_routes():
    docs = build("prod")
    service_ports = {p["port"]: p for p in find(docs, "Service", "gateway")["spec"]["ports"]}
    gateway = find(docs, "Gateway", "parley")
    listeners = {l["name"]: l for l in gateway["spec"]["listeners"]}
    http = find(docs, "HTTPRoute", "gateway-web")
    grpc = find(docs, "GRPCRoute", "gateway-grpc")
    for route, port, listener in ((http, 8080, "web"), (grpc, 50051, "grpc")):
        assert route["spec"]["parentRefs"] == [{"name": "parley", "sectionName": listener}]
        assert listeners[listener]["protocol"] == "HTTPS", "clients speak TLS to the edge"
        for rule in route["spec"]["rules"]:
            assert [(b["name"], b["port"]) for b in rule["backendRefs"]] == [("gateway", port)]
        assert port in service_ports
    assert service_ports[50051].get("appProtocol") == "kubernetes.io/h2c", "gRPC to the pods is h2c"
    ws = [r for r in http["spec"]["rules"] if r["matches"][0]["path"]["value"] == "/ws"]
    assert ws and ws[0]["timeouts"]["request"] == "0s", "WebSocket sessions must not time out"
    assert [m["method"]["service"] for r in grpc["spec"]["rules"] for m in r["matches"]] == ["parley.v1.Gateway"]
    assert "service Gateway" in (ROOT / "protos/parley/v1/gateway.proto").read_text()
