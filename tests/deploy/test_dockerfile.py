"""The container image definition, read with a Dockerfile parser
(dockerfile-parse): no Docker engine here, so it is never built in CI; these
checks hold it to what the Kubernetes manifests assume. deploy/README.md
says what only a real build would show."""
from __future__ import annotations

import re

from dockerfile_parse import DockerfileParser

from tests.deploy.manifests import ROOT, SERVICES, build, container, find

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"


def parsed() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def stages() -> list[list[dict]]:
    out: list[list[dict]] = []
    for instruction in parsed().structure:
        if instruction["instruction"] == "FROM":
            out.append([])
        if out and instruction["instruction"] != "COMMENT":
            out[-1].append(instruction)
    return out


def test_multi_stage_from_one_pinned_base():
    dockerfile = parsed()
    froms = [i["value"] for i in dockerfile.structure if i["instruction"] == "FROM"]
    assert len(froms) >= 2, "a builder and a runtime stage"
    assert {f.split()[0] for f in froms} == {"${PYTHON_IMAGE}"}, (
        "builder and runtime share one base: the venv's interpreter links to the base's python")
    base = dockerfile.baseimage  # the ARG default, resolved
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base), (
        f"the base must be pinned by exact version and digest, got {base}")


def test_runtime_stage_is_unprivileged_and_read_only_friendly():
    final = stages()[-1]
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0, (
        "a numeric non-root USER (Kubernetes runAsNonRoot can only verify a number)")
    env = " ".join(i["value"] for i in final if i["instruction"] == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "no .pyc writes at runtime: the root filesystem is read-only"
    assert any(i["instruction"] == "COPY" and i["value"].startswith("--from=builder") for i in final)
    assert not any(i["instruction"] == "ENTRYPOINT" for i in final), (
        "one image, four services: the Deployment's command picks the service")
    # the pods run as the image's user
    docs = build("prod")
    for name in SERVICES:
        pod = find(docs, "Deployment", name)["spec"]["template"]["spec"]
        sc = {**pod.get("securityContext", {}), **container(find(docs, "Deployment", name)).get("securityContext", {})}
        assert (sc["runAsUser"], sc["runAsGroup"]) == (int(uid), int(gid)), name


def test_the_builder_makes_the_four_entry_points_and_never_fetches_by_hand():
    runs = " ".join(i["value"] for s in stages() for i in s if i["instruction"] == "RUN")
    for name in SERVICES:
        assert name in re.search(r"for s in ([a-z ]+); do test -x", runs).group(1), name
    assert "grpc_tools.protoc" in runs, "the protobuf code is generated in the build"
    assert not re.search(r"\b(curl|wget)\b", runs), "no downloads outside pip"
    adds = [i for s in stages() for i in s if i["instruction"] == "ADD"]
    assert not adds, "COPY, not ADD (no remote URLs, no implicit unpacking)"
    copies = [i["value"] for i in stages()[0] if i["instruction"] == "COPY"]
    assert not any(c.split()[0].rstrip("/") == "parley" for c in copies), "generated code is never copied in"


def test_the_build_context_is_an_allow_list():
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "everything excluded first"
    allowed = {ln[1:] for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "protos", "services"}
