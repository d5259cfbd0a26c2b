"""The benchmark's Kubernetes objects: namespace ``bench`` and Pods ``bench-0..N-1``.

The control plane has no node, so the Pods stay Pending forever; the adapters only list them.
They are as small as a valid Pod gets (one container, no service-account token), which flatters
an adapter that LISTs pods per request less than real, much larger Pod objects would.
No controller-manager runs either, so the namespace's ``default`` ServiceAccount (which the
ServiceAccount admission plugin insists on) is created here.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.exporter import NAMESPACE, pod_name

__all__ = ["PodFactory", "pod_manifest"]


def pod_manifest(i: int, namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name(i), "namespace": namespace, "labels": {"app": "bench"}},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "app", "image": "registry.invalid/bench:0"}],
        },
    }


class PodFactory:
    """Creates the namespace once and tops the Pod count up to what the next step needs."""

    def __init__(self, kubeconfig: Path, namespace: str = NAMESPACE, workers: int = 8) -> None:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = workers  # one connection per creating thread
        api_client = client.ApiClient(cfg)
        self.core = client.CoreV1Api(api_client)
        self._api_client = api_client
        self.namespace = namespace
        self.workers = workers
        self._client_mod = client

    def close(self) -> None:
        self._api_client.close()

    def ensure_namespace(self) -> None:
        from kubernetes.client.exceptions import ApiException

        c = self._client_mod
        for create in (
            lambda: self.core.create_namespace(c.V1Namespace(metadata=c.V1ObjectMeta(name=self.namespace))),
            lambda: self.core.create_namespaced_service_account(
                self.namespace, c.V1ServiceAccount(metadata=c.V1ObjectMeta(name="default"))
            ),
        ):
            try:
                create()
            except ApiException as exc:
                if exc.status != 409:
                    raise

    def count(self) -> int:
        return len(self.core.list_namespaced_pod(self.namespace, label_selector="app=bench").items)

    def ensure_pods(self, n: int) -> int:
        """Create whatever of ``bench-0..n-1`` is missing; returns how many were created."""
        from kubernetes.client.exceptions import ApiException

        existing = {
            p.metadata.name for p in self.core.list_namespaced_pod(self.namespace).items if p.metadata
        }
        todo = [i for i in range(n) if pod_name(i) not in existing]

        def create(i: int) -> None:
            try:
                self.core.create_namespaced_pod(self.namespace, pod_manifest(i, self.namespace))  # type: ignore[arg-type]
            except ApiException as exc:
                if exc.status != 409:
                    raise

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(create, todo))
        return len(todo)
