"""Canonical Quantity text: cases derived from the documented Kubernetes rules.

Rules under test: round away from zero to 1n; largest exponent that is a multiple of three and
keeps the mantissa whole; SI suffixes for exponents -9..18, ``e<N>`` beyond; sign only when
negative; zero is ``0``.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.apiserver.quantity import canonical_parts, format_binary_quantity, format_quantity

CASES = [
    # documented examples
    ("1.5", "1500m"),
    ("100", "100"),
    ("0.0001", "100u"),
    ("1e21", "1e21"),
    # zero in every spelling
    ("0", "0"),
    ("-0", "0"),
    ("0.000", "0"),
    ("0E+5", "0"),
    # whole numbers: the exponent grows only while the mantissa stays whole
    ("1", "1"),
    ("10", "10"),
    ("999", "999"),
    ("1000", "1k"),
    ("1500", "1500"),
    ("1001", "1001"),
    ("12000", "12k"),
    ("100000", "100k"),
    ("1000000", "1M"),
    ("1500000", "1500k"),
    ("1e9", "1G"),
    ("1e12", "1T"),
    ("1e15", "1P"),
    ("1e18", "1E"),
    ("1e19", "10E"),
    ("1e20", "100E"),
    ("1.5e21", "1500E"),
    ("1e24", "1e24"),
    ("123e30", "123e30"),
    ("123456789012345678901234567890", "123456789012345678901234567890"),
    ("9223372036854775807", "9223372036854775807"),  # int64 max: no overflow
    ("9223372036854775808000", "9223372036854775808k"),  # beyond int64 milli-units
    # fractions: milli, micro, nano
    ("0.5", "500m"),
    ("0.1", "100m"),
    ("0.001", "1m"),
    ("0.0015", "1500u"),
    ("0.000001", "1u"),
    ("0.000000001", "1n"),
    ("0.000000123", "123n"),
    ("2.25", "2250m"),
    ("1.000", "1"),
    ("3.14159", "3141590u"),
    ("0.30000000000000004", "300000001n"),  # float noise rounds *up* to the next nano
    # below a nano: rounded away from zero, never to zero
    ("0.0000000001", "1n"),
    ("0.0000000015", "2n"),
    ("1.0000000001", "1000000001n"),
    ("-0.0000000001", "-1n"),
    # negatives mirror positives
    ("-1.5", "-1500m"),
    ("-1000", "-1k"),
    ("-0.001", "-1m"),
    ("-1e21", "-1e21"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_canonical_form(text: str, expected: str) -> None:
    assert format_quantity(Decimal(text)) == expected


def test_accepts_int_and_str() -> None:
    assert format_quantity(2000) == "2k"
    assert format_quantity("0.25") == "250m"


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_non_finite_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        format_quantity(Decimal(text))


_SUFFIX = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_RE = re.compile(r"^(-?\d+)(?:(e)(\d+)|([numkMGTPE]?))$")


def _parse(text: str) -> Decimal:
    m = _RE.match(text)
    assert m, text
    exponent = int(m.group(3)) if m.group(2) else _SUFFIX[m.group(4)]
    return Decimal(m.group(1)).scaleb(exponent)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None) | st.integers().map(Decimal))
def test_round_trip_properties(value: Decimal) -> None:
    text = format_quantity(value)
    mantissa, exponent = canonical_parts(value)
    assert exponent % 3 == 0
    assert exponent >= -9
    with localcontext() as ctx:
        ctx.prec = 10_000
        parsed = _parse(text)
        exp = value.as_tuple().exponent
        assert isinstance(exp, int)
        if exp >= -9:
            assert parsed == value  # representable values are exact
        else:
            assert abs(parsed) >= abs(value)  # never rounded towards zero ...
            assert abs(parsed - value) < Decimal("1e-9")  # ... and by less than one nano
    if mantissa:
        # No larger suffix could have been used without a fractional mantissa.
        assert not (mantissa % 1000 == 0 and exponent + 3 <= 18)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        # metrics-server's memory: bytes as a BinarySI quantity
        ("0", "0"),
        ("512", "512"),
        ("1000", "1k"),  # below 1024 a BinarySI quantity is written in DecimalSI
        ("1023", "1023"),
        ("1024", "1Ki"),
        ("1536", "1536"),  # 1.5Ki is not whole: plain bytes
        ("1572864", "1536Ki"),
        ("1048576", "1Mi"),
        ("4294967296", "4Gi"),
        ("1000001", "1000001"),
        ("1000001.2", "1000002"),  # a fraction of a byte rounds up
        ("1180591620717411303424", "1024Ei"),  # no suffix beyond Ei
    ],
)
def test_binary_quantity(value: str, text: str) -> None:
    assert format_binary_quantity(Decimal(value)) == text


@given(st.integers(min_value=1024, max_value=2**62))
def test_binary_quantity_round_trips(n: int) -> None:
    text = format_binary_quantity(n)
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|Pi|Ei)?", text)
    assert m is not None
    power = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].index(m.group(2) or "")
    assert int(m.group(1)) * 1024**power == n
    assert power == 0 or int(m.group(1)) % 1024 != 0 or power == 6


def test_cpu_nanocores_as_metrics_server() -> None:
    assert format_quantity(Decimal("0.123456789")) == "123456789n"
    assert format_quantity(Decimal("0.5")) == "500m"
    assert format_quantity(Decimal("2.0000000004")) == "2000000001n"  # rounded up to 1n
