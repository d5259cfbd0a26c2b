"""The ``kind`` provider: what users' CI runs (Docker + kind), behind the same interface.

Drives the kind CLI directly. pytest-kind-ng's ``KindCluster`` (the ``[kind]`` extra) was weighed and
not used, for reasons read in its source (v26.7.0, ``pytest_kind/cluster.py``): it downloads kind
v0.17.0 and kubectl v1.25.3 from the internet when not given paths (neither is reachable here, and
both are far outside the skew of Kubernetes 1.35); ``create()`` passes no ``--wait`` and no timeout,
and loops forever recreating the cluster if the kubeconfig is missing; it only has ``load
docker-image`` (our images are OCI archives: ``kind load image-archive``); its constructor creates
``.pytest-kind/<name>`` in the working directory. Its pytest plugin still loads beside ours (our
options are namespaced ``--hpa-kit-*``).

What this provider adds around ``kind create cluster``: the kind binary from scripts/build-kind.sh,
the node image from :mod:`harness.kindnode` (built offline when missing), a kind config with the
kit's HPA flags and the settings Debian's containerd and this VM need, create/delete times, and a
check after delete that no node container, kind network or mount is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import yaml

from harness import procs
from harness.cluster.base import Cluster, ClusterError, ClusterInfo, ComponentState, ProviderUnavailable
from harness.cluster.settings import HPASettings, default_state_root
from harness.progress import ProgressFn

__all__ = ["ENGINE_HINT", "KindCluster", "kind_config"]

#: What sets Docker up on these machines; named by every "no Docker" message.
ENGINE_HINT = "start one with: scripts/docker-engine.sh start (installs docker.io if missing)"
#: The docker network kind puts every cluster's nodes on (shared by all kind clusters).
KIND_NETWORK = "kind"
CLUSTER_LABEL = "io.x-k8s.kind.cluster"


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.lstrip("v").split("-")[0].split(".")[:3])


def extra_args(args: dict[str, str], k8s_version: str) -> dict[str, str] | list[dict[str, str]]:
    """kubeadm ``extraArgs`` in the shape kind's generated config uses for ``k8s_version``.

    kind v0.33 renders kubeadm v1beta3 (``extraArgs`` a string map) below Kubernetes 1.36 and v1beta4
    (a list of ``{name, value}``) from 1.36 on (``pkg/cluster/internal/kubeadm/config.go``); a merge
    patch must match that shape.
    """
    if _version_tuple(k8s_version) >= (1, 36, 0):
        return [{"name": k, "value": v} for k, v in args.items()]
    return dict(args)


def kind_config(name: str, hpa: HPASettings, node_image: str | None = None,
                k8s_version: str | None = None) -> dict:
    """kind Cluster config: the kit's HPA flags, our etcd/CoreDNS tags, the node's CNI and cgroup v1.

    * ``disableDefaultCNI``: kindnetd cannot be pulled; the node image has a bridge conflist for
      ``POD_SUBNET``; pod and service ranges differ from the local provider's so both can run here;
    * ``failCgroupV1: false``: Kubernetes 1.35's kubelet refuses cgroup v1 hosts without it;
    * etcd and CoreDNS ``imageTag``: the versions we build (see ``harness.kindnode``).
    """
    from harness import kindnode
    from harness.images import Layout, read_versions

    layout = Layout()
    k8s_version = k8s_version or read_versions(layout.repo)["K8S_VERSION"]
    args = {}
    for flag in hpa.flags():
        key, value = flag.lstrip("-").split("=", 1)
        args[key] = value
    node: dict = {"role": "control-plane"}
    if node_image:
        node["image"] = node_image
    cluster_cfg = {"kind": "ClusterConfiguration",
                   "controllerManager": {"extraArgs": extra_args(args, k8s_version)},
                   **kindnode.kubeadm_image_patch(layout)}
    # serverTLSBootstrap: the kubelet's serving certificate is signed by the cluster CA (through a
    # CSR the provider approves) instead of self-signed, so Prometheus scrapes it with TLS verified.
    kubelet_cfg = {"kind": "KubeletConfiguration", "failCgroupV1": False, "serverTLSBootstrap": True}
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": name,
        "networking": {
            "disableDefaultCNI": True,
            "podSubnet": kindnode.POD_SUBNET,
            "serviceSubnet": kindnode.SERVICE_SUBNET,
        },
        "nodes": [node],
        "kubeadmConfigPatches": [yaml.safe_dump(cluster_cfg), yaml.safe_dump(kubelet_cfg)],
    }


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``docker ARGS`` for callers that read its exit code; a timeout or no docker CLI raises ClusterError."""
    return procs.run(["docker", *args], timeout=timeout, check=False, error=ClusterError,
                     missing=f"install the docker CLI; {ENGINE_HINT}")  # fmt: skip


def _docker_ok() -> tuple[bool, str]:
    if shutil.which("docker") is None:
        return False, f"Docker engine not reachable: the docker CLI is not installed; {ENGINE_HINT}"
    try:
        out = _docker("info", "--format", "{{.ServerVersion}}", timeout=15)
    except ClusterError as exc:
        return False, f"Docker engine not reachable ({exc}); {ENGINE_HINT}"
    if out.returncode != 0:
        err = (out.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return False, f"Docker engine not reachable ({err}); {ENGINE_HINT}"
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
        #: An explicit image (HPA_KIT_KIND_IMAGE) is used as is; otherwise ours is built when missing.
        self.node_image = node_image or os.environ.get("HPA_KIT_KIND_IMAGE") or None
        self.state_dir = Path(state_root or default_state_root()) / "kind" / name
        self._kind_path: Path | None = None
        #: Seconds of the last create (node image, kind create); printed and kept for reports.
        self.timings: dict[str, float] = {}

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, why = _docker_ok()
        if not ok:
            return ok, why
        has_go = shutil.which("go") is not None or Path("/usr/local/go/bin/go").exists()
        if shutil.which("kind") is None and not has_go:
            return False, "neither a kind CLI nor Go (to build kind with scripts/build-kind.sh) is installed"
        return True, ""

    @property
    def kind_path(self) -> Path:
        """scripts/build-kind.sh's choice (a new-enough kind on PATH, else ours, built on first use)."""
        if self._kind_path is None:
            from harness import kindnode
            from harness.images import ImageError

            try:
                self._kind_path = kindnode.kind_binary()
            except ImageError as exc:
                raise ProviderUnavailable(f"no kind CLI: {exc}") from exc
        return self._kind_path

    def _kind(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``kind ARGS`` for callers that read its exit code; a timeout raises ClusterError."""
        return procs.run([self.kind_path, *args], timeout=timeout, check=False, error=ClusterError,
                         missing="run scripts/build-kind.sh")  # fmt: skip

    def _kind_streamed(self, *args: str, progress: ProgressFn, timeout: float = 900) -> tuple[int, list[str]]:
        """Run kind, passing each output line to ``progress`` (a create takes tens of seconds)."""
        # Its lines go to ``progress`` as they come (procs.run only returns at the end): a Popen.
        proc = subprocess.Popen([str(self.kind_path), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                lines.append(line)
                progress(f"kind: {line}")
            if time.monotonic() > deadline:
                proc.kill()
                lines.append(f"(killed after {timeout:.0f}s)")
                break
        return proc.wait(), lines

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def node_name(self) -> str:
        return f"{self.name}-control-plane"

    def exists(self) -> bool:
        ok, _ = _docker_ok()
        if not ok:
            return False
        out = self._kind("get", "clusters", timeout=30)
        return self.name in out.stdout.split()

    def running(self) -> bool:
        if not self.exists() or not self.kubeconfig.exists():
            return False
        from harness.kubectl import Kubectl

        try:
            Kubectl(self.kubeconfig).run("get", "--raw", "/readyz", timeout=15)
        except Exception:
            return False
        return True

    def ensure_node_image(self, progress: ProgressFn) -> str:
        """Our node image (built offline when missing or stale), unless one was given explicitly."""
        if self.node_image:
            return self.node_image
        from harness import kindnode
        from harness.images import ImageError

        try:
            return kindnode.ensure_node_image(progress=progress).name
        except ImageError as exc:
            raise ClusterError(f"could not build the kind node image: {exc}") from exc

    def create(self, progress: ProgressFn = print) -> ClusterInfo:
        ok, why = self.available()
        if not ok:
            raise ProviderUnavailable(why)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.exists():
            out = self._kind("export", "kubeconfig", "--name", self.name,
                             "--kubeconfig", str(self.kubeconfig))
            if out.returncode != 0:
                raise ClusterError(f"kind export kubeconfig failed: {out.stderr.strip()[-400:]}")
            progress(f"kind cluster {self.name} already exists; kubeconfig {self.kubeconfig}")
            return self.info()
        t0 = time.monotonic()
        image = self.ensure_node_image(progress)
        image_s = time.monotonic() - t0
        cfg = self.state_dir / "kind-config.yaml"
        cfg.write_text(yaml.safe_dump(kind_config(self.name, self.hpa, image), sort_keys=False))
        progress(f"kind create cluster {self.name} (image {image}, config {cfg})")
        t1 = time.monotonic()
        argv = ["create", "cluster", "--name", self.name, "--config", str(cfg),
                "--kubeconfig", str(self.kubeconfig), "--wait", "180s"]
        if os.environ.get("HPA_KIT_KIND_RETAIN") == "1":
            argv.append("--retain")  # keep a failed node for `docker exec` / `kind export logs`
        rc, lines = self._kind_streamed(*argv, progress=progress)
        if rc != 0:
            tail = "\n".join(lines[-25:])
            raise ClusterError(
                f"kind create cluster {self.name} failed (exit {rc}):\n{tail}\n"
                "Rerun with HPA_KIT_KIND_RETAIN=1 to keep the node, then `kind export logs --name "
                f"{self.name}` or `docker exec -it {self.node_name} journalctl -u kubelet`.")
        create_s = time.monotonic() - t1
        progress(f"kind cluster {self.name} created in {create_s:.1f}s "
                 f"(node image ready after {image_s:.1f}s)")
        self._approve_serving_certs(progress)
        self._wait_coredns(progress)
        dns_s = time.monotonic() - t1 - create_s
        self.timings = {"node_image_s": round(image_s, 1), "create_s": round(create_s, 1),
                        "coredns_s": round(dns_s, 1)}
        return self.info()

    def _approve_serving_certs(self, progress: ProgressFn, timeout: float = 90) -> None:
        """Approve the kubelet's serving-certificate request (``serverTLSBootstrap``), and only that:
        signer ``kubernetes.io/kubelet-serving``, asked by ``system:node:<this node>``. Nothing
        approves these by default; without it ``kubectl logs`` and every kubelet scrape fail TLS."""
        from harness.kubectl import Kubectl
        from harness.waits import WaitTimeout, wait_for

        kubectl = Kubectl(self.kubeconfig)
        user = f"system:node:{self.node_name}"

        def probe() -> tuple[bool, str]:
            mine = [c for c in kubectl.get("csr").get("items", [])
                    if c["spec"].get("signerName") == "kubernetes.io/kubelet-serving"
                    and c["spec"].get("username") == user]
            if any((c.get("status") or {}).get("certificate") for c in mine):
                return True, f"kubelet serving certificate of {self.node_name} issued by the cluster CA"
            pending = [c["metadata"]["name"] for c in mine
                       if not (c.get("status") or {}).get("conditions")]
            if pending:
                kubectl.run("certificate", "approve", *pending)
            return False, f"{len(mine)} serving CSR(s) from {user}; approved {pending or 'none yet'}"

        try:
            wait_for("kubelet serving certificate", probe, timeout=timeout, interval=1, progress=progress,
                     hint=f"see `kubectl --kubeconfig {self.kubeconfig} get csr` and the kubelet's log "
                          f"(`docker exec {self.node_name} journalctl -u kubelet`)")
        except WaitTimeout as exc:
            raise ClusterError(str(exc)) from exc

    def _wait_coredns(self, progress: ProgressFn, timeout: float = 180) -> None:
        """``kind --wait`` covers the node only; like the local provider's ``up``, return once
        cluster DNS answers (a test's first lookup otherwise fails with EAI_AGAIN)."""
        from harness.kubectl import Kubectl
        from harness.waits import WaitTimeout, wait_for

        kubectl = Kubectl(self.kubeconfig)

        def probe() -> tuple[bool, str]:
            dep = kubectl.get("deployment", "coredns", namespace="kube-system")
            ready = dep.get("status", {}).get("readyReplicas", 0)
            return ready >= 1, f"coredns ready replicas {ready}"

        try:
            wait_for("CoreDNS ready", probe, timeout=timeout, interval=1, progress=progress,
                     hint=f"see `kubectl --kubeconfig {self.kubeconfig} -n kube-system describe pods`")
        except WaitTimeout as exc:
            raise ClusterError(str(exc)) from exc

    def _node_container_ids(self) -> list[str]:
        out = _docker("ps", "-aq", "--no-trunc", "--filter", f"label={CLUSTER_LABEL}={self.name}")
        return out.stdout.split() if out.returncode == 0 else []

    def delete(self, progress: ProgressFn = print) -> None:
        ok, _ = _docker_ok()
        if not ok:
            progress(f"kind: no Docker engine answers; nothing to delete for {self.name}")
            return
        ids = self._node_container_ids()
        volumes = self._volumes(ids)
        t0 = time.monotonic()
        out = self._kind("delete", "cluster", "--name", self.name, "--kubeconfig", str(self.kubeconfig))
        if out.returncode != 0:
            raise ClusterError(f"kind delete cluster failed: {out.stderr.strip()[-400:]}")
        delete_s = time.monotonic() - t0
        removed = self._remove_idle_network(progress)
        network = "kind network removed" if removed else "kind network in use by another cluster, kept"
        leftovers = self.leftovers(ids, volumes)
        if leftovers:
            raise ClusterError(f"kind cluster {self.name} deleted but left: {'; '.join(leftovers)}")
        with contextlib.suppress(FileNotFoundError):
            self.kubeconfig.unlink()
        progress(f"kind cluster {self.name} deleted in {delete_s:.1f}s "
                 f"(no node container, volume or mount left; {network})")

    @staticmethod
    def _volumes(container_ids: list[str]) -> list[str]:
        """Named and anonymous volumes of the node containers (kind's /var volume holds the images)."""
        if not container_ids:
            return []
        out = _docker("inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", *container_ids)
        return out.stdout.split() if out.returncode == 0 else []

    def _remove_idle_network(self, progress: ProgressFn) -> bool:
        """kind leaves its shared ``kind`` network behind; remove it once no container uses it.
        Returns False when another cluster's nodes still use it."""
        out = _docker("network", "inspect", KIND_NETWORK, "--format", "{{json .Containers}}")
        if out.returncode != 0:
            return True
        if json.loads(out.stdout or "{}") or {}:
            progress(f"kind: docker network {KIND_NETWORK} still used by other containers; kept")
            return False
        rm = _docker("network", "rm", KIND_NETWORK)
        if rm.returncode != 0:
            raise ClusterError(f"docker network rm {KIND_NETWORK} failed: {rm.stderr.strip()}")
        return True

    def leftovers(self, container_ids: Iterable[str] = (), volumes: Iterable[str] = ()) -> list[str]:
        """What a deleted cluster left behind: node containers, their volumes, the kind network, mounts."""
        found: list[str] = []
        kept = [v for v in volumes if _docker("volume", "inspect", v).returncode == 0]
        if kept:
            found.append(f"docker volumes {', '.join(v[:12] for v in kept)}")
        if ids := self._node_container_ids():
            found.append(f"node containers {', '.join(i[:12] for i in ids)}")
        if _docker("network", "inspect", KIND_NETWORK).returncode == 0:
            out = _docker("network", "inspect", KIND_NETWORK, "--format", "{{json .Containers}}")
            if not json.loads(out.stdout or "{}"):
                found.append(f"docker network {KIND_NETWORK}")
        mounts = Path("/proc/self/mountinfo").read_text()
        for cid in container_ids:
            n = mounts.count(cid)
            if n:
                found.append(f"{n} mount(s) of node container {cid[:12]}")
        return found

    def load_images(self, images: Iterable[str | Path], progress: ProgressFn = print) -> None:
        """Load images into the node: the kit's Dockerfile images are built with ``docker build`` (as
        users build them; ``HPA_KIT_IMAGE_BUILDER=buildah`` uses the OCI archives instead) and loaded
        with ``kind load docker-image``; every other image is an OCI archive (``kind load
        image-archive``)."""
        from harness import images as img
        from harness.images import docker as dockerimg

        archives: list[Path] = []
        names: list[str] = []
        for item in images:
            if isinstance(item, Path) or Path(str(item)).is_file():
                archives.append(Path(item))
            else:
                names.append(str(item))
        try:
            layout, use_docker = img.Layout(), dockerimg.builder() == "docker"
            known = img.default_specs(layout)
            specs = {n: img.select_specs(known, [n]) for n in names}
            by_docker = [n for n in names if use_docker and all(s.build == "dockerfile" for s in specs[n])]
            names = [n for n in names if n not in by_docker]
            refs = list(dockerimg.ensure_docker_images(by_docker, layout=layout, progress=progress).values())
            if names:
                archives.extend(img.ensure_all(names, layout=layout, progress=progress).values())
        except img.ImageError as exc:
            raise ClusterError(f"images for kind cluster {self.name}: {exc}") from exc
        for ref in refs:
            t0 = time.monotonic()
            # kind skips the copy when the node already has this image ID.
            out = self._kind("load", "docker-image", ref, "--name", self.name)
            if out.returncode != 0:
                raise ClusterError(f"kind load docker-image {ref} failed: {out.stderr.strip()[-400:]}")
            progress(f"kind: {ref} on {self.node_name} ({time.monotonic() - t0:.1f}s)")
        present = self._node_images()
        for a in archives:
            info = img.archive_info(a)
            if present.get(info.name) == info.digest:
                progress(f"kind: {info.name} already on {self.node_name}")
                continue
            t0 = time.monotonic()
            # kind streams the archive into `ctr images import` on the node: OCI archives work as is.
            out = self._kind("load", "image-archive", str(a), "--name", self.name)
            if out.returncode != 0:
                raise ClusterError(f"kind load image-archive {a} failed: {out.stderr.strip()[-400:]}")
            progress(f"kind: loaded {info.name} in {time.monotonic() - t0:.1f}s")

    def _node_images(self) -> dict[str, str]:
        """``{ref: digest}`` in the node's containerd (k8s.io namespace); empty when unknown."""
        out = _docker("exec", self.node_name, "ctr", "-n", "k8s.io", "images", "ls")
        images: dict[str, str] = {}
        for line in out.stdout.splitlines()[1:] if out.returncode == 0 else []:
            cols = line.split()
            if len(cols) >= 3 and cols[2].startswith("sha256:"):
                images[cols[0]] = cols[2]
        return images

    def info(self) -> ClusterInfo:
        running = self.running()
        server = None
        if self.kubeconfig.exists():
            with contextlib.suppress(Exception):
                kc = yaml.safe_load(self.kubeconfig.read_text())
                server = kc["clusters"][0]["cluster"]["server"]
        comps = [ComponentState(self.node_name, "running" if running else "stopped")]
        return ClusterInfo(
            self.name,
            self.provider,
            self.kubeconfig if self.kubeconfig.exists() else None,
            server=server,
            node=self.node_name,
            components=comps,
            running=running,
            state_dir=self.state_dir,
        )
