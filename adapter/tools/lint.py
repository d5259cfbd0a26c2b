"""``lint``: check a config against a live Prometheus and list what it would expose.

Runs the real discovery pass (same code as the adapter) and adds the checks that catch the usual
"HPA shows <unknown>" mistakes before deploying: a metricsQuery that drops the label matchers
(every object gets the same, cluster-wide value) or the ``by (<<.GroupBy>>)`` (values cannot be
matched back to objects), rules that match nothing, two rules fighting over one metric, and a
relist interval shorter than the scrape interval (discovery then churns on partial data), and a
``by (<<.GroupBy>>, extra)`` that answers several samples per object (rules and resourceRules).

With cluster access it also reads the ``kube-system/extension-apiserver-authentication`` ConfigMap
and warns when ``requestheader-allowed-names`` is empty or missing (after the serve flag
``--requestheader-allowed-names``, when given): then any certificate of the front-proxy CA can
assert any user to the adapter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from adapter.errors import BackendUnavailable
from adapter.kube.mapper import StaticResourceMapper
from adapter.provider.base import ResourceMapper
from adapter.provider.prometheus.client import PrometheusClient
from adapter.provider.prometheus.registry import MetricIndex, discover
from adapter.rules.config import AdapterConfig, DiscoveryRule


@dataclass
class Finding:
    level: str  # "warning" or "error"
    rule: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.rule}: " if self.rule else ""
        return f"{self.level.upper()}: {where}{self.message}"


@dataclass
class RuleSummary:
    rule: str
    location: str | None
    series_query: str
    series_matched: int
    series_kept: int
    metrics: list[str] = field(default_factory=list)


@dataclass
class LintReport:
    prometheus_url: str
    rules: list[RuleSummary] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    custom_metrics: list[str] = field(default_factory=list)
    external_metrics: list[str] = field(default_factory=list)
    scrape_interval: float | None = None

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]


_GROUPBY_RE = re.compile(r"<<-?\s*(?:\.GroupBy|\$\.GroupBy|\.GroupBySlice|\$\.GroupBySlice)\b")
_BY_CLAUSE_RE = re.compile(r"\bby\s*\(([^()]*)\)")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def extra_group_labels(source: str) -> list[str]:
    """Labels a ``by (<<.GroupBy>>, x)`` clause keeps beyond the group-by, in source order.

    Such a query answers several samples per object; the adapter then uses the one whose label
    set sorts first (deterministic, but rarely what the author meant).
    """
    extra: list[str] = []
    for clause in _BY_CLAUSE_RE.finditer(source):
        body = clause.group(1)
        if not _GROUPBY_RE.search(body):
            continue
        for part in re.sub(r"<<.*?>>", "", body).split(","):
            name = part.strip()
            if _LABEL_NAME_RE.fullmatch(name) and name not in extra:
                extra.append(name)
    return extra


def _beyond_group_by(rule: str, what: str, source: str) -> Finding | None:
    extra = extra_group_labels(source)
    if not extra:
        return None
    return Finding(
        "warning",
        rule,
        f"{what}'s by (...) keeps {', '.join(extra)} beyond <<.GroupBy>>: Prometheus answers several "
        "samples per object and the one whose labels sort first is used; aggregate them away "
        "(sum(...) by (<<.GroupBy>>)) or filter with a label matcher",
    )


def static_checks(config: AdapterConfig) -> list[Finding]:
    """Checks that need no Prometheus."""
    findings: list[Finding] = []
    for rule in config.all_rules:
        src = rule.metrics_query.source
        if not rule.metrics_query.references("LabelMatchers") and not rule.metrics_query.references(
            "LabelValuesByName"
        ):
            findings.append(
                Finding(
                    "warning",
                    rule.id,
                    "metricsQuery does not use <<.LabelMatchers>>: it ignores the requested "
                    "objects/namespace/metricLabelSelector, so every object gets the same value",
                )
            )
        if not rule.external and not _GROUPBY_RE.search(src):
            findings.append(
                Finding(
                    "warning",
                    rule.id,
                    "metricsQuery has no by (<<.GroupBy>>): results cannot be matched back to "
                    "objects unless the query keeps the resource label",
                )
            )
        # external metrics legitimately keep labels: every series is one value with its labels
        if not rule.external and (found := _beyond_group_by(rule.id, "metricsQuery", src)):
            findings.append(found)
    rr = config.resource_rules
    if rr is not None:
        for which, rule_r in (("cpu", rr.cpu), ("memory", rr.memory)):
            queries = (("containerQuery", rule_r.container_query), ("nodeQuery", rule_r.node_query))
            for field_name, template in queries:
                what = f"resourceRules.{which}.{field_name}"
                if found := _beyond_group_by(what, field_name, template.source):
                    findings.append(found)
    return findings


def _overlaps(index: MetricIndex) -> list[Finding]:
    findings: list[Finding] = []
    for (gr, metric), entries in sorted(index.custom.items()):
        rules = sorted({e.rule.id for e in entries})
        if len(rules) > 1:
            findings.append(
                Finding(
                    "warning",
                    rules[0],
                    f"{gr}/{metric} is produced by {', '.join(rules)}; only {rules[0]} is used. "
                    "Make the rules mutually exclusive (seriesFilters or name.matches)",
                )
            )
    for metric, ext in sorted(index.external.items()):
        rules = sorted({e.rule.id for e in ext})
        if len(rules) > 1:
            findings.append(
                Finding(
                    "warning",
                    rules[0],
                    f"external metric {metric} is produced by {', '.join(rules)}; only {rules[0]} is used",
                )
            )
        series = sorted({e.series for e in ext})
        if len(series) > 1:
            findings.append(
                Finding(
                    "warning",
                    ext[0].rule.id,
                    f"external metric {metric} comes from several series ({', '.join(series)}); "
                    f"only {series[0]} is queried",
                )
            )
    return findings


def requestheader_findings(
    auth_configmap: Mapping[str, str] | None,
    *,
    allowed_names_flag: tuple[str, ...] | None = None,
    ca_flag: bool = False,
) -> list[Finding]:
    """Warn when front-proxy certificates may assert identities whatever their CN.

    ``auth_configmap`` is the ``extension-apiserver-authentication`` ConfigMap's data (None: not
    read); ``allowed_names_flag`` / ``ca_flag`` the serve flags that override it.
    """
    data = auth_configmap or {}
    has_ca = ca_flag or bool(data.get("requestheader-client-ca-file"))
    if not has_ca:
        return []
    names: list[str] = []
    if allowed_names_flag is not None:
        names = list(allowed_names_flag)
        where = "--requestheader-allowed-names"
    else:
        where = "configmap kube-system/extension-apiserver-authentication key requestheader-allowed-names"
        raw = data.get("requestheader-allowed-names") or ""
        try:
            value = json.loads(raw) if raw else []
        except json.JSONDecodeError:
            return [Finding("error", None, f"{where} is not a JSON list")]
        names = [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
    if names:
        return []
    return [
        Finding(
            "warning",
            None,
            f"{where} is empty: any client certificate signed by the front-proxy CA can assert any "
            "user and group to the adapter; set --requestheader-allowed-names=front-proxy-client "
            "(the kube-apiserver's --requestheader-allowed-names)",
        )
    ]


async def lint(
    config: AdapterConfig,
    prom: PrometheusClient,
    mapper: ResourceMapper | None = None,
    *,
    relist_interval: float | None = None,
    lookback: float = 600.0,
    auth_configmap: Mapping[str, str] | None = None,
    requestheader_allowed_names: tuple[str, ...] | None = None,
    requestheader_ca_flag: bool = False,
) -> LintReport:
    """Discover against ``prom`` and report findings (``mapper`` defaults to built-in kinds)."""
    report = LintReport(prom.url)
    report.findings.extend(static_checks(config))
    report.findings.extend(
        requestheader_findings(
            auth_configmap, allowed_names_flag=requestheader_allowed_names, ca_flag=requestheader_ca_flag
        )
    )
    mapper = mapper or StaticResourceMapper()
    try:
        index = await discover(config, prom, mapper, lookback=lookback)
    except BackendUnavailable as err:
        report.findings.append(Finding("error", None, err.message))
        return report
    for rr in index.reports:
        rule: DiscoveryRule = rr.rule
        report.rules.append(
            RuleSummary(
                rule.id,
                f"{rule.location.source}:{rule.location.line}" if rule.location else None,
                rule.series_query,
                rr.raw_series,
                rr.kept_series,
                list(rr.metrics),
            )
        )
        if rr.error:
            report.findings.append(Finding("error", rule.id, rr.error))
        elif rr.raw_series == 0:
            report.findings.append(
                Finding(
                    "warning",
                    rule.id,
                    f"seriesQuery {rule.series_query!r} matches no series in the last "
                    f"{lookback:g}s: check the metric name and labels, and that the "
                    "target is scraped",
                )
            )
        elif rr.kept_series == 0:
            report.findings.append(
                Finding(
                    "warning",
                    rule.id,
                    f"{rr.raw_series} series matched but seriesFilters/name.matches dropped all of them",
                )
            )
        elif not rr.metrics:
            report.findings.append(
                Finding(
                    "warning",
                    rule.id,
                    "series matched but none of their labels maps to a Kubernetes "
                    "resource: add resources.overrides (e.g. pod: {resource: pod})",
                )
            )
        for s in rr.skipped:
            report.findings.append(Finding("warning", rule.id, s))
    report.findings.extend(_overlaps(index))
    report.custom_metrics = [f"{i.group_resource}/{i.metric}" for i in index.custom_infos()]
    report.external_metrics = [i.metric for i in index.external_infos()]
    try:
        report.scrape_interval = await prom.scrape_interval()
    except BackendUnavailable as err:
        report.findings.append(Finding("warning", None, f"could not read Prometheus' config: {err.message}"))
    if (
        relist_interval is not None
        and report.scrape_interval is not None
        and relist_interval < report.scrape_interval
    ):
        report.findings.append(
            Finding(
                "warning",
                None,
                f"relist interval {relist_interval:g}s is shorter than Prometheus' scrape "
                f"interval {report.scrape_interval:g}s: raise --metrics-relist-interval",
            )
        )
    return report


def format_lint(report: LintReport) -> str:
    lines = [
        f"Prometheus: {report.prometheus_url}"
        + (f" (scrape interval {report.scrape_interval:g}s)" if report.scrape_interval else "")
    ]
    for r in report.rules:
        lines.append(f"{r.rule} ({r.location}): {r.series_query}")
        lines.append(f"  series matched: {r.series_matched}, kept: {r.series_kept}")
        if r.metrics:
            lines.extend(f"  exposes {m}" for m in r.metrics)
        else:
            lines.append("  exposes nothing")
    lines.append(
        f"Custom metrics: {len(report.custom_metrics)}; external metrics: {len(report.external_metrics)}"
    )
    if report.findings:
        lines.append("Findings:")
        lines.extend(f"  {f}" for f in report.findings)
    else:
        lines.append("No findings.")
    lines.append("Result: " + ("OK" if report.ok else "ERRORS"))
    return "\n".join(lines)
