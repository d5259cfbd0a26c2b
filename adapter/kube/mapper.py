"""ResourceMappers: names people write (``pod``, ``Pod``, ``po``, ``deployments.apps``) -> resources.

:class:`ApiDiscoveryMapper` asks the cluster's API discovery (refreshed periodically);
:class:`StaticResourceMapper` knows the built-in Kubernetes kinds and needs no cluster.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from adapter.errors import BackendUnavailable, KubeError
from adapter.kube.client import KubeClient
from adapter.provider.base import GroupResource, ResourceInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    info: ResourceInfo
    singular: str
    short_names: tuple[str, ...]


class ApiDiscoveryMapper:
    """``ResourceMapper`` from the cluster's ``/api`` and ``/apis`` discovery, refreshed periodically.

    Names resolve like kubectl: plural, singular, kind (any case), short names, and ``name.group``.
    Without a group the core group wins, then the API server's group priority order.
    """

    def __init__(self, kube: KubeClient, *, refresh_interval: float = 300.0) -> None:
        self.kube = kube
        self.refresh_interval = refresh_interval
        self._entries: list[_Entry] = []
        self._task: asyncio.Task[None] | None = None
        self.ready = False

    async def _group_version(self, path: str, group: str, version: str) -> list[_Entry]:
        try:
            doc = await self.kube.get(path)
        except (KubeError, BackendUnavailable) as err:
            # An unavailable aggregated API (ours, while starting) must not break discovery.
            log.debug("discovery of %s failed: %s", path, err)
            return []
        out = []
        for r in doc.get("resources") or []:
            name = r.get("name", "")
            if not name or "/" in name:
                continue  # subresources
            out.append(
                _Entry(
                    ResourceInfo(
                        GroupResource(group, name), version, r.get("kind", ""), bool(r.get("namespaced"))
                    ),
                    r.get("singularName") or r.get("kind", "").lower(),
                    tuple(r.get("shortNames") or ()),
                )
            )
        return out

    async def refresh(self) -> None:
        jobs = [self._group_version("/api/v1", "", "v1")]
        groups = await self.kube.get("/apis")
        for g in groups.get("groups") or []:
            preferred = (g.get("preferredVersion") or {}).get("version") or (g.get("versions") or [{}])[
                0
            ].get("version")
            if preferred:
                jobs.append(self._group_version(f"/apis/{g['name']}/{preferred}", g["name"], preferred))
        results = await asyncio.gather(*jobs)
        entries = [e for group in results for e in group]
        if not entries:
            raise BackendUnavailable("API discovery returned no resources")
        self._entries = entries
        self.ready = True

    def all_resources(self) -> list[ResourceInfo]:
        return [e.info for e in self._entries]

    def resource_for(self, name: str, group: str | None = None) -> ResourceInfo | None:
        name = name.strip()
        if group is None and "." in name:
            name, _, group = name.partition(".")
        lowered = name.lower()
        entries = [e for e in self._entries if group is None or e.info.group_resource.group == group]
        for match in (
            lambda e: e.info.group_resource.resource == lowered,
            lambda e: e.singular == lowered,
            lambda e: e.info.kind.lower() == lowered,
            lambda e: lowered in e.short_names,
        ):
            found = [e for e in entries if match(e)]
            if found:
                core = [e for e in found if not e.info.group_resource.group]
                return (core or found)[0].info
        return None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except Exception as err:
                log.warning("API discovery refresh failed, keeping the last result: %s", err)

    async def start(self) -> None:
        """First discovery (errors propagate: the adapter cannot map resources without it)."""
        await self.refresh()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="api-discovery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


# --- the built-in kinds: for tests, lint and explain without a cluster, and the static provider ----

_BUILTIN: tuple[tuple[str, str, str, str, bool, tuple[str, ...]], ...] = (
    # group, version, resource, kind, namespaced, short names
    ("", "v1", "pods", "Pod", True, ("po",)),
    ("", "v1", "namespaces", "Namespace", False, ("ns",)),
    ("", "v1", "services", "Service", True, ("svc",)),
    ("", "v1", "nodes", "Node", False, ("no",)),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",)),
    ("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",)),
    ("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    ("", "v1", "replicationcontrollers", "ReplicationController", True, ("rc",)),
    ("apps", "v1", "deployments", "Deployment", True, ("deploy",)),
    ("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",)),
    ("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",)),
    ("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",)),
    ("batch", "v1", "jobs", "Job", True, ()),
    ("batch", "v1", "cronjobs", "CronJob", True, ("cj",)),
    ("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",)),
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("hpa",)),
)


class StaticResourceMapper:
    """A ResourceMapper over a fixed list of resources (default: the built-in Kubernetes kinds).

    Resolves plural, singular (lower-cased kind), kind, short names and ``resource.group``; when no
    group is given the core group wins, as kubectl does.
    """

    def __init__(
        self,
        resources: Iterable[ResourceInfo] | None = None,
        short_names: dict[GroupResource, tuple[str, ...]] | None = None,
    ) -> None:
        if resources is None:
            resources = [ResourceInfo(GroupResource(g, r), v, k, ns) for g, v, r, k, ns, _ in _BUILTIN]
            short_names = {GroupResource(g, r): s for g, _v, r, _k, _ns, s in _BUILTIN}
        self._resources = list(resources)
        self._short = short_names or {}

    def all_resources(self) -> list[ResourceInfo]:
        return list(self._resources)

    def resource_for(self, name: str, group: str | None = None) -> ResourceInfo | None:
        name = name.strip()
        if group is None and "." in name:
            name, _, group = name.partition(".")
        lowered = name.lower()
        candidates = []
        for info in self._resources:
            if group is not None and info.group_resource.group != group:
                continue
            singular = info.kind.lower()  # Kubernetes' singular name is the lower-cased kind
            names = {info.group_resource.resource, singular, *self._short.get(info.group_resource, ())}
            if lowered in names or name == info.kind:
                candidates.append(info)
        if not candidates:
            return None
        candidates.sort(key=lambda i: (i.group_resource.group != "", i.group_resource.group))
        return candidates[0]


__all__ = ["ApiDiscoveryMapper", "StaticResourceMapper"]
