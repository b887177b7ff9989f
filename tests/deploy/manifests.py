"""Rendering the kustomize tree for the deploy tests: every overlay, alone and
with every combination of the components it does not already include.

`kubectl kustomize` (kubectl >= 1.27 bundles kustomize v5) renders each in a
fraction of a second; nothing is applied and no cluster is needed. A
combination is a kustomization written to a temporary folder that names the
overlay and the components by relative path, as a site's own kustomization
would.
"""
from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = {"dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
COMPONENTS = {"network-policies": K8S / "components" / "network-policies",
              "monitoring": K8S / "components" / "monitoring",
              "gateway-api": K8S / "components" / "gateway-api"}

# service -> gRPC port, metrics port (fixed by the design; see deploy/README.md)
SERVICES = {
    "gateway": (50051, 9101),
    "matcher": (50052, 9102),
    "moderation": (50053, 9103),
    "ban": (50054, 9104),
}
NAMESPACE = "parley"
TURN_NAMESPACE = "parley-turn"


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        raise RuntimeError("kubectl is not on PATH: the deploy tests need `kubectl kustomize` "
                           "(kubectl >= 1.27 bundles kustomize v5)")
    return path


def render(directory: Path) -> list[dict]:
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True,
                            timeout=60, check=False)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def included_components(overlay: str) -> set[str]:
    spec = yaml.safe_load((OVERLAYS[overlay] / "kustomization.yaml").read_text())
    return {Path(c).name for c in spec.get("components", [])}


def combinations() -> list[tuple[str, tuple[str, ...]]]:
    """(overlay, extra components) for every overlay and every subset of the
    components it does not include itself."""
    out = []
    for overlay in OVERLAYS:
        optional = [c for c in COMPONENTS if c not in included_components(overlay)]
        for size in range(len(optional) + 1):
            out.extend((overlay, combo) for combo in itertools.combinations(optional, size))
    return out


def combination_id(overlay: str, components: tuple[str, ...]) -> str:
    return "+".join((overlay, *components))


@functools.lru_cache(maxsize=None)
def build(overlay: str, components: tuple[str, ...] = ()) -> tuple[dict, ...]:
    """The rendered objects of an overlay with extra components (cached: each
    combination is rendered once per test run)."""
    if not components:
        return tuple(render(OVERLAYS[overlay]))
    with tempfile.TemporaryDirectory(prefix="parley-kustomize-") as tmp:
        rel = lambda p: os.path.relpath(p, tmp)  # kustomize wants relative paths
        spec = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "resources": [rel(OVERLAYS[overlay])],
                "components": [rel(COMPONENTS[c]) for c in components]}
        Path(tmp, "kustomization.yaml").write_text(yaml.safe_dump(spec))
        return tuple(render(Path(tmp)))


@functools.lru_cache(maxsize=None)
def build_base() -> tuple[dict, ...]:
    return tuple(render(BASE))


def everything(overlay: str) -> tuple[dict, ...]:
    """The overlay with every component switched on."""
    return build(overlay, tuple(c for c in COMPONENTS if c not in included_components(overlay)))


# ------------------------------------------------------------------ lookups

def find(docs, kind: str, name: str, namespace: str | None = None) -> dict:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name
               and (namespace is None or d["metadata"].get("namespace") == namespace)]
    assert len(matches) == 1, f"expected one {kind} {name!r}, found {len(matches)}"
    return matches[0]


def of_kind(docs, kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def container(workload: dict, name: str | None = None) -> dict:
    containers = workload["spec"]["template"]["spec"]["containers"]
    if name is None:
        assert len(containers) == 1, f"{workload['metadata']['name']}: expected one container"
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def environment(docs, c: dict) -> dict[str, dict]:
    """Each variable the container gets -> {"value": ...} or its valueFrom
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
                key_ref = ref["configMapKeyRef"]
                maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == key_ref["name"]]
                if not maps and key_ref.get("optional"):
                    continue  # a site-specific ConfigMap, absent by default
                cm = find(docs, "ConfigMap", key_ref["name"])
                env[var["name"]] = {"value": cm["data"][key_ref["key"]], "from": "configMap"}
            else:
                env[var["name"]] = ref
        else:
            env[var["name"]] = {"value": var.get("value", ""), "from": "inline"}
    return env
