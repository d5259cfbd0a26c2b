"""The ``kind`` provider: what users' CI runs (Docker + kind), behind the same interface.

Uses the ``kind`` CLI (pytest-kind-ng installs one on demand; a kind on PATH is used first). The
controller-manager's HPA flags are set through a kubeadm ClusterConfiguration patch, images are
loaded with ``kind load image-archive``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import yaml

from harness.cluster.base import Cluster, ClusterError, ClusterInfo, ComponentState, ProviderUnavailable
from harness.cluster.settings import HPASettings, default_state_root
from harness.progress import ProgressFn

__all__ = ["KindCluster", "kind_config"]


def kind_config(name: str, hpa: HPASettings, node_image: str | None = None) -> dict:
    """kind Cluster config with the HPA tuning as kube-controller-manager extra args.

    kind renders kubeadm's v1beta3 ClusterConfiguration, whose ``extraArgs`` is a string map; the
    patch names no apiVersion so kind merges it into whatever it generates.
    """
    args = {}
    for flag in hpa.flags():
        key, value = flag.lstrip("-").split("=", 1)
        args[key] = value
    node: dict = {"role": "control-plane"}
    if node_image:
        node["image"] = node_image
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": name,
        "nodes": [node],
        "kubeadmConfigPatches": [
            yaml.safe_dump({"kind": "ClusterConfiguration", "controllerManager": {"extraArgs": args}})
        ],
    }


def _docker_ok() -> tuple[bool, str]:
    docker = shutil.which("docker")
    if docker is None:
        return False, "Docker engine not reachable: the docker CLI is not installed"
    try:
        out = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=15
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"Docker engine not reachable: {exc}"
    if out.returncode != 0:
        err = (out.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return False, f"Docker engine not reachable: {err}"
    return True, ""


class KindCluster(Cluster):
    provider = "kind"
    pulls_images = False

    def __init__(
        self,
        name: str = "hpa-kit",
        hpa: HPASettings | None = None,
        node_image: str | None = None,
        state_root: Path | None = None,
        **_ignored: object,
    ) -> None:
        super().__init__(name)
        self.hpa = hpa or HPASettings()
        self.node_image = node_image or os.environ.get("HPA_KIT_KIND_IMAGE")
        self.state_dir = Path(state_root or default_state_root()) / "kind" / name

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, why = _docker_ok()
        if not ok:
            return ok, why
        if cls._kind_binary() is None:
            return False, "kind CLI not found: install kind, or pip install 'hpa-kit[kind]' (pytest-kind-ng)"
        return True, ""

    @staticmethod
    def _kind_binary() -> str | None:
        found = shutil.which("kind")
        if found:
            return found
        try:  # pytest-kind-ng downloads kind into its cache; reuse it when present
            from pytest_kind.cluster import KindCluster as _K

            path = getattr(_K, "kind_path", None)
            return str(path) if path and Path(str(path)).exists() else None
        except Exception:
            return None

    def _kind(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        kind = self._kind_binary()
        if kind is None:
            raise ProviderUnavailable("kind CLI not found: install kind")
        return subprocess.run([kind, *args], capture_output=True, text=True, timeout=timeout)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def exists(self) -> bool:
        ok, _ = _docker_ok()
        if not ok:
            return False
        out = self._kind("get", "clusters", timeout=30)
        return self.name in out.stdout.split()

    def running(self) -> bool:
        if not self.exists() or not self.kubeconfig.exists():
            return False
        out = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            timeout=15,
        )
        return out.returncode == 0

    def create(self, progress: ProgressFn = print) -> ClusterInfo:
        ok, why = self.available()
        if not ok:
            raise ProviderUnavailable(why)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.exists():
            cfg = self.state_dir / "kind-config.yaml"
            cfg.write_text(yaml.safe_dump(kind_config(self.name, self.hpa, self.node_image), sort_keys=False))
            progress(f"kind create cluster {self.name}")
            out = self._kind(
                "create",
                "cluster",
                "--name",
                self.name,
                "--config",
                str(cfg),
                "--kubeconfig",
                str(self.kubeconfig),
                "--wait",
                "120s",
            )
            if out.returncode != 0:
                raise ClusterError(f"kind create cluster failed: {out.stderr.strip()[-800:]}")
        else:
            out = self._kind(
                "export", "kubeconfig", "--name", self.name, "--kubeconfig", str(self.kubeconfig)
            )
            if out.returncode != 0:
                raise ClusterError(f"kind export kubeconfig failed: {out.stderr.strip()[-400:]}")
        progress(f"kind cluster {self.name} ready")
        return self.info()

    def delete(self, progress: ProgressFn = print) -> None:
        if self._kind_binary() is None:
            return
        out = self._kind("delete", "cluster", "--name", self.name)
        if out.returncode != 0:
            raise ClusterError(f"kind delete cluster failed: {out.stderr.strip()[-400:]}")
        progress(f"kind cluster {self.name} deleted")

    def load_images(self, images: Iterable[str | Path], progress: ProgressFn = print) -> None:
        from harness import images as img

        archives: list[Path] = []
        names: list[str] = []
        for item in images:
            (archives if isinstance(item, Path) or Path(str(item)).is_file() else names).append(item)  # type: ignore[arg-type]
        if names:
            archives.extend(img.ensure_all(names, progress=progress).values())
        for a in archives:
            # kind load expects a docker-archive or an OCI archive; ours are OCI (buildah push oci-archive).
            out = self._kind("load", "image-archive", str(a), "--name", self.name)
            if out.returncode != 0:
                raise ClusterError(f"kind load image-archive {a} failed: {out.stderr.strip()[-400:]}")
            progress(f"loaded {a.name} into kind cluster {self.name}")

    def info(self) -> ClusterInfo:
        running = self.running()
        comps = [ComponentState(f"{self.name}-control-plane", "running" if running else "stopped")]
        return ClusterInfo(
            self.name,
            self.provider,
            self.kubeconfig if self.kubeconfig.exists() else None,
            components=comps,
            running=running,
            state_dir=self.state_dir,
        )
