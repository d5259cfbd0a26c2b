"""Label selector parsing and matching (the API layer's 400s depend on it)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.errors import BadRequest
from adapter.selectors import EVERYTHING, Requirement, parse_field_selector, parse_label_selector


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app=web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("tier in (a, b)", {"tier": "b"}, True),
        ("tier in (a,b)", {"tier": "c"}, False),
        ("tier notin (a,b)", {}, True),
        ("tier notin (a,b)", {"tier": "a"}, False),
        ("gpu", {"gpu": ""}, True),
        ("gpu", {}, False),
        ("!gpu", {}, True),
        ("!gpu", {"gpu": "x"}, False),
        ("n>3", {"n": "4"}, True),
        ("n>3", {"n": "3"}, False),
        ("n<3", {"n": "x"}, False),
        ("app=web,tier in (a,b)", {"app": "web", "tier": "a"}, True),
        ("app=web,tier in (a,b)", {"app": "web", "tier": "z"}, False),
        ("example.com/role=api", {"example.com/role": "api"}, True),
        ("app=", {"app": ""}, True),
    ],
)
def test_matching(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


def test_blank_means_everything() -> None:
    assert parse_label_selector(None) is EVERYTHING
    assert parse_label_selector("  ") is EVERYTHING
    assert EVERYTHING.matches({"a": "b"})


def test_canonical_string_is_sorted_and_reparses() -> None:
    sel = parse_label_selector("z=1, a in (y,x), !b")
    assert str(sel) == "a in (x,y),!b,z=1"
    assert parse_label_selector(str(sel)) == sel


def test_requirements_exposed_for_promql_translation() -> None:
    sel = parse_label_selector("state notin (idle),app=web")
    assert sel.requirements == (
        Requirement("app", "=", ("web",)),
        Requirement("state", "notin", ("idle",)),
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("app=web,", "empty requirement"),
        ("app in ()", "at least one value"),
        ("app in (a", "unbalanced"),
        ("a)", "unbalanced"),
        ("-bad=x", "not a valid label key"),
        ("app=we b", "cannot parse"),
        ("app=" + "x" * 64, "not a valid label value"),
        ("n>three", "needs an integer"),
    ],
)
def test_bad_selectors_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_label_selector(text)
    assert fragment in err.value.message
    assert err.value.code == 400


@given(st.text(max_size=40))
def test_never_crashes(text: str) -> None:
    try:
        sel = parse_label_selector(text)
    except BadRequest:
        return
    if not sel.empty:
        assert parse_label_selector(str(sel)) == sel


@pytest.mark.parametrize(
    ("text", "namespace", "name", "expected"),
    [
        ("", "a", "b", True),
        ("metadata.name=b", "a", "b", True),
        ("metadata.name==b", "a", "c", False),
        ("metadata.name!=b", "a", "b", False),
        ("metadata.namespace=a,metadata.name=b", "a", "b", True),
        ("metadata.namespace=a,metadata.name=b", "x", "b", False),
        ("metadata.namespace!=kube-system", None, "node-a", True),
        (r"metadata.name=a\,b", "n", "a,b", True),
    ],
)
def test_field_selector(text: str, namespace: str | None, name: str, expected: bool) -> None:
    assert parse_field_selector(text).matches(namespace, name) is expected


def test_field_selector_text() -> None:
    assert str(parse_field_selector("metadata.name==a")) == "metadata.name=a"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("spec.nodeName=x", 'field label "spec.nodeName" is not supported'),
        ("metadata.name", "cannot parse"),
        ("metadata.name=a,", "empty requirement"),
        (r"metadata.name=a\x", "invalid escape"),
        ("metadata.name=a=b", "unescaped '='"),
    ],
)
def test_field_selector_errors(text: str, needle: str) -> None:
    with pytest.raises(BadRequest, match=needle):
        parse_field_selector(text)
