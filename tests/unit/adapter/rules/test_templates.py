"""The << >> template subset: what upstream configs use renders like Go; mistakes fail at parse."""

from __future__ import annotations

import pytest

from adapter.rules.config import QUERY_FIELDS
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
