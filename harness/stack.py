"""Install the reference stack (manifests/) onto a cluster and wait on real conditions.

Order: cfssl serving certificate -> render the overlay with the real caBundle -> the images the
rendered install runs, built and loaded into a cluster that cannot pull (local, kind) -> Prometheus
Operator CRDs (server-side) -> ``kubectl apply --server-side -k`` -> wait for the operator, Prometheus,
its scrape targets, the adapter and the three APIServices. An image the kit cannot build stops the
install before anything is applied. Every wait says what it is waiting on and stops at once on a pod
that cannot start (:mod:`harness.podstate`); a timeout names the objects to look at, and
:meth:`Stack.diagnostics` dumps pods, events, APIServices and every container's log into the report
directory.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import certmanager, certs, manifests, paths, podstate, procs
from harness.errors import HarnessError
from harness.kubectl import Kubectl
from harness.waits import wait_for

if TYPE_CHECKING:
    from harness.cluster.base import Cluster

ADAPTER_NS = "custom-metrics"
ADAPTER_SERVICE = "custom-metrics-apiserver"
MONITORING_NS = "monitoring"
DEMO_NS = "hpa-demo"
#: The rate() window of the install's request-rate rules (total_hit_count, http_requests in
#: manifests/base/adapter/config.yaml): six 5 s scrapes. A direct query that checks what the adapter
#: serves for them uses the same window.
RATE_WINDOW = "30s"
APISERVICES = (
    "v1beta1.custom.metrics.k8s.io",
    "v1beta2.custom.metrics.k8s.io",
    "v1beta1.external.metrics.k8s.io",
)
SCRAPED_SERVICES = ("hits", "fpm", "requests", "queue")
#: Added by overlays with resource metrics (v1beta1.metrics.k8s.io): the operator's kubelet Service.
KUBELET_SERVICE = "kubelet"


class StackError(HarnessError):
    """A step of the install failed; the message names the command and where to look."""


def default_certs_dir(kubectl: Kubectl) -> Path:
    """Certificates live per cluster, outside any report, so a re-install keeps the same CA.

    A fresh CA on every install would change the APIService caBundle and roll the adapter each time.
    """
    server = kubectl.run("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").strip()
    state = Path(os.environ.get("HPA_KIT_STATE", Path.home() / ".local" / "state" / "hpa-kit"))
    return state / "stacks" / hashlib.sha256(server.encode()).hexdigest()[:12] / "certs"


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def match_labels(labels: Mapping[str, Any] | None) -> str:
    """A ``matchLabels`` map as a label selector string (``a=b,c=d``), the form kubectl and the API take."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


def wait_rollout(
    kubectl: Kubectl, namespace: str, name: str, *, timeout: float, progress: Callable[[str], None] = print
) -> None:
    """Wait for a Deployment's finished rollout: every replica updated and available, no old pods left.

    Stops at once, naming pod, container, image and reason, when one of its pods cannot start
    (image not on the node, crash loop, bad container config): see :mod:`harness.podstate`.
    """

    def probe() -> tuple[bool, str]:
        dep = kubectl.get("deployment", name, namespace=namespace)
        want = dep["spec"].get("replicas", 1)
        st = dep.get("status") or {}
        current = st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
        updated, available, total = (
            st.get(k, 0) for k in ("updatedReplicas", "availableReplicas", "replicas")
        )
        done = current and updated == want and available >= want and total == want
        if not done:
            selector = match_labels((dep["spec"].get("selector") or {}).get("matchLabels"))
            if selector:
                pods = kubectl.get("pods", namespace=namespace, selector=selector)["items"]
                podstate.raise_if_stuck(pods, f"deployment {namespace}/{name}")
        return done, f"{updated}/{want} updated, {available} available, {total} total"

    wait_for(
        f"deployment {namespace}/{name}",
        probe,
        timeout=timeout,
        interval=2,
        hint=f"kubectl -n {namespace} describe deployment {name}; kubectl -n {namespace} get events",
        progress=progress,
    )


@dataclass
class Stack:
    """The reference install on one cluster. ``work_dir`` takes diagnostics; the certificates and the
    rendered build (its ``serving-secret.yaml`` holds the adapter's private key) stay in the per-cluster
    state dir next to :attr:`certs_dir`, never under a report folder (``build_root`` overrides)."""

    kubeconfig: Path
    work_dir: Path
    overlay: str = "test"
    progress: Callable[[str], None] = print

    certs_override: Path | None = None
    #: The cluster the install goes to. When it cannot pull images (local, kind), every image the
    #: rendered install runs is built and loaded into it before anything is applied.
    cluster: Cluster | None = None
    #: Images the caller loaded into the cluster itself (not built by hpa-kit); taken as present.
    preloaded: tuple[str, ...] = ()
    #: A project's own adapter rules (YAML with ``rules:``/``externalRules:``), added to the overlay's.
    adapter_rules: Path | None = None
    #: The kubeconfig context (None: the cluster's, else the kubeconfig's current one).
    context: str | None = None
    #: Where rendered builds go (``<build_root>/<overlay name>``); None: ``build`` next to the certs dir.
    #: Private: a build holds the serving Secret with its private key, so never a report folder.
    build_root: Path | None = None
    #: Run the kit's images from this registry (``REGISTRY/<path>:<tag>``, where ``hpa-kit images push``
    #: puts them) instead of loading them: for clusters that pull (``existing``).
    registry: str | None = None

    def __post_init__(self) -> None:
        if self.context is None and self.cluster is not None:
            self.context = self.cluster.context
        self.kubectl = Kubectl(self.kubeconfig, context=self.context)
        self.certs_dir: Path = self.certs_override or default_certs_dir(self.kubectl)
        # An overlay may be a path: its build goes under its name, never back into the overlay itself.
        self.build_dir = (self.build_root or self.certs_dir.parent / "build") / Path(self.overlay).name
        self._objects: list[dict[str, Any]] | None = None

    # --- install ------------------------------------------------------------------------------

    def install(self, *, timeout: float = 600) -> None:
        self.progress(f"stack: installing overlay {self.overlay!r}")
        source = manifests.load_objects(manifests.kustomize(manifests.overlay_dir(self.overlay)))
        issued = manifests.cert_manager_secrets(source)
        ca_bundle, secret = "", None
        if issued:
            # cert-manager issues the serving Secret and cainjector fills the caBundle: no certs here.
            self.progress("stack: cert-manager issues " + ", ".join(f"{ns}/{n}" for ns, n in issued))
        else:
            bundle = certs.serving_bundle(self.certs_dir, ADAPTER_SERVICE, ADAPTER_NS)
            self.progress(
                f"stack: serving certificate for {ADAPTER_SERVICE}.{ADAPTER_NS}.svc in {self.certs_dir}"
            )
            ca_bundle, secret = str(bundle["ca_bundle"]), Path(str(bundle["secret"]))

        def render(apiserver_cidrs: Sequence[str] = ()) -> list[dict[str, Any]]:
            manifests.render(
                self.overlay,
                ca_bundle=ca_bundle,
                serving_secret_yaml=secret,
                out_dir=self.build_dir,
                adapter_rules=self.adapter_rules,
                registry=self.registry,
                apiserver_cidrs=apiserver_cidrs,
            )
            return manifests.load_objects(manifests.kustomize(self.build_dir))

        self._objects = render()
        cm = self._cert_manager() if issued else None
        # Images are checked before the cluster is read for the API server's address.
        if cm is not None:
            cm.build()
            self.load_images([*self._objects, *certmanager.objects()])
        else:
            self.load_images(self._objects)
        if manifests.apiserver_placeholder_paths(self._objects):
            self._objects = render(self.apiserver_cidrs())
        self.install_crds()
        if cm is not None:
            cm.install(timeout=min(timeout, 300))
        self.remove_stale_load_jobs()
        self.kubectl.run(
            "apply", "--server-side", "--force-conflicts", "-k", str(self.build_dir), timeout=300
        )
        self.progress(f"stack: applied {self.build_dir}")
        if issued:
            self.certificate_manager().wait_certificates(
                ADAPTER_NS, self.certificates(), timeout=min(timeout, 300)
            )
        self.wait_ready(timeout=timeout)
        self.warn_insecure()

    def apiserver_cidrs(self) -> list[str]:
        """Where the API server's connections to pods come from: the addresses it advertises for the
        ``default/kubernetes`` Service (its EndpointSlices; one /32 or /128 each), for the
        NetworkPolicies' ipBlocks.

        Right when the API server reaches pods from its own address (the local and kind providers, most
        self-managed clusters); a control plane behind a tunnel or NAT (konnectivity, some managed
        offerings) connects from elsewhere: see manifests/README.md, "NetworkPolicies".
        """
        slices = self.kubectl.json(
            "-n", "default", "get", "endpointslices", "-l", "kubernetes.io/service-name=kubernetes"
        )
        endpoints = [e for s in slices.get("items") or [] for e in s.get("endpoints") or []]
        ips = [ip for e in endpoints for ip in e.get("addresses") or []]
        if not ips:
            raise StackError(
                "the default/kubernetes EndpointSlices list no API server address, so the "
                "NetworkPolicies cannot name it: check `kubectl -n default get endpointslices "
                "-l kubernetes.io/service-name=kubernetes`"
            )
        return [f"{ip}/128" if ":" in ip else f"{ip}/32" for ip in dict.fromkeys(ips)]

    def certificate_manager(self) -> certmanager.CertManager:
        return certmanager.CertManager(self.kubectl, progress=self.progress, registry=self.registry)

    def _cert_manager(self) -> certmanager.CertManager | None:
        """The harness's cert-manager to install, or None when the cluster runs its own."""
        cm = self.certificate_manager()
        if cm.foreign():
            self.progress("stack: the cluster runs its own cert-manager: using it")
            return None
        return cm

    def certificates(self) -> list[str]:
        """Names of the cert-manager Certificates this install creates in the adapter's namespace."""
        return [o["metadata"]["name"] for o in self._built() if o.get("kind") == "Certificate"
                and o["metadata"].get("namespace") == ADAPTER_NS]  # fmt: skip

    def load_images(self, objects: Sequence[dict[str, Any]]) -> list[str]:
        """Build and load every image ``objects`` run into a cluster that cannot pull; returns them.

        Raises :class:`StackError` before the cluster is touched when an image is neither one hpa-kit
        builds (``python -m harness.images list``) nor in :attr:`preloaded`.
        """
        required = manifests.required_images(objects)
        if self.registry and self.cluster is not None and not self.cluster.pulls_images:
            raise StackError(f"the {self.cluster.provider} cluster cannot pull from registry "
                             f"{self.registry}: drop --registry (hpa-kit loads the images into it). "
                             "Nothing was applied.")
        if self.cluster is None or self.cluster.pulls_images:
            where = f"the {self.cluster.provider} cluster" if self.cluster else "the cluster"
            self.progress(f"stack: {where} pulls its images ({len(required)} referenced)")
            return sorted(required)
        from harness import images

        to_load = [name for name in required if name not in self.preloaded]
        unknown = images.unbuildable(to_load)
        if unknown:
            lines = [f"{name} (used by {'; '.join(required[name])})" for name in unknown]
            raise StackError(
                f"the {self.cluster.provider} cluster cannot pull images and hpa-kit cannot build:\n  "
                + "\n  ".join(lines)
                + "\nbuild each one, load it (`hpa-kit load-images ARCHIVE.tar`) and pass it in "
                "Stack(preloaded=...), or reference an image from `python -m harness.images list`. "
                "Nothing was applied."
            )
        self.progress(
            f"stack: loading {len(to_load)} image(s) into the {self.cluster.provider} cluster: "
            + ", ".join(sorted(to_load))
        )
        self.cluster.load_images(sorted(to_load), self.progress)
        return sorted(required)

    def warn_insecure(self) -> list[str]:
        """Report tutorial shortcuts (insecureSkipTLSVerify, anonymous bindings) live on the cluster."""
        findings = manifests.detect_insecure(kubeconfig=self.kubeconfig)
        for line in findings:
            self.progress(f"stack: WARNING insecure setting on this cluster: {line}")
        return findings

    def install_crds(self) -> None:
        procs.run(
            ["bash", str(paths.scripts_dir() / "operator-crds.sh"), "--apply"], env=self.kubectl.env(),
            timeout=300, what="installing the Prometheus Operator CRDs", error=StackError,
        )  # fmt: skip
        self.progress("stack: Prometheus Operator CRDs established")

    def remove_stale_load_jobs(self) -> None:
        """Delete the Locust Jobs an interrupted in-cluster run left (they carry its run label).

        An in-cluster run replaces the install's suspended Locust Jobs with its own and removes them
        when it stops; a killed run leaves them, and re-applying the install over them then fails
        with "field is immutable" (a Job's pod template cannot change)."""
        from harness.incluster_load import RUN_LABEL

        out = self.kubectl.run(
            "-n",
            DEMO_NS,
            "delete",
            "jobs",
            "-l",
            RUN_LABEL,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=60s",
            check=False,
            timeout=90,
        )
        if out.strip():
            self.progress(f"stack: removed Locust Jobs an interrupted load run left: {out.strip()}")

    def wait_ready(self, *, timeout: float = 600) -> None:
        self.wait_deployment(MONITORING_NS, "prometheus-operator", timeout=timeout)
        wait_for(
            "Prometheus pod ready",
            self._prometheus_ready,
            timeout=timeout,
            interval=2,
            hint=f"kubectl -n {MONITORING_NS} get prometheus,statefulset,pods; operator logs",
            progress=self.progress,
        )
        wait_for(
            "Prometheus scrape targets up",
            self._targets_up,
            timeout=timeout,
            interval=3,
            hint="check the ServiceMonitor labels against the Prometheus CR's serviceMonitorSelector",
            progress=self.progress,
        )
        self.wait_deployment(ADAPTER_NS, ADAPTER_SERVICE, timeout=timeout)
        wait_for(
            "APIServices Available",
            self._apiservices_available,
            timeout=timeout,
            interval=2,
            hint="kubectl get apiservices -o yaml (status.conditions says why), adapter logs",
            progress=self.progress,
        )
        # Available only means the aggregator reached the endpoint (its availability probe does not
        # verify TLS); a real proxied request proves the caBundle and the front-proxy identity work.
        wait_for(
            "metrics APIs answering through the aggregator",
            self._apis_answer,
            timeout=timeout,
            interval=2,
            hint="an x509 error means the APIService caBundle does not match the adapter's serving cert",
            progress=self.progress,
        )

    def wait_deployment(self, namespace: str, name: str, *, timeout: float) -> None:
        wait_rollout(self.kubectl, namespace, name, timeout=timeout, progress=self.progress)

    def _prometheus_ready(self) -> tuple[bool, str]:
        pods = self.kubectl.get("pods", namespace=MONITORING_NS, selector="app.kubernetes.io/name=prometheus")
        if not pods["items"]:
            return False, "no Prometheus pod yet (operator reconciling the Prometheus CR)"
        podstate.raise_if_stuck(pods["items"], "Prometheus")
        states = []
        for pod in pods["items"]:
            ready = _condition(pod, "Ready")
            states.append(
                f"{pod['metadata']['name']}={pod['status'].get('phase')}/{(ready or {}).get('status')}"
            )
            if ready and ready.get("status") == "True":
                return True, ", ".join(states)
        return False, ", ".join(states)

    def prometheus_api(self, path: str) -> Any:
        """Prometheus' HTTP API through the apiserver's service proxy (no port-forward)."""
        return self.kubectl.raw(f"/api/v1/namespaces/{MONITORING_NS}/services/prometheus:web/proxy{path}")

    def promql(self, query: str, at: float | None = None) -> float:
        """One instant query straight to Prometheus (not through the adapter), evaluated now or at the
        unix time ``at``; 0.0 when no series match. The query must aggregate to one series."""
        params = {"query": query, **({"time": f"{at:.3f}"} if at is not None else {})}
        res = self.prometheus_api("/api/v1/query?" + urllib.parse.urlencode(params))["data"]["result"]
        if len(res) > 1:
            raise StackError(f"{query} returned {len(res)} series; aggregate it to one (sum, avg, max)")
        return float(res[0]["value"][1]) if res else 0.0

    def _built(self) -> list[dict[str, Any]]:
        if self._objects is None:
            self._objects = manifests.load_objects(manifests.kustomize(self.build_dir))
        return self._objects

    @property
    def apiservices(self) -> tuple[str, ...]:
        """The APIServices this install registers (metrics.k8s.io too where the overlay has it)."""
        if not self.build_dir.exists():
            return APISERVICES
        names = [o["metadata"]["name"] for o in self._built() if o.get("kind") == "APIService"]
        return tuple(names) or APISERVICES

    @property
    def scraped_services(self) -> tuple[str, ...]:
        """Services Prometheus must scrape before the install is ready (the kubelets with resource
        metrics: the adapter's resourceRules read them)."""
        kubelet = (
            any(
                o.get("kind") == "ServiceMonitor" and o["metadata"]["name"] == KUBELET_SERVICE
                for o in self._built()
            )
            if self.build_dir.exists()
            else False
        )
        return SCRAPED_SERVICES + ((KUBELET_SERVICE,) if kubelet else ())

    def _targets_up(self) -> tuple[bool, str]:
        targets = self.prometheus_api("/api/v1/targets?state=active")["data"]["activeTargets"]
        up = {t["labels"].get("service") for t in targets if t.get("health") == "up"}
        missing = [s for s in self.scraped_services if s not in up]
        down = [
            f"{t['scrapeUrl']}: {t.get('lastError')}"
            for t in targets
            if t["labels"].get("service") in missing and t.get("lastError")
        ]
        if down:
            return False, f"missing {missing}; last errors: {'; '.join(down)[:600]}"
        return not missing, f"{len(up)} services up; missing {missing}" if missing else f"{sorted(up)} up"

    def _apiservices_available(self) -> tuple[bool, str]:
        states = []
        ok = True
        for name in self.apiservices:
            obj = self.kubectl.get("apiservice", name)
            cond = _condition(obj, "Available") or {}
            ok &= cond.get("status") == "True"
            states.append(f"{name}={cond.get('status')}({cond.get('reason')})")
        return ok, " ".join(states)

    def _apis_answer(self) -> tuple[bool, str]:
        for name in self.apiservices:
            version, _, group = name.partition(".")
            self.kubectl.raw(f"/apis/{group}/{version}")
        return True, "discovery documents served for " + ", ".join(self.apiservices)

    # --- teardown and diagnostics ---------------------------------------------------------------

    def uninstall(self, *, timeout: float = 300) -> None:
        """Remove the install. APIServices go first: while an APIService points at a deleted
        adapter, namespace deletion stalls on discovery (NamespaceDeletionDiscoveryFailure)."""
        if not self.build_dir.exists():
            return
        self.kubectl.run("delete", "--ignore-not-found", "apiservice", *self.apiservices, check=False)
        uses_cert_manager = bool(self.certificates())
        self.kubectl.run("delete", "--ignore-not-found", "--wait=true", f"--timeout={int(timeout)}s",
                         "-k", str(self.build_dir), check=False, timeout=timeout + 30)  # fmt: skip
        if uses_cert_manager:  # the harness's own cert-manager only (selected by its label)
            self.certificate_manager().uninstall(timeout=timeout)
        self.progress("stack: uninstalled")

    def diagnostics(
        self, out_dir: Path, namespaces: Sequence[str] = (ADAPTER_NS, MONITORING_NS, DEMO_NS)
    ) -> Path:
        """Dump what someone debugging a failed scenario needs; never raises."""
        out_dir.mkdir(parents=True, exist_ok=True)

        def dump(name: str, *args: str) -> None:
            try:
                text = self.kubectl.run(*args, check=False, timeout=60)
            except Exception as exc:
                text = f"{exc}\n"
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (out_dir / name).write_text(text)

        dump("apiservices.yaml", "get", "apiservices", "-o", "yaml")
        dump("nodes.txt", "describe", "nodes")
        for ns in namespaces:
            dump(f"{ns}-pods.txt", "-n", ns, "get", "pods,deploy,svc,hpa,endpointslices", "-o", "wide")
            dump(f"{ns}-events.txt", "-n", ns, "get", "events", "--sort-by=.lastTimestamp")
            dump(f"{ns}-hpa.yaml", "-n", ns, "get", "hpa", "-o", "yaml")
            try:
                pods = self.kubectl.get("pods", namespace=ns)["items"]
            except Exception:
                pods = []
            for pod in pods:
                pname = pod["metadata"]["name"]
                for c in pod["spec"]["containers"]:
                    dump(
                        f"logs/{ns}_{pname}_{c['name']}.log",
                        "-n",
                        ns,
                        "logs",
                        pname,
                        "-c",
                        c["name"],
                        "--tail=500",
                    )
        return out_dir
