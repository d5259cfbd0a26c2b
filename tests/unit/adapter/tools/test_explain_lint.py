"""explain traces a request; lint reports what a config would expose and what looks wrong."""

from __future__ import annotations

import pytest

from adapter.kube.mapper import StaticResourceMapper
from adapter.provider.prometheus.provider import PrometheusProvider
from adapter.rules.config import load_config, parse_config
from adapter.tools.explain import explain, format_explain
from adapter.tools.lint import format_lint, lint, requestheader_findings, static_checks
from tests.support.adapter_support import FIXTURES, FakeLister, FakePrometheus, pod_series


@pytest.fixture
async def setup():  # type: ignore[no-untyped-def]
    fake = FakePrometheus(
        series_data=[
            pod_series("pm_status", "demo", "web-1", state="active processes"),
            pod_series("http_requests_total", "demo", "web-1", code="200"),
            {"__name__": "queue_depth", "namespace": "demo"},
        ]
    )
    lister = FakeLister()
    lister.add("pods", "demo", "web-1", app="web")
    lister.add("pods", "demo", "web-2", app="web")
    p = PrometheusProvider(
        load_config(FIXTURES / "seed-rules.yaml"), fake.client(), StaticResourceMapper(), lister
    )
    await p.refresh()
    yield p, fake
    await p.prom.aclose()


async def test_explain_custom_trace(setup) -> None:  # type: ignore[no-untyped-def]
    p, fake = setup
    fake.rows = [({"pod": "web-1", "namespace": "demo"}, "0.5")]
    doc = await explain(
        p,
        api="custom",
        namespace="demo",
        resource="pods",
        name_or_star="*",
        metric="fpm_active_rate",
        label_selector="app=web",
    )
    assert doc["rule"]["id"] == "rules[0]" and doc["rule"]["location"].endswith("seed-rules.yaml:4")
    assert doc["objects"] == ["demo/web-1", "demo/web-2"]
    assert 'pod=~"web-(?:1|2)"' in doc["promql"]
    assert doc["prometheus"]["samples"] == 1 and '"0.5"' in doc["prometheus"]["raw"]
    assert doc["values"][0]["object"] == "demo/web-1" and doc["values"][0]["value"] == "0.5"
    assert doc["without_data"] == ["demo/web-2"]
    text = format_explain(doc)
    assert "Rule: rules[0]" in text and "Objects without data" in text and "demo/web-2" in text


async def test_explain_no_rule_lists_close_metrics(setup) -> None:  # type: ignore[no-untyped-def]
    p, _ = setup
    doc = await explain(
        p,
        api="custom", namespace="demo", resource="pods", name_or_star="web-1", metric="http_request"
    )
    assert doc["error"]["code"] == 404
    assert any("http_requests" in w for w in doc["why_not"])
    assert "Why no rule matched" in format_explain(doc)


async def test_explain_external_and_unknown_resource(setup) -> None:  # type: ignore[no-untyped-def]
    p, fake = setup
    fake.rows = [({"namespace": "demo"}, "12")]
    doc = await explain(p, api="external", namespace="demo", metric="queue_depth")
    assert doc["values"][0]["value"] == "12" and doc["namespaced"] is True
    doc = await explain(p, api="custom", resource="widgets", metric="x")
    assert "unknown resource" in doc["error"]["message"]


async def test_explain_backend_down(setup) -> None:  # type: ignore[no-untyped-def]
    p, fake = setup
    fake.down = True
    doc = await explain(
        p,
        api="custom", namespace="demo", resource="pods", name_or_star="web-1", metric="fpm_active_rate"
    )
    assert doc["error"]["code"] == 503 and "connection refused" in doc["error"]["message"]


def test_static_checks() -> None:
    cfg = parse_config(
        "rules:\n"
        "- seriesQuery: x\n  resources: {template: '<<.Resource>>'}\n  metricsQuery: 'sum(<<.Series>>)'\n"
        "externalRules:\n- seriesQuery: y\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'\n"
    )
    found = [str(f) for f in static_checks(cfg)]
    assert any("rules[0]: metricsQuery does not use <<.LabelMatchers>>" in f for f in found)
    assert any("rules[0]: metricsQuery has no by (<<.GroupBy>>)" in f for f in found)
    assert not any("externalRules" in f for f in found)


async def test_lint_report() -> None:
    text = (FIXTURES / "seed-rules.yaml").read_text() + (
        "- seriesQuery: 'nothing_here'\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'\n"
    )
    text = text.replace(
        "externalRules:",
        '- seriesQuery: \'{__name__=~"^http_.*_total$",pod!=""}\'\n'
        "  resources: {template: '<<.Resource>>'}\n  name: {matches: '^(.*)_total$'}\n"
        "  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[5m])) by (<<.GroupBy>>)'\n"
        "externalRules:",
    )
    cfg = parse_config(text, source="lint.yaml")
    fake = FakePrometheus(
        series_data=[pod_series("http_requests_total", "demo", "web-1")], scrape_interval="30s"
    )
    async with fake.client() as prom:
        report = await lint(cfg, prom, relist_interval=10)
    text_out = format_lint(report)
    assert "pods/http_requests" in report.custom_metrics
    msgs = [str(f) for f in report.findings]
    assert any("rules[0]: seriesQuery" in m and "matches no series" in m for m in msgs)
    assert any("pods/http_requests is produced by rules[2], rules[3]" in m for m in msgs)
    assert any("relist interval 10s is shorter than Prometheus' scrape interval 30s" in m for m in msgs)
    assert report.ok and "exposes pods/http_requests" in text_out and "Result: OK" in text_out


async def test_lint_prometheus_down() -> None:
    fake = FakePrometheus(down=True)
    async with fake.client() as prom:
        report = await lint(load_config(FIXTURES / "seed-rules.yaml"), prom)
    assert not report.ok and "connection refused" in format_lint(report)


# ---- front-proxy impersonation settings (issue 12, finding 2) ---------------------------------------

_FRONT_CA_PEM = "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"
_CA = {"requestheader-client-ca-file": _FRONT_CA_PEM}
_NAMED = {**_CA, "requestheader-allowed-names": '["front-proxy-client"]'}


@pytest.mark.parametrize(
    ("data", "flag", "ca_flag", "warns"),
    [
        (_CA, None, False, True),  # key missing
        ({**_CA, "requestheader-allowed-names": "[]"}, None, False, True),
        (_NAMED, None, False, False),
        (_NAMED, (), False, True),  # --requestheader-allowed-names= (empty) overrides the configmap
        ({}, None, True, True),  # CA only by flag, no names anywhere
        ({}, ("front-proxy-client",), True, False),
        ({}, None, False, False),  # no front-proxy CA at all: headers are never read
        (None, None, False, False),  # configmap not read
    ],
)
def test_requestheader_findings(data, flag, ca_flag, warns) -> None:  # type: ignore[no-untyped-def]
    findings = requestheader_findings(data, allowed_names_flag=flag, ca_flag=ca_flag)
    assert bool(findings) == warns
    for f in findings:
        assert f.level == "warning" and "can assert any user" in f.message


async def test_lint_warns_about_empty_allowed_names() -> None:
    fake = FakePrometheus(series_data=[pod_series("http_requests_total", "demo", "web-1")])
    async with fake.client() as prom:
        report = await lint(
            load_config(FIXTURES / "seed-rules.yaml"), prom,
            auth_configmap={"requestheader-client-ca-file": _FRONT_CA_PEM},
        )
    assert any("requestheader-allowed-names is empty" in str(f) for f in report.warnings)
    assert "can assert any user" in format_lint(report)


async def test_explain_reports_which_of_several_samples_was_used(setup) -> None:  # type: ignore[no-untyped-def]
    p, fake = setup
    fake.rows = [
        ({"pod": "web-1", "namespace": "demo", "path": "/b"}, "2"),
        ({"pod": "web-1", "namespace": "demo", "path": "/a"}, "1"),
    ]
    doc = await explain(
        p, api="custom", namespace="demo", resource="pods", name_or_star="web-1", metric="fpm_active_rate"
    )
    assert doc["values"][0]["value"] == "1"
    assert doc["duplicate_samples"] == [{"namespace": "demo", "path": "/b", "pod": "web-1"}]
    assert any("the sample whose labels sort first is used" in s for s in doc["steps"])


def test_lint_warns_when_by_keeps_labels_beyond_the_group_by() -> None:
    cfg = parse_config(
        "rules:\n"
        "- seriesQuery: x\n  resources: {template: '<<.Resource>>'}\n"
        "  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>, path)'\n"
        "- seriesQuery: y\n  resources: {template: '<<.Resource>>'}\n"
        "  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n"
        "externalRules:\n- seriesQuery: z\n"
        "  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>, queue)'\n"
        "resourceRules:\n"
        "  cpu:\n"
        "    containerQuery: 'sum(rate(c{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>, cpu)'\n"
        "    nodeQuery: 'sum(rate(n{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'\n"
        "    resources: {overrides: {pod: {resource: pod}}}\n"
        "    containerLabel: container\n"
        "  memory:\n"
        "    containerQuery: 'sum(m{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n"
        "    nodeQuery: 'sum(n{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n"
        "    resources: {overrides: {pod: {resource: pod}}}\n"
        "    containerLabel: container\n"
    )
    found = [str(f) for f in static_checks(cfg) if "beyond" in f.message]
    assert len(found) == 2, found
    assert found[0].startswith("WARNING: rules[0]: metricsQuery's by (...) keeps path beyond <<.GroupBy>>")
    assert "the one whose labels sort first is used" in found[0]
    assert found[1].startswith(
        "WARNING: resourceRules.cpu.containerQuery: "
    )  # external rules may keep labels
