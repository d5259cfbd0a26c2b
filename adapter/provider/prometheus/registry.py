"""Discovery: rules + Prometheus series + cluster resources -> an immutable index of served metrics.

One pass asks Prometheus for each distinct ``seriesQuery`` (rules sharing a query share the
request, as upstream), strips label values as the answer streams in (only name + label-name sets
matter, so memory follows those, not the series count; see ``series_stream``), applies
``seriesFilters`` and ``name``, maps labels to resources, and builds a fresh :class:`MetricIndex`.
The index is swapped in whole, so requests never see a half-built one; when a pass fails (Prometheus
down) the previous index stays and the failure is counted, logged and exposed as the index age.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from adapter.errors import BackendUnavailable
from adapter.provider.base import (
    CustomMetricInfo,
    ExternalMetricInfo,
    GroupResource,
    ResourceInfo,
    ResourceMapper,
)
from adapter.provider.prometheus.client import PrometheusClient, PrometheusQueryError
from adapter.rules.config import AdapterConfig, DiscoveryRule
from adapter.rules.resources import ResourceConverter
from adapter.telemetry import (
    DISCOVERED_METRICS,
    DISCOVERY_DURATION,
    DISCOVERY_FAILURES,
    DISCOVERY_LAST_SUCCESS,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CustomEntry:
    """How to answer one (resource, metric): which rule, which series, which label holds names."""

    info: CustomMetricInfo
    rule: DiscoveryRule
    series: str
    resource: ResourceInfo
    label: str
    namespace_label: str


@dataclass(frozen=True)
class ExternalEntry:
    info: ExternalMetricInfo
    rule: DiscoveryRule
    series: str
    namespace_label: str


@dataclass
class RuleReport:
    """What one rule discovered (for lint, explain and logs)."""

    rule: DiscoveryRule
    raw_series: int = 0
    kept_series: int = 0
    metrics: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class MetricIndex:
    """Immutable result of one discovery pass. Lists keep every candidate; the first one serves."""

    custom: Mapping[tuple[GroupResource, str], tuple[CustomEntry, ...]]
    external: Mapping[str, tuple[ExternalEntry, ...]]
    reports: tuple[RuleReport, ...] = ()
    built_at: float = 0.0
    config_digest: str = ""

    def custom_infos(self) -> list[CustomMetricInfo]:
        return sorted(entries[0].info for entries in self.custom.values())

    def external_infos(self) -> list[ExternalMetricInfo]:
        return sorted(entries[0].info for entries in self.external.values())

    def lookup_custom(self, gr: GroupResource, metric: str) -> CustomEntry | None:
        entries = self.custom.get((gr, metric))
        return entries[0] if entries else None

    def lookup_external(self, metric: str) -> ExternalEntry | None:
        entries = self.external.get(metric)
        return entries[0] if entries else None

    def metrics_for_resource(self, gr: GroupResource) -> list[str]:
        return sorted(m for (g, m) in self.custom if g == gr)


EMPTY_INDEX = MetricIndex({}, {})


async def discover(
    config: AdapterConfig,
    prom: PrometheusClient,
    mapper: ResourceMapper,
    *,
    lookback: float = 600.0,
    now: float | None = None,
) -> MetricIndex:
    """Run one discovery pass. Raises BackendUnavailable when Prometheus cannot answer."""
    end = time.time() if now is None else now
    start = end - lookback
    # Each answer is reduced while it streams in (series_shapes): only name -> label-name sets
    # are kept, never the series themselves.
    answers: dict[str, dict[str, set[frozenset[str]]] | PrometheusQueryError] = {}
    for rule in config.all_rules:
        if rule.series_query in answers:
            continue
        try:
            answers[rule.series_query] = (await prom.series_shapes([rule.series_query], start, end)).shapes
        except PrometheusQueryError as err:
            answers[rule.series_query] = err

    custom: dict[tuple[GroupResource, str], list[CustomEntry]] = {}
    external: dict[str, list[ExternalEntry]] = {}
    reports: list[RuleReport] = []
    for rule in config.all_rules:
        report = RuleReport(rule)
        reports.append(report)
        answer = answers[rule.series_query]
        if isinstance(answer, PrometheusQueryError):
            report.error = (
                f"seriesQuery {rule.series_query!r} rejected by Prometheus: {answer.message}; "
                "fix the selector"
            )
            log.error("%s: %s", rule.id, report.error)
            continue
        shapes = answer
        report.raw_series = len(shapes)
        converter = ResourceConverter(rule.resources, mapper)
        for label, why in converter.override_errors:
            report.skipped.append(f"override {label}: {why}")
            log.warning("%s: resources.overrides.%s skipped: %s", rule.id, label, why)
        ns_label = converter.namespace_label()
        for series_name in sorted(shapes):
            if not rule.namer.keeps(series_name):
                continue
            metric = rule.namer.metric_name(series_name)
            if not metric:
                report.skipped.append(f"series {series_name}: name.as produced an empty metric name")
                continue
            report.kept_series += 1
            if rule.external:
                ext_info = ExternalMetricInfo(metric, rule.external_namespaced)
                external.setdefault(metric, []).append(ExternalEntry(ext_info, rule, series_name, ns_label))
                if metric not in report.metrics:
                    report.metrics.append(metric)
                continue
            for label_set in sorted(shapes[series_name], key=sorted):
                resolved = converter.resources_for_series(label_set)
                for label, why in resolved.skipped:
                    log.debug("%s: series %s label %s not mapped: %s", rule.id, series_name, label, why)
                for lr in resolved.resources:
                    gr = lr.resource.group_resource
                    namespaced = resolved.namespaced and lr.resource.namespaced
                    info = CustomMetricInfo(gr, namespaced, metric)
                    entries = custom.setdefault((gr, metric), [])
                    if any(e.rule.id == rule.id and e.series == series_name for e in entries):
                        continue
                    entries.append(CustomEntry(info, rule, series_name, lr.resource, lr.label, ns_label))
                    text = f"{gr}/{metric}"
                    if text not in report.metrics:
                        report.metrics.append(text)
    index = MetricIndex(
        {k: tuple(v) for k, v in custom.items()},
        {k: tuple(v) for k, v in external.items()},
        tuple(reports),
        time.time(),
        config.digest,
    )
    return index


class Registry:
    """Holds the current index and runs discovery passes, recording how they went."""

    def __init__(self, prom: PrometheusClient, mapper: ResourceMapper, *, lookback: float = 600.0) -> None:
        self.prom = prom
        self.mapper = mapper
        self.lookback = lookback
        self.index: MetricIndex | None = None
        self.last_error: str | None = None
        self.last_attempt: float | None = None
        self.consecutive_failures = 0

    @property
    def ready(self) -> bool:
        return self.index is not None

    def current(self) -> MetricIndex:
        return self.index or EMPTY_INDEX

    def age(self) -> float | None:
        """Seconds since the index in use was built (None before the first success)."""
        return time.time() - self.index.built_at if self.index else None

    async def refresh(self, config: AdapterConfig) -> MetricIndex:
        """One pass; on failure keep the previous index, count and re-raise."""
        self.last_attempt = time.time()
        started = time.perf_counter()
        try:
            index = await discover(config, self.prom, self.mapper, lookback=self.lookback)
        except BackendUnavailable as err:
            self.consecutive_failures += 1
            self.last_error = err.message
            DISCOVERY_FAILURES.inc()
            age = self.age()
            log.error(
                "discovery failed (%d in a row), keeping the last good index%s: %s",
                self.consecutive_failures,
                f" from {age:.0f}s ago" if age is not None else " (none yet: not ready)",
                err.message,
            )
            raise
        DISCOVERY_DURATION.observe(time.perf_counter() - started)
        DISCOVERY_LAST_SUCCESS.set(index.built_at)
        DISCOVERED_METRICS.labels("custom").set(len(index.custom))
        DISCOVERED_METRICS.labels("external").set(len(index.external))
        if self.consecutive_failures:
            log.info("discovery recovered after %d failed passes", self.consecutive_failures)
        self.consecutive_failures = 0
        self.last_error = None
        previous = self.index
        self.index = index
        if (
            previous is None
            or previous.custom.keys() != index.custom.keys()
            or previous.external.keys() != index.external.keys()
        ):
            log.info(
                "discovery: serving %d custom and %d external metrics", len(index.custom), len(index.external)
            )
        return index
