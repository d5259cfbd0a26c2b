"""A watch-backed object cache: ``*`` requests are answered from memory, not a LIST per request.

The HPA asks for ``pods/*`` with a label selector every sync period for every HPA; a LIST per request
is the reference adapter's main load on the API server. Here each resource gets one informer (LIST
then WATCH, metadata only) the first time it is asked for; labels are kept in memory and selectors
are matched locally. The first request waits (bounded) for the initial LIST. If a relist fails, the
last good contents keep being served, the failure is logged and counted, and the informer retries
with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from adapter import telemetry
from adapter.errors import AdapterError, BackendUnavailable
from adapter.kube.client import KubeClient, WatchExpired, resource_path
from adapter.provider.base import GroupResource, ObjectMeta, ResourceInfo
from adapter.selectors import LabelSelector

log = logging.getLogger(__name__)

RELIST_FAILURES = Counter(
    "hpakit_adapter_object_relist_failures",
    "Object LIST/WATCH failures per resource (the last good object list keeps being served).",
    ["resource"],
    registry=telemetry.REGISTRY,
)
CACHED_OBJECTS = Gauge(
    "hpakit_adapter_cached_objects",
    "Objects held by the watch cache per resource.",
    ["resource"],
    registry=telemetry.REGISTRY,
)


@dataclass
class _Informer:
    resource: ResourceInfo
    store: dict[tuple[str | None, str], ObjectMeta] = field(default_factory=dict)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    resource_version: str = ""
    last_error: str = ""
    last_sync: float = 0.0
    task: asyncio.Task[None] | None = None
    #: Sorted answers per (namespace, selector) since the store last changed: the HPA asks the
    #: same selector again and again, and filtering + sorting 1,000s of objects per request
    #: was a tenth of a pods/* request's CPU. Emptied on every store change (and when full).
    answers: dict[tuple[str | None, LabelSelector], list[ObjectMeta]] = field(default_factory=dict)
    #: (label key, value) -> keys of the objects carrying it. A selector with an equality (``=`` or
    #: ``in``) is matched only against the objects its rarest one names: with many HPAs each on its
    #: own selector the answers above keep missing, and a full scan per request was O(objects).
    by_label: dict[tuple[str, str], set[tuple[str | None, str]]] = field(default_factory=dict)

    def replace(self, store: dict[tuple[str | None, str], ObjectMeta]) -> None:
        self.store = store
        self.by_label = {}
        for key, meta in store.items():
            self._index(key, meta)
        self.answers.clear()

    def put(self, meta: ObjectMeta) -> None:
        key = (meta.namespace, meta.name)
        old = self.store.get(key)
        if old is not None:
            self._unindex(key, old)
        self.store[key] = meta
        self._index(key, meta)
        self.answers.clear()

    def drop(self, key: tuple[str | None, str]) -> None:
        old = self.store.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        self.answers.clear()

    def _index(self, key: tuple[str | None, str], meta: ObjectMeta) -> None:
        for pair in meta.labels.items():
            self.by_label.setdefault(pair, set()).add(key)

    def _unindex(self, key: tuple[str | None, str], meta: ObjectMeta) -> None:
        for pair in meta.labels.items():
            keys = self.by_label.get(pair)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_label[pair]

    def candidates(self, selector: LabelSelector) -> Iterable[ObjectMeta]:
        """A superset of the objects ``selector`` matches: those its rarest equality names, or all."""
        best: set[tuple[str | None, str]] | None = None
        for req in selector.requirements:
            if req.op not in ("=", "in"):
                continue
            postings = [self.by_label.get((req.key, value), set()) for value in req.values]
            # one value (``=``): its own posting set, read, not copied; ``in``: their union
            keys = postings[0] if len(postings) == 1 else set().union(*postings)
            if best is None or len(keys) < len(best):
                best = keys
        if best is None:
            return self.store.values()
        return (self.store[k] for k in best)


def _meta(obj: dict[str, Any]) -> ObjectMeta | None:
    md = obj.get("metadata") or {}
    name = md.get("name")
    if not name:
        return None
    return ObjectMeta(namespace=md.get("namespace") or None, name=name, labels=dict(md.get("labels") or {}))


#: Answers kept per informer (distinct namespace + selector pairs) before they are all dropped.
_MAX_ANSWERS = 256


class WatchCache:
    """``ObjectLister`` over one informer per resource (all namespaces)."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        sync_timeout: float = 10.0,
        watch_timeout: int = 300,
        max_backoff: float = 30.0,
    ) -> None:
        self.kube = kube
        self.sync_timeout = sync_timeout
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self._informers: dict[GroupResource, _Informer] = {}

    async def list_objects(
        self, resource: ResourceInfo, namespace: str | None, selector: LabelSelector
    ) -> list[ObjectMeta]:
        informer = self._informer(resource)
        if not informer.synced.is_set():
            try:
                await asyncio.wait_for(asyncio.shield(informer.synced.wait()), self.sync_timeout)
            except TimeoutError:
                why = f": {informer.last_error}" if informer.last_error else ""
                raise BackendUnavailable(
                    f"the list of {resource.group_resource} is not loaded yet "
                    f"after {self.sync_timeout:g}s{why}; "
                    f"check that the adapter may list and watch {resource.group_resource} (ClusterRole)"
                ) from None
        ns = namespace if resource.namespaced else None
        answer = informer.answers.get((ns, selector))
        if answer is None:
            answer = sorted(
                (
                    o
                    for o in informer.candidates(selector)
                    if (ns is None or o.namespace == ns) and selector.matches(o.labels)
                ),
                key=lambda o: (o.namespace or "", o.name),
            )
            if len(informer.answers) >= _MAX_ANSWERS:
                informer.answers.clear()
            informer.answers[(ns, selector)] = answer
        return list(answer)  # the caller's own list: the kept answer stays as it is

    def _informer(self, resource: ResourceInfo) -> _Informer:
        informer = self._informers.get(resource.group_resource)
        if informer is None:
            informer = _Informer(resource)
            self._informers[resource.group_resource] = informer
            informer.task = asyncio.get_running_loop().create_task(
                self._run(informer), name=f"informer-{resource.group_resource}"
            )
        return informer

    async def _relist(self, informer: _Informer) -> None:
        page = await self.kube.list(resource_path(informer.resource), metadata_only=True)
        store = {}
        for item in page.get("items") or []:
            meta = _meta(item)
            if meta is not None:
                store[(meta.namespace, meta.name)] = meta
        informer.replace(store)
        informer.resource_version = (page.get("metadata") or {}).get("resourceVersion", "")
        informer.last_sync = time.time()
        informer.last_error = ""
        CACHED_OBJECTS.labels(resource=str(informer.resource.group_resource)).set(len(store))
        informer.synced.set()

    def _apply(self, informer: _Informer, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            if rv:
                informer.resource_version = rv
            return
        meta = _meta(obj)
        if meta is None:
            return
        if kind in ("ADDED", "MODIFIED"):
            informer.put(meta)
        elif kind == "DELETED":
            informer.drop((meta.namespace, meta.name))
        if rv:
            informer.resource_version = rv
        CACHED_OBJECTS.labels(resource=str(informer.resource.group_resource)).set(len(informer.store))

    async def _run(self, informer: _Informer) -> None:
        name = str(informer.resource.group_resource)
        backoff = 1.0
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist(informer)
                    need_list = False
                    backoff = 1.0
                started = time.monotonic()
                async for event in self.kube.watch(
                    resource_path(informer.resource),
                    resource_version=informer.resource_version,
                    timeout_seconds=self.watch_timeout + random.randint(0, 60),
                    metadata_only=True,
                ):
                    self._apply(informer, event)
                if time.monotonic() - started < 1.0:
                    await asyncio.sleep(1.0)  # a server closing watches at once must not spin us
            except asyncio.CancelledError:
                raise
            except WatchExpired:
                need_list = True  # normal: our version fell out of the watch window
            except (AdapterError, OSError, ValueError) as err:
                informer.last_error = str(err)
                RELIST_FAILURES.labels(resource=name).inc()
                kept = (
                    f"keeping the last {len(informer.store)} objects"
                    if informer.synced.is_set()
                    else "no data yet"
                )
                log.warning("list/watch of %s failed (%s), retrying in %.0fs: %s", name, kept, backoff, err)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                need_list = True

    def status(self) -> dict[str, dict[str, Any]]:
        return {
            str(gr): {
                "synced": i.synced.is_set(),
                "objects": len(i.store),
                "last_error": i.last_error,
                "last_sync": i.last_sync,
            }
            for gr, i in self._informers.items()
        }

    async def stop(self) -> None:
        tasks = [i.task for i in self._informers.values() if i.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._informers.clear()


__all__ = ["CACHED_OBJECTS", "RELIST_FAILURES", "WatchCache"]
