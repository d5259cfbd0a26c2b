"""Label matchers and query rendering: escaping, compaction, selectors, windows."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.errors import BadRequest
from adapter.rules.config import load_config, parse_config
from adapter.rules.promql import (
    alternation,
    custom_query_args,
    external_query_args,
    names_matcher,
    quote,
    regex_escape,
    render,
    requirement_matcher,
    window_seconds,
)
from adapter.selectors import Requirement, parse_label_selector
from tests.support.adapter_support import FIXTURES, unquote_promql

CFG = load_config(FIXTURES / "seed-rules.yaml")
FPM, HITS, RATE, QUEUE = CFG.all_rules


def test_single_name_is_equality() -> None:
    assert names_matcher("pod", ["web-1"]) == 'pod="web-1"'
    assert names_matcher("pod", ["web-1", "web-1"]) == 'pod="web-1"'


def test_names_escaped_for_regex_and_promql() -> None:
    m = names_matcher("pod", ["a.b", "c"])
    assert m == 'pod=~"a\\\\.b|c"'
    regex = unquote_promql(m[len('pod=~"') : -1])
    assert re.fullmatch(regex, "a.b") and not re.fullmatch(regex, "aXb")


def test_common_prefix_factored() -> None:
    assert alternation(["web-7d9f-abc", "web-7d9f-xyz", "web-7d9f-abc"]) == "web-7d9f-(?:abc|xyz)"
    assert alternation(["web", "web-1"]) == "web(?:|-1)"
    assert alternation(["ab", "cd"]) == "ab|cd"


@given(
    st.lists(st.text(alphabet='ab.-*()|[]\\"$^+?{}x1', min_size=1, max_size=8), min_size=1, max_size=12),
    st.text(alphabet="ab.-*()|\\x1", min_size=0, max_size=8),
)
def test_alternation_matches_exactly_the_names(names: list[str], probe: str) -> None:
    regex = alternation(names)
    for n in names:
        assert re.fullmatch(regex, n)
    assert bool(re.fullmatch(regex, probe)) == (probe in names)


@given(st.text(max_size=30))
def test_quote_roundtrips(s: str) -> None:
    assert unquote_promql(quote(s)[1:-1]) == s


def test_regex_escape() -> None:
    assert regex_escape("a.b*c") == "a\\.b\\*c"


@pytest.mark.parametrize(
    ("selector", "matcher"),
    [
        ("code=200", 'code="200"'),
        ("code!=500", 'code!="500"'),
        ("code in (200,201)", 'code=~"200|201"'),
        ("code notin (500)", 'code!~"500"'),
        ("code", 'code=~".+"'),
        ("!code", 'code=""'),
    ],
)
def test_requirement_matchers(selector: str, matcher: str) -> None:
    req = parse_label_selector(selector).requirements[0]
    assert requirement_matcher(req) == matcher


def test_in_values_are_literal() -> None:
    assert requirement_matcher(Requirement("v", "in", ("1.0", "2.0"))) == 'v=~"1\\\\.0|2\\\\.0"'


def test_gt_lt_rejected() -> None:
    with pytest.raises(BadRequest, match="not supported"):
        requirement_matcher(Requirement("x", "gt", ("1",)))


def test_fpm_query_renders() -> None:
    args = custom_query_args(
        FPM,
        "pm_status",
        "pod",
        ["web-2", "web-1"],
        namespace="default",
        namespace_label="namespace",
        metric_selector=None,
    )
    q = render(FPM, args)
    assert q == (
        'sum(max_over_time(pm_status{namespace="default",pod=~"web-(?:1|2)",state="active processes"}'
        '[2m])) by (pod) / sum(max_over_time(pm_status{namespace="default",pod=~"web-(?:1|2)",'
        'state="total processes"}[2m])) by (pod)'
    )
    assert window_seconds(q) == 120


def test_service_query_with_metric_selector() -> None:
    sel = parse_label_selector("code in (200,201)")
    args = custom_query_args(
        HITS,
        "total_hit_count",
        "service",
        ["mockmetrics"],
        namespace="demo",
        namespace_label="namespace",
        metric_selector=sel,
    )
    assert render(HITS, args) == (
        'sum(rate(total_hit_count{code=~"200|201",namespace="demo",service="mockmetrics"}[1m])) by (service)'
    )
    assert args.as_template_data()["LabelValuesByName"] == {
        "code": "200|201",
        "namespace": "demo",
        "service": "mockmetrics",
    }


def test_label_values_by_name_escaped_for_pasting() -> None:
    rule = parse_config(
        "rules:\n- seriesQuery: x\n  resources: {template: '<<.Resource>>'}\n"
        '  metricsQuery: \'sum(<<.Series>>{pod=~"<<index .LabelValuesByName "pod">>"}) by (<<.GroupBy>>)\'\n'
    ).rules[0]
    args = custom_query_args(
        rule, "x", "pod", ["a.b", "c"], namespace=None, namespace_label="namespace", metric_selector=None
    )
    assert render(rule, args) == 'sum(x{pod=~"a\\\\.b|c"}) by (pod)'


def test_external_namespace_handling() -> None:
    args = external_query_args(
        QUEUE,
        "queue_depth",
        namespace="jobs",
        namespace_label="namespace",
        metric_selector=parse_label_selector("queue=orders"),
    )
    assert render(QUEUE, args) == 'sum(queue_depth{queue="orders",namespace="jobs"}) by (namespace)'
    glob = load_config(FIXTURES / "external-global.yaml").external_rules[0]
    args = external_query_args(
        glob, "queue_depth", namespace="jobs", namespace_label="namespace", metric_selector=None
    )
    assert render(glob, args) == "sum(queue_depth{}) by (queue)"
    assert args.as_template_data()["GroupBy"] == ""


def test_invalid_prometheus_label_key() -> None:
    with pytest.raises(BadRequest, match="not a valid Prometheus label name"):
        custom_query_args(
            HITS,
            "x",
            "service",
            ["a"],
            namespace=None,
            namespace_label="namespace",
            metric_selector=parse_label_selector("app.kubernetes.io/name=x"),
        )


@pytest.mark.parametrize(
    ("query", "window"),
    [
        ("sum(rate(x[2m])) by (pod)", 120),
        ("rate(x[30s]) / rate(y[5m])", 300),
        ("max_over_time(rate(x[1m])[10m:30s])", 600),
        ("sum(x) by (pod)", None),
        ("rate(x[1h30m])", 5400),
    ],
)
def test_window(query: str, window: int | None) -> None:
    assert window_seconds(query) == window
