"""The << >> template subset: what upstream configs use renders like Go; mistakes fail at parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.errors import ConfigError
from adapter.rules.config import QUERY_FIELDS, load_config
from adapter.rules.templates import TemplateError, go_string, parse_template

ARGS = {
    "Series": "http_requests_total",
    "LabelMatchers": 'namespace="default",pod=~"a|b"',
    "LabelValuesByName": {"namespace": "default", "pod": "a|b"},
    "GroupBy": "pod",
    "GroupBySlice": ["pod", "container"],
}


def render(src: str) -> str:
    return parse_template(src, QUERY_FIELDS).render(ARGS)


def test_basic_fields() -> None:
    assert render("sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)") == (
        'sum(rate(http_requests_total{namespace="default",pod=~"a|b"}[2m])) by (pod)'
    )


def test_slice_prints_like_go() -> None:
    assert render("<<.GroupBySlice>>") == "[pod container]"
    assert go_string({"b": "2", "a": "1"}) == "map[a:1 b:2]"


def test_index_and_len() -> None:
    assert render('x{pod=~"<<index .LabelValuesByName "pod">>"}') == 'x{pod=~"a|b"}'
    assert render('<<index .LabelValuesByName "missing">>') == ""
    assert render("<<index .GroupBySlice 1>>") == "container"
    assert render("<<len .GroupBySlice>>") == "2"


def test_range_with_variables_and_root() -> None:
    src = "<<range $i, $l := .GroupBySlice>><<if $i>>,<<end>><<$l>><<end>>"
    assert render(src) == "pod,container"
    assert render("<<range .GroupBySlice>>[<<.>>:<<$.Series>>]<<end>>") == (
        "[pod:http_requests_total][container:http_requests_total]"
    )


def test_range_else_and_if_else() -> None:
    t = parse_template("<<range .GroupBySlice>>x<<else>>none<<end>>", QUERY_FIELDS)
    assert t.render({**ARGS, "GroupBySlice": []}) == "none"
    assert render('<<if eq .GroupBy "pod">>P<<else>>O<<end>>') == "P"
    assert render("<<if not .GroupBy>>empty<<else>>set<<end>>") == "set"


def test_trim_markers_and_comments() -> None:
    assert render("a   <<- .GroupBy ->>   b") == "apodb"
    assert render("a<</* note */>>b") == "ab"


@pytest.mark.parametrize(
    ("src", "fragment"),
    [
        ("<<.Serie>>", "unknown field '.Serie'"),
        ("<<.Series", "unclosed action"),
        ("<<range .GroupBySlice>>x", "unclosed <<range>>"),
        ("x<<end>>", "unexpected <<end>>"),
        ('<<join .GroupBySlice ",">>', 'function "join" not defined'),
        ("<<.GroupBy | printf>>", "pipelines"),
        ("<<range .GroupBySlice>><<.Series>><<end>>", "use '$.Series'"),
        ("<<$x>>", "undefined variable $x"),
        ('<<template "x">>', "not supported"),
        ("<<len>>", "wrong number of arguments"),
        ('<<"unterminated>>', "unexpected"),
    ],
)
def test_errors_at_parse_time(src: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as exc:
        parse_template(src, QUERY_FIELDS)
    assert fragment in exc.value.message


def test_error_offset_points_at_action() -> None:
    with pytest.raises(TemplateError) as exc:
        parse_template("sum(<<.Series>>{<<.Nope>>})", QUERY_FIELDS)
    assert exc.value.offset == len("sum(<<.Series>>{")


def test_references() -> None:
    t = parse_template("sum(<<.Series>>) by (<<range .GroupBySlice>><<.>><<end>>)", QUERY_FIELDS)
    assert t.references("Series") and t.references("GroupBySlice")
    assert not t.references("LabelMatchers")


def test_string_escapes() -> None:
    assert render('<<print "a\\"b" "\\n">>') == 'a"b\n'
    assert render("<<print `raw\\n`>>") == "raw\\n"


# Number literals. Expected values are Go's: text/template makes a constant with '.', 'e' or 'E'
# in its text a float64 and any other decimal constant an int (text/template's exec.go,
# idealConstant), and print formats an operand with fmt's %v, which for float64 is
# strconv.FormatFloat(v, 'g', -1, 64): the shortest representation that round-trips, in %e form
# when the decimal exponent is < -4 or >= 6 (exponent with a sign and at least two digits), else
# %f form with no trailing zeros (documented in the fmt and strconv packages). For example
# 1.5 -> 1.5, 1e21 -> 1e+21, 100000.0 -> 100000, 1e6 -> 1e+06.
@pytest.mark.parametrize(
    ("src", "go_output"),
    [
        ("<<print 1.5>>", "1.5"),
        ("<<print 1e3>>", "1000"),
        ("<<print 1e21>>", "1e+21"),
        ("<<print 100000.0>>", "100000"),
        ("<<print 1e6>>", "1e+06"),
        ("<<print 123456789.0>>", "1.23456789e+08"),
        ("<<print 0.0001>>", "0.0001"),
        ("<<print 0.00001>>", "1e-05"),
        ("<<print 2.50>>", "2.5"),
        ("<<print 0.1>>", "0.1"),
        ("<<print 1.>>", "1"),
        ("<<print .5>>", "0.5"),
        ("<<print -0.0>>", "-0"),
        ("<<print -2.5e-3>>", "-0.0025"),
        ("<<print 1E3>>", "1000"),
        ("<<1.5>>", "1.5"),  # an action prints with %v too
        ("<<print 42>>", "42"),  # ints print as integers
        ("<<print -7>>", "-7"),
        ("<<print +7>>", "7"),
        ("<<print 0>>", "0"),
        ("<<print 9223372036854775807>>", "9223372036854775807"),
        ("<<print 1 2.5>>", "1 2.5"),  # Sprint: a space between operands that are not strings
        ('<<print "x" 1.5>>', "x1.5"),
    ],
)
def test_number_literals_print_like_go(src: str, go_output: str) -> None:
    assert render(src) == go_output


@pytest.mark.parametrize(
    "literal",
    ["0x1F", "017", "1_000", "1i", "0b101", "0x1p-2", "1.5x", "1e400", "9223372036854775808", "1.2.3"],
)
def test_number_literals_outside_the_subset_fail_at_parse(literal: str) -> None:
    src = f"sum(<<.Series>>) * <<print {literal}>>"
    with pytest.raises(TemplateError) as exc:
        parse_template(src, QUERY_FIELDS)
    assert literal in exc.value.message and "supported" in exc.value.message
    assert exc.value.offset == src.index(literal)


def test_number_literal_error_names_config_position(tmp_path: Path) -> None:
    cfg = tmp_path / "rules.yaml"
    cfg.write_text(
        "rules:\n"
        "- seriesQuery: 'http_requests_total'\n"
        "  resources: {template: '<<.Resource>>'}\n"
        "  metricsQuery: 'sum(<<.Series>>) * <<print 0x10>>'\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    text = str(exc.value)
    assert "rules.yaml:4" in text and "0x10" in text and "decimal" in text
