"""Build, render and audit the kit's Kubernetes manifests (``manifests/``).

Why a render step: two inputs of the install are generated per cluster and must never live in the repo,
the adapter's serving Secret and the CA bundle the aggregator uses to verify the adapter. The repo's
APIServices carry a base64 *placeholder* caBundle; :func:`render` writes a small kustomization into a
build directory outside the repo that references the chosen overlay by relative path, adds the Secret and
patches the real caBundle into exactly the APIServices that carry the placeholder. It also generates the
in-cluster Locust's ``locustfile`` ConfigMap from ``harness/locustfile.py`` (the one locustfile, outside
the overlays' kustomize root). ``kubectl apply -k`` on that directory is the install. Nothing in
``manifests/`` is ever rewritten.

:func:`detect_insecure` audits objects (a build, or a live cluster through kubectl) for the shortcuts
custom-metrics tutorials use: APIServices that skip TLS verification and RBAC that hands
``system:anonymous``/``system:unauthenticated`` cluster-admin or the metrics APIs.

Everything shells out to ``kubectl`` (``kubectl kustomize``, ``kubectl get``); set ``KUBECTL`` to use
another binary. The module is also a small CLI: ``python -m harness.manifests --help``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import ipaddress
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import paths, procs
from harness.errors import HarnessError

__all__ = [
    "ADAPTER_NAMESPACE",
    "ADAPTER_SERVICE",
    "ANONYMOUS_PROBES",
    "CA_BUNDLE_PLACEHOLDER",
    "LOCUSTFILE",
    "LOCUSTFILE_CONFIGMAP",
    "METRICS_GROUPS",
    "OVERLAYS",
    "SERVING_SECRET",
    "Finding",
    "ManifestError",
    "anonymous_access",
    "apiserver_placeholder_paths",
    "audit",
    "build",
    "cert_manager_secrets",
    "detect_insecure",
    "kustomize",
    "live_objects",
    "locustfile_namespaces",
    "main",
    "overlay_dir",
    "placeholder_apiservices",
    "registry_overrides",
    "render",
    "required_images",
]

REPO_ROOT = paths.kit_root()
MANIFESTS_DIR = paths.manifests_dir()
OVERLAYS_DIR = MANIFESTS_DIR / "overlays"

#: The overlays shipped in ``manifests/overlays`` (see manifests/README.md for the risk of each).
OVERLAYS = ("default", "anonymous-fallback", "insecure", "resource-metrics", "test", "cert-manager")

ADAPTER_NAMESPACE = "custom-metrics"
ADAPTER_SERVICE = "custom-metrics-apiserver"
ADAPTER_CONFIGMAP = "adapter-config"
ADAPTER_CONFIG_KEY = "config.yaml"
#: Pod-template annotation render() sets to the merged rules' hash, so changed rules roll the adapter.
ADAPTER_CONFIG_ANNOTATION = "hpa-kit.dev/adapter-config-sha256"
#: The rule lists a project's own rules file may add to (prometheus-adapter's keys).
EXTRA_RULE_KEYS = ("rules", "externalRules")
#: What ``harness.certs.serving_bundle(out, ADAPTER_SERVICE, ADAPTER_NAMESPACE)`` names its Secret.
SERVING_SECRET = f"{ADAPTER_SERVICE}-tls"

#: base64("hpa-kit: caBundle placeholder, install with harness/manifests.py render"): valid base64 so the
#: objects pass schema validation, obviously not a certificate so an un-rendered install fails loudly
#: (APIService Available=False with a TLS error) instead of quietly skipping verification.
CA_BUNDLE_PLACEHOLDER = (
    "aHBhLWtpdDogY2FCdW5kbGUgcGxhY2Vob2xkZXIsIGluc3RhbGwgd2l0aCBoYXJuZXNzL21hbmlmZXN0cy5weSByZW5kZXI="
)

METRICS_GROUPS = ("custom.metrics.k8s.io", "external.metrics.k8s.io")

#: The NetworkPolicy ipBlock that stands for the API server (the source of the aggregator's requests to
#: the adapter and of service-proxy reads of Prometheus). It matches nothing, so an un-rendered install
#: fails closed; render(apiserver_cidrs=...) replaces it.
APISERVER_CIDR_PLACEHOLDER = "255.255.255.255/32"

#: Identities that every unauthenticated request gets.
_ANONYMOUS = {("User", "system:anonymous"), ("Group", "system:unauthenticated")}
#: Identities every authenticated caller (any ServiceAccount) gets; only full admin to them is flagged.
_EVERYONE = {("Group", "system:authenticated")}

_KUSTOMIZATION = "kustomization.yaml"
_SECRET_FILE = "serving-secret.yaml"
#: The single locustfile (also run locally by harness/load.py); render() ships it as ConfigMap `locustfile`.
LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
LOCUSTFILE_CONFIGMAP = "locustfile"
_KUBECTL_TIMEOUT_S = 120
_LIVE_KINDS = "apiservices.apiregistration.k8s.io,clusterrolebindings,clusterroles,rolebindings,roles"


class ManifestError(HarnessError):
    """A manifest could not be built, rendered or audited; the message says what to do next."""


# ------------------------------------------------------------------------------------------ building


def _kubectl() -> str:
    return os.environ.get("KUBECTL", "kubectl")


def overlay_dir(overlay: str | Path) -> Path:
    """The directory of ``overlay``: a name from :data:`OVERLAYS` or a path to a kustomization dir."""
    path = (
        OVERLAYS_DIR / overlay if isinstance(overlay, str) and "/" not in overlay else Path(overlay)
    ).resolve()
    if not (path / _KUSTOMIZATION).is_file():
        known = ", ".join(OVERLAYS)
        raise ManifestError(
            f"no kustomization.yaml in {path}: pass an overlay name ({known}) or a kustomization directory"
        )
    return path


def _run(argv: list[str], what: str) -> str:
    return procs.run(
        argv, timeout=_KUBECTL_TIMEOUT_S, what=what, error=ManifestError,
        missing="install kubectl (>= 1.27, it embeds kustomize) or set KUBECTL",
    ).stdout  # fmt: skip


def kustomize(path: Path) -> str:
    """``kubectl kustomize path``: the overlay as one multi-document YAML string."""
    return _run([_kubectl(), "kustomize", str(path)], f"kubectl kustomize {path}")


def load_objects(text: str) -> list[dict[str, Any]]:
    """Parse a multi-document YAML stream (or a JSON ``List``) into objects, dropping empty documents."""
    objects: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        if not isinstance(doc, dict):
            raise ManifestError(f"expected Kubernetes objects, got a {type(doc).__name__} document")
        if doc.get("kind") == "List" or (doc.get("kind", "").endswith("List") and "items" in doc):
            objects.extend(item for item in doc.get("items") or [] if item)
        else:
            objects.append(doc)
    return objects


def build(
    overlay: str | Path,
    *,
    ca_bundle: str | None = None,
    serving_secret_yaml: Path | None = None,
    out_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """The objects of ``overlay``.

    Without ``ca_bundle``/``serving_secret_yaml`` this is the repo overlay as-is (placeholders intact:
    right for static checks, wrong to apply). With them, the overlay is rendered first (into ``out_dir``
    or a temporary directory) and the rendered objects are returned.
    """
    if ca_bundle is None and serving_secret_yaml is None:
        return load_objects(kustomize(overlay_dir(overlay)))
    bundle = ca_bundle or ""
    if out_dir is not None:
        built = render(overlay, ca_bundle=bundle, serving_secret_yaml=serving_secret_yaml, out_dir=out_dir)
        return load_objects(kustomize(built))
    with tempfile.TemporaryDirectory(prefix="hpa-kit-build-") as tmp:
        built = render(overlay, ca_bundle=bundle, serving_secret_yaml=serving_secret_yaml, out_dir=Path(tmp))
        return load_objects(kustomize(built))


# ----------------------------------------------------------------------------------------- rendering


def placeholder_apiservices(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of APIServices whose caBundle is still :data:`CA_BUNDLE_PLACEHOLDER`."""
    return sorted(
        o["metadata"]["name"]
        for o in objects
        if o.get("kind") == "APIService" and (o.get("spec") or {}).get("caBundle") == CA_BUNDLE_PLACEHOLDER
    )


def apiserver_placeholder_paths(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """(namespace, NetworkPolicy name) -> JSON-patch paths of the ``from`` peers that carry
    :data:`APISERVER_CIDR_PLACEHOLDER`."""
    out: dict[tuple[str, str], list[str]] = {}
    for o in objects:
        if o.get("kind") != "NetworkPolicy":
            continue
        for i, rule in enumerate((o.get("spec") or {}).get("ingress") or []):
            for j, peer in enumerate(rule.get("from") or []):
                if (peer.get("ipBlock") or {}).get("cidr") == APISERVER_CIDR_PLACEHOLDER:
                    key = (o["metadata"].get("namespace", ""), o["metadata"]["name"])
                    out.setdefault(key, []).append(f"/spec/ingress/{i}/from/{j}")
    return out


def _apiserver_patches(objects: Sequence[Mapping[str, Any]], cidrs: Sequence[str]) -> list[dict[str, Any]]:
    """Kustomize patches replacing each placeholder peer with one ipBlock peer per API server CIDR."""
    blocks = []
    for c in cidrs:
        try:
            net = ipaddress.ip_network(c.strip(), strict=False)
        except ValueError:
            raise ManifestError(
                f"apiserver CIDR {c!r} is not an address or CIDR (e.g. 10.0.0.5/32)"
            ) from None
        blocks.append({"ipBlock": {"cidr": str(net)}})
    patches = []
    for (namespace, name), peers in apiserver_placeholder_paths(objects).items():
        ops: list[dict[str, Any]] = []
        for path in reversed(peers):  # later indexes first, so earlier paths stay valid
            ops.append({"op": "remove", "path": path})
            ops += [{"op": "add", "path": path, "value": b} for b in reversed(blocks)]
        patches.append({
            "target": {"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy",
                       "name": name, "namespace": namespace},
            "patch": json.dumps(ops),
        })  # fmt: skip
    return patches


def normalise_ca_bundle(value: str) -> str:
    """``value`` as the one-line base64 an APIService wants; PEM text is accepted and encoded.

    Raises :class:`ManifestError` unless it decodes to at least one PEM certificate, so a wrong file
    (a key, the placeholder, a path) is caught before anything is written.
    """
    text = value.strip()
    if text.startswith("-----BEGIN"):
        pem = text.encode()
    else:
        compact = "".join(text.split())
        try:
            pem = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise ManifestError(
                "caBundle is neither PEM nor base64: pass the contents of cabundle.txt written by "
                "harness.certs.serving_bundle (scripts/gen-certs.sh serving ...)"
            ) from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ManifestError(
            "caBundle does not contain a PEM certificate (got the placeholder, a key or another file?): "
            "use cabundle.txt from harness.certs.serving_bundle"
        )
    pem = pem.strip() + b"\n"  # one canonical form, whichever way the bundle was passed
    if b"PRIVATE KEY-----" in pem:
        raise ManifestError("caBundle contains a PRIVATE KEY: pass only the CA certificate (cabundle.txt)")
    return base64.b64encode(pem).decode()


def _expected_secret(objects: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(namespace, name) of the serving Secret the adapter Deployment mounts."""
    for obj in objects:
        if obj.get("kind") != "Deployment" or obj["metadata"].get("name") != ADAPTER_SERVICE:
            continue
        for volume in obj["spec"]["template"]["spec"].get("volumes") or []:
            if "secret" in volume:
                return obj["metadata"].get("namespace", "default"), volume["secret"]["secretName"]
    return ADAPTER_NAMESPACE, SERVING_SECRET


def _load_secret(path: Path, expected: tuple[str, str], ca_bundle: str) -> str:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ManifestError(f"cannot read serving Secret {path}: {exc.strerror}") from None
    docs = load_objects(text)
    if len(docs) != 1 or docs[0].get("kind") != "Secret":
        raise ManifestError(
            f"{path} must hold exactly one Secret (secret.yaml from harness.certs.serving_bundle)"
        )
    secret = docs[0]
    meta = secret.get("metadata") or {}
    got = (meta.get("namespace", "default"), meta.get("name"))
    if got != expected:
        raise ManifestError(
            f"{path} is Secret {got[0]}/{got[1]} but the adapter mounts {expected[0]}/{expected[1]}: "
            f"generate it with serving_bundle(out, {ADAPTER_SERVICE!r}, {ADAPTER_NAMESPACE!r})"
        )
    if secret.get("type") != "kubernetes.io/tls":
        raise ManifestError(f"{path} has type {secret.get('type')!r}; the adapter needs kubernetes.io/tls")
    data = secret.get("data") or {}
    missing = [k for k in ("tls.crt", "tls.key") if not data.get(k)]
    if missing:
        raise ManifestError(f"{path} lacks {', '.join(missing)}: regenerate it with harness.certs")
    if ca_bundle and data.get("ca.crt") and normalise_ca_bundle(data["ca.crt"]) != ca_bundle:
        raise ManifestError(
            f"the caBundle and the ca.crt in {path} are different CAs: the aggregator would reject the "
            "adapter. Use cabundle.txt and secret.yaml from the same serving_bundle() output dir"
        )
    return text


def cert_manager_secrets(objects: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(namespace, name) of every Secret a cert-manager ``Certificate`` in ``objects`` issues.

    An overlay whose Certificate issues the adapter's serving Secret (overlays/cert-manager) gets its
    TLS from cert-manager: :func:`render` must add no Secret and no caBundle for it.
    """
    return sorted(
        ((o.get("metadata") or {}).get("namespace", "default"), (o.get("spec") or {}).get("secretName", ""))
        for o in objects
        if o.get("kind") == "Certificate" and str(o.get("apiVersion", "")).startswith("cert-manager.io/")
    )


def locustfile_namespaces(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Namespaces with a Job/Deployment mounting ConfigMap ``locustfile`` that ``objects`` lack.

    The load component (manifests/base/load) mounts it but cannot generate it: its content is
    harness/locustfile.py, outside the overlays' kustomize root, so :func:`render` generates it.
    """
    items = list(objects)
    defined = {
        (o["metadata"].get("namespace", "default"), o["metadata"]["name"])
        for o in items
        if o.get("kind") == "ConfigMap"
    }
    wanted: set[str] = set()
    for obj in items:
        if obj.get("kind") not in ("Job", "Deployment", "StatefulSet", "DaemonSet"):
            continue
        namespace = obj["metadata"].get("namespace", "default")
        for volume in ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("volumes") or []:
            ref = (volume.get("configMap") or {}).get("name")
            if ref == LOCUSTFILE_CONFIGMAP and (namespace, ref) not in defined:
                wanted.add(namespace)
    return sorted(wanted)


#: Where a Prometheus CR that names only ``spec.version`` gets its image (the operator's default base).
PROMETHEUS_DEFAULT_BASE = "quay.io/prometheus/prometheus"
_RELOADER_FLAG = "--prometheus-config-reloader="
#: kind -> path from the object to its pod spec.
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    **{k: ("spec", "template", "spec") for k in
       ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job")},
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


def _dig(obj: Mapping[str, Any], path: Sequence[str]) -> Any:
    for key in path:
        obj = (obj or {}).get(key) or {}
    return obj


def required_images(objects: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Every image the objects will run, mapped to what runs it (``"Deployment ns/name container c"``).

    Pod templates are read directly. Two images never appear in a pod template of the install but are
    run by the Prometheus Operator: Prometheus itself (the CR's ``spec.image``, else the operator's
    default base at ``spec.version``) and the config-reloader sidecar (the operator's
    ``--prometheus-config-reloader`` flag, else the operator image's sibling at the same tag, which is
    how the operator derives its default). A cluster that cannot pull needs all of them loaded.
    """
    out: dict[str, list[str]] = {}

    def add(image: str | None, who: str) -> None:
        if image:
            out.setdefault(str(image), []).append(who)

    for obj in objects:
        kind = obj.get("kind", "")
        meta = obj.get("metadata") or {}
        where = f"{kind} {meta.get('namespace', 'default')}/{meta.get('name', '?')}"
        pod_spec = _dig(obj, _POD_SPEC_PATHS[kind]) if kind in _POD_SPEC_PATHS else None
        if kind == "Prometheus" and str(obj.get("apiVersion", "")).startswith("monitoring.coreos.com/"):
            spec = obj.get("spec") or {}
            version = spec.get("version")
            add(spec.get("image") or (f"{PROMETHEUS_DEFAULT_BASE}:{version}" if version else None),
                f"{where} (run by the Prometheus Operator)")
            pod_spec = spec  # spec.containers / spec.initContainers override or add containers
        for key in ("initContainers", "containers"):
            for c in (pod_spec or {}).get(key) or []:
                add(c.get("image"), f"{where} container {c.get('name', '?')}")
                image = str(c.get("image") or "")
                if image.rpartition(":")[0].endswith("/prometheus-operator"):
                    flag = next((a for a in c.get("args") or [] if str(a).startswith(_RELOADER_FLAG)), None)
                    reloader = (flag[len(_RELOADER_FLAG):] if flag else
                                image.replace("/prometheus-operator:", "/prometheus-config-reloader:"))
                    add(reloader, f"{where} (config-reloader sidecar the operator adds to Prometheus)")
    return out


def _atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def merge_adapter_rules(objects: Sequence[Mapping[str, Any]], rules_file: Path) -> str:
    """The adapter's ``config.yaml`` from ``objects`` with the rules in ``rules_file`` appended.

    ``rules_file`` holds prometheus-adapter rules under ``rules:`` and/or ``externalRules:``. The
    merged config is checked with the adapter's own parser, so a bad rule fails here, naming the file
    and line, instead of crash-looping the adapter pod.
    """
    try:
        text = Path(rules_file).read_text()
        extra = yaml.safe_load(text)
    except OSError as exc:
        raise ManifestError(f"adapter rules file {rules_file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"adapter rules file {rules_file} is not valid YAML: {exc}") from None
    if not isinstance(extra, dict) or not extra or set(extra) - set(EXTRA_RULE_KEYS):
        raise ManifestError(
            f"adapter rules file {rules_file} must be a mapping with {' and/or '.join(EXTRA_RULE_KEYS)} "
            f"(lists of prometheus-adapter rules); found {sorted(extra) if isinstance(extra, dict) else extra!r}"  # noqa: E501
        )
    cms = [o for o in objects if o.get("kind") == "ConfigMap"
           and (o.get("metadata") or {}).get("name") == ADAPTER_CONFIGMAP]  # fmt: skip
    if len(cms) != 1:
        raise ManifestError(f"the overlay has {len(cms)} ConfigMap(s) {ADAPTER_CONFIGMAP}: expected one")
    base = yaml.safe_load((cms[0].get("data") or {}).get(ADAPTER_CONFIG_KEY) or "") or {}
    for key in EXTRA_RULE_KEYS:
        added = extra.get(key) or []
        if not isinstance(added, list):
            raise ManifestError(f"adapter rules file {rules_file}: {key} must be a list of rules")
        if added:
            base[key] = [*(base.get(key) or []), *added]
    merged = yaml.safe_dump(base, sort_keys=False)
    try:
        from adapter.rules.config import parse_config
    except ImportError:  # the adapter's parser needs only PyYAML; without the package, the pod checks
        return merged
    from adapter.errors import ConfigError

    try:
        parse_config(text, source=str(rules_file))  # the project's own lines in its errors
        parse_config(merged, source=f"{ADAPTER_CONFIGMAP} with {rules_file}")
    except ConfigError as exc:
        raise ManifestError(f"adapter rules: {exc}") from None
    return merged


#: The kustomize image-field config ``render(registry=)`` writes (also in manifests/base): the Prometheus
#: CR's ``spec.image`` is an image the ``images:`` override must rewrite too.
_IMAGE_FIELDS_FILE = "image-fields.yaml"
_IMAGE_FIELDS = {"images": [{"path": "spec/image", "kind": "Prometheus"}]}


def _untagged(image: str) -> str:
    """``image`` without its tag (kustomize's ``images[].name`` and ``newName``), digest kept out too."""
    image = image.split("@", 1)[0]
    head, sep, tail = image.rpartition(":")
    return head if sep and "/" not in tail else image


def registry_overrides(objects: Sequence[Mapping[str, Any]], registry: str) -> tuple[list[dict[str, str]],
                                                                                   list[dict[str, Any]]]:
    """What moves every image the kit builds that ``objects`` run to ``registry``, tags kept.

    Returns kustomize ``images:`` entries (``name`` as the manifests write it, ``newName`` from
    :func:`harness.images.registry_ref`, the mapping ``hpa-kit images push`` pushes to) and the patches
    for what ``images:`` cannot reach: the operator's ``--prometheus-config-reloader`` flag and a
    Prometheus CR that names only ``spec.version``. Images the kit does not build stay as they are.
    """
    from harness import images

    specs = images.default_specs()

    def kit_built(image: str) -> bool:
        try:
            return bool(images.select_specs(specs, [image]))
        except images.ImageError:
            return False

    entries: dict[str, dict[str, str]] = {}
    patches: list[dict[str, Any]] = []

    def entry(image: str) -> None:  # an image in a field `images:` rewrites (containers, the CR's spec.image)
        if image and kit_built(image):
            name = _untagged(image)
            new = _untagged(images.registry_ref(image, registry))
            entries.setdefault(name, {"name": name, "newName": new})

    for obj in objects:
        kind, meta = obj.get("kind", ""), obj.get("metadata") or {}
        target = {"kind": kind, "name": meta.get("name", "")}
        if meta.get("namespace"):
            target["namespace"] = meta["namespace"]
        if kind == "Prometheus" and str(obj.get("apiVersion", "")).startswith("monitoring.coreos.com/"):
            spec = obj.get("spec") or {}
            default = f"{PROMETHEUS_DEFAULT_BASE}:{spec.get('version')}"
            entry(str(spec.get("image") or ""))
            if not spec.get("image") and spec.get("version") and kit_built(default):
                patches.append({"target": target, "patch": json.dumps([
                    {"op": "add", "path": "/spec/image", "value": images.registry_ref(default, registry)}])})
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
                entry(str(c.get("image") or ""))
        if kind not in _POD_SPEC_PATHS:
            continue
        path = _POD_SPEC_PATHS[kind]
        pod = _dig(obj, path)
        for c in pod.get("initContainers") or []:
            entry(str(c.get("image") or ""))
        for ci, c in enumerate(pod.get("containers") or []):
            image = str(c.get("image") or "")
            entry(image)
            if not image.rpartition(":")[0].endswith("/prometheus-operator"):
                continue
            args = [str(a) for a in c.get("args") or []]
            at = next((i for i, a in enumerate(args) if a.startswith(_RELOADER_FLAG)), None)
            reloader = (args[at][len(_RELOADER_FLAG):] if at is not None
                        else image.replace("/prometheus-operator:", "/prometheus-config-reloader:"))
            if not kit_built(reloader):
                continue
            flag = _RELOADER_FLAG + images.registry_ref(reloader, registry)
            base = "/" + "/".join([*path, "containers", str(ci), "args"])
            ops: list[dict[str, Any]] = (
                [{"op": "test", "path": f"{base}/{at}", "value": args[at]},
                 {"op": "replace", "path": f"{base}/{at}", "value": flag}] if at is not None else
                [{"op": "add", "path": f"{base}/-" if args else base, "value": flag if args else [flag]}])
            patches.append({"target": target, "patch": json.dumps(ops)})
    return sorted(entries.values(), key=lambda e: e["name"]), patches


def render(
    overlay: str | Path, *, ca_bundle: str, serving_secret_yaml: Path | None, out_dir: Path,
    adapter_rules: Path | None = None, registry: str | None = None,
    apiserver_cidrs: Sequence[str] = (),
) -> Path:  # fmt: skip
    """Write an installable build directory for ``overlay`` into ``out_dir`` and return it.

    ``out_dir/kustomization.yaml`` references the repo overlay by relative path (kustomize refuses
    absolute ones), patches ``ca_bundle`` (base64 or PEM) into every APIService that still carries the
    placeholder, and lists ``serving-secret.yaml``, a copy of ``serving_secret_yaml``, when given. When the
    overlay has the Locust Jobs, ``locustfile.py`` (a copy of :data:`LOCUSTFILE`) and a configMapGenerator
    for ConfigMap ``locustfile`` are added too. The result is checked by building it: no placeholder may
    survive. ``kubectl apply -k out_dir`` installs.
    ``adapter_rules``: a project's own prometheus-adapter rules (:func:`merge_adapter_rules`), patched
    into the adapter's ConfigMap, with the merged config's hash on the adapter's pod template.
    ``registry``: every image the kit builds is run from ``REGISTRY/<path>:<tag>`` instead (a kustomize
    ``images:`` override plus :func:`registry_overrides`' patches), where ``hpa-kit images push
    --registry`` puts them; pull policies stay as the overlay sets them (``IfNotPresent``).
    ``apiserver_cidrs``: where the API server's connections to pods come from (the cluster's; see
    Stack.apiserver_cidrs). Each NetworkPolicy peer carrying :data:`APISERVER_CIDR_PLACEHOLDER` becomes
    one ipBlock per CIDR; without them the placeholder stays and matches nothing (fail closed).
    ``out_dir`` should be outside the repo (or in the git-ignored ``.state/``): it holds a private key.
    """
    source = overlay_dir(overlay)
    objects = load_objects(kustomize(source))
    targets = placeholder_apiservices(objects)
    bundle = normalise_ca_bundle(ca_bundle) if ca_bundle.strip() else ""
    if targets and not bundle:
        raise ManifestError(
            f"overlay {source.name} needs a caBundle for {', '.join(targets)}: pass the contents of "
            "cabundle.txt from harness.certs.serving_bundle (CLI: render --certs DIR)"
        )
    issued = cert_manager_secrets(objects)
    if serving_secret_yaml is not None and _expected_secret(objects) in issued:
        namespace, name = _expected_secret(objects)
        raise ManifestError(
            f"overlay {source.name} has cert-manager issue the adapter's Secret {namespace}/{name}: render "
            "it without a serving Secret (and without a caBundle: cainjector fills it)"
        )
    secret_text = (
        _load_secret(serving_secret_yaml, _expected_secret(objects), bundle)
        if serving_secret_yaml is not None
        else None
    )

    out = Path(out_dir).resolve()
    if out == MANIFESTS_DIR or MANIFESTS_DIR in out.parents:
        raise ManifestError(
            f"out_dir {out} is inside {MANIFESTS_DIR}: render into a directory outside the repo (or .state/)"
        )
    out.mkdir(parents=True, exist_ok=True)
    resources = [os.path.relpath(source, out)]
    secret_path = out / _SECRET_FILE
    if secret_text is not None:
        _atomic_write(secret_path, secret_text, mode=0o600)
        resources.append(_SECRET_FILE)
    else:
        secret_path.unlink(missing_ok=True)  # a stale Secret from an earlier render must not be applied
    locust_namespaces = locustfile_namespaces(objects)
    locustfile_copy = out / LOCUSTFILE.name
    if locust_namespaces:
        _atomic_write(locustfile_copy, LOCUSTFILE.read_text())
    else:
        locustfile_copy.unlink(missing_ok=True)
    patches = [
        {
            "target": {
                "group": "apiregistration.k8s.io",
                "version": "v1",
                "kind": "APIService",
                "name": name,
            },
            "patch": json.dumps([{"op": "add", "path": "/spec/caBundle", "value": bundle}]),
        }
        for name in targets
    ]
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    }
    if locust_namespaces:
        kustomization["configMapGenerator"] = [
            {
                "name": LOCUSTFILE_CONFIGMAP,
                "namespace": namespace,
                "files": [LOCUSTFILE.name],
                "options": {
                    "disableNameSuffixHash": True,  # the Jobs name it; the harness replaces the Jobs per run
                    "labels": {"app.kubernetes.io/name": "locust", "app.kubernetes.io/part-of": "hpa-kit"},
                },
            }
            for namespace in locust_namespaces
        ]
    if adapter_rules is not None:
        merged = merge_adapter_rules(objects, adapter_rules)
        patches += _adapter_config_patches(objects, merged)
    if apiserver_cidrs:
        patches += _apiserver_patches(objects, apiserver_cidrs)
    fields_path = out / _IMAGE_FIELDS_FILE
    if registry:
        from harness import images

        try:
            image_entries, image_patches = registry_overrides(objects, registry)
        except images.ImageError as exc:
            raise ManifestError(str(exc)) from None
        _atomic_write(fields_path, yaml.safe_dump(_IMAGE_FIELDS, sort_keys=False))
        kustomization["configurations"] = [_IMAGE_FIELDS_FILE]
        kustomization["images"] = image_entries
        patches += image_patches
    else:
        fields_path.unlink(missing_ok=True)
    if patches:
        kustomization["patches"] = patches
    header = (
        f"# Generated by harness/manifests.py render() from {source} - do not edit, re-render.\n"
        f"# Install: kubectl apply --server-side -k {out}\n"
    )
    _atomic_write(out / _KUSTOMIZATION, header + yaml.safe_dump(kustomization, sort_keys=False))

    rendered = load_objects(kustomize(out))
    left = placeholder_apiservices(rendered)
    if left:
        raise ManifestError(
            f"render left the caBundle placeholder in {', '.join(left)}: report this as a bug"
        )
    if apiserver_cidrs and apiserver_placeholder_paths(rendered):
        raise ManifestError("render left the API server ipBlock placeholder: report this as a bug")
    return out


def _adapter_config_patches(objects: Sequence[Mapping[str, Any]], config_text: str) -> list[dict[str, Any]]:
    """Kustomize patches: the ConfigMap's config.yaml replaced, the adapter's pods annotated with its hash."""
    digest = hashlib.sha256(config_text.encode()).hexdigest()
    namespace = next(
        (o["metadata"].get("namespace", ADAPTER_NAMESPACE) for o in objects
         if o.get("kind") == "ConfigMap" and o["metadata"].get("name") == ADAPTER_CONFIGMAP),
        ADAPTER_NAMESPACE,
    )  # fmt: skip
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": ADAPTER_CONFIGMAP, "namespace": namespace},
                 "data": {ADAPTER_CONFIG_KEY: config_text}}  # fmt: skip
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": ADAPTER_SERVICE, "namespace": ADAPTER_NAMESPACE},
                  "spec": {"template": {"metadata": {
                      "annotations": {ADAPTER_CONFIG_ANNOTATION: digest}}}}}  # fmt: skip
    return [
        {"target": {"kind": "ConfigMap", "name": ADAPTER_CONFIGMAP}, "patch": yaml.safe_dump(configmap)},
        {"target": {"group": "apps", "kind": "Deployment", "name": ADAPTER_SERVICE},
         "patch": yaml.safe_dump(deployment)},
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------ auditing


@dataclass(frozen=True)
class Finding:
    """One insecure setting: ``severity`` is ``critical`` (cluster compromise) or ``warning``."""

    severity: str
    kind: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper()}: {self.kind} {self.name}: {self.message}"


#: Built-in ClusterRoles whose rules come from aggregation (or the apiserver's bootstrap policy), so a
#: binding may name them while the objects audited hold no rules for them: judged by name.
_BUILTIN_DANGEROUS = {
    "cluster-admin": ("full admin",),
    "admin": ("reads secrets", "pods/exec", "impersonate", "serviceaccounts/token create", "bind/escalate"),
    "edit": ("reads secrets", "pods/exec", "impersonate", "serviceaccounts/token create"),
}

#: (name, API groups, resources, verbs) of permissions that amount to a cluster takeover for whoever
#: holds them: any one allowed verb on any one resource of the row is enough.
_DANGEROUS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    ("reads secrets", ("",), ("secrets",), ("get", "list", "watch")),
    ("impersonate", ("", "authentication.k8s.io"),
     ("users", "groups", "serviceaccounts", "userextras", "uids"), ("impersonate",)),
    ("bind/escalate", ("rbac.authorization.k8s.io",), ("roles", "clusterroles"), ("bind", "escalate")),
    ("pods/exec", ("",), ("pods/exec", "pods/attach"), ("create", "get")),
    ("nodes/proxy", ("",), ("nodes/proxy",), ("get", "create")),
    ("serviceaccounts/token create", ("",), ("serviceaccounts/token",), ("create",)),
)


def _matches(allowed: set[str], wanted: str) -> bool:
    """Whether a rule's list allows ``wanted`` (``*`` and, for resources, ``pods/*`` and ``*/exec``)."""
    if "*" in allowed or wanted in allowed:
        return True
    base, _, sub = wanted.partition("/")
    return bool(sub) and (f"{base}/*" in allowed or f"*/{sub}" in allowed)


def _dangers(rules: Iterable[Mapping[str, Any]]) -> list[str]:
    """The takeover-grade permissions (names from :data:`_DANGEROUS`, or ``full admin`` and
    ``wildcard``) a list of PolicyRules grants, in a stable order."""
    found: list[str] = []
    for rule in rules:
        groups = set(rule.get("apiGroups") or [])
        resources = set(rule.get("resources") or [])
        verbs = set(rule.get("verbs") or [])
        if not resources:
            continue
        if "*" in groups and "*" in resources and "*" in verbs:
            found.append("full admin")
        elif "*" in resources and "*" in verbs:
            where = ",".join(repr(g).replace("'", '"') for g in sorted(groups))
            found.append(f"wildcard (API groups {where}: every resource, every verb)")
        for name, want_groups, want_resources, want_verbs in _DANGEROUS:
            if (
                any(_matches(groups, g) for g in want_groups)
                and any(_matches(resources, r) for r in want_resources)
                and any(_matches(verbs, v) for v in want_verbs)
            ):
                found.append(name)
    return list(dict.fromkeys(found))


def _grants(rules: Iterable[Mapping[str, Any]]) -> tuple[bool, bool]:
    """(full admin, reads a metrics API) for a list of PolicyRules."""
    admin = "full admin" in _dangers(rules)
    metrics = False
    for rule in rules:
        groups = set(rule.get("apiGroups") or [])
        verbs = set(rule.get("verbs") or [])
        if not rule.get("resources"):
            continue
        if ("*" in groups or groups & set(METRICS_GROUPS)) and verbs & {"*", "get", "list", "watch"}:
            metrics = True
    return admin, metrics


def _role_rules(role: Mapping[str, Any], cluster_roles: Mapping[str, Mapping[str, Any]]) -> list[Any]:
    """A role's rules plus, for an aggregated ClusterRole, those of the ClusterRoles its selectors pick."""
    rules = list(role.get("rules") or [])
    selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
    for other in cluster_roles.values():
        labels = (other.get("metadata") or {}).get("labels") or {}
        if other is not role and any(
            (sel.get("matchLabels") or {}) and all(labels.get(k) == v for k, v in sel["matchLabels"].items())
            for sel in selectors
        ):
            rules += other.get("rules") or []
    return rules


def _subjects(binding: Mapping[str, Any], wanted: set[tuple[str, str]]) -> list[str]:
    return [
        s.get("name", "") for s in binding.get("subjects") or [] if (s.get("kind"), s.get("name")) in wanted
    ]


_FIX_ANONYMOUS = (
    "Delete this binding. If metrics fail with 'system:anonymous cannot get resource', fix the aggregator's "
    "front-proxy certificates (manifests/README.md) or use overlays/anonymous-fallback."
)


def _apiservice_findings(obj: Mapping[str, Any]) -> list[Finding]:
    spec = obj.get("spec") or {}
    if not spec.get("insecureSkipTLSVerify"):
        return []
    service = spec.get("service") or {}
    where = f"{service.get('namespace')}/{service.get('name')}" if service else "its backend"
    message = (
        "insecureSkipTLSVerify: true - the kube-apiserver forwards requests (with the caller's identity "
        f"headers) to whatever answers at {where} without verifying it. Set caBundle to the adapter's CA "
        "instead (install through harness/manifests.py render)."
    )
    return [Finding("critical", "APIService", obj["metadata"]["name"], message)]


def _binding_findings(
    obj: Mapping[str, Any],
    role: Mapping[str, Any] | None,
    cluster_roles: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Finding]:
    kind, meta, ref = obj["kind"], obj.get("metadata") or {}, obj.get("roleRef") or {}
    name = meta.get("name", "?")
    rules = _role_rules(role, cluster_roles or {}) if role else []
    _, metrics = _grants(rules)
    dangers = _dangers(rules)
    if ref.get("kind") == "ClusterRole" and ref.get("name") in _BUILTIN_DANGEROUS:
        # Built-in (aggregated) roles: their rules may be absent from the objects, or partial.
        dangers = list(dict.fromkeys([*_BUILTIN_DANGEROUS[ref["name"]], *dangers]))
    admin = "full admin" in dangers
    granted = f"{ref.get('kind')} {ref.get('name')}"
    if kind == "RoleBinding":
        granted += f" in namespace {meta.get('namespace')}"
    anonymous, everyone = _subjects(obj, _ANONYMOUS), _subjects(obj, _EVERYONE)
    found: list[Finding] = []
    if anonymous and admin:
        who = ", ".join(anonymous)
        message = f"grants {who} full admin ({granted}): every unauthenticated request is cluster-admin. "
        found.append(Finding("critical", kind, name, message + _FIX_ANONYMOUS))
    elif anonymous and dangers:
        message = (
            f"grants {', '.join(anonymous)} {', '.join(dangers)} ({granted}): any unauthenticated caller "
            "can take over the cluster from there. "
        )
        found.append(Finding("critical", kind, name, message + _FIX_ANONYMOUS))
    elif anonymous and metrics:
        message = (
            f"lets {', '.join(anonymous)} read the metrics APIs ({granted}): metric values are readable "
            "without credentials. Acceptable only as the anonymous fallback for an aggregator that cannot "
            "present a front-proxy client certificate."
        )
        found.append(Finding("warning", kind, name, message))
    if everyone and admin:
        message = (
            f"grants {', '.join(everyone)} full admin ({granted}): every ServiceAccount is cluster-admin."
        )
        found.append(Finding("critical", kind, name, message + " Delete this binding."))
    elif everyone and dangers:
        message = (
            f"grants {', '.join(everyone)} {', '.join(dangers)} ({granted}): every ServiceAccount (any "
            "compromised pod) can take over the cluster from there."
        )
        found.append(Finding("critical", kind, name, message + " Delete this binding."))
    return found


def _deployment_findings(obj: Mapping[str, Any]) -> list[Finding]:
    meta = obj.get("metadata") or {}
    found: list[Finding] = []
    for container in obj["spec"]["template"]["spec"].get("containers") or []:
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        if "--allow-anonymous" in argv:
            message = (
                f"container {container.get('name')} runs with --allow-anonymous: requests without a trusted "
                "client certificate or token are served as system:anonymous (RBAC still decides)."
            )
            where = f"{meta.get('namespace', 'default')}/{meta.get('name')}"
            found.append(Finding("warning", "Deployment", where, message))
    return found


def audit(objects: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """Insecure settings in ``objects`` (any mix of kinds; the ones that matter are looked at)."""
    items = list(objects)
    cluster_roles = {o["metadata"]["name"]: o for o in items if o.get("kind") == "ClusterRole"}
    roles = {
        (o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in items if o.get("kind") == "Role"
    }
    findings: list[Finding] = []
    for obj in items:
        kind = obj.get("kind")
        if kind == "APIService":
            findings += _apiservice_findings(obj)
        elif kind in ("ClusterRoleBinding", "RoleBinding"):
            ref = obj.get("roleRef") or {}
            if ref.get("kind") == "ClusterRole":
                role = cluster_roles.get(ref.get("name", ""))
            else:
                role = roles.get(((obj.get("metadata") or {}).get("namespace"), ref.get("name", "")))
            findings += _binding_findings(obj, role, cluster_roles)
        elif kind == "Deployment":
            findings += _deployment_findings(obj)
    return findings


def _live_argv(kubeconfig: Path | None, context: str | None, *args: str) -> list[str]:
    argv = [_kubectl(), *args]
    if kubeconfig is not None:
        argv[1:1] = ["--kubeconfig", str(kubeconfig)]
    if context:
        argv[1:1] = ["--context", context]
    return argv


def live_objects(*, kubeconfig: Path | None = None, context: str | None = None) -> list[dict[str, Any]]:
    """APIServices, (Cluster)Roles and (Cluster)RoleBindings of a live cluster, via ``kubectl get``."""
    argv = _live_argv(kubeconfig, context, "get", _LIVE_KINDS, "--all-namespaces", "-o", "json")
    text = _run(argv, "reading APIServices and RBAC from the cluster (needs get/list on them)")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"kubectl get returned no JSON ({exc}); check kubeconfig and context") from None
    return [item for item in doc.get("items") or [] if item]


#: What an unauthenticated request must never be allowed, as ``kubectl auth can-i`` arguments. Asked
#: cluster-wide (``--all-namespaces``): the apiserver's own answer, whatever RBAC, webhook or
#: aggregated role produces it.
#: What an unauthenticated request must never be allowed: (what, SubjectAccessReview resourceAttributes).
ANONYMOUS_PROBES: tuple[tuple[str, dict[str, str]], ...] = (
    ("do everything", {"verb": "*", "group": "*", "resource": "*"}),
    ("read secrets", {"verb": "list", "resource": "secrets"}),
    ("impersonate users", {"verb": "impersonate", "resource": "users"}),
    ("impersonate serviceaccounts", {"verb": "impersonate", "resource": "serviceaccounts"}),
    ("bind clusterroles", {"verb": "bind", "group": "rbac.authorization.k8s.io", "resource": "clusterroles"}),
    ("escalate clusterroles",
     {"verb": "escalate", "group": "rbac.authorization.k8s.io", "resource": "clusterroles"}),
    ("create clusterrolebindings",
     {"verb": "create", "group": "rbac.authorization.k8s.io", "resource": "clusterrolebindings"}),
    ("exec into pods", {"verb": "create", "resource": "pods", "subresource": "exec"}),
    ("proxy to kubelets (nodes/proxy)", {"verb": "get", "resource": "nodes", "subresource": "proxy"}),
    ("mint ServiceAccount tokens", {"verb": "create", "resource": "serviceaccounts", "subresource": "token"}),
)  # fmt: skip
ANONYMOUS_USER = "system:anonymous"
ANONYMOUS_GROUPS = ("system:unauthenticated",)


def _anonymous_allowed(argv: list[str], attributes: Mapping[str, str]) -> bool:
    """One SubjectAccessReview for ``system:anonymous`` (asked by the caller's own identity, which
    needs ``create`` on subjectaccessreviews, as any admin has): the authorizer's own answer."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": ANONYMOUS_USER, "groups": list(ANONYMOUS_GROUPS),
                 "resourceAttributes": dict(attributes)},
    }
    proc = procs.run(
        argv, input=json.dumps(review), timeout=_KUBECTL_TIMEOUT_S, check=False, what="a SubjectAccessReview",
        error=ManifestError, missing="install kubectl or set KUBECTL",
    )  # fmt: skip
    try:
        status = json.loads(proc.stdout).get("status") or {} if proc.returncode == 0 else None
    except json.JSONDecodeError:
        status = None
    if status is None:
        detail = proc.stderr.strip() or proc.stdout.strip()[:300] or f"exit code {proc.returncode}"
        raise ManifestError(
            "asking the apiserver what system:anonymous may do failed (a SubjectAccessReview needs "
            f"create on subjectaccessreviews.authorization.k8s.io): {' '.join(argv[1:])}: {detail}"
        )
    return bool(status.get("allowed"))


def anonymous_access(*, kubeconfig: Path | None = None, context: str | None = None) -> list[Finding]:
    """The apiserver's own answer: one critical finding per :data:`ANONYMOUS_PROBES` entry its
    authorizers allow ``system:anonymous`` in ``system:unauthenticated`` (SubjectAccessReviews)."""
    argv = _live_argv(kubeconfig, context, "create", "-f", "-", "-o", "json")
    found: list[Finding] = []
    for what, attributes in ANONYMOUS_PROBES:
        if _anonymous_allowed(argv, attributes):
            asked = " ".join(f"{k}={v}" for k, v in attributes.items())
            message = (
                f"the apiserver lets unauthenticated requests {what} (a SubjectAccessReview for "
                f"{ANONYMOUS_USER} with {asked} is allowed). Find the binding or authorizer that grants it "
                f"(kubectl auth can-i --list --as={ANONYMOUS_USER}). " + _FIX_ANONYMOUS
            )
            found.append(Finding("critical", "access", ANONYMOUS_USER, message))
    return found


def detect_insecure(
    objects: Iterable[Mapping[str, Any]] | None = None,
    *,
    kubeconfig: Path | None = None,
    context: str | None = None,
) -> list[str]:
    """Warnings, one line each, for insecure settings in ``objects`` or, when None, the live cluster.

    Flags APIServices with ``insecureSkipTLSVerify``, bindings that give ``system:anonymous``,
    ``system:unauthenticated`` or ``system:authenticated`` cluster-admin, ``admin``/``edit`` (judged by
    name: their rules are aggregated), any role with wildcard resources and verbs, or a role that reads
    secrets or grants impersonate, bind, escalate, ``pods/exec``, ``nodes/proxy`` or
    ``serviceaccounts/token`` create; metrics-API read access for the anonymous (a warning); and
    Deployments run with ``--allow-anonymous`` (objects only: the live audit does not list
    Deployments). Live, it also asks the apiserver (:func:`anonymous_access`) whether
    ``system:anonymous`` may do any of :data:`ANONYMOUS_PROBES`, and reports each yes.
    """
    if objects is not None:
        return [str(f) for f in audit(objects)]
    findings = audit(live_objects(kubeconfig=kubeconfig, context=context))
    findings += anonymous_access(kubeconfig=kubeconfig, context=context)
    return [str(f) for f in findings]


# ---------------------------------------------------------------------------------------------- CLI


def _certs_inputs(certs: Path) -> tuple[str, Path]:
    bundle_file, secret_file = certs / "cabundle.txt", certs / "secret.yaml"
    for needed in (bundle_file, secret_file):
        if not needed.is_file():
            raise ManifestError(
                f"{needed} missing: run scripts/gen-certs.sh serving --service {ADAPTER_SERVICE} "
                f"--namespace {ADAPTER_NAMESPACE} --out {certs}"
            )
    return bundle_file.read_text(), secret_file


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.manifests", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rend = sub.add_parser("render", help="write an installable build dir (then: kubectl apply -k DIR)")
    rend.add_argument("overlay", help=f"one of {', '.join(OVERLAYS)} or a kustomization dir")
    rend.add_argument("--certs", type=Path, default=None,
                      help="dir with cabundle.txt + secret.yaml (not for overlays/cert-manager)")
    rend.add_argument("--out", type=Path, required=True, help="build dir to write (outside the repo)")
    rend.add_argument("--registry", default=None,
                      help="run the kit's images from REG/<path>:<tag> (hpa-kit images push --registry REG)")
    rend.add_argument(
        "--apiserver-cidr", action="append", default=[], metavar="CIDR",
        help="where the API server connects to pods from (repeatable, or comma-separated); the "
        "NetworkPolicies admit it to the adapter and Prometheus (manifests/README.md, NetworkPolicies)",
    )  # fmt: skip
    show = sub.add_parser("build", help="print the overlay's YAML (rendered when --certs is given)")
    show.add_argument("overlay")
    show.add_argument("--certs", type=Path, default=None)
    aud = sub.add_parser("audit", help="list insecure settings of an overlay or of the live cluster")
    target = aud.add_mutually_exclusive_group(required=True)
    target.add_argument("--overlay")
    target.add_argument("--live", action="store_true", help="audit the cluster of the current kubeconfig")
    aud.add_argument("--kubeconfig", type=Path, default=None)
    aud.add_argument("--context", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: exit 0 on success, 1 when ``audit`` finds something, 2 on errors."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "render":
            bundle, secret = _certs_inputs(args.certs) if args.certs is not None else ("", None)
            cidrs = [c for arg in args.apiserver_cidr for c in arg.replace(",", " ").split()]
            out = render(args.overlay, ca_bundle=bundle, serving_secret_yaml=secret, out_dir=args.out,
                         registry=args.registry, apiserver_cidrs=cidrs)  # fmt: skip
            print(f"rendered {args.overlay} into {out}\ninstall: kubectl apply --server-side -k {out}")
            if not cidrs:
                print(
                    "WARNING: no --apiserver-cidr: the NetworkPolicies admit nobody to the adapter and "
                    "Prometheus (the metrics APIs stay unavailable); see manifests/README.md, "
                    "NetworkPolicies",
                    file=sys.stderr,
                )
        elif args.command == "build":
            if args.certs is None:
                sys.stdout.write(kustomize(overlay_dir(args.overlay)))
            else:
                bundle, secret = _certs_inputs(args.certs)
                with tempfile.TemporaryDirectory(prefix="hpa-kit-build-") as tmp:
                    out = render(
                        args.overlay, ca_bundle=bundle, serving_secret_yaml=secret, out_dir=Path(tmp)
                    )
                    sys.stdout.write(kustomize(out))
        else:
            objects = None if args.live else build(args.overlay)
            warnings = detect_insecure(objects, kubeconfig=args.kubeconfig, context=args.context)
            for line in warnings:
                print(line)
            if not warnings:
                print("no insecure settings found")
            return 1 if warnings else 0
    except ManifestError as exc:
        print(f"manifests: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
