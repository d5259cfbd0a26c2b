"""Kubernetes ``resource.Quantity`` canonical text for exact decimal values.

The HPA reads ``value`` as a Quantity, so we must emit exactly what a Kubernetes API server would
emit for the same number: any other spelling still parses, but differs from what ``kubectl`` and
the reference adapter show and makes golden tests brittle. The rules (DecimalSI format):

* Values are first rounded *away from zero* to a multiple of 1n (1e-9), the finest unit a Quantity
  can hold; a tiny non-zero value therefore becomes ``1n`` rather than ``0`` (a request for "some"
  of something should not vanish).
* The value is then written as an integer mantissa times a power of ten whose exponent is a
  multiple of three and as large as possible without a fractional mantissa: ``1.5`` -> ``1500m``,
  ``1500`` -> ``1500`` (not ``1.5k``), ``1000`` -> ``1k``.
* Exponents -9..18 use the SI suffixes ``n u m "" k M G T P E``; larger exponents use the
  ``e<N>`` exponent spelling (``1e21``), which every Quantity parser accepts.

Everything is done with Python integers: no int64 milli-unit arithmetic, so neither huge values
(``1e30``) nor tiny ones (``0.000000001``) overflow or get truncated, unlike the reference adapter
which builds quantities from ``int64(value * 1000)``.
"""

from __future__ import annotations

from decimal import ROUND_UP, Context, Decimal, Inexact

_SUFFIXES = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_MIN_EXPONENT = -9  # 1n: values are rounded up to this precision


#: Magnitudes whose decimal exponent (``Decimal.adjusted()``) lies in this range take the fast
#: path of :func:`canonical_parts`; others (e.g. ``1e-400``, ``1e400``) the digit path, which never
#: builds an integer the size of the exponent.
_FAST_ADJUSTED = range(-30, 31)
#: Wide enough for any value of that range in nano-units (<= 10**40); Inexact trapped, so a value
#: with more digits than that falls back to the digit path instead of being rounded.
_EXACT = Context(prec=64, rounding=ROUND_UP, traps=[Inexact])


def canonical_parts(value: Decimal) -> tuple[int, int]:
    """Return ``(mantissa, exponent)`` of the canonical form: ``value ~= mantissa * 10**exponent``.

    ``exponent`` is a multiple of 3, ``mantissa`` carries the sign. Zero is ``(0, 0)``. Raises
    ``ValueError`` for NaN and infinities, which no Quantity can represent.
    """
    if not value.is_finite():
        raise ValueError(f"{value} cannot be represented as a Kubernetes quantity")
    if value.adjusted() in _FAST_ADJUSTED:
        # Scale to nano-units exactly, round the magnitude up (ROUND_UP is away from zero), then
        # move whole thousands into the exponent. Several times faster than splitting the digit
        # tuple, and a pods/* answer over 1,000 pods formats 1,000 values.
        try:
            mantissa = int(value.scaleb(9, _EXACT).to_integral_value(ROUND_UP, _EXACT))
        except Inexact:
            return _canonical_parts_digits(value)
        if mantissa == 0:
            return 0, 0
        exponent = -9
        while mantissa % 1000 == 0:  # exact multiples only, so floor division is exact for < 0 too
            mantissa //= 1000
            exponent += 3
        return mantissa, exponent
    return _canonical_parts_digits(value)


def _canonical_parts_digits(value: Decimal) -> tuple[int, int]:
    """:func:`canonical_parts` from the digit tuple: any finite ``value``, any exponent."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    mantissa = int("".join(map(str, digits)) or "0")
    if mantissa == 0:
        return 0, 0
    if exponent < _MIN_EXPONENT:
        # Round the magnitude up (away from zero) to a whole number of nano-units.
        divisor = 10 ** (_MIN_EXPONENT - exponent)
        mantissa = -(-mantissa // divisor)
        exponent = _MIN_EXPONENT
    # Move factors of ten into the exponent so the mantissa is as small as possible ...
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    # ... then step the exponent down to the next multiple of three (never losing digits).
    shift = exponent % 3
    mantissa *= 10**shift
    exponent -= shift
    return (-mantissa if sign else mantissa), exponent


def format_quantity(value: Decimal | int | str) -> str:
    """Canonical DecimalSI quantity text, e.g. ``Decimal("1.5")`` -> ``"1500m"``."""
    if not isinstance(value, Decimal):
        value = Decimal(value)
    mantissa, exponent = canonical_parts(value)
    if mantissa == 0:
        return "0"
    suffix = _SUFFIXES.get(exponent)
    if suffix is None:
        suffix = f"e{exponent}"
    return f"{mantissa}{suffix}"


_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


def format_binary_quantity(value: Decimal | int | str) -> str:
    """Canonical BinarySI quantity text for a byte count, as a Kubernetes server writes memory.

    The value is first rounded up to a whole number of bytes (a BinarySI Quantity has no fraction
    to show). Then, as ``resource.Quantity`` does: magnitudes below 1024 are written in DecimalSI
    (``512``, ``1k``); larger ones as the integer mantissa times the largest power of 1024 that
    divides them exactly (``1536Ki``, ``1Mi``), or in plain bytes when 1024 does not divide them
    (``1000001``). metrics-server's memory usage reads the same way.
    """
    if not isinstance(value, Decimal):
        value = Decimal(value)
    if not value.is_finite():
        raise ValueError(f"{value} cannot be represented as a Kubernetes quantity")
    whole = int(value.to_integral_value(rounding="ROUND_CEILING" if value > 0 else "ROUND_FLOOR"))
    if -1024 < whole < 1024:
        return format_quantity(whole)
    mantissa, power = whole, 0
    while mantissa % 1024 == 0 and power < len(_BINARY_SUFFIXES) - 1:
        mantissa //= 1024
        power += 1
    return f"{mantissa}{_BINARY_SUFFIXES[power]}"
