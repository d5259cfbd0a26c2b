"""cert-manager on a kit cluster, for overlays that issue the adapter's TLS with it
(``manifests/overlays/cert-manager``).

What gets installed (namespace ``cert-manager``, every object labelled :data:`LABEL`):

* the CRDs from the pinned ``github.com/cert-manager/cert-manager`` module's ``deploy/crds``
  (downloaded by ``scripts/build-cert-manager.sh --print-crds-dir``, never copied into the repo; the
  only change made to them is the label);
* the controller and the cainjector, built from that module by ``scripts/build-cert-manager.sh``
  (SelfSigned and CA issuers only; no webhook: see the script's header), run from FROM-scratch images
  (``harness.images``) under this module's own Deployments and least-privilege RBAC.

:class:`CertManager` installs, waits, and uninstalls; :func:`leftovers` lists whatever of cert-manager
is still on a cluster. A cluster that already runs cert-manager (its CRDs present without
:data:`LABEL`) is used as it is: nothing is installed or removed there.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import paths
from harness.errors import HarnessError
from harness.kubectl import Kubectl
from harness.waits import wait_for

__all__ = [
    "CAINJECTOR",
    "CONTROLLER",
    "GROUPS",
    "LABEL",
    "NAMESPACE",
    "CertManager",
    "CertManagerError",
    "binaries_dir",
    "build",
    "crd_objects",
    "images",
    "leftovers",
    "objects",
    "version",
]

NAMESPACE = "cert-manager"
CONTROLLER = "cert-manager-controller"
CAINJECTOR = "cert-manager-cainjector"
#: API groups whose CRDs cert-manager owns.
GROUPS = ("cert-manager.io", "acme.cert-manager.io")
#: On every object the harness installs for cert-manager (and only those): uninstall selects by it.
LABEL = ("hpa-kit/component", "cert-manager")
_SCRIPT = "build-cert-manager.sh"
_UID = 65534


class CertManagerError(HarnessError):
    """Building, installing or removing cert-manager failed; the message says where to look."""


def version() -> str:
    from harness.images.specs import read_versions

    return read_versions(paths.kit_root())["CERT_MANAGER_VERSION"]


def images(registry: str | None = None) -> dict[str, str]:
    """Component -> image name (built by ``harness.images`` from scripts/build-cert-manager.sh's output).
    Named ``hpa-kit/...``: they are the kit's builds of a subset of cert-manager, not upstream's images.
    ``registry``: where ``hpa-kit images push --registry`` put them (the install's other images move the
    same way)."""
    v = version()
    out = {CONTROLLER: f"hpa-kit/cert-manager-controller:{v}",
           CAINJECTOR: f"hpa-kit/cert-manager-cainjector:{v}"}
    if registry:
        from harness.images import registry_ref

        out = {name: registry_ref(image, registry) for name, image in out.items()}
    return out


def _script(*args: str, progress: Callable[[str], None] | None = None, timeout: float = 3600) -> str:
    """Run scripts/build-cert-manager.sh, passing its progress lines on; returns its stdout."""
    argv = ["bash", str(paths.scripts_dir() / _SCRIPT), *args]
    # Its progress lines are passed on as they come (procs.run only returns at the end): a Popen.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tail: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        tail = [*tail[-30:], line.rstrip()]
        if progress and line.startswith("[build-cert-manager"):
            progress(line.rstrip())
        if time.monotonic() > deadline:
            proc.kill()
            break
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise CertManagerError(f"scripts/{_SCRIPT} {' '.join(args)} failed:\n" + "\n".join(tail))
    return out


def binaries_dir() -> Path:
    """Where scripts/build-cert-manager.sh puts ``controller`` and ``cainjector``."""
    return Path(_script("--print-dir").strip())


def build(progress: Callable[[str], None] | None = print) -> Path:
    """Build the binaries if missing or stale (cached; cold: minutes); returns :func:`binaries_dir`."""
    _script(progress=progress)
    return binaries_dir()


def crd_objects(crds_dir: Path | None = None) -> list[dict[str, Any]]:
    """cert-manager's CRDs from the pinned module (``deploy/crds``), labelled :data:`LABEL`."""
    directory = crds_dir or Path(_script("--print-crds-dir").strip())
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise CertManagerError(
            f"no CRD files in {directory}: is CERT_MANAGER_VERSION in scripts/versions.env right?"
        )
    out = []
    for path in files:
        text = path.read_text()
        if "{{" in text:  # the chart's templated copies; deploy/crds is plain YAML
            raise CertManagerError(f"{path} holds Helm template markers: take the CRDs from deploy/crds")
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            if doc.get("kind") != "CustomResourceDefinition" or doc["spec"]["group"] not in GROUPS:
                raise CertManagerError(f"{path}: expected cert-manager CRDs, found {doc.get('kind')}")
            doc["metadata"].setdefault("labels", {})[LABEL[0]] = LABEL[1]
            out.append(doc)
    return out


def _rule(
    groups: Sequence[str], resources: Sequence[str], verbs: Sequence[str], **extra: Any
) -> dict[str, Any]:
    return {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs), **extra}


_READ = ("get", "list", "watch")
_EVENTS = (
    _rule([""], ["events"], ["create", "patch"]),
    _rule(["events.k8s.io"], ["events"], ["create", "patch"]),
)
#: The controllers compiled in (images/cert-manager/controller/main.go): Issuers/ClusterIssuers,
#: Certificates, CertificateRequests (SelfSigned, CA, approver). No ACME, no shims, no leader election.
CONTROLLER_RULES = (
    _rule(["cert-manager.io"], ["issuers", "clusterissuers", "certificates", "certificaterequests"],
          [*_READ, "update", "patch"]),
    _rule(["cert-manager.io"], ["issuers/status", "clusterissuers/status", "certificates/status",
                                "certificaterequests/status"], ["update", "patch"]),
    _rule(["cert-manager.io"], ["certificaterequests"], ["create", "delete"]),
    _rule(["cert-manager.io"], ["certificates/finalizers", "certificaterequests/finalizers"], ["update"]),
    # The approver approves requests for cert-manager's own issuer kinds.
    _rule(["cert-manager.io"], ["signers"], ["approve"],
          resourceNames=["issuers.cert-manager.io/*", "clusterissuers.cert-manager.io/*"]),
    # Issued key pairs and CA secrets (Issuers may live in any namespace).
    _rule([""], ["secrets"], [*_READ, "create", "update", "patch", "delete"]),
    *_EVENTS,
)  # fmt: skip
#: cainjector runs for APIServices only (``--kinds=apiservice``).
CAINJECTOR_RULES = (
    _rule(["apiregistration.k8s.io"], ["apiservices"], [*_READ, "update", "patch"]),
    _rule(["cert-manager.io"], ["certificates"], list(_READ)),
    _rule([""], ["secrets"], list(_READ)),
    *_EVENTS,
)


def objects(image_for: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The namespace, ServiceAccounts, RBAC and Deployments of the harness's cert-manager."""
    image_for = image_for or images()
    labels = {LABEL[0]: LABEL[1]}
    out: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}},
    ]
    specs = {
        CONTROLLER: (CONTROLLER_RULES, [f"--cluster-resource-namespace={NAMESPACE}", "-v=2"]),
        CAINJECTOR: (CAINJECTOR_RULES, ["--kinds=apiservice", "-v=2"]),
    }
    for name, (rules, args) in specs.items():
        meta = {"name": name, "namespace": NAMESPACE, "labels": {**labels, "app.kubernetes.io/name": name}}
        out += [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": f"hpa-kit:{name}", "labels": labels}, "rules": list(rules)},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": f"hpa-kit:{name}", "labels": labels},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": f"hpa-kit:{name}"},
             "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {"metadata": {"labels": {**labels, "app.kubernetes.io/name": name}}, "spec": {
                    "serviceAccountName": name,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": _UID, "runAsGroup": _UID,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": name.removeprefix("cert-manager-"),
                        "image": image_for[name],
                        "imagePullPolicy": "IfNotPresent",
                        "args": args,
                        "env": [{"name": "POD_NAMESPACE",
                                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                                      "limits": {"memory": "256Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                    }],
                }},
            }},
        ]  # fmt: skip
    return out


def leftovers(kubectl: Kubectl) -> list[str]:
    """Whatever of cert-manager is on the cluster: its CRDs (by group), the ``cert-manager`` namespace,
    cluster-scoped RBAC and webhook configurations whose name mentions cert-manager, APIServices
    still annotated for injection."""
    found = [f"crd/{c['metadata']['name']}" for c in kubectl.json("get", "crd")["items"]
             if c["spec"]["group"] in GROUPS]  # fmt: skip
    if kubectl.run("get", "namespace", NAMESPACE, "--ignore-not-found", "-o", "name").strip():
        found.append(f"namespace/{NAMESPACE}")
    kinds = "clusterroles,clusterrolebindings,validatingwebhookconfigurations,mutatingwebhookconfigurations"
    found += [n for n in kubectl.run("get", kinds, "-o", "name").split() if "cert-manager" in n]
    found += [f"apiservice/{a['metadata']['name']}" for a in kubectl.json("get", "apiservices")["items"]
              if any(k.startswith("cert-manager.io/") for k in (a["metadata"].get("annotations") or {}))]
    return found


@dataclass
class CertManager:
    """The harness's cert-manager on the cluster behind ``kubectl``."""

    kubectl: Kubectl
    progress: Callable[[str], None] = print
    #: Run the Deployments' images from this registry (:func:`images`); None: as loaded into the nodes.
    registry: str | None = None
    _crds: list[dict[str, Any]] = field(default_factory=list)

    def foreign(self) -> bool:
        """True when the cluster runs a cert-manager the harness did not install (use it as it is)."""
        out = self.kubectl.run("get", "crd", "certificates.cert-manager.io", "--ignore-not-found",
                               "-o", "json")
        crd = json.loads(out) if out.strip() else None
        return crd is not None and (crd["metadata"].get("labels") or {}).get(LABEL[0]) != LABEL[1]

    def build(self) -> None:
        """Build the binaries (cached; a cold build takes minutes) and read the CRDs."""
        build(self.progress)
        self._crds = crd_objects()

    def install(self, *, timeout: float = 300) -> None:
        """CRDs (server-side, then Established), then RBAC and Deployments; waits for both rollouts.
        The images must already be on the cluster's nodes (``Stack.load_images`` does that)."""
        from harness.stack import wait_rollout

        if not self._crds:
            self._crds = crd_objects()
        start = time.monotonic()
        self._apply(self._crds)
        names = [f"crd/{c['metadata']['name']}" for c in self._crds]
        self.kubectl.run("wait", "--for=condition=Established", f"--timeout={int(timeout)}s", *names,
                         timeout=timeout + 30)
        self._apply(objects(images(self.registry)))
        for name in (CONTROLLER, CAINJECTOR):
            wait_rollout(self.kubectl, NAMESPACE, name, timeout=timeout, progress=self.progress)
        self.progress(f"cert-manager {version()}: {len(names)} CRDs, controller and cainjector ready "
                      f"in {time.monotonic() - start:.0f}s")

    def _apply(self, objs: list[dict[str, Any]]) -> None:
        self.kubectl.apply(objs, timeout=180)

    def wait_certificates(self, namespace: str, names: Sequence[str], *, timeout: float) -> None:
        """Wait until each Certificate in ``namespace`` is Ready (its Secret issued)."""

        def probe() -> tuple[bool, str]:
            states = []
            for name in names:
                cert = self.kubectl.json("-n", namespace, "get", "certificate", name)
                ready = next((c for c in (cert.get("status") or {}).get("conditions") or []
                              if c.get("type") == "Ready"), {})  # fmt: skip
                states.append((name, ready.get("status"), ready.get("message", "")))
            ok = all(s == "True" for _, s, _ in states)
            return ok, "; ".join(f"{n}={s}" + ("" if s == "True" else f" ({m})") for n, s, m in states)

        wait_for(f"cert-manager Certificates Ready in {namespace}", probe, timeout=timeout, interval=2,
                 hint=f"kubectl -n {namespace} describe certificate,certificaterequest,issuer; "
                      f"kubectl -n {NAMESPACE} logs deploy/{CONTROLLER}",
                 progress=self.progress)  # fmt: skip

    def uninstall(self, *, timeout: float = 180) -> None:
        """Remove what :meth:`install` added (selected by :data:`LABEL`; never a foreign cert-manager)."""
        selector = f"{LABEL[0]}={LABEL[1]}"
        self.kubectl.run("delete", "namespace,clusterrolebinding,clusterrole,crd", "-l", selector,
                         "--ignore-not-found", "--wait=true", f"--timeout={int(timeout)}s",
                         timeout=timeout + 30)  # fmt: skip
        self.progress("cert-manager: uninstalled")
