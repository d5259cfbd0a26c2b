"""metrics.k8s.io differential: our adapter and prometheus-adapter v0.12.0 asked the same questions.

    .venv/bin/python -m bench.resource_diff [--pods 20] [--namespaces 2] [--nodes 1]

One run, everything on loopback, torn down on the way out (also on Ctrl-C):

1. the benchmark's control plane (etcd + kube-apiserver, no kubelet): namespaces ``diff-<k>``,
   Pods ``diff-<i>`` bound to Node objects ``node-<j>`` (``spec.nodeName`` set at creation), plus
   one Node ``node-nodata`` that no series names;
2. the bench exporter's kubelet listener (``--kubelet``): ``container_cpu_usage_seconds_total`` and
   ``container_memory_working_set_bytes`` per container, ``node_cpu_usage_seconds_total`` and
   ``node_memory_working_set_bytes`` per node, scraped every second by a real Prometheus;
3. both adapters with the same config: the ``resourceRules`` of manifests/base/adapter/config.yaml
   (its ``metrics_path="/metrics/resource"`` matchers dropped: the exporter is not a kubelet
   scrape) plus the benchmark's custom rule, same serving certificate, delegated authn/authz, the
   same client identity as bench.adapter_bench (front-proxy cert + ``X-Remote-*``);
4. every request of :func:`requests_for` sent to both at the same moment, answers compared by
   :func:`compare`: objects listed (by namespace/name), HTTP status, window, per-container (pods)
   or per-node CPU within 1 millicore or 1 % and memory within 1 KiB or 1 %.

The fixture has three deliberate edge cases (see :func:`fixture`): a sidecar with CPU but no
memory series, a sidecar in the Pod spec with no series at all, and a Pod with no series. The
first is a documented, intended difference (upstream serves the missing resource as 0; ours
leaves the Pod out and says why): :func:`compare` marks such differences ``intended``.

Prints a table of the differences and a summary line, writes ``reports/bench/resource-diff-<ts>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.adapters import AdapterProcess, CommonArgs, ours_argv, peer_argv, rule_config
from bench.report import write_json

__all__ = [
    "RUNNING_ONLY",
    "Answer",
    "Difference",
    "Fixture",
    "Tolerance",
    "compare",
    "fixture",
    "format_differences",
    "largest_gaps",
    "parse_duration",
    "parse_quantity",
    "requests_for",
    "resource_rules",
    "summary_line",
]

REPO = Path(__file__).resolve().parents[1]
API = "/apis/metrics.k8s.io/v1beta1"
MIB = 1024 * 1024
#: Why an object upstream serves with a 0 (and ours leaves out) is not a bug of either side.
ZERO_FILL = (
    "intended: a container has CPU but no memory sample (or the reverse); upstream fills the "
    "missing resource with 0, ours leaves the pod out (logged, counted) rather than report a "
    "usage nobody measured"
)

#: A difference both sides explain: upstream's pod informer sees Running pods only.
RUNNING_ONLY = (
    "known: the pod is not Running; upstream watches pods with status.phase=Running only, ours "
    "serves any pod its series name (a real kubelet reports no usage for a pod that never ran)"
)

# ------------------------------------------------------------------------------ pure: parsing

_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}  # fmt: skip
_QUANTITY = re.compile(r"([+-]?[0-9.]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)")


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity (``250m``, ``1Mi``, ``1e3``, ``12345``) as an exact Decimal."""
    m = _QUANTITY.fullmatch(str(text).strip())
    if not m:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    try:
        number = Decimal(m.group(1))
    except InvalidOperation:
        raise ValueError(f"not a Kubernetes quantity: {text!r}") from None
    if m.group(2):
        return number * Decimal(10) ** int(m.group(2)[1:])
    return number * _SUFFIX[m.group(3) or ""]


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_DURATION_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float:
    """A Go ``time.Duration`` string (``1m0s``, ``30s``, ``1.5s``) in seconds."""
    text = str(text).strip()
    if text in ("0", "0s"):
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * _DURATION_UNIT[u] for n, u in parts)


# ------------------------------------------------------------------------------ pure: compare


@dataclass(frozen=True)
class Tolerance:
    """How far apart two values may be and still count as the same (either bound suffices)."""

    cpu_cores: Decimal = Decimal("0.001")  # 1 millicore
    memory_bytes: Decimal = Decimal(1024)  # 1 KiB
    relative: Decimal = Decimal("0.01")  # 1 %

    def same(self, resource: str, a: Decimal, b: Decimal) -> bool:
        absolute = self.cpu_cores if resource == "cpu" else self.memory_bytes
        gap = abs(a - b)
        return gap <= absolute or gap <= self.relative * max(abs(a), abs(b))


@dataclass(frozen=True)
class Answer:
    """One adapter's answer to one request: HTTP status and the decoded JSON body (or None)."""

    status: int
    body: dict[str, Any] | None


@dataclass(frozen=True)
class Difference:
    request: str
    object: str  # "ns/name", "name", or "" for the whole answer
    field: str  # "status", "listed", "window", "containers", "cpu[app]", "memory", ...
    ours: str
    peer: str
    note: str = ""

    @property
    def intended(self) -> bool:
        return self.note.startswith("intended")

    @property
    def known(self) -> bool:
        return self.note.startswith("known")


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def _usages(obj: dict[str, Any]) -> dict[str, dict[str, str]]:
    """``{container: usage}`` for a PodMetrics, ``{"": usage}`` for a NodeMetrics."""
    if "containers" in obj:
        return {c.get("name", ""): c.get("usage") or {} for c in obj.get("containers") or []}
    return {"": obj.get("usage") or {}}


def _zero_filled(obj: dict[str, Any]) -> bool:
    """Does this object carry a usage of exactly 0 (what upstream serves for a missing sample)?"""
    for usage in _usages(obj).values():
        for resource in ("cpu", "memory"):
            text = usage.get(resource)
            if text is None or parse_quantity(text) == 0:
                return True
    return False


def _fmt(resource: str, value: Decimal | None) -> str:
    if value is None:
        return "-"
    if resource == "cpu":
        return f"{value * 1000:.3f}m"
    return f"{value / 1024:.1f}Ki"


def compare_object(
    request: str, ours: dict[str, Any], peer: dict[str, Any], tol: Tolerance = Tolerance()
) -> list[Difference]:
    """Window, the containers listed and every CPU / memory value of one PodMetrics or NodeMetrics."""
    key = _key(ours)
    out: list[Difference] = []
    ow, pw = ours.get("window"), peer.get("window")
    try:
        same_window = parse_duration(ow) == parse_duration(pw) if ow and pw else ow == pw
    except ValueError:
        same_window = ow == pw
    if not same_window:
        out.append(Difference(request, key, "window", str(ow), str(pw)))
    ou, pu = _usages(ours), _usages(peer)
    if set(ou) != set(pu):
        out.append(Difference(request, key, "containers", ",".join(sorted(ou)), ",".join(sorted(pu))))
    for container in sorted(set(ou) & set(pu)):
        for resource in ("cpu", "memory"):
            name = f"{resource}[{container}]" if container else resource
            a, b = ou[container].get(resource), pu[container].get(resource)
            if a is None or b is None:
                if a != b:
                    out.append(Difference(request, key, name, str(a), str(b)))
                continue
            qa, qb = parse_quantity(a), parse_quantity(b)
            if not tol.same(resource, qa, qb):
                out.append(Difference(request, key, name, _fmt(resource, qa), _fmt(resource, qb)))
    return out


def compare(
    request: str,
    ours: Answer,
    peer: Answer,
    tol: Tolerance = Tolerance(),
    known: Mapping[str, str] | None = None,
) -> list[Difference]:
    """Every difference between the two answers to ``request`` (empty: they agree).

    A list is compared object by object, matched by namespace/name; an object only one side lists
    is one difference (``listed``), marked intended when it is the peer's and carries a 0 usage
    (:data:`ZERO_FILL`). A single object that one side serves and the other answers 404 is
    treated the same way. ``known`` maps an object ("ns/name") that only ours serves to the
    note that explains it (:data:`RUNNING_ONLY` for a pod that is not Running).
    """
    known = known or {}
    if ours.status != peer.status:
        note = ""
        if ours.status == 404 and peer.status == 200 and peer.body and _zero_filled(peer.body):
            note = ZERO_FILL
        elif ours.status == 200 and peer.status == 404 and ours.body and "items" not in ours.body:
            note = known.get(_key(ours.body), "")
        return [Difference(request, "", "status", str(ours.status), str(peer.status), note)]
    if ours.status != 200 or ours.body is None or peer.body is None:
        return []  # the same refusal on both sides (a 404 for a pod without data, say)
    if "items" not in ours.body and "items" not in peer.body:
        return compare_object(request, ours.body, peer.body, tol)
    mine = {_key(o): o for o in ours.body.get("items") or []}
    theirs = {_key(o): o for o in peer.body.get("items") or []}
    out: list[Difference] = []
    for key in sorted(set(mine) | set(theirs)):
        if key not in theirs:
            out.append(Difference(request, key, "listed", "yes", "no", known.get(key, "")))
        elif key not in mine:
            note = ZERO_FILL if _zero_filled(theirs[key]) else ""
            out.append(Difference(request, key, "listed", "no", "yes", note))
        else:
            out.extend(compare_object(request, mine[key], theirs[key], tol))
    return out


def _objects(answer: Answer) -> dict[str, dict[str, Any]]:
    if answer.status != 200 or answer.body is None:
        return {}
    items = answer.body.get("items") if "items" in answer.body else [answer.body]
    return {_key(o): o for o in items or []}


def largest_gaps(pairs: Iterable[tuple[Answer, Answer]]) -> dict[str, float]:
    """The largest |ours - peer| over every container (node) both sides serve: ``cpu_millicores``
    and ``memory_bytes``, differences or not (how close "within tolerance" was)."""
    gaps = {"cpu_millicores": Decimal(0), "memory_bytes": Decimal(0)}
    for ours, peer in pairs:
        theirs = _objects(peer)
        for key, obj in _objects(ours).items():
            if key not in theirs:
                continue
            ou, pu = _usages(obj), _usages(theirs[key])
            for container in set(ou) & set(pu):
                for resource, name, scale in (("cpu", "cpu_millicores", 1000), ("memory", "memory_bytes", 1)):
                    a, b = ou[container].get(resource), pu[container].get(resource)
                    if a is not None and b is not None:
                        gap = abs(parse_quantity(a) - parse_quantity(b)) * scale
                        gaps[name] = max(gaps[name], gap)
    return {k: float(v) for k, v in gaps.items()}


def objects_in(answer: Answer) -> int:
    """How many PodMetrics/NodeMetrics an answer carries."""
    if answer.status != 200 or answer.body is None:
        return 0
    return len(answer.body.get("items") or []) if "items" in answer.body else 1


def summary_line(pairs: int, objects: int, diffs: Sequence[Difference]) -> str:
    """``N request pairs, M objects, K differences: I intended (...), J known (...), U unexplained``."""
    intended = sum(1 for d in diffs if d.intended)
    known = sum(1 for d in diffs if d.known)
    other = len(diffs) - intended - known
    fields = sorted({d.field for d in diffs if not (d.intended or d.known)})
    what = (
        f"{intended} intended (upstream's 0 for a missing sample), "
        f"{known} known (upstream lists Running pods only), {other} unexplained"
    )
    if fields:
        what += f" ({', '.join(fields)})"
    return f"{pairs} request pairs, {objects} objects, {len(diffs)} differences: {what}"


def format_differences(diffs: Sequence[Difference]) -> str:
    """A fixed-width table, one row per difference (``(none)`` when there is nothing)."""
    if not diffs:
        return "differences: (none)"
    head = ("request", "object", "field", "ours", "peer", "note")
    rows = [(d.request, d.object or "-", d.field, d.ours, d.peer, d.note.split(":")[0] or "UNEXPLAINED")
            for d in diffs]  # fmt: skip
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = []
    for r in [head, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
        if r is head:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 8)
    return "\n".join(lines)


# ------------------------------------------------------------------------------ pure: fixture


@dataclass
class Fixture:
    """The objects the run creates and the series the exporter serves for them."""

    namespaces: list[str]
    nodes: list[str]  # with data
    nodata_node: str | None
    pods: list[dict[str, Any]]  # Pod manifests
    spec: dict[str, Any]  # bench.exporter.kubelet_text's spec
    cpu_only_pod: str  # "ns/name": a sidecar with CPU and no memory series
    spec_only_pod: str  # "ns/name": a sidecar in the spec with no series at all
    nodata_pod: str  # "ns/name": no series at all
    pending_pod: str  # "ns/name": series, but left Pending (every other pod is marked Running)
    served_by_ours: int = 0  # pods ours should list for /pods


def fixture(n_pods: int, n_namespaces: int, n_nodes: int, *, nodata_node: bool = True) -> Fixture:
    """``diff-<i>`` in namespace ``diff-<i % k>`` on ``node-<i % nodes>``, label ``tier`` front
    (even i) or back, ``shard`` i % 3. Container ``app`` in every Pod, ``sidecar`` in every fifth.
    Pod 5's sidecar has CPU only, pod 7 stays Pending (the run marks the others Running), pod 10's
    sidecar has no series, the last pod has none at all."""
    if n_pods < 12 or n_namespaces < 1 or n_nodes < 1:
        raise ValueError("the fixture needs --pods >= 12, --namespaces >= 1 and --nodes >= 1")
    namespaces = [f"diff-{k}" for k in range(n_namespaces)]
    nodes = [f"node-{j}" for j in range(n_nodes)]
    pods: list[dict[str, Any]] = []
    spec_pods: list[dict[str, Any]] = []
    last = n_pods - 1
    for i in range(n_pods):
        ns, name = namespaces[i % n_namespaces], f"diff-{i}"
        containers = ["app", "sidecar"] if i % 5 == 0 else ["app"]
        labels = {"app": "diff", "tier": "front" if i % 2 == 0 else "back", "shard": str(i % 3)}
        pods.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": nodes[i % n_nodes], "automountServiceAccountToken": False,
                     "containers": [{"name": c, "image": "registry.invalid/diff:0"} for c in containers]},
        })  # fmt: skip
        if i == last:
            continue
        usage: dict[str, dict[str, float]] = {
            "app": {"cpu": 0.010 * (1 + i % 7) + 0.0003, "memory": float((16 + i) * MIB + 123)}
        }
        if "sidecar" in containers and i != 10:
            usage["sidecar"] = {"cpu": 0.005, "memory": float(8 * MIB)}
            if i == 5:
                del usage["sidecar"]["memory"]
        spec_pods.append({"namespace": ns, "pod": name, "containers": usage})
    node_usage = {
        n: {"cpu": 0.5 + 0.25 * j, "memory": float(2 * 1024 * MIB + j * MIB)} for j, n in enumerate(nodes)
    }
    where = {i: f"{namespaces[i % n_namespaces]}/diff-{i}" for i in (5, 7, 10, last)}
    return Fixture(
        namespaces=namespaces,
        nodes=nodes,
        nodata_node="node-nodata" if nodata_node else None,
        pods=pods,
        spec={"pods": spec_pods, "nodes": node_usage},
        cpu_only_pod=where[5],
        spec_only_pod=where[10],
        nodata_pod=where[last],
        pending_pod=where[7],
        served_by_ours=n_pods - 2,  # not pod 5 (CPU-only sidecar) and not the last
    )


def requests_for(fx: Fixture) -> list[str]:
    """Every path both adapters are asked, relative to ``/apis/metrics.k8s.io/v1beta1``."""
    ns0 = fx.namespaces[0]
    paths = ["/nodes", f"/nodes/{fx.nodes[0]}"]
    if fx.nodata_node:
        paths.append(f"/nodes/{fx.nodata_node}")
    paths += [f"/namespaces/{ns}/pods" for ns in fx.namespaces]
    paths.append(f"/namespaces/{ns0}/pods/diff-0")
    for pod in (fx.cpu_only_pod, fx.spec_only_pod, fx.pending_pod, fx.nodata_pod):
        ns, name = pod.split("/")
        paths.append(f"/namespaces/{ns}/pods/{name}")
    paths += [
        "/pods",
        "/pods?labelSelector=tier%3Dfront",
        f"/namespaces/{ns0}/pods?labelSelector=tier%3Dback",
        f"/namespaces/{ns0}/pods?labelSelector=shard%20in%20%280%2C1%29",
        "/pods?labelSelector=app%3Ddiff%2Ctier%21%3Dfront",
    ]
    return paths


def resource_rules(config_yaml: str) -> dict[str, Any]:
    """The ``resourceRules`` block of a rules config (raw or inside a ConfigMap), with the
    ``metrics_path="/metrics/resource"`` matchers dropped: the exporter's series have no such label."""
    doc = yaml.safe_load(config_yaml)
    if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
        inner = next(iter((doc.get("data") or {}).values()), "")
        doc = yaml.safe_load(inner)
    rules = (doc or {}).get("resourceRules")
    if not rules:
        raise ValueError("the config has no resourceRules block")
    for which in ("cpu", "memory"):
        for q in ("containerQuery", "nodeQuery"):
            rules[which][q] = re.sub(r',\s*metrics_path="[^"]*"', "", rules[which][q])
    return rules


# ------------------------------------------------------------------------------ the run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.resource_diff",
        description="Ask our adapter and prometheus-adapter the same metrics.k8s.io questions; "
        "report every difference.",
    )
    p.add_argument("--pods", type=int, default=20, help="pods (>= 12; default 20)")
    p.add_argument("--namespaces", type=int, default=2, help="namespaces the pods spread over (default 2)")
    p.add_argument("--nodes", type=int, default=1, help="nodes with data (default 1; plus node-nodata)")
    p.add_argument(
        "--peer-client-qps", type=float, default=100.0, help="the peer's --client-qps (default 100)"
    )
    p.add_argument("--settle", type=float, default=5.0, help="seconds after both serve, before asking (5)")
    p.add_argument("--ready-timeout", type=float, default=180.0, help="max seconds for an adapter to serve")
    p.add_argument("--out", type=Path, default=REPO / "reports" / "bench", help="where the JSON goes")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs) for debugging")
    args = p.parse_args(argv)
    if args.pods < 12:
        p.error("--pods must be >= 12 (the fixture's edge cases are pods 5, 10 and the last)")
    return args


@dataclass
class Side:
    key: str
    proc: AdapterProcess
    port: int
    answers: dict[str, Answer] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}{API}"


def _create_objects(kubeconfig: Path, fx: Fixture) -> None:
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    from bench.pods import PodFactory

    for ns in fx.namespaces:
        factory = PodFactory(kubeconfig, namespace=ns)
        try:
            factory.ensure_namespace()
            if ns == fx.namespaces[0]:
                for node in [*fx.nodes, *([fx.nodata_node] if fx.nodata_node else [])]:
                    try:
                        factory.core.create_node(k8s.V1Node(metadata=k8s.V1ObjectMeta(name=node)))
                    except ApiException as exc:
                        if exc.status != 409:
                            raise
            for pod in fx.pods:
                if pod["metadata"]["namespace"] == ns:
                    name = pod["metadata"]["name"]
                    try:
                        factory.core.create_namespaced_pod(ns, pod)
                    except ApiException as exc:
                        if exc.status != 409:
                            raise
                    if f"{ns}/{name}" != fx.pending_pod:  # no kubelet: we say they run
                        factory.core.patch_namespaced_pod_status(name, ns, {"status": {"phase": "Running"}})
        finally:
            factory.close()


def _start_exporter(stack: contextlib.ExitStack, tmp: Path, fx: Fixture) -> str:
    from bench.adapter_bench import BenchError

    spec_path = tmp / "kubelet-spec.json"
    spec_path.write_text(json.dumps(fx.spec))
    log = tmp / "exporter.log"
    exporter = AdapterProcess(
        "exporter",
        [sys.executable, "-m", "bench.exporter", "--pods", "1", "--kubelet", str(spec_path)],
        log,
        env={"PYTHONPATH": str(REPO)},
    ).start()
    stack.callback(exporter.stop)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(r"kubelet=http://(\S+)", log.read_text(errors="replace"))
        if m:
            return m.group(1)
        if not exporter.running():
            break
        time.sleep(0.2)
    raise BenchError(f"exporter did not report its kubelet listener:\n{exporter.log_tail()}")


async def _get(client: httpx.AsyncClient, url: str) -> Answer:
    try:
        r = await client.get(url)
    except httpx.HTTPError as exc:
        return Answer(0, {"error": f"{type(exc).__name__}: {exc}"})
    try:
        body = r.json()
    except ValueError:
        body = {"raw": r.text[:500]}
    return Answer(r.status_code, body if isinstance(body, dict) else {"raw": body})


async def _wait_serving(side: Side, want: int, tls: ssl.SSLContext, timeout: float, headers: Any) -> None:
    """Until ``/pods`` lists at least ``want`` pods and ``/nodes`` one node, both with CPU > 0."""
    from bench.adapter_bench import BenchError

    t0, last = time.monotonic(), "no answer yet"
    async with httpx.AsyncClient(verify=tls, headers=headers, timeout=30) as client:
        while time.monotonic() - t0 < timeout:
            if not side.proc.running():
                raise BenchError(f"{side.key} exited:\n{side.proc.log_tail()}")
            pods, nodes = await _get(client, side.base + "/pods"), await _get(client, side.base + "/nodes")
            if objects_in(pods) >= want and objects_in(nodes) >= 1 and pods.body and nodes.body:
                cpus = [c["usage"].get("cpu", "0") for p in pods.body["items"] for c in p["containers"]]
                cpus += [n["usage"].get("cpu", "0") for n in nodes.body["items"]]
                if all(parse_quantity(c) > 0 for c in cpus if c is not None):
                    return
                last = "some CPU still 0 (rate needs two samples)"
            else:
                last = f"/pods {pods.status} {objects_in(pods)} items, /nodes {nodes.status}"
            await asyncio.sleep(1.0)
    raise BenchError(f"{side.key} did not serve {want} pods within {timeout:.0f}s ({last}); "
                     f"log {side.proc.log_path}:\n{side.proc.log_tail()}")  # fmt: skip


async def _ask_all(sides: list[Side], paths: Iterable[str], tls: ssl.SSLContext, headers: Any) -> None:
    """Each path to every side at the same moment, so both read the same Prometheus samples."""
    clients = [httpx.AsyncClient(verify=tls, headers=headers, timeout=30) for _ in sides]
    try:
        for path in paths:
            answers = await asyncio.gather(
                *(_get(c, s.base + path) for c, s in zip(clients, sides, strict=True))
            )
            for s, a in zip(sides, answers, strict=True):
                s.answers[path] = a
    finally:
        for c in clients:
            await c.aclose()


def run(args: argparse.Namespace) -> int:
    from bench import adapter_bench as ab
    from bench.prom import BenchPrometheus
    from harness import procs as hprocs
    from harness.localprom import Target as PromTarget
    from harness.progress import Progress

    progress = Progress(stream=sys.stderr, prefix="resource-diff: ")
    fx = fixture(args.pods, args.namespaces, args.nodes)
    started_at = datetime.now()
    tmp = Path(tempfile.mkdtemp(prefix="hpa-kit-resource-diff-"))
    with contextlib.ExitStack() as stack, ab._signals_as_interrupt():
        stack.callback(lambda: progress(f"kept {tmp}") if args.keep_tmp else shutil.rmtree(tmp, True))
        peer_bin, peer_status = ab.build_peer(progress)
        if peer_bin is None:
            raise ab.BenchError(f"the peer is needed for a differential: {peer_status}")
        cp = ab._start_control_plane(stack, tmp, 0, progress)
        with progress.step(f"{len(fx.pods)} pods in {len(fx.namespaces)} namespaces, nodes"):
            _create_objects(cp.kubeconfig, fx)
        serving, tls = ab._certificates(tmp, cp.pki, progress)
        kubelet_url = _start_exporter(stack, tmp, fx)
        prom = BenchPrometheus([PromTarget(kubelet_url, job="kubelet")], scrape_interval="1s",
                               data_dir=tmp / "prometheus")  # fmt: skip
        stack.callback(prom.stop)
        with progress.step(f"prometheus {prom.url} scraping the kubelet-like series every 1s"):
            prom.start()
            prom.wait_for_targets_up(60)
            n_cpu = sum(len(p["containers"]) for p in fx.spec["pods"])
            prom.wait_for_count("container_cpu_usage_seconds_total", n_cpu, 60, progress)
        scraping_since = time.monotonic()
        rules = resource_rules((REPO / "manifests/base/adapter/config.yaml").read_text())
        config_text = rule_config() + yaml.safe_dump({"resourceRules": rules}, sort_keys=False)
        config = tmp / "rules.yaml"
        config.write_text(config_text)
        common = CommonArgs(config, prom.url, cp.kubeconfig, serving.cert, serving.key, "30s")
        sides: list[Side] = []
        for key in ("ours", "peer"):
            port = hprocs.free_port("127.0.0.1", avoid=[s.port for s in sides])
            if key == "ours":
                proc = AdapterProcess(
                    key, ours_argv(common, port), tmp / "ours.log", env={"PYTHONPATH": str(REPO)}
                )
            else:
                argv = peer_argv(peer_bin, common, port, client_qps=args.peer_client_qps)
                proc = AdapterProcess(key, argv, tmp / "peer.log")
            stack.callback(proc.stop)
            proc.start()
            sides.append(Side(key, proc, port))
            progress(f"started {key} (pid {proc.pid}, port {port})")
        headers = ab._headers()
        with progress.step("both adapters serving metrics.k8s.io with rates"):
            asyncio.run(_wait_all(sides, fx.served_by_ours, tls, args.ready_timeout, headers))
        # rate() over the rules' window divides by the whole window: until the series are that
        # old, both sides serve a fraction of the true usage (the same fraction, but still).
        window_s = parse_duration(str(rules.get("window", "1m")))
        wait_s = max(args.settle, window_s + 5 - (time.monotonic() - scraping_since))
        with progress.step(f"{wait_s:.0f}s for the series to fill the {window_s:.0f}s rate window"):
            time.sleep(wait_s)
        paths = requests_for(fx)
        asyncio.run(_ask_all(sides, paths, tls, headers))
        ours, peer = sides
        diffs: list[Difference] = []
        objects = 0
        for path in paths:
            diffs += compare(
                path, ours.answers[path], peer.answers[path], known={fx.pending_pod: RUNNING_ONLY}
            )
            objects += max(objects_in(ours.answers[path]), objects_in(peer.answers[path]))
        gaps = largest_gaps((ours.answers[p], peer.answers[p]) for p in paths)
        _report(args, fx, started_at, paths, sides, diffs, objects, gaps, config_text, peer_status)
        progress("cleaning up")
    return 0


async def _wait_all(sides: list[Side], want: int, tls: ssl.SSLContext, timeout: float, headers: Any) -> None:
    await asyncio.gather(*(_wait_serving(s, want, tls, timeout, headers) for s in sides))


def _report(
    args: argparse.Namespace,
    fx: Fixture,
    started_at: datetime,
    paths: list[str],
    sides: list[Side],
    diffs: list[Difference],
    objects: int,
    gaps: dict[str, float],
    config_text: str,
    peer_status: str,
) -> None:
    ours, peer = sides
    print()
    w = max(len(p) for p in paths)
    print(f"{'request':<{w}}  {'ours':<12} {'peer':<12} diffs")
    for path in paths:
        a, b = ours.answers[path], peer.answers[path]
        n = sum(1 for d in diffs if d.request == path)
        print(f"{path:<{w}}  {a.status:>3} {objects_in(a):>3} obj  {b.status:>3} {objects_in(b):>3} obj  {n}")
    print()
    print(format_differences(diffs))
    print()
    line = summary_line(len(paths), objects, diffs)
    print(
        f"largest gap on objects both serve: CPU {gaps['cpu_millicores']:.3f} millicores, "
        f"memory {gaps['memory_bytes']:.0f} bytes (tolerance 1m or 1%, 1KiB or 1%)"
    )
    print(line)
    doc = {
        "benchmark": "resource-diff",
        "started_at": started_at.isoformat(timespec="seconds"),
        "peer": {"version": "v0.12.0", "status": peer_status},
        "config": {"pods": args.pods, "namespaces": args.namespaces, "nodes": args.nodes,
                   "rules": config_text, "tolerance": "cpu 1m or 1%, memory 1KiB or 1%"},
        "fixture": {"cpu_only_pod": fx.cpu_only_pod, "spec_only_pod": fx.spec_only_pod,
                    "nodata_pod": fx.nodata_pod, "nodata_node": fx.nodata_node,
                    "pending_pod": fx.pending_pod},
        "summary": line,
        "largest_gaps": gaps,
        "differences": [{**asdict(d), "intended": d.intended} for d in diffs],
        "answers": {s.key: {p: asdict(a) for p, a in s.answers.items()} for s in sides},
    }  # fmt: skip
    out = write_json(args.out / f"resource-diff-{started_at:%Y%m%d-%H%M%S}.json", doc)
    print(f"results: {out}")


def main(argv: list[str] | None = None) -> int:
    from bench.adapter_bench import BenchError

    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("resource-diff: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"resource-diff: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
