"""The per-request fast paths equal the code they replaced (issue 15, "Request cost vs objects").

A pods/* answer over 1,000 pods quotes ~10 kB of PromQL and formats 1,000 quantities and
timestamps; those paths were rewritten for speed (str.translate, an integer-ratio quantity path,
cached time formatting). The reference implementations below are the previous code, kept
verbatim here as the independent oracle; hypothesis sweeps inputs against them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.apiserver.quantity import _canonical_parts_digits, canonical_parts, format_quantity
from adapter.apiserver.routes import (
    CUSTOM_GROUP,
    custom_list_text,
    custom_value_json,
    format_time,
    value_list_json,
)
from adapter.provider.base import MetricValue, ObjectReference
from adapter.provider.prometheus.client import Sample
from adapter.rules.promql import _escape_join, quote, regex_escape
from adapter.selectors import LabelSelector, parse_label_selector

# ----------------------------------------------------------------------- the previous code


_RE2_META = set("\\.+*?()|[]{}^$")


def old_regex_escape(value: str) -> str:
    return "".join("\\" + ch if ch in _RE2_META else ch for ch in value)


def old_quote(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def old_format_time(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------ strategies

# Every code point class the escapes care about: RE2 metacharacters, quotes, control
# characters, DEL, plain ASCII and non-ASCII text.
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from([*sorted(_RE2_META), '"', "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "\x80"]),
        st.characters(),
    ),
    max_size=60,
)

DECIMALS = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=12),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: Decimal(repr(f))),
    st.builds(
        lambda m, e: Decimal(m).scaleb(e),
        st.integers(min_value=-(10**25), max_value=10**25),
        st.integers(min_value=-45, max_value=45),
    ),
)


# ------------------------------------------------------------------------------------ tests


@given(TEXT)
@settings(max_examples=600)
def test_regex_escape_equals_the_previous_code(value: str) -> None:
    assert regex_escape(value) == old_regex_escape(value)


@given(TEXT)
@settings(max_examples=600)
def test_quote_equals_the_previous_code(value: str) -> None:
    assert quote(value) == old_quote(value)


def test_quote_and_escape_on_a_1000_pod_alternation() -> None:
    names = "|".join(f"web-{i}.x" for i in range(1000)) + '"\\\x01'
    assert quote(regex_escape(names)) == old_quote(old_regex_escape(names))


@given(DECIMALS)
@settings(max_examples=2000)
def test_fast_quantity_path_equals_the_digit_path(value: Decimal) -> None:
    """The integer-ratio path (exponents -30..30) against the digit-tuple algorithm it skips."""
    assert canonical_parts(value) == _canonical_parts_digits(value)


def test_quantity_paths_agree_at_the_edges() -> None:
    for text in [
        "0", "-0", "0E-40", "1E-9", "1E-10", "-1E-10", "9.99999999999E-10", "1.0000000001",
        "0.1666666666666666574", "1E+30", "1E+31", "-1E+30", "999999999999999999999.999",
        "1E-30", "1E-31", "123456789012345678901234567890.5",
        "1." + "1" * 70, "-9." + "9" * 70,  # more digits than the fast path holds: digit path
    ]:  # fmt: skip
        d = Decimal(text)
        assert canonical_parts(d) == _canonical_parts_digits(d), text
    assert format_quantity(Decimal("1E-10")) == "1n"
    assert format_quantity(Decimal("-1E-10")) == "-1n"
    assert format_quantity(Decimal("0.1666666666666666574")) == "166666667n"


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.one_of(
            st.none(),
            st.just(UTC),
            st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-720, 720)),
        ),
    )
)
@settings(max_examples=500)
def test_cached_format_time_equals_the_previous_code(ts: datetime) -> None:
    assert format_time(ts) == old_format_time(ts)
    assert format_time(ts) == old_format_time(ts)  # the cached answer, too


def test_naive_and_aware_times_do_not_share_a_cache_entry() -> None:
    naive = datetime(2026, 12, 1, 12, 0, 0)
    plus_two = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(naive) == "2026-12-01T12:00:00Z"
    assert format_time(plus_two) == "2026-12-01T10:00:00Z"
    assert format_time(naive) == "2026-12-01T12:00:00Z"


@given(st.decimals(min_value=0, max_value=10**10, allow_nan=False, allow_infinity=False, places=3))
def test_sample_time_equals_fromtimestamp(ts: Decimal) -> None:
    s = Sample({}, ts, Decimal(1))
    assert s.time == datetime.fromtimestamp(float(ts), tz=UTC)


# ------------------------------------------------------------- MetricValueList as text

NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
SELECTORS = st.sampled_from(["", "app=web", "app in (a,b),tier!=x", "!canary,env", "n>3"]).map(
    parse_label_selector
)
METRIC_VALUES = st.builds(
    MetricValue,
    described_object=st.builds(
        ObjectReference,
        kind=st.sampled_from(["Pod", "Service", "Node"]),
        name=NAMES,
        namespace=st.one_of(st.none(), st.just(""), NAMES),
        api_version=st.sampled_from(["v1", "apps/v1"]),
    ),
    metric=st.sampled_from(["http_requests", "queue_depth", "ünïcode"]),
    timestamp=st.datetimes(min_value=datetime(1971, 1, 1), timezones=st.just(UTC)),
    value=DECIMALS,
    window_seconds=st.one_of(st.none(), st.integers(0, 3600)),
    metric_selector=st.one_of(st.none(), SELECTORS),
)


@given(
    st.sampled_from(["v1beta1", "v1beta2"]),
    st.lists(METRIC_VALUES, max_size=8),
    st.one_of(st.none(), SELECTORS),
)
@settings(max_examples=400)
def test_custom_list_text_equals_json_dumps_of_the_dicts(
    version: str, values: list[MetricValue], request_selector: LabelSelector | None
) -> None:
    expected = json.dumps(
        value_list_json(
            CUSTOM_GROUP,
            version,
            "MetricValueList",
            [custom_value_json(version, v, request_selector) for v in values],
        )
    )
    assert custom_list_text(version, values, request_selector) == expected


def test_custom_list_text_over_1000_pods_sharing_everything_but_name_and_value() -> None:
    ts = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    values = [
        MetricValue(ObjectReference("Pod", f"p-{i}", "bench", "v1"), "http_requests", ts, Decimal(i) / 7, 60)
        for i in range(1000)
    ]
    for version in ("v1beta1", "v1beta2"):
        text = custom_list_text(version, values, None)
        assert json.loads(text) == value_list_json(
            CUSTOM_GROUP, version, "MetricValueList", [custom_value_json(version, v, None) for v in values]
        )


@given(st.lists(TEXT, min_size=1, max_size=12))
@settings(max_examples=400)
def test_escape_join_equals_escaping_each_value(values: list[str]) -> None:
    """Including values with NUL characters (the stand-in separator) and empty ones."""
    assert _escape_join(values) == "|".join(old_regex_escape(v) for v in values)
