"""Unit tests of the Docker build path (harness.images.docker) and how the kind provider uses it.

Fakes: the docker and kind CLIs (recorders); the real path runs in the kind e2e phase of CI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import images as img
from harness.cluster import kind
from harness.cluster.base import ClusterError
from harness.images import docker as dockerimg


def _specs() -> dict[str, img.ImageSpec]:
    return {s.alias: s for s in img.default_specs(img.Layout())}


def test_docker_build_argv_uses_host_network_local_base_and_inputs_label() -> None:
    spec, layout = _specs()["adapter"], img.Layout()
    argv = dockerimg.docker_build_args(spec, layout, "abc123")
    assert argv[0] == "build"
    assert argv[argv.index("--network") + 1] == "host"  # pip reaches PyPI; the engine has no NAT
    assert "--pull=false" in argv  # nothing can be pulled here
    assert argv[argv.index("--build-arg") + 1] == f"BASE_IMAGE={img.BASE_IMAGE}"
    assert argv[argv.index("--label") + 1] == f"{img.INPUTS_LABEL}=abc123"
    assert argv[argv.index("-f") + 1] == str(layout.repo / "adapter/Dockerfile")
    assert argv[argv.index("-t") + 1] == "docker.io/hpa-kit/adapter:0.1.0"
    assert argv[-1] == str(layout.repo)


def test_docker_base_has_the_buildah_base_environment() -> None:
    """Both bases must behave alike for the Dockerfiles: same env (PEP 668 opt-out) and command."""
    buildah = img.base_config_args()
    env = {buildah[i + 1].partition("=")[0]: buildah[i + 1].partition("=")[2]
           for i, a in enumerate(buildah) if a == "--env"}
    lines = dockerimg.base_dockerfile_lines("h1", with_ca=False)
    docker_env = {}
    for line in lines:
        if line.startswith("ENV "):
            k, _, v = line[4:].partition("=")
            docker_env[k] = json.loads(v)
    assert docker_env == env
    assert env["PIP_BREAK_SYSTEM_PACKAGES"] == "1"
    assert 'CMD ["python3"]' in lines
    assert lines[-1] == f"LABEL {img.INPUTS_LABEL}=h1"
    assert not any(line.startswith("COPY") for line in lines)
    with_ca = dockerimg.base_dockerfile_lines("h1", with_ca=True)
    assert f"COPY host-ca-certificates.crt {img.HOST_CA_BUNDLE}" in with_ca


def test_builder_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dockerimg.BUILDER_ENV, raising=False)
    assert dockerimg.builder() == "docker"
    assert dockerimg.builder("buildah") == "buildah"
    monkeypatch.setenv(dockerimg.BUILDER_ENV, "buildah")
    assert dockerimg.builder() == "buildah"
    monkeypatch.setenv(dockerimg.BUILDER_ENV, "podman")
    with pytest.raises(img.ImageError, match="choose one of docker, buildah"):
        dockerimg.builder()


def test_only_dockerfile_images_build_with_docker() -> None:
    with pytest.raises(img.ImageError, match=r"not Dockerfile images.*prometheus"):
        dockerimg.ensure_docker_images(["adapter", "prometheus"])


class _KindRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        return subprocess.CompletedProcess(list(args), 0, "", "")


def _fake_kind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[kind.KindCluster, dict[str, Any]]:
    seen: dict[str, Any] = {"docker": [], "archives": []}
    cluster = kind.KindCluster("k1", state_root=tmp_path)
    rec = _KindRecorder()
    seen["kind"] = rec.calls
    monkeypatch.setattr(cluster, "_kind", rec)
    monkeypatch.setattr(cluster, "_node_images", lambda: {})

    def docker_images(names: list[str], **_kw: Any) -> dict[str, str]:
        seen["docker"].extend(names)
        return {n: img.select_specs(img.default_specs(img.Layout()), [n])[0].ref for n in names}

    def ensure_all(names: list[str], **_kw: Any) -> dict[str, Path]:
        seen["archives"].extend(names)
        return {n: tmp_path / f"{img.safe_name(n)}.tar" for n in names}

    monkeypatch.setattr(dockerimg, "ensure_docker_images", docker_images)
    monkeypatch.setattr(img, "ensure_all", ensure_all)
    monkeypatch.setattr(img, "archive_info", lambda p: img.ArchiveInfo(p, p.stem, "sha256:1", {}, {}))
    return cluster, seen


def test_kind_loads_dockerfile_images_with_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(dockerimg.BUILDER_ENV, raising=False)
    cluster, seen = _fake_kind(monkeypatch, tmp_path)
    cluster.load_images(["hpa-kit/adapter:0.1.0", "quay.io/prometheus/prometheus:v3.5.0", "locust"],
                        progress=lambda _m: None)
    assert seen["docker"] == ["hpa-kit/adapter:0.1.0", "locust"]
    assert seen["archives"] == ["quay.io/prometheus/prometheus:v3.5.0"]
    loads = [c for c in seen["kind"] if c[0] == "load"]
    assert ("load", "docker-image", "docker.io/hpa-kit/adapter:0.1.0", "--name", "k1") in loads
    assert ("load", "docker-image", "docker.io/hpa-kit/locust:0.1.0", "--name", "k1") in loads
    assert [c[1] for c in loads].count("image-archive") == 1


def test_kind_uses_archives_when_buildah_chosen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(dockerimg.BUILDER_ENV, "buildah")
    cluster, seen = _fake_kind(monkeypatch, tmp_path)
    cluster.load_images(["hpa-kit/adapter:0.1.0", "prometheus"], progress=lambda _m: None)
    assert seen["docker"] == []
    assert seen["archives"] == ["hpa-kit/adapter:0.1.0", "prometheus"]


def test_kind_names_an_unknown_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cluster, _ = _fake_kind(monkeypatch, tmp_path)
    with pytest.raises(ClusterError, match="unknown image 'nosuch/thing:1'"):
        cluster.load_images(["nosuch/thing:1"], progress=lambda _m: None)


def test_dockerignore_keeps_every_copy_source_and_drops_virtualenvs() -> None:
    """The repo's .dockerignore must not hide anything the Dockerfiles COPY (docker build would fail
    with "no such file"), and must keep the 1 GB of virtualenvs out of the build context."""
    from harness import kindnode

    layout = img.Layout()
    text = (layout.repo / ".dockerignore").read_text()
    # every Dockerfile image the kit builds: the stack's and the kind node's own (a fresh machine
    # failed on kube-proxy-base: its COPY source was hidden, and a warm cache had masked it)
    for spec in [*_specs().values(), kindnode.kube_proxy_base_spec()]:
        if spec.build != "dockerfile" or spec.context != ".":
            continue
        files = img.context_files(spec, layout)
        for src in img.dockerfile_sources(layout.repo / spec.dockerfile):
            if src.startswith("--"):
                continue
            assert any(f.relative_to(layout.repo).as_posix().startswith(src.rstrip("/")) for f in files), \
                f"{spec.dockerfile}: COPY {src} is hidden by .dockerignore"
    assert "**" in text.splitlines()  # deny by default, then re-include what the Dockerfiles copy


def test_kind_approves_only_its_nodes_serving_csrs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A CSR from another user or for another signer must never be approved by the harness."""
    from harness import kubectl as kubectl_mod

    def csr(name: str, user: str, signer: str = "kubernetes.io/kubelet-serving", **status: Any) -> dict:
        return {"metadata": {"name": name}, "spec": {"username": user, "signerName": signer},
                "status": status}

    node = "system:node:k1-control-plane"
    state = {"items": [csr("mine", node), csr("other-user", "system:node:evil"),
                       csr("client", node, signer="kubernetes.io/kube-apiserver-client-kubelet")]}
    approved: list[str] = []

    class FakeKubectl:
        def __init__(self, *_a: Any, **_k: Any) -> None:
            pass

        def get(self, kind: str, *args: Any, **_k: Any) -> dict:
            assert kind == "csr"
            return state

        def run(self, *args: str, **_k: Any) -> str:
            assert args[:2] == ("certificate", "approve")
            approved.extend(args[2:])
            state["items"][0]["status"] = {"conditions": [{"type": "Approved"}], "certificate": "LS0t"}
            return ""

    monkeypatch.setattr(kubectl_mod, "Kubectl", FakeKubectl)
    kind.KindCluster("k1", state_root=tmp_path)._approve_serving_certs(lambda _m: None, timeout=10)
    assert approved == ["mine"]
