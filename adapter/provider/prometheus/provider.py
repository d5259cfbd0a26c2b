"""The Prometheus-backed provider: rule index -> PromQL -> values, for custom and external metrics.

Request flow for custom metrics: look the (resource, metric) up in the current discovery index,
take the objects (one name, or the ObjectLister's watch-backed cache for ``*`` + labelSelector),
render the rule's metricsQuery over exactly those names, run it through the coalescing cache, and
account for every object: a value, or "no data" (logged, counted, shown by explain) — never a
silent drop. NaN/Inf samples are counted and skipped on every path. Values keep the sample's own
timestamp and the query's window.

The same :meth:`PrometheusProvider.evaluate_custom` / :meth:`evaluate_external` back both the
API methods and :mod:`adapter.tools.explain` (which uses them and does not get imported here), so
explain shows exactly what a request would do.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import operator
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from adapter.errors import BackendUnavailable, ConfigError, MetricNotFound
from adapter.provider.base import (
    CustomMetricInfo,
    ExternalMetricInfo,
    ExternalMetricValue,
    GroupResource,
    MetricValue,
    ObjectLister,
    ObjectMeta,
    ObjectName,
    ObjectReference,
    ProviderStatus,
    ResourceMapper,
    SharedValues,
)
from adapter.provider.prometheus.cache import DEFAULT_MAX_BYTES, Memo, QueryCache
from adapter.provider.prometheus.client import (
    MAX_RESPONSE_BYTES,
    PrometheusClient,
    QueryResult,
    Sample,
    approx_size,
)
from adapter.provider.prometheus.registry import CustomEntry, ExternalEntry, MetricIndex, Registry
from adapter.rules.config import AdapterConfig, load_config
from adapter.rules.naming import close_names
from adapter.rules.promql import custom_query_args, external_query_args, render, window_seconds
from adapter.selectors import LabelSelector
from adapter.telemetry import CONFIG_RELOADS, DISCOVERY_FAILURES, NONFINITE_VALUES, OBJECTS_WITHOUT_DATA

log = logging.getLogger(__name__)


@dataclass
class CustomOutcome:
    """Everything one custom-metrics evaluation did (the API returns ``values``; explain shows all)."""

    entry: CustomEntry
    namespace: str | None
    objects: list[ObjectMeta]
    values: list[MetricValue] = field(default_factory=list)
    without_data: list[ObjectMeta] = field(default_factory=list)
    nonfinite: list[tuple[ObjectMeta, str]] = field(default_factory=list)
    unmatched_samples: list[Sample] = field(default_factory=list)
    duplicate_samples: list[Sample] = field(default_factory=list)
    promql: str | None = None
    result: QueryResult | None = None
    cache: str | None = None
    window: int | None = None


#: Objects the evaluation memo may hold in all (a 10,000-pod answer is 10,000): bounds its memory.
EVALUATED_MAX_OBJECTS = 50_000


@dataclass(frozen=True, slots=True)
class _Evaluated:
    """What one custom evaluation produced, kept to answer the same request again for as long as
    the Prometheus answer it came from stays cached (held weakly: the cache decides its life)."""

    entry: CustomEntry
    result: weakref.ref[QueryResult]
    promql: str
    objects: list[ObjectMeta]
    values: SharedValues
    without_data: list[ObjectMeta]
    nonfinite: list[tuple[ObjectMeta, str]]
    unmatched_samples: list[Sample]
    duplicate_samples: list[Sample]

    @classmethod
    def of(cls, out: CustomOutcome) -> _Evaluated:
        assert out.result is not None and out.promql is not None and isinstance(out.values, SharedValues)
        return cls(
            out.entry, weakref.ref(out.result), out.promql, out.objects, out.values, out.without_data,
            out.nonfinite, out.unmatched_samples, out.duplicate_samples,
        )  # fmt: skip

    def asks_the_same(self, entry: CustomEntry, objects: list[ObjectMeta]) -> bool:
        """The same rule entry (discovery rebuilds entries) over the same objects: the watch cache
        hands out the same object instances, in the same order, until one of them changes."""
        return (
            self.entry is entry
            and len(self.objects) == len(objects)
            and all(map(operator.is_, self.objects, objects))
        )


@dataclass
class ExternalOutcome:
    entry: ExternalEntry
    namespace: str | None
    values: list[ExternalMetricValue] = field(default_factory=list)
    nonfinite: list[Sample] = field(default_factory=list)
    promql: str | None = None
    result: QueryResult | None = None
    cache: str | None = None
    window: int | None = None


def _label_order(sample: Sample) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(sample.labels.items()))


def _file_state(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class PrometheusProvider:
    """Serves custom.metrics.k8s.io and external.metrics.k8s.io from Prometheus (see base.Provider)."""

    accepts_unlisted_resources = False  # only what discovery found is served

    def __init__(
        self,
        config: AdapterConfig,
        prom: PrometheusClient,
        mapper: ResourceMapper,
        lister: ObjectLister,
        *,
        relist_interval: float = 60.0,
        cache_ttl: float = 5.0,
        config_path: Path | None = None,
        series_lookback: float | None = None,
        owns_client: bool = False,
        cache_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.config = config
        self.prom = prom
        self.mapper = mapper
        self.lister = lister
        self.relist_interval = relist_interval
        self.config_path = Path(config_path) if config_path else None
        lookback = series_lookback if series_lookback is not None else max(2 * relist_interval, 600.0)
        self.registry = Registry(prom, mapper, lookback=lookback)
        self.cache: QueryCache[QueryResult] = QueryCache(
            cache_ttl, max_bytes=cache_max_bytes, size_of=approx_size
        )
        #: keep Prometheus' raw answers (explain sets this; the served path never needs them)
        self.keep_raw = False
        self._owns_client = owns_client
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._config_state = _file_state(self.config_path) if self.config_path else None
        #: The last evaluation per (metric, namespace, metric selector): see :class:`_Evaluated`.
        self._evaluated: Memo[_Evaluated] = Memo(max_entries=256, max_weight=EVALUATED_MAX_OBJECTS)
        self.config_error: str | None = None

    @classmethod
    def from_settings(
        cls,
        *,
        config_path: Path,
        prometheus_url: str,
        mapper: ResourceMapper,
        lister: ObjectLister,
        prometheus_timeout: float = 10.0,
        relist_interval: float = 60.0,
        cache_ttl: float = 5.0,
        prometheus_ca_file: str | None = None,
        prometheus_token_file: str | None = None,
        cache_max_bytes: int = DEFAULT_MAX_BYTES,
        prometheus_max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> PrometheusProvider:
        """Build from CLI settings; raises ConfigError for a bad config file."""
        config = load_config(config_path)
        prom = PrometheusClient(
            prometheus_url,
            timeout=prometheus_timeout,
            ca_file=prometheus_ca_file,
            token_file=prometheus_token_file,
            max_response_bytes=prometheus_max_response_bytes,
        )
        return cls(
            config,
            prom,
            mapper,
            lister,
            relist_interval=relist_interval,
            cache_ttl=cache_ttl,
            config_path=Path(config_path),
            owns_client=True,
            cache_max_bytes=cache_max_bytes,
        )

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="adapter-discovery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._owns_client:
            await self.prom.aclose()

    def status(self) -> ProviderStatus:
        reg = self.registry
        details: dict[str, object] = {
            "config": self.config.source,
            "custom_metrics": len(reg.current().custom),
            "external_metrics": len(reg.current().external),
            "index_age_seconds": round(age, 1) if (age := reg.age()) is not None else None,
            "consecutive_discovery_failures": reg.consecutive_failures,
            "last_discovery_error": reg.last_error,
            "config_error": self.config_error,
        }
        if not reg.ready:
            why = reg.last_error or "first discovery has not finished yet"
            return ProviderStatus(False, f"waiting for the first successful discovery: {why}", details)
        message = "ok"
        if reg.last_error:
            message = (
                f"serving the last good index ({reg.age():.0f}s old); discovery failing: {reg.last_error}"
            )
        return ProviderStatus(True, message, details)

    async def refresh(self) -> MetricIndex:
        """Run one discovery pass now (raises BackendUnavailable on failure)."""
        return await self.registry.refresh(self.config)

    def trigger_relist(self) -> None:
        """Ask the loop to relist now instead of at the next interval."""
        self._wake.set()

    async def _loop(self) -> None:
        backoff = 0.5
        while True:
            self.check_config_reload()
            try:
                await self.registry.refresh(self.config)
                backoff = 0.5
                delay = self.relist_interval
            except BackendUnavailable:
                # Before the first success retry quickly, so readiness follows Prometheus closely.
                delay = (
                    min(backoff, self.relist_interval) if not self.registry.ready else self.relist_interval
                )
                backoff = min(backoff * 2, 10.0)
            except Exception:  # a bug must not kill the loop: keep the last index and say so
                log.exception("discovery pass crashed; keeping the last good index")
                DISCOVERY_FAILURES.inc()
                delay = self.relist_interval
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def check_config_reload(self) -> bool:
        """Reload the config file if it changed. Returns True when a new config was applied.

        A bad new file keeps the running config, logs why and counts an error reload.
        """
        if self.config_path is None:
            return False
        state = _file_state(self.config_path)
        if state is None or state == self._config_state:
            return False
        self._config_state = state
        try:
            text = self.config_path.read_bytes()
        except OSError as err:
            log.error("config reload: cannot read %s: %s; keeping the running config", self.config_path, err)
            CONFIG_RELOADS.labels("config", "error").inc()
            self.config_error = str(err)
            return False
        if hashlib.sha256(text).hexdigest() == self.config.digest:
            return False
        try:
            new = load_config(self.config_path)
        except ConfigError as err:
            log.error("config reload failed, keeping the running config: %s", err)
            CONFIG_RELOADS.labels("config", "error").inc()
            self.config_error = str(err)
            return False
        self.config = new
        self.config_error = None
        self.cache.clear()
        CONFIG_RELOADS.labels("config", "success").inc()
        log.info(
            "config reloaded from %s (%d rules, %d external rules)",
            self.config_path,
            len(new.rules),
            len(new.external_rules),
        )
        return True

    # --- lookups --------------------------------------------------------------------------------

    def _index(self) -> MetricIndex:
        if not self.registry.ready:
            raise BackendUnavailable(
                "metrics discovery has not completed yet"
                + (f" ({self.registry.last_error})" if self.registry.last_error else "")
                + "; retry shortly, check that Prometheus is reachable"
            )
        return self.registry.current()

    def _normalize(self, gr: GroupResource) -> GroupResource:
        info = self.mapper.resource_for(gr.resource, gr.group or None)
        return info.group_resource if info else gr

    def find_custom(self, info: CustomMetricInfo) -> CustomEntry:
        index = self._index()
        gr = info.group_resource
        entry = index.lookup_custom(gr, info.metric) or index.lookup_custom(self._normalize(gr), info.metric)
        if entry is None:
            known = index.metrics_for_resource(self._normalize(gr))
            hint = close_names(info.metric, known)
            other = sorted({str(g) for (g, m) in index.custom if m == info.metric})
            msg = f"the server could not find the metric {info.metric} for {gr}"
            if other:
                msg += f"; it is served for {', '.join(other)}"
            elif hint:
                msg += f"; similar metrics for {gr}: {', '.join(hint)}"
            msg += " (run `hpa-kit-adapter explain` to see which rules matched)"
            raise MetricNotFound(msg)
        return entry

    def find_external(self, info: ExternalMetricInfo) -> ExternalEntry:
        index = self._index()
        entry = index.lookup_external(info.metric)
        if entry is None:
            hint = close_names(info.metric, sorted(index.external))
            raise MetricNotFound(
                f"the server could not find the external metric {info.metric}"
                + (f"; similar: {', '.join(hint)}" if hint else "")
                + " (run `hpa-kit-adapter explain` to see which rules matched)"
            )
        return entry

    def list_all_metrics(self) -> list[CustomMetricInfo]:
        return self.registry.current().custom_infos()

    def list_all_external_metrics(self) -> list[ExternalMetricInfo]:
        return self.registry.current().external_infos()

    async def run_query(self, promql: str) -> tuple[QueryResult, str]:
        """One instant query through the coalescing, byte-bounded result cache (and its state)."""
        return await self._run(promql)

    async def _run(self, promql: str) -> tuple[QueryResult, str]:
        keep_raw = self.keep_raw
        key = f"raw\0{promql}" if keep_raw else promql  # an answer without its body cannot serve explain
        return await self.cache.get(key, lambda: self.prom.query(promql, keep_raw=keep_raw))

    # --- custom metrics -------------------------------------------------------------------------

    async def evaluate_custom(
        self,
        entry: CustomEntry,
        namespace: str | None,
        objects: list[ObjectMeta],
        metric_selector: LabelSelector | None,
    ) -> CustomOutcome:
        """Query values for ``objects`` of ``entry``'s resource; every object ends up somewhere."""
        namespace = namespace if entry.resource.namespaced else None
        out = CustomOutcome(entry, namespace, objects)
        if not objects:
            return out
        memo_key = (entry.info, namespace, metric_selector)
        prev = self._evaluated.get(memo_key)
        if prev is not None and prev.asks_the_same(entry, objects):
            out.promql = prev.promql  # the same rule over the same objects renders the same query
        else:
            prev = None
            args = custom_query_args(
                entry.rule,
                entry.series,
                entry.label,
                [o.name for o in objects],
                namespace=namespace,
                namespace_label=entry.namespace_label,
                metric_selector=metric_selector,
            )
            out.promql = render(entry.rule, args)
        out.window = window_seconds(out.promql)
        out.result, out.cache = await self._run(out.promql)
        if prev is not None and prev.result() is out.result:
            # The very same cached Prometheus answer over the same objects: the same outcome, shared.
            out.values, out.without_data, out.nonfinite = prev.values, prev.without_data, prev.nonfinite
            out.unmatched_samples, out.duplicate_samples = prev.unmatched_samples, prev.duplicate_samples
            self._account(out)
            return out
        by_key: dict[tuple[str | None, str], Sample] = {}
        scalar = out.result.result_type == "scalar"
        label, namespace_label = entry.label, entry.namespace_label
        for sample in out.result.samples:
            name = sample.labels.get(label)
            if name is None:
                if scalar and len(objects) == 1:
                    name = objects[0].name
                else:
                    out.unmatched_samples.append(sample)
                    continue
            key = (sample.labels.get(namespace_label), name)
            kept = by_key.get(key)
            if kept is None:
                by_key[key] = sample
            elif _label_order(sample) < _label_order(kept):
                # Several samples for one object (the query's `by` keeps more labels than the
                # group-by): the one whose label set sorts first wins, whatever Prometheus' order.
                out.duplicate_samples.append(kept)
                by_key[key] = sample
            else:
                out.duplicate_samples.append(sample)
        selector = metric_selector if metric_selector is not None and not metric_selector.empty else None
        # Loop invariants, looked up once: this loop runs once per object (1,000s for pods/*).
        kind, api_version = entry.resource.kind, entry.resource.api_version
        namespaced, metric, window = entry.resource.namespaced, entry.info.metric, out.window
        out.values = values = SharedValues()
        values_append = values.append
        for obj in objects:
            found: Sample | None = by_key.get((obj.namespace, obj.name)) or by_key.get((None, obj.name))
            if found is None and obj.namespace is None:
                found = next((s for (ns, n), s in by_key.items() if n == obj.name), None)
            if found is None:
                out.without_data.append(obj)
                continue
            if not found.finite:
                out.nonfinite.append((obj, str(found.value)))
                continue
            ref = ObjectReference(kind, obj.name, obj.namespace if namespaced else None, api_version)
            values_append(MetricValue(ref, metric, found.time, found.value, window, selector))
        self._account(out)
        self._evaluated.put(memo_key, _Evaluated.of(out), len(objects))
        return out

    @staticmethod
    def _account(out: CustomOutcome) -> None:
        """Log and count what an evaluation could not serve, on every request that gets it."""
        entry = out.entry
        if out.duplicate_samples:
            log.warning(
                "metric %s: %d extra sample(s) for the same object; using the one whose labels sort "
                "first (aggregate with sum(...) by (<<.GroupBy>>) in %s): %s",
                entry.info.metric,
                len(out.duplicate_samples),
                entry.rule.id,
                out.promql,
            )
        for obj in out.without_data:
            OBJECTS_WITHOUT_DATA.labels(str(entry.info.group_resource), entry.info.metric).inc()
            log.info(
                "no data for %s %s/%s metric %s (query: %s)",
                entry.resource.kind,
                obj.namespace or "-",
                obj.name,
                entry.info.metric,
                out.promql,
            )
        for obj, value in out.nonfinite:
            NONFINITE_VALUES.labels("custom").inc()
            log.warning(
                "non-finite value %s for %s %s/%s metric %s: not served",
                value,
                entry.resource.kind,
                obj.namespace or "-",
                obj.name,
                entry.info.metric,
            )

    async def get_metric_by_name(
        self, name: ObjectName, info: CustomMetricInfo, metric_selector: LabelSelector
    ) -> MetricValue:
        entry = self.find_custom(info)
        namespace = name.namespace if entry.resource.namespaced else None
        obj = ObjectMeta(namespace, name.name)
        out = await self.evaluate_custom(entry, namespace, [obj], metric_selector)
        if out.values:
            return out.values[0]
        where = f"{namespace}/{name.name}" if namespace else name.name
        if out.nonfinite:
            raise MetricNotFound(
                f"the value of {info.metric} for {entry.resource.kind.lower()} {where} is "
                f"{out.nonfinite[0][1]}, "
                "which cannot be served as a quantity; check the rule's metricsQuery (division by zero?)"
            )
        raise MetricNotFound(
            f"no data for metric {info.metric} on {entry.resource.kind.lower()} {where}: Prometheus returned "
            f"no sample with {entry.label}={name.name!r} for the rule {entry.rule.id}; "
            "check that the target is scraped and carries that label"
        )

    async def get_metric_by_selector(
        self,
        namespace: str | None,
        selector: LabelSelector,
        info: CustomMetricInfo,
        metric_selector: LabelSelector,
    ) -> list[MetricValue]:
        entry = self.find_custom(info)
        ns = namespace if entry.resource.namespaced else None
        objects = await self.lister.list_objects(entry.resource, ns, selector)
        out = await self.evaluate_custom(entry, ns, list(objects), metric_selector)
        return out.values

    # --- external metrics -----------------------------------------------------------------------

    async def evaluate_external(
        self, entry: ExternalEntry, namespace: str | None, metric_selector: LabelSelector | None
    ) -> ExternalOutcome:
        out = ExternalOutcome(entry, namespace if entry.rule.external_namespaced else None)
        args = external_query_args(
            entry.rule,
            entry.series,
            namespace=namespace,
            namespace_label=entry.namespace_label,
            metric_selector=metric_selector,
        )
        out.promql = render(entry.rule, args)
        out.window = window_seconds(out.promql)
        out.result, out.cache = await self._run(out.promql)
        for sample in out.result.samples:
            if not sample.finite:
                out.nonfinite.append(sample)
                NONFINITE_VALUES.labels("external").inc()
                log.warning(
                    "non-finite value %s for external metric %s %s: not served",
                    sample.value,
                    entry.info.metric,
                    sample.labels,
                )
                continue
            out.values.append(
                ExternalMetricValue(
                    entry.info.metric, dict(sample.labels), sample.time, sample.value, out.window
                )
            )
        return out

    async def get_external_metric(
        self, namespace: str | None, metric_selector: LabelSelector, info: ExternalMetricInfo
    ) -> list[ExternalMetricValue]:
        entry = self.find_external(info)
        out = await self.evaluate_external(entry, namespace, metric_selector)
        return out.values
