"""The ``existing`` provider: any cluster reachable through a kubeconfig (EKS, GKE, on-prem, ...).

It never creates or deletes anything; ``create`` only checks that the API answers.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from harness import procs
from harness.cluster.base import Cluster, ClusterError, ClusterInfo, ComponentState
from harness.progress import ProgressFn

__all__ = ["ExistingCluster"]


class ExistingCluster(Cluster):
    provider = "existing"

    def __init__(
        self,
        name: str = "hpa-kit",
        kubeconfig: str | Path | None = None,
        context: str | None = None,
        **_ignored: object,
    ) -> None:
        super().__init__(name)
        kc = (
            kubeconfig
            or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
            or Path.home() / ".kube" / "config"
        )
        self._kubeconfig = Path(kc).expanduser()
        self.context = context

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, ""

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    def _kubectl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """``kubectl ARGS`` for callers that read its exit code; a timeout raises ClusterError."""
        kubectl = self.kubectl()
        return procs.run(kubectl.argv(*args), env=kubectl.env(), timeout=timeout, check=False,
                         error=ClusterError, missing="install kubectl or set KUBECTL")  # fmt: skip

    def exists(self) -> bool:
        return self.kubeconfig.is_file()

    def running(self) -> bool:
        if not self.exists():
            return False
        try:
            return self._kubectl("get", "--raw", "/readyz", timeout=10).returncode == 0
        except ClusterError:  # no kubectl, or it hung
            return False

    def create(self, progress: ProgressFn = print) -> ClusterInfo:
        if not self.exists():
            raise ClusterError(
                f"kubeconfig {self.kubeconfig} not found: pass --kubeconfig PATH or set KUBECONFIG"
            )
        out = self._kubectl("get", "--raw", "/readyz", timeout=20)
        if out.returncode != 0:
            raise ClusterError(
                f"cluster in {self.kubeconfig} does not answer /readyz: {out.stderr.strip()[-300:]}; "
                "check the kubeconfig's server and credentials"
            )
        progress(f"using existing cluster from {self.kubeconfig}")
        return self.info()

    def delete(self, progress: ProgressFn = print) -> None:
        progress("existing provider: leaving the cluster alone (it is not ours to delete)")

    def stop(self, progress: ProgressFn = print) -> None:
        self.delete(progress)

    def load_images(self, images: Iterable[str | Path], progress: ProgressFn = print) -> None:
        names = ", ".join(str(i) for i in images)
        raise ClusterError(
            f"the existing provider cannot load images ({names}): push them to a registry the cluster "
            "can pull from and set the image references in the manifests to it"
        )

    def info(self) -> ClusterInfo:
        server = None
        versions: dict[str, str] = {}
        comps: list[ComponentState] = []
        running = self.running()
        if self.exists():
            cfg = self._kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
            server = cfg.stdout.strip() or None
        if running:
            ver = self._kubectl("version", "-o", "json")
            if ver.returncode == 0:
                versions["kubernetes"] = (
                    json.loads(ver.stdout).get("serverVersion", {}).get("gitVersion", "?")
                )
            nodes = self._kubectl("get", "nodes", "-o", "name")
            for n in nodes.stdout.split():
                comps.append(ComponentState(n, "present"))
        return ClusterInfo(
            self.name,
            self.provider,
            self.kubeconfig,
            server=server,
            versions=versions,
            components=comps,
            running=running,
        )
