"""The deploy set: the kustomize base builds and says what the services need,
and the image definition is multi-stage and unprivileged.

`kubectl kustomize` runs once per module (well under a second); nothing is
applied and no cluster is needed.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "k8s" / "base"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

# service -> gRPC port, metrics port (fixed by the design; see deploy/README.md)
SERVICES = {
    "gateway": (50051, 9101),
    "matcher": (50052, 9102),
    "moderation": (50053, 9103),
    "ban": (50054, 9104),
}
SECRET_NAME = "parley-secrets"
# variables that must only ever come from the Secret
SECRET_VARS = {
    "gateway": {"PARLEY_AMQP_URL": "amqp-url", "PARLEY_IP_PEPPER": "ip-pepper",
                "PARLEY_DEVICE_TOKEN_SECRET": "device-token-secret", "PARLEY_TURN_SECRET": "turn-secret"},
    "matcher": {"PARLEY_AMQP_URL": "amqp-url"},
    "moderation": {"PARLEY_AMQP_URL": "amqp-url",
                   "PARLEY_MODERATION_DATABASE_URL": "moderation-database-url"},
    "ban": {"PARLEY_AMQP_URL": "amqp-url", "PARLEY_BAN_DATABASE_URL": "ban-database-url"},
}
DEFAULT_DRAIN_SECONDS = 5.0


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH: the deploy tests need `kubectl kustomize` "
                    "(kubectl >= 1.27 bundles kustomize v5)")
    result = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, f"kubectl kustomize {BASE} failed:\n{result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def find(docs: list[dict], kind: str, name: str) -> dict:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r}, found {len(matches)}"
    return matches[0]


def container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: expected one container"
    return containers[0]


def environment(docs: list[dict], c: dict) -> dict[str, dict]:
    """Each variable the container gets -> {"value": ...} or the valueFrom
    source, with envFrom ConfigMaps resolved (explicit env wins, as in k8s)."""
    env: dict[str, dict] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            cm = find(docs, "ConfigMap", source["configMapRef"]["name"])
            for key, value in cm.get("data", {}).items():
                env[key] = {"value": value, "from": "configMap"}
    for var in c.get("env", []):
        if "valueFrom" in var:
            ref = var["valueFrom"]
            if "configMapKeyRef" in ref:
                cm = find(docs, "ConfigMap", ref["configMapKeyRef"]["name"])
                env[var["name"]] = {"value": cm["data"][ref["configMapKeyRef"]["key"]],
                                    "from": "configMap"}
            else:
                env[var["name"]] = ref
        else:
            env[var["name"]] = {"value": var.get("value", ""), "from": "inline"}
    return env


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_has_a_deployment_and_a_service(docs, name):
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


@pytest.mark.parametrize("name", SERVICES)
def test_grpc_probes_on_the_port_the_service_listens_on(docs, name):
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


@pytest.mark.parametrize("name", SERVICES)
def test_runs_unprivileged_and_bounded(docs, name):
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
    assert pod.get("automountServiceAccountToken") is False, f"{name}: service account token mounted"
    assert pod.get("serviceAccountName") == name
    find(docs, "ServiceAccount", name)
    limits = c.get("resources", {}).get("limits", {})
    requests = c.get("resources", {}).get("requests", {})
    assert {"cpu", "memory"} <= limits.keys(), f"{name}: limits {limits}"
    assert {"cpu", "memory"} <= requests.keys(), f"{name}: requests {requests}"


@pytest.mark.parametrize("name", SERVICES)
def test_termination_grace_covers_the_drain(docs, name):
    deployment = find(docs, "Deployment", name)
    env = environment(docs, container(deployment))
    drain = float(env.get("PARLEY_DRAIN_SECONDS", {}).get("value", DEFAULT_DRAIN_SECONDS))
    grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    # the runtime sleeps `drain` after NOT_SERVING, then stops the server with
    # grace=`drain`: the pod must outlive both, with room for the service's stop
    assert grace > 2 * drain, f"{name}: terminationGracePeriodSeconds {grace} <= 2 x drain {drain}"


@pytest.mark.parametrize("name", SERVICES)
def test_secrets_come_from_the_secret_and_nowhere_else(docs, name):
    env = environment(docs, container(find(docs, "Deployment", name)))
    for var, key in SECRET_VARS[name].items():
        ref = env.get(var, {}).get("secretKeyRef")
        assert ref is not None, f"{name}: {var} must come from a secretKeyRef, got {env.get(var)}"
        assert (ref["name"], ref["key"]) == (SECRET_NAME, key), f"{name}: {var} from {ref}"
    instance = env.get("PARLEY_INSTANCE_ID", {}).get("fieldRef", {})
    assert instance.get("fieldPath") == "metadata.name", f"{name}: PARLEY_INSTANCE_ID {instance}"


def test_no_secret_values_in_the_base(docs):
    secrets = [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"]
    assert not secrets, f"the base must only reference Secrets, found {secrets}"
    secret_vars = set().union(*SECRET_VARS.values())
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        leaked = secret_vars & set(cm.get("data", {}))
        assert not leaked, f"ConfigMap {cm['metadata']['name']} holds secret settings {leaked}"
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                for var in c.get("env", []):
                    assert not ("value" in var and re.search(r"://[^/@\s]+:[^/@\s]+@", var["value"])), (
                        f"{d['metadata']['name']}: {var['name']} has a password inline")


def test_one_image_for_the_four_services(docs):
    images = {name: container(find(docs, "Deployment", name))["image"] for name in SERVICES}
    assert len(set(images.values())) == 1, f"the services must share one image: {images}"
    assert images["gateway"] == "parley:0.1.0"


def test_commands_are_console_scripts_of_the_project(docs):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name in SERVICES:
        command = container(find(docs, "Deployment", name))["command"][0]
        assert command in scripts, f"{name}: {command} is not in [project.scripts]"


def test_gateway_reaches_ban_through_its_service(docs):
    env = environment(docs, container(find(docs, "Deployment", "gateway")))
    host, _, port = env["PARLEY_GATEWAY_BAN_ADDR"]["value"].rpartition(":")
    ban = find(docs, "Service", host)
    assert int(port) in {p["port"] for p in ban["spec"]["ports"] if p["name"] == "grpc"}


def test_rabbitmq_is_a_statefulset_with_storage_and_a_service(docs):
    sts = find(docs, "StatefulSet", "rabbitmq")
    assert sts["spec"]["volumeClaimTemplates"], "RabbitMQ needs a persistent volume"
    image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("rabbitmq:") and not image.endswith(":latest"), f"unpinned {image}"
    service = find(docs, "Service", "rabbitmq")
    assert 5672 in {p["port"] for p in service["spec"]["ports"]}


def test_everything_is_namespaced_and_labelled(docs):
    for d in docs:
        labels = d["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "parley", f"{d['kind']} {d['metadata']['name']}"
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == "parley", f"{d['kind']} {d['metadata']['name']}"


def _stages(text: str) -> list[list[str]]:
    """Dockerfile instructions (continuations joined, comments dropped), split by FROM."""
    joined = re.sub(r"\\\n", " ", text)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_and_runs_unprivileged():
    stages = _stages(DOCKERFILE.read_text())
    assert len(stages) >= 2, "deploy/Dockerfile must have a builder and a runtime stage"
    final = stages[-1]
    users = [ln.split(None, 1)[1] for ln in final if ln.upper().startswith("USER ")]
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root"), f"runtime USER is {users[-1]}"
    assert any(ln.upper().startswith("COPY --FROM=") for ln in final), (
        "the runtime stage must take its files from the builder")
    assert not any(ln.upper().startswith("ENTRYPOINT") for ln in final), (
        "one image, four services: the command picks the service, not an ENTRYPOINT")
