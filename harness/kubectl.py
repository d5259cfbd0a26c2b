"""kubectl, the one way the harness runs it: one kubeconfig and context, errors that carry the command.

The cluster under test hands one out (``Cluster.kubectl()``); the install, the load runners, the HPA
vocabulary and the tests all take it. ``$KUBECTL`` picks the binary.

Reads that are polled or asserted on (:meth:`Kubectl.get`, :meth:`Kubectl.raw`) do not fork kubectl:
they go through the ``kubernetes`` client built from the same kubeconfig and context
(:attr:`Kubectl.api`, also the plugin's ``kube_api`` fixture), and a refused read raises
:class:`KubeApiError` with the HTTP status, not a message to match. kubectl stays for apply, kustomize,
logs, exec, tokens and the hints a person copies.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import procs
from harness.errors import HarnessError
from harness.procs import terminate

#: The field manager of everything the harness applies (server-side apply).
FIELD_MANAGER = "hpa-kit"

__all__ = ["RESOURCES", "KubeApiError", "Kubectl", "KubectlError"]


class KubectlError(HarnessError):
    """A kubectl command failed; the message holds the command, its exit code and its stderr's tail."""


class KubeApiError(KubectlError):
    """The API server refused a read: ``status`` is its HTTP status (404 for a missing object)."""

    def __init__(self, status: int, path: str, body: str) -> None:
        self.status = status
        self.path = path
        reason = body.strip()
        with contextlib.suppress(ValueError, AttributeError):
            reason = json.loads(body).get("message") or reason
        super().__init__(f"GET {path}: HTTP {status}: {reason[-400:]}")


#: The kinds the harness reads, by every name kubectl accepts for them: (group, version, plural,
#: namespaced). For a kind not here, Kubectl.get refuses and says to use ``Kubectl.json("get", ...)``.
_KINDS: tuple[tuple[tuple[str, ...], tuple[str, str, str, bool]], ...] = (
    (("pod", "pods", "po"), ("", "v1", "pods", True)),
    (("service", "services", "svc"), ("", "v1", "services", True)),
    (("endpoints", "ep"), ("", "v1", "endpoints", True)),
    (("configmap", "configmaps", "cm"), ("", "v1", "configmaps", True)),
    (("event", "events", "ev"), ("", "v1", "events", True)),
    (("serviceaccount", "serviceaccounts", "sa"), ("", "v1", "serviceaccounts", True)),
    (("node", "nodes", "no"), ("", "v1", "nodes", False)),
    (("namespace", "namespaces", "ns"), ("", "v1", "namespaces", False)),
    (("deployment", "deployments", "deploy"), ("apps", "v1", "deployments", True)),
    (("statefulset", "statefulsets", "sts"), ("apps", "v1", "statefulsets", True)),
    (("daemonset", "daemonsets", "ds"), ("apps", "v1", "daemonsets", True)),
    (("replicaset", "replicasets", "rs"), ("apps", "v1", "replicasets", True)),
    (("job", "jobs"), ("batch", "v1", "jobs", True)),
    (("hpa", "horizontalpodautoscaler", "horizontalpodautoscalers"),
     ("autoscaling", "v2", "horizontalpodautoscalers", True)),
    (("apiservice", "apiservices"), ("apiregistration.k8s.io", "v1", "apiservices", False)),
    (("csr", "certificatesigningrequest", "certificatesigningrequests"),
     ("certificates.k8s.io", "v1", "certificatesigningrequests", False)),
    (("clusterrolebinding", "clusterrolebindings"),
     ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", False)),
    (("rolebinding", "rolebindings"), ("rbac.authorization.k8s.io", "v1", "rolebindings", True)),
)
RESOURCES: dict[str, tuple[str, str, str, bool]] = {name: where for names, where in _KINDS for name in names}


def resource_path(kind: str, name: str | None = None, namespace: str | None = None) -> str:
    """The API path of ``kind`` (any kubectl name for it), one object or the list; namespaced lists
    without ``namespace`` are across all namespaces."""
    try:
        group, version, plural, namespaced = RESOURCES[kind.lower()]
    except KeyError:
        known = ", ".join(sorted({w[2] for w in RESOURCES.values()}))
        raise KubectlError(f"no API path known for kind {kind!r} (known: {known}); use Kubectl.json"
                           ) from None  # fmt: skip
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespaced and namespace:
        base += f"/namespaces/{namespace}"
    elif not namespaced and namespace:
        raise KubectlError(f"{plural} are cluster-scoped: drop namespace={namespace!r}")
    return f"{base}/{plural}" + (f"/{name}" if name else "")


@dataclass
class Kubectl:
    """kubectl against one kubeconfig and context; errors carry the command and its stderr."""

    kubeconfig: Path
    #: The kubeconfig's context to use; None uses its current context.
    context: str | None = None
    binary: str = field(default_factory=lambda: os.environ.get("KUBECTL", "kubectl"))
    _api: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def api(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for the same kubeconfig and context (built once)."""
        if self._api is None:
            from kubernetes import config

            self._api = config.new_client_from_config(config_file=str(self.kubeconfig), context=self.context)
        return self._api

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def argv(self, *args: str) -> list[str]:
        """The full command line for ``kubectl ARGS`` against this kubeconfig and context."""
        return [self.binary, *(("--context", self.context) if self.context else ()), *args]

    def run(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
        """``kubectl ARGS``'s stdout; a failure (with ``check``), a timeout or a missing kubectl raises
        :class:`KubectlError` with the command, its exit code and its stderr's tail."""
        return procs.run(
            self.argv(*args), input=stdin, env=self.env(), timeout=timeout, check=check,
            what=f"`kubectl {procs.short_command(args)}`", error=KubectlError,
            missing=f"install kubectl or set KUBECTL (now {self.binary!r})",
        ).stdout  # fmt: skip

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def apply(
        self, docs: Sequence[dict[str, Any]], *, field_manager: str = FIELD_MANAGER, timeout: float = 120
    ) -> str:
        """Server-side apply of ``docs`` as ``field_manager``, taking over fields another manager
        set (the harness owns what it applies); kubectl's output."""
        return self.run(
            "apply", "--server-side", "--force-conflicts", f"--field-manager={field_manager}", "-f", "-",
            stdin=yaml.safe_dump_all(list(docs), sort_keys=False), timeout=timeout,
        )  # fmt: skip

    def raw(self, path: str, *, timeout: float = 60) -> Any:
        """GET ``path`` (with its query string) through the API client; the decoded JSON body."""
        api = self.api
        method, url, headers, _body, _post = api.param_serialize(
            "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
        )
        resp = api.call_api(method, url, header_params=headers, _request_timeout=timeout)
        data = resp.read()
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        if not 200 <= resp.status < 300:
            raise KubeApiError(resp.status, path, text)
        return json.loads(text)

    def get(
        self, kind: str, name: str | None = None, *, namespace: str | None = None,
        selector: str | None = None, fields: str | None = None, timeout: float = 60,
    ) -> Any:
        """``kubectl get KIND [NAME] [-n NS] [-l SEL] [--field-selector F] -o json`` without forking.

        One object as a dict, or a list with its ``items``. A missing object raises
        :class:`KubeApiError` with ``status == 404``.
        """
        path = resource_path(kind, name, namespace)
        query = {k: v for k, v in (("labelSelector", selector), ("fieldSelector", fields)) if v}
        if query:
            if name:
                raise KubectlError("a selector reads a list: give name or selector, not both")
            path += "?" + urllib.parse.urlencode(query)
        return self.raw(path, timeout=timeout)

    @contextlib.contextmanager
    def port_forward(self, namespace: str, target: str, port: int, *, timeout: float = 30) -> Iterator[int]:
        """``kubectl port-forward`` ``target`` (``pod/NAME``) to a free local port; yields that port.

        For talking to one pod directly from this host on any provider: kind's and remote clusters'
        pod IPs are not routable from here (on this VM, traffic to them even meets a TLS proxy).
        """
        argv = self.argv("-n", namespace, "port-forward", "--address=127.0.0.1", target, f":{port}")
        # Long-running (it forwards until the caller is done): a Popen read line by line, not procs.run.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=self.env())
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + timeout
            seen: list[str] = []
            local = 0
            while not local:
                line = proc.stdout.readline()
                if not line or time.monotonic() > deadline:
                    raise KubectlError(f"`kubectl {' '.join(argv[1:])}` did not forward: "
                                     f"{' '.join(seen)[-400:]}")
                seen.append(line.strip())
                m = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
                local = int(m.group(1)) if m else 0
            yield local
        finally:
            terminate(proc, timeout=10)
