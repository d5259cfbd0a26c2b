"""The ``local`` provider: a real single-node Kubernetes from upstream binaries, no Docker.

Processes (each with a log file, a pid record and a health wait):

    etcd -> kube-apiserver -> kube-controller-manager, kube-scheduler
    containerd (own socket, own root/state) -> kubelet -> node Ready -> kube-proxy -> kube-router
    (NetworkPolicy enforcer, firewall only; ``network_policy=False`` leaves it out) -> CoreDNS

This module is the lifecycle (start order, waits, host changes, stop); each component's command
line comes from :mod:`harness.cluster.flags` and each health wait polls :mod:`harness.cluster.probes`.

``LocalSettings(with_node=False)`` gives just etcd + kube-apiserver on loopback, without root: the
``control_plane`` pytest fixture, which starts in seconds.

Everything lives in ``${HPA_KIT_STATE:-~/.local/state/hpa-kit}/clusters/<name>``. ``stop`` (CLI
``down``) stops all processes and undoes every host change but keeps PKI, etcd data and imported
images, so the next ``create`` is warm; ``delete`` also removes the state dir.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import procs
from harness.cluster import binaries, configs, flags, hostnet, probes
from harness.cluster.addons import coredns_manifests
from harness.cluster.base import (
    Cluster,
    ClusterError,
    ClusterInfo,
    ComponentState,
    ProviderUnavailable,
)
from harness.cluster.kubeapi import ApiClient
from harness.cluster.pki import PKI, ensure_pki
from harness.cluster.settings import HPASettings, LocalSettings
from harness.progress import ProgressFn

__all__ = ["LocalCluster"]

CONTROL_PLANE = ["etcd", "kube-apiserver"]
NODE_COMPONENTS = ["kube-controller-manager", "kube-scheduler", "containerd", "kubelet", "kube-proxy"]
#: Images the node itself needs (sandbox + DNS).
SYSTEM_IMAGES = [configs.SANDBOX_IMAGE, "registry.k8s.io/coredns/coredns:v1.12.4"]


@dataclass
class _Timeouts:
    etcd: float = 30
    apiserver: float = 90
    controller: float = 60
    containerd: float = 30
    kubelet: float = 60
    node_ready: float = 90
    kube_proxy: float = 60
    kube_router: float = 60
    coredns: float = 180


def _is_root() -> bool:
    return os.geteuid() == 0


class LocalCluster(Cluster):
    """A local cluster; construct with :meth:`open` to pick up the state of an existing one."""

    provider = "local"
    pulls_images = False

    def __init__(self, settings: LocalSettings | None = None) -> None:
        self.settings = settings or LocalSettings()
        super().__init__(self.settings.name)
        self.timeouts = _Timeouts()
        self._pki: PKI | None = None

    # ------------------------------------------------------------------ construction / settings

    @classmethod
    def open(
        cls,
        name: str = "hpa-kit",
        *,
        state_root: Path | None = None,
        hpa: HPASettings | None = None,
        **overrides: object,
    ) -> LocalCluster:
        """The cluster ``name``: its stored settings if it was created before, else new ones.

        Topology (ports, CIDRs) always comes from the stored settings; ``hpa`` and ``overrides`` of
        mutable fields (images, verbosity, build, dns_upstreams) replace the stored ones.
        """
        root: dict[str, Any] = {"state_root": state_root} if state_root else {}
        base = LocalSettings(name=name, **root)
        stored = base.state_dir / "cluster.json"
        if stored.exists():
            try:
                settings = LocalSettings.from_json(stored.read_text(), state_root=base.state_root)
            except (ValueError, TypeError) as exc:
                raise ClusterError(
                    f"cannot read {stored}: {exc}; run `hpa-kit delete --name {name}`"
                ) from exc
            mutable = ("images", "verbosity", "build", "dns_upstreams", "egress_guard", "ingress_guard")
            for key in (*mutable, "network_policy"):
                if overrides.get(key) is not None:
                    setattr(settings, key, overrides[key])
        else:
            extra: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
            settings = LocalSettings(name=name, **root, **extra)
        if hpa is not None:
            settings.hpa = hpa
        return cls(settings)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not _is_root():
            return False, "the local provider needs root (it runs containerd and kubelet): run with sudo"
        for tool in ("containerd", "runc", "ctr", "iptables", "ip"):
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
                return False, f"{tool} not found: apt-get install containerd runc iptables iproute2"
        if shutil.which("ipset") is None and not Path("/usr/sbin/ipset").exists():
            return (
                False,
                "ipset not found (kube-router, the NetworkPolicy enforcer, needs it): apt-get install ipset",
            )
        if not Path(configs.CNI_BIN_DIR, "bridge").exists():
            return (
                False,
                f"CNI plugins missing in {configs.CNI_BIN_DIR}: apt-get install containernetworking-plugins",
            )
        return True, ""

    # ---------------------------------------------------------------------------------- paths

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir

    @property
    def run_dir(self) -> Path:
        """Short directory for unix sockets and runtime state (a socket path must stay < 108 bytes)."""
        candidate = self.state_dir / "run"
        if len(str(candidate / "containerd.sock.ttrpc")) < 100:
            return candidate
        return Path("/run") / f"hpa-kit-{self.name}"

    @property
    def paths(self) -> configs.NodePaths:
        return configs.NodePaths(self.state_dir, self.run_dir)

    @property
    def pid_dir(self) -> Path:
        return self.state_dir / "pids"

    def log_path(self, component: str) -> Path:
        return self.state_dir / "logs" / f"{component}.log"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfigs" / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{self.settings.apiserver_address}:{self.settings.apiserver_port}"

    def components(self) -> list[str]:
        if not self.settings.with_node:
            return list(CONTROL_PLANE)
        return CONTROL_PLANE + NODE_COMPONENTS + (["kube-router"] if self.settings.network_policy else [])

    def logs(self, component: str) -> Path:
        if component not in self.components():
            raise ClusterError(f"unknown component {component!r}: pick one of {', '.join(self.components())}")
        return self.log_path(component)

    def pki(self) -> PKI:
        if self._pki is None:
            self._pki = self._ensure_pki()
        return self._pki

    def api(self, timeout: float = 5.0) -> ApiClient:
        pki = self.pki()
        return ApiClient(self.server, ca=pki.ca.cert, cert=pki.admin.cert, key=pki.admin.key, timeout=timeout)

    # ------------------------------------------------------------------------------- locking

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ClusterError(
                    f"another hpa-kit process is changing cluster {self.name} ({self.state_dir}/.lock): "
                    "wait for it to finish"
                ) from None
            yield
        finally:
            os.close(fd)

    # ---------------------------------------------------------------------------- state query

    def _record(self, component: str) -> procs.ProcessRecord | None:
        return procs.load_record(self.pid_dir, component)

    def exists(self) -> bool:
        return (self.state_dir / "cluster.json").exists()

    def running(self) -> bool:
        if not procs.alive(self._record("kube-apiserver")):
            return False
        try:
            return self.api(timeout=2).ok("/readyz")[0]
        except Exception:
            return False

    def component_states(self) -> list[ComponentState]:
        out = []
        for comp in self.components():
            rec = self._record(comp)
            if rec is None:
                out.append(ComponentState(comp, "stopped", log=str(self.log_path(comp))))
            elif procs.alive(rec):
                out.append(ComponentState(comp, "running", rec.pid, log=rec.log))
            else:
                out.append(ComponentState(comp, "crashed", rec.pid, "process exited; see its log", rec.log))
        return out

    def info(self) -> ClusterInfo:
        comps = self.component_states()
        running = self.running()
        if running and self.settings.with_node:
            comps.extend(self._node_and_addon_states())
        versions = {}
        with contextlib.suppress(OSError, ValueError):
            versions = json.loads((self.state_dir / "versions.json").read_text())
        return ClusterInfo(
            name=self.name,
            provider=self.provider,
            kubeconfig=self.kubeconfig if self.kubeconfig.exists() else None,
            server=self.server if self.settings.apiserver_port else None,
            node=self.settings.node_name if self.settings.with_node else None,
            versions=versions,
            components=comps,
            state_dir=self.state_dir,
            running=running,
        )

    def _node_and_addon_states(self) -> list[ComponentState]:
        out = []
        try:
            for name, probe in ((f"node/{self.settings.node_name}", self._node_ready),
                                ("coredns", self._coredns_ready)):  # fmt: skip
                done, detail = probe()
                state = "ready" if done else "not ready"
                out.append(ComponentState(name, state, detail="" if done else detail))
        except Exception as exc:
            out.append(ComponentState("api", "unknown", detail=str(exc)))
        return out

    # ------------------------------------------------------------------------------- create

    def create(self, progress: ProgressFn = print) -> ClusterInfo:
        """Bring the cluster up (warm when its state exists); a running cluster is left as is."""
        s = self.settings
        if s.with_node and not _is_root():
            raise ProviderUnavailable(
                "the local provider needs root (it runs containerd and kubelet): run with sudo"
            )
        if s.with_node:
            ok, why = self.available()
            if not ok:
                raise ProviderUnavailable(why)
        needed = CONTROL_PLANE + (list(binaries.NODE) if s.with_node else [])
        binaries.ensure_binaries(needed, build=s.build, progress=progress)
        if s.with_node and s.network_policy:
            binaries.ensure_kube_router(build=s.build, progress=progress)
        with self._lock():
            return self._create_locked(progress)

    def _create_locked(self, progress: ProgressFn) -> ClusterInfo:
        s = self.settings
        states = {c.name: c for c in self.component_states()}
        if (
            all(st.state == "running" for st in states.values())
            and self.running()
            and (not s.with_node or self._coredns_ready()[0])
        ):
            self._persist()
            restarted = self._maybe_update_controller_manager(progress)
            info = self.info()
            progress(
                f"cluster {self.name} already running ({self.server})"
                + (" - controller-manager restarted with new HPA flags" if restarted else "")
            )
            return info
        crashed = [st for st in states.values() if st.state == "crashed"]
        for st in crashed:
            progress(
                f"WARNING: {st.name} (pid {st.pid}) had exited; restarting it once. "
                f"Last lines of {st.log}:\n{procs.tail(Path(st.log or ''), 10)}"
            )
            procs.forget(self.pid_dir, st.name)
        if any(st.state == "running" for st in states.values()):
            progress("some components are running; starting the missing ones")

        self._resolve_ports()
        self._persist()
        self._pki = self._ensure_pki()
        progress(f"PKI ready in {self.state_dir / 'pki'}")
        self._write_versions()

        images_thread: _Worker | None = None
        if s.with_node:
            self._prepare_host(progress)
            self._start_if_needed("containerd", flags.containerd(self.paths), flags.containerd_env(s))

        etcd_pki = self.pki().etcd
        etcd = self._start_if_needed("etcd", flags.etcd(s, self.pki(), bin_dir=self._bins))
        self._wait(
            "etcd",
            etcd,
            lambda: probes.etcd_healthy(s.etcd_client_port, etcd_pki),
            self.timeouts.etcd,
            progress,
        )
        api = self._start_if_needed("kube-apiserver", flags.kube_apiserver(s, self.pki(), bin_dir=self._bins))

        if s.with_node:
            cd = self._record("containerd")
            self._wait(
                "containerd",
                cd,
                lambda: probes.containerd_healthy(self.paths.containerd_sock),
                self.timeouts.containerd,
                progress,
            )
            images_thread = _Worker(lambda: self._import_images(progress))

        self._wait("kube-apiserver", api, lambda: self.api().ok("/readyz"), self.timeouts.apiserver, progress)
        if not s.with_node:
            progress(f"control plane ready: {self.server} (kubeconfig {self.kubeconfig})")
            return self.info()

        pki, bins = self.pki(), self._bins
        cm = self._start_if_needed(
            "kube-controller-manager", flags.kube_controller_manager(s, pki, bin_dir=bins)
        )
        sched = self._start_if_needed("kube-scheduler", flags.kube_scheduler(s, pki, bin_dir=bins))
        kubelet = self._start_if_needed("kubelet", flags.kubelet(s, pki, self.paths, bin_dir=bins))
        proxy = self._start_if_needed("kube-proxy", flags.kube_proxy(s, self.paths, bin_dir=bins))
        self._wait(
            "kube-controller-manager",
            cm,
            probes.https_healthz(s.controller_manager_port),
            self.timeouts.controller,
            progress,
        )
        self._wait(
            "kube-scheduler",
            sched,
            probes.https_healthz(s.scheduler_port),
            self.timeouts.controller,
            progress,
        )
        self._wait("kubelet", kubelet, probes.kubelet_healthy, self.timeouts.kubelet, progress)
        self._wait(
            f"node/{s.node_name}",
            kubelet,
            self._node_ready,
            self.timeouts.node_ready,
            progress,
            what="Ready",
            component="kubelet",
        )
        self._wait("kube-proxy", proxy, probes.kube_proxy_healthy, self.timeouts.kube_proxy, progress)
        router = None
        if s.network_policy:
            # After kube-proxy (both program the filter table; kube-router keeps its jumps on top).
            # Its health wait overlaps the image join and the CoreDNS apply below.
            router = self._start_if_needed(
                "kube-router", flags.kube_router(s, pki, binary=binaries.kube_router_path())
            )
        # re-assert the guards (mangle table: neither kube-proxy nor kube-router moves them)
        if s.egress_guard:
            hostnet.ensure_egress_guard(s.bridge, s.pod_cidr)
        if s.ingress_guard:
            hostnet.ensure_ingress_guard(s.bridge, s.node_ip, self._closed_ports)
        assert images_thread is not None
        images_thread.join(progress, "images")
        self._apply(coredns_manifests(s), progress, "CoreDNS")
        if router is not None:
            self._wait(
                "kube-router",
                router,
                probes.kube_router_healthy(s.kube_router_health_port),
                self.timeouts.kube_router,
                progress,
            )
        procs.wait_until(
            self._coredns_ready, component="coredns", timeout=self.timeouts.coredns, what="ready"
        )
        progress("coredns ready")
        progress(f"cluster {self.name} ready: {self.server} (kubeconfig {self.kubeconfig})")
        return self.info()

    # ----------------------------------------------------------------------------- pieces

    def _persist(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "cluster.json").write_text(self.settings.to_json())

    def _resolve_ports(self) -> None:
        """Pick ports once (preferring the well-known ones) and re-pick any that got taken meanwhile."""
        s = self.settings
        loop = "127.0.0.1"

        def pick(current: int, preferred: int, host: str, component: str) -> int:
            rec = self._record(component)
            if current and (procs.alive(rec) or procs.port_free(host, current)):
                return current
            if preferred and procs.port_free(host, preferred):
                return preferred
            return procs.free_port(host)

        node = s.with_node
        s.etcd_client_port = pick(s.etcd_client_port, 2379 if node else 0, loop, "etcd")
        s.etcd_peer_port = pick(s.etcd_peer_port, 2380 if node else 0, loop, "etcd")
        if s.etcd_peer_port == s.etcd_client_port:
            s.etcd_peer_port = procs.free_port(loop, avoid=[s.etcd_client_port])
        if node and not Path(f"/sys/class/net/{s.bridge}").exists():
            # The node IP appears with the bridge; until then 6443 on it cannot be taken by anyone.
            s.apiserver_port = s.apiserver_port or 6443
        else:
            s.apiserver_port = pick(
                s.apiserver_port, 6443 if node else 0, s.apiserver_address, "kube-apiserver"
            )
        if node:
            s.controller_manager_port = pick(
                s.controller_manager_port, 10257, loop, "kube-controller-manager"
            )
            s.scheduler_port = pick(s.scheduler_port, 10259, loop, "kube-scheduler")

    def _ensure_pki(self) -> PKI:
        s = self.settings
        ips = [s.kubernetes_service_ip]
        if s.with_node:
            ips.append(s.node_ip)
        if s.apiserver_address not in ("127.0.0.1", "0.0.0.0"):
            ips.append(s.apiserver_address)
        return ensure_pki(
            self.state_dir / "pki",
            cluster=s.name,
            server=self.server,
            apiserver_ips=list(dict.fromkeys(ips)),
            node_name=s.node_name if s.with_node else None,
            node_ip=s.node_ip if s.with_node else None,
            cluster_domain=s.cluster_domain,
        )

    def _write_versions(self) -> None:
        v = binaries.versions()
        data = {"kubernetes": v.get("K8S_VERSION", "?"), "etcd": v.get("ETCD_VERSION", "?")}
        if self.settings.with_node:
            data["coredns"] = v.get("COREDNS_VERSION", "?")
            with contextlib.suppress(Exception):
                out = procs.run(["containerd", "--version"], timeout=5, check=False)
                data["containerd"] = out.stdout.split()[2]
        (self.state_dir / "versions.json").write_text(json.dumps(data))

    def _start_if_needed(
        self, component: str, argv: list[str], env: dict[str, str] | None = None
    ) -> procs.ProcessRecord:
        rec = self._record(component)
        if procs.alive(rec):
            assert rec is not None
            return rec
        return procs.start(component, argv, log=self.log_path(component), pid_dir=self.pid_dir, env=env)

    def _wait(
        self,
        name: str,
        rec: procs.ProcessRecord | None,
        check: Callable[[], tuple[bool, str]],
        timeout: float,
        progress: ProgressFn,
        *,
        what: str = "ready",
        component: str | None = None,
    ) -> None:
        comp = component or name
        procs.wait_until(
            check, component=comp, timeout=timeout, what=what, record=rec, log=self.log_path(comp)
        )
        progress(f"{name} {what}")

    @property
    def _closed_ports(self) -> tuple[int, ...]:
        """Host ports the ingress guard closes to other hosts: kube-router's health port binds
        every address (it has no bind-address flag)."""
        return (self.settings.kube_router_health_port,) if self.settings.network_policy else ()

    def _node_ready(self) -> tuple[bool, str]:
        return probes.node_ready(self.api(), self.settings.node_name, self._record("kubelet"))

    def _coredns_ready(self) -> tuple[bool, str]:
        return probes.coredns_ready(self.api(), self.settings)

    @property
    def _bins(self) -> Path:
        return binaries.bin_dir()

    # host & node --------------------------------------------------------------------------

    def _baseline(self) -> hostnet.Baseline:
        return hostnet.Baseline(self.state_dir / "host-baseline.json")

    #: One node cluster per machine: its bridge, kubelet/kube-proxy ports and iptables chains are global.
    NODE_OWNER = Path("/run/hpa-kit/node-owner.json")

    def _claim_node(self) -> None:
        try:
            owner = json.loads(self.NODE_OWNER.read_text())
        except (OSError, ValueError):
            owner = None
        if owner and owner.get("state_dir") != str(self.state_dir):
            rec = procs.load_record(Path(owner["state_dir"]) / "pids", "kubelet")
            if procs.alive(rec) or Path(f"/sys/class/net/{self.settings.bridge}").exists():
                other = owner.get("name")
                raise ClusterError(
                    f"local cluster {other!r} ({owner['state_dir']}) owns the node network here: "
                    f"run `hpa-kit down --name {other}` first (one node cluster per machine)"
                )
        self.NODE_OWNER.parent.mkdir(parents=True, exist_ok=True)
        self.NODE_OWNER.write_text(json.dumps({"name": self.name, "state_dir": str(self.state_dir)}))

    def _release_node(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(self.NODE_OWNER.read_text()).get("state_dir") == str(self.state_dir):
                self.NODE_OWNER.unlink()
                with contextlib.suppress(OSError):
                    self.NODE_OWNER.parent.rmdir()

    def _prepare_host(self, progress: ProgressFn) -> None:
        s, p, pki = self.settings, self.paths, self.pki()
        self._claim_node()
        base = self._baseline()
        base.record(s.bridge)
        refused = base.apply_sysctls()
        for r in refused:
            progress(f"WARNING: the kernel refused sysctl {r}")
        hostnet.ensure_bridge(s.bridge, s.node_ip, s.pod_cidr, s.service_cidr)
        if s.egress_guard:
            hostnet.ensure_egress_guard(s.bridge, s.pod_cidr)
        if s.ingress_guard:
            hostnet.ensure_ingress_guard(s.bridge, s.node_ip, self._closed_ports)
        for d in (
            p.containerd_root,
            p.containerd_state,
            p.cni_conf_dir,
            p.kubelet_root,
            p.pod_logs,
            p.containerd_config.parent,
        ):
            d.mkdir(parents=True, exist_ok=True)
        upstreams = s.dns_upstreams or configs.host_nameservers(_read("/etc/resolv.conf"))
        _write(p.resolv_conf, configs.resolv_conf(upstreams, fallback=s.node_ip))
        _write(p.containerd_config, configs.containerd_config(p))
        for stale in p.cni_conf_dir.glob("*"):
            if stale.name != "10-hpa-kit.conflist":
                stale.unlink()
        _write(p.cni_conf_dir / "10-hpa-kit.conflist", configs.cni_conflist(s, p))
        assert pki.kubelet_serving is not None
        _write(
            p.kubelet_config,
            configs.kubelet_config(
                s,
                p,
                ca=pki.ca.cert,
                serving_cert=pki.kubelet_serving.cert,
                serving_key=pki.kubelet_serving.key,
            ),
        )
        _write(p.kube_proxy_config, configs.kube_proxy_config(s, kubeconfig=pki.kubeconfigs["kube-proxy"]))
        progress(
            f"host ready: bridge {s.bridge} {s.node_ip}, ip_forward on, "
            f"configs in {p.containerd_config.parent}"
        )

    def _import_images(self, progress: ProgressFn) -> None:
        names = list(dict.fromkeys([*SYSTEM_IMAGES, *self.settings.images]))
        self.load_images(names, progress)

    def load_images(self, images: Iterable[str | Path], progress: ProgressFn = print) -> None:
        """Import images into the node's containerd: names are built by harness.images if needed."""
        from harness import images as img  # imported lazily: only the node needs it

        if not procs.alive(self._record("containerd")):
            raise ClusterError(f"cluster {self.name} is not running: run `hpa-kit up` first")
        archives: list[Path] = []
        names: list[str] = []
        for item in images:
            if isinstance(item, Path) or str(item).endswith((".tar", ".oci")) or Path(str(item)).is_file():
                archives.append(Path(item))
            else:
                names.append(str(item))
        try:
            if names:
                built = img.ensure_all(names, progress=progress)
                archives.extend(built.values())
            if archives:
                img.import_images(
                    archives, address=str(self.paths.containerd_sock), namespace="k8s.io", progress=progress
                )
        except img.ImageError as exc:
            raise ClusterError(f"images: {exc}") from exc

    def _apply(self, docs: list[dict], progress: ProgressFn, what: str) -> None:
        from harness.kubectl import KubectlError

        try:
            self.kubectl().apply(docs)
        except KubectlError as exc:
            raise ClusterError(f"applying {what}: {exc}") from exc
        progress(f"{what} applied")

    def _maybe_update_controller_manager(self, progress: ProgressFn) -> bool:
        """Restart kube-controller-manager if the requested HPA flags differ from the running ones."""
        if not self.settings.with_node:
            return False
        rec = self._record("kube-controller-manager")
        if rec is None or set(self.settings.hpa.flags()) <= set(rec.argv):
            return False
        progress("HPA settings changed: restarting kube-controller-manager")
        procs.stop(rec)
        new = procs.start(
            "kube-controller-manager",
            flags.kube_controller_manager(self.settings, self.pki(), bin_dir=self._bins),
            log=self.log_path("kube-controller-manager"),
            pid_dir=self.pid_dir,
        )
        self._wait(
            "kube-controller-manager",
            new,
            probes.https_healthz(self.settings.controller_manager_port),
            self.timeouts.controller,
            progress,
        )
        return True

    # --------------------------------------------------------------------------------- stop

    def stop(self, progress: ProgressFn = print) -> None:
        """Stop everything and undo every host change; keep the state dir (warm next ``create``)."""
        if self.settings.with_node and not _is_root():
            raise ProviderUnavailable(
                "the local provider needs root to stop containerd and kubelet: run with sudo"
            )
        with self._lock():
            self._stop_locked(progress)

    def _stop_component(self, comp: str, progress: ProgressFn, timeout: float = 15) -> None:
        rec = self._record(comp)
        if procs.stop(rec, timeout=timeout):
            progress(f"{comp} stopped")
        procs.forget(self.pid_dir, comp)

    def _stop_locked(self, progress: ProgressFn) -> None:
        problems: list[str] = []
        if self.settings.with_node:
            self._stop_component("kubelet", progress)
            self._kill_pods(progress)
            self._stop_component("containerd", progress)
            self._kill_shims(progress)
            self._stop_component("kube-router", progress)
            self._stop_component("kube-proxy", progress)
        for comp in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            if comp in self.components():
                self._stop_component(comp, progress)
        if self.settings.with_node:
            problems += self._undo_host(progress)
        for p in problems:
            progress(f"WARNING: {p}")
        progress(f"cluster {self.name} stopped (state kept in {self.state_dir})")

    def _ctr(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """``ctr ARGS`` in k8s.io for callers that read its output; a timeout raises ClusterError."""
        return procs.run(["ctr", "-a", str(self.paths.containerd_sock), "-n", "k8s.io", *args],
                         timeout=timeout, check=False, error=ClusterError)  # fmt: skip

    def _kill_pods(self, progress: ProgressFn) -> None:
        """Kill every pod container: through containerd while it runs, then whatever is left in cgroups.

        The cgroup sweep only runs when the ``kubepods`` cgroups did not exist before our first ``up``
        (recorded in the host baseline): otherwise they could belong to another kubelet.
        """
        ours = not self._baseline().data.get("cgroups")
        if procs.alive(self._record("containerd")):
            tasks = self._ctr("tasks", "ls", "-q").stdout.split()
            if tasks:
                # SIGKILL what runs in the pods' cgroups first (one pass, no per-task round trips),
                # then let containerd reap and delete every task in one call.
                if ours:
                    hostnet.kill_cgroup_procs(timeout=5)
                self._ctr("tasks", "rm", "-f", *tasks, timeout=120)
            containers = self._ctr("containers", "ls", "-q").stdout.split()
            if containers:
                self._ctr("containers", "rm", *containers, timeout=120)
            if tasks or containers:
                progress(f"removed {len(tasks)} task(s), {len(containers)} container(s)")
        n = hostnet.kill_cgroup_procs() if ours else 0
        if n:
            progress(f"killed {n} leftover pod process(es)")

    def _kill_shims(self, progress: ProgressFn) -> None:
        """SIGKILL shims still serving *our* containerd (matched by its exact socket in their argv)."""
        killed = 0
        for pid in self._shim_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
                killed += 1
        if killed:
            progress(f"killed {killed} leftover containerd shim(s)")

    def _undo_host(self, progress: ProgressFn) -> list[str]:
        s = self.settings
        problems = []
        left = hostnet.unmount_under([self.state_dir, self.run_dir])
        if left:
            problems.append(f"still mounted: {', '.join(left[:5])}")
        base = self._baseline()
        n = hostnet.iptables_cleanup(base.preexisting_chains())
        stuck_sets = hostnet.ipset_cleanup(base.preexisting_ipsets())
        if stuck_sets:
            problems.append(f"ipsets not removable: {', '.join(stuck_sets[:5])}")
        removed = hostnet.delete_bridge(s.bridge)
        problems += base.restore()
        stuck = hostnet.remove_cgroups(base.data.get("cgroups", []))
        if stuck:
            problems.append(f"cgroups not removable: {', '.join(stuck[:5])}")
        self._remove_log_links(base.data.get("var_log_containers", True))
        if not left:
            # Runtime state only (netns files, IPAM reservations, runc state); images stay in root.
            shutil.rmtree(self.run_dir, ignore_errors=True)
        base.forget()
        self._release_node()
        progress(f"host restored: {n} iptables chain(s) removed, links removed: {', '.join(removed) or '-'}")
        return problems

    def _remove_log_links(self, existed_before: bool) -> None:
        d = Path("/var/log/containers")
        if not d.is_dir():
            return
        for link in d.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and str(os.readlink(link)).startswith(str(self.paths.pod_logs)):
                    link.unlink()
        if not existed_before:
            with contextlib.suppress(OSError):
                d.rmdir()

    # ------------------------------------------------------------------------------- delete

    def delete(self, progress: ProgressFn = print) -> None:
        """Stop (if needed) and remove the state dir."""
        self.stop(progress)
        left = hostnet.mounts_under([self.state_dir, self.run_dir])
        if left:
            raise ClusterError(f"refusing to remove {self.state_dir}: still mounted {left[:3]}; unmount them")
        shutil.rmtree(self.state_dir, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        progress(f"cluster {self.name} deleted ({self.state_dir} removed)")

    # ---------------------------------------------------------------------------- measures

    def memory_kib(self) -> dict[str, int]:
        """RSS per running component (KiB), plus containerd shims and the pods' memory cgroup usage."""
        out = {}
        for comp in self.components():
            rec = self._record(comp)
            if procs.alive(rec):
                assert rec is not None
                out[comp] = procs.proc_rss_kib(rec.pid)
        if self.settings.with_node:
            shims = self._shim_pids()
            if shims:
                out[f"containerd-shims ({len(shims)})"] = sum(procs.proc_rss_kib(p) for p in shims)
            usage = Path("/sys/fs/cgroup/memory/kubepods/memory.usage_in_bytes")
            with contextlib.suppress(OSError, ValueError):
                out["pods (kubepods cgroup)"] = int(usage.read_text()) // 1024
        return out

    def _shim_pids(self) -> list[int]:
        """containerd-shim-runc-v2 processes serving *our* containerd (its socket is in their argv)."""
        sock = str(self.paths.containerd_sock).encode()
        found = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock in argv:
                found.append(int(d.name))
        return found


class _Worker:
    """Run a function in a thread and re-raise its exception on ``join``."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.error: BaseException | None = None

        def target() -> None:
            try:
                fn()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self, progress: ProgressFn, what: str) -> None:
        if self.thread.is_alive():
            progress(f"waiting for {what}")
        self.thread.join()
        if self.error is not None:
            raise ClusterError(f"{what} failed: {self.error}") from self.error


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
