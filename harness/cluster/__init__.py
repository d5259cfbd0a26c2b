"""Cluster providers: ``local`` (upstream binaries, no Docker), ``kind`` (Docker), ``existing``.

cluster = get_provider("local", name="hpa-kit")
cluster.create()
... cluster.kubeconfig ...
"""

from __future__ import annotations

from typing import Any

from harness.cluster.base import Cluster, ClusterError, ClusterInfo, ComponentState, ProviderUnavailable

__all__ = [
    "PROVIDERS",
    "Cluster",
    "ClusterError",
    "ClusterInfo",
    "ComponentState",
    "ProviderUnavailable",
    "best_available",
    "get_provider",
    "provider_class",
]

PROVIDERS = ("local", "kind", "existing")


def provider_class(name: str) -> type[Cluster]:
    if name == "local":
        from harness.cluster.local import LocalCluster

        return LocalCluster
    if name == "kind":
        from harness.cluster.kind import KindCluster

        return KindCluster
    if name == "existing":
        from harness.cluster.existing import ExistingCluster

        return ExistingCluster
    raise ClusterError(f"unknown provider {name!r}: pick one of {', '.join(PROVIDERS)}")


def best_available() -> str:
    """``kind`` when a Docker engine answers, else ``local``."""
    from harness.cluster.kind import KindCluster

    ok, _ = KindCluster.available()
    return "kind" if ok else "local"


def get_provider(name: str | None = None, *, cluster_name: str = "hpa-kit", **kwargs: Any) -> Cluster:
    """A provider instance; ``name`` None (or "auto") picks :func:`best_available`.

    kwargs go to the provider: ``local`` takes ``hpa=HPASettings(...)``, ``state_root``, ...;
    ``existing`` takes ``kubeconfig``; ``kind`` takes ``hpa``, ``image``.
    """
    if name in (None, "", "auto"):
        name = best_available()
    cls = provider_class(name)
    if name == "local":
        from harness.cluster.local import LocalCluster

        return LocalCluster.open(cluster_name, **kwargs)
    return cls(cluster_name, **kwargs)
