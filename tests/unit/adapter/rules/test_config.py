"""Config loading: the seed configs parse; mistakes fail with file:line, the path and the fix."""

from __future__ import annotations

import pytest

from adapter.errors import ConfigError
from adapter.rules.config import load_config, parse_config, parse_prom_duration
from tests.support.adapter_support import FIXTURES


def test_seed_rules_load() -> None:
    cfg = load_config(FIXTURES / "seed-rules.yaml")
    assert [r.id for r in cfg.all_rules] == ["rules[0]", "rules[1]", "rules[2]", "externalRules[0]"]
    fpm, hits, rate, queue = cfg.all_rules
    assert fpm.namer.metric_name("pm_status") == "fpm_active_rate"
    assert hits.namer.metric_name("total_hit_count") == "total_hit_count"
    assert hits.resources.overrides["service"].resource == "service"
    assert rate.namer.metric_name("http_requests_total") == "http_requests"
    assert rate.resources.template_source == "<<.Resource>>"
    assert queue.external and queue.external_namespaced
    assert fpm.location is not None and fpm.location.line == 4
    assert cfg.digest and cfg.source.endswith("seed-rules.yaml")


def test_external_namespaced_false_and_resource_rules() -> None:
    ext = load_config(FIXTURES / "external-global.yaml").external_rules[0]
    assert ext.resources.namespaced is False and not ext.external_namespaced
    rr = load_config(FIXTURES / "resource-rules.yaml").resource_rules
    assert rr is not None and rr.window_seconds == 180 and rr.cpu.container_label == "container"


def err(text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, source="cfg.yaml")
    return str(exc.value)


GOOD_RULE = """\
rules:
- seriesQuery: 'x_total{namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  name: {matches: "^(.*)_total$", as: "${1}"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
"""


def test_good_rule_parses() -> None:
    assert parse_config(GOOD_RULE).rules[0].name_as == "${1}"


def test_invalid_regex_names_line_path_and_fix() -> None:
    msg = err(GOOD_RULE.replace('"^(.*)_total$"', '"("'))
    assert msg.startswith("cfg.yaml:4: rules[0].name.matches: invalid regex '(' — missing ')'")
    assert "fix the regular expression" in msg


def test_unknown_key_suggests() -> None:
    msg = err(GOOD_RULE.replace("metricsQuery", "metricQuery"))
    assert msg.startswith(
        "cfg.yaml:5: rules[0].metricQuery: unknown key 'metricQuery'; did you mean 'metricsQuery'"
    )


def test_unknown_template_field_has_offset() -> None:
    msg = err(GOOD_RULE.replace("<<.GroupBy>>", "<<.GroupBys>>"))
    assert "cfg.yaml:5: rules[0].metricsQuery: invalid template at character" in msg
    assert "unknown field '.GroupBys'" in msg


def test_dollar_trap_rejected() -> None:
    msg = err(GOOD_RULE.replace('as: "${1}"', 'as: "$1_per_second"'))
    assert "cfg.yaml:4: rules[0].name.as:" in msg and "${1}_per_second" in msg


def test_missing_metrics_query_explains_upstream_difference() -> None:
    text = "rules:\n- seriesQuery: 'x'\n  resources: {template: '<<.Resource>>'}\n"
    msg = err(text)
    assert msg.startswith("cfg.yaml:2: rules[0].metricsQuery: missing; add e.g. metricsQuery:")


def test_missing_as_with_two_groups() -> None:
    msg = err(GOOD_RULE.replace('{matches: "^(.*)_total$", as: "${1}"}', '{matches: "^(.*)_(total)$"}'))
    assert "rules[0].name.as: missing" in msg and "2 capture groups" in msg


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("rules:\n  - seriesQuery: [x\n", "invalid YAML"),
        ("", "the config is empty"),
        ("rules: []\n", "has no rules"),
        ("foo: 1\n", "unknown key 'foo'"),
        ("rules: {}\n", "expected a list"),
        (GOOD_RULE + "  seriesQuery: 'y'\n", "duplicate key 'seriesQuery'"),
        (GOOD_RULE.replace('  resources: {template: "<<.Resource>>"}\n', ""), "rules[0].resources: missing"),
        (GOOD_RULE.replace('{template: "<<.Resource>>"}', '{template: "kube_<<.Group>>"}'), "<<.Resource>>"),
        (
            GOOD_RULE.replace('{template: "<<.Resource>>"}', "{overrides: {pod: {group: apps}}}"),
            "rules[0].resources.overrides.pod.resource: missing",
        ),
        (
            GOOD_RULE.replace('{template: "<<.Resource>>"}', "{overrides: {'a-b': {resource: pod}}}"),
            "not a valid Prometheus label name",
        ),
        (GOOD_RULE + "  seriesFilters: [{is: a, isNot: b}]\n", "exactly one of 'is' or 'isNot'"),
        (GOOD_RULE + "  seriesFilters: [{isNot: '[a'}]\n", "rules[0].seriesFilters[0].isNot: invalid regex"),
        (
            "externalRules:\n- seriesQuery: q\n  metricsQuery: 'sum(<<.Series>>)'\n"
            "  resources: {namespaced: maybe}\n",
            "expected true or false",
        ),
        ("resourceRules:\n  cpu: {}\n  memory: {}\n", "resourceRules.cpu.containerQuery: missing"),
        ("resourceRules:\n  cpu: {}\n  window: 1m\n", "resourceRules.memory: missing"),
    ],
)
def test_errors(text: str, fragment: str) -> None:
    msg = err(text)
    assert fragment in msg
    assert msg.startswith("cfg.yaml")


def test_external_rule_without_resources_is_fine() -> None:
    cfg = parse_config("externalRules:\n- seriesQuery: 'queue_depth'\n  metricsQuery: 'sum(<<.Series>>)'\n")
    assert cfg.external_rules[0].external_namespaced


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/adapter.yaml")


def test_durations() -> None:
    assert parse_prom_duration("1h30m") == 5400
    assert parse_prom_duration("500ms") == 0.5
    assert parse_prom_duration("bogus") is None
