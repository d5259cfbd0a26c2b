"""Name mapping with Go regexp semantics (matches/as, defaults, filters)."""

from __future__ import annotations

import re

import pytest

from adapter.rules.naming import (
    MetricNamer,
    SeriesFilter,
    check_as_template,
    close_names,
    compile_go_regex,
    default_as,
    expand_go,
)


def namer(matches: str, as_: str | None = None, filters: tuple[SeriesFilter, ...] = ()) -> MetricNamer:
    p = compile_go_regex(matches)
    return MetricNamer(p, as_ if as_ is not None else default_as(p) or "", filters)


def test_total_suffix_stripped() -> None:
    n = namer("^(.*)_total$", "${1}")
    assert n.metric_name("http_requests_total") == "http_requests"
    assert n.metric_name("http_requests") is None
    assert not n.keeps("process_cpu_seconds")


def test_defaults_follow_group_count() -> None:
    assert namer("^pm_status$").metric_name("pm_status") == "pm_status"  # $0
    assert namer("^container_(.*)_seconds_total$").metric_name("container_cpu_seconds_total") == "cpu"  # $1
    assert default_as(compile_go_regex("(a)(b)")) is None
    assert namer(".*").metric_name("anything") == "anything"


def test_unanchored_like_go() -> None:
    # Go's FindStringSubmatchIndex searches: the expansion only contains what `as` says.
    assert namer("requests", "${0}_x").metric_name("http_requests_total") == "requests_x"
    assert namer("requests", "$0_x").metric_name("http_requests_total") == ""  # Go: ${0_x}


def test_go_expand_semantics() -> None:
    m = re.search(r"(?P<base>.*)_(total)", "a_b_total")
    assert m is not None
    assert expand_go("${1}_per_second", m) == "a_b_per_second"
    assert expand_go("$1_per_second", m) == ""  # Go reads ${1_per_second}: unknown -> empty
    assert expand_go("$base-$2", m) == "a_b-total"
    assert expand_go("$$1", m) == "$1"
    assert expand_go("${9}", m) == ""


def test_go_only_syntax_translated() -> None:
    p = compile_go_regex(r"^(?<base>.*)_total\z")
    assert p.search("x_total") and p.search("x_total").group("base") == "x"  # type: ignore[union-attr]


def test_check_as_catches_the_dollar_trap() -> None:
    p = compile_go_regex("^(.*)_total$")
    problem = check_as_template(p, "$1_per_second")
    assert problem is not None and "${1}_per_second" in problem
    assert check_as_template(p, "${1}_per_second") is None
    assert "has 1 group" in (check_as_template(p, "$2") or "")


def test_series_filters() -> None:
    f = (
        SeriesFilter(compile_go_regex("^container_"), True),
        SeriesFilter(compile_go_regex("_seconds_total$"), False),
    )
    n = namer(".*", None, f)
    assert n.filter(["container_cpu_seconds_total", "container_fs_reads_total", "node_load1"]) == [
        "container_fs_reads_total"
    ]


@pytest.mark.parametrize("wanted", ["http_request", "http_requests_totl"])
def test_close_names(wanted: str) -> None:
    assert "http_requests" in close_names(wanted, ["http_requests", "fpm_active_rate", "queue_depth"])
