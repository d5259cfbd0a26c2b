"""Series name -> API metric name, with Go regexp semantics.

prometheus-adapter compiles ``name.matches`` and ``seriesFilters`` with Go's RE2 and expands
``name.as`` with Go's ``Regexp.ExpandString``. Python's ``re`` is close but not identical, so the
differences that real configs hit are handled here: ``(?<name>...)`` groups, ``\\z``, and the
``$1x`` trap (Go reads ``$1_per_second`` as the group named ``1_per_second``, which expands to an
empty string; we reject that at load time and suggest ``${1}_per_second``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_NAMED_GROUP_RE = re.compile(r"\(\?<(?![=!])")
_DOLLAR_RE = re.compile(r"\$(?:\$|\{(?P<braced>[A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z0-9_]+))")


def compile_go_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Go/RE2 regular expression with Python's ``re`` (raises ``re.error``)."""
    translated = _NAMED_GROUP_RE.sub("(?P<", pattern)
    translated = translated.replace(r"\z", r"\Z")
    return re.compile(translated)


def describe_regex_error(pattern: str, err: re.error) -> str:
    """A short human reason for a regex compile failure, e.g. "missing ')' at position 0"."""
    msg = err.msg
    if "missing )" in msg:
        msg = "missing ')'"
    elif "unbalanced parenthesis" in msg:
        msg = "unbalanced ')'"
    elif "unterminated character set" in msg:
        msg = "missing ']'"
    if err.pos is not None:
        msg += f" at position {err.pos}"
    return msg


def as_references(template: str) -> list[str]:
    """The group references (``"1"``, ``"name"``) that a Go expansion template uses."""
    return [
        m["braced"] if m["braced"] is not None else m["bare"]
        for m in _DOLLAR_RE.finditer(template)
        if m.group(0) != "$$"
    ]


def check_as_template(pattern: re.Pattern[str], template: str) -> str | None:
    """Return why ``template`` cannot work with ``pattern`` (or None when it is fine)."""
    for ref in as_references(template):
        if ref.isdigit():
            if int(ref) > pattern.groups:
                return (
                    f"'${ref}' refers to capture group {ref}, but the pattern has {pattern.groups} group(s)"
                )
        elif ref not in pattern.groupindex:
            hint = ""
            m = re.match(r"(\d+)(.*)", ref)
            if m:
                hint = f"; Go reads '${ref}' as one group name: write '${{{m[1]}}}{m[2]}'"
            return f"'${ref}' refers to a capture group named {ref!r} that the pattern does not define{hint}"
    return None


def default_as(pattern: re.Pattern[str]) -> str | None:
    """Upstream's default for a missing ``as``: ``$0`` without groups, ``$1`` with one, else none."""
    if pattern.groups == 0:
        return "$0"
    if pattern.groups == 1:
        return "$1"
    return None


def expand_go(template: str, match: re.Match[str]) -> str:
    """Expand ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$`` like Go's ``Regexp.ExpandString``.

    Unknown or unmatched groups expand to the empty string, as in Go.
    """

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        ref = m["braced"] if m["braced"] is not None else m["bare"]
        try:
            value = match.group(int(ref)) if ref.isdigit() else match.group(ref)
        except IndexError:  # ``re`` raises IndexError for unknown group numbers and names
            return ""
        return value or ""

    return _DOLLAR_RE.sub(repl, template)


@dataclass(frozen=True)
class SeriesFilter:
    """``is``/``isNot`` filter on a series name (unanchored search, as Go's MatchString)."""

    pattern: re.Pattern[str]
    positive: bool

    def keeps(self, name: str) -> bool:
        return (self.pattern.search(name) is not None) == self.positive


@dataclass(frozen=True)
class MetricNamer:
    """Name part of one rule: filters + ``matches``/``as``.

    ``matches`` doubles as an implicit filter, as upstream: series it does not match are dropped.
    """

    matches: re.Pattern[str]
    as_: str
    filters: tuple[SeriesFilter, ...] = ()

    def keeps(self, series_name: str) -> bool:
        return (
            all(f.keeps(series_name) for f in self.filters) and self.matches.search(series_name) is not None
        )

    def filter(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.keeps(n)]

    def metric_name(self, series_name: str) -> str | None:
        """API name for a series name, or None when ``matches`` does not match it."""
        m = self.matches.search(series_name)
        if m is None:
            return None
        return expand_go(self.as_, m)


def close_names(wanted: str, candidates: Sequence[str], limit: int = 5) -> list[str]:
    """Candidates that look like ``wanted`` (for "did you mean" in errors and explain)."""
    import difflib

    close = difflib.get_close_matches(wanted, list(candidates), n=limit, cutoff=0.5)
    if len(close) < limit:
        for c in candidates:
            if c not in close and (wanted in c or c in wanted):
                close.append(c)
            if len(close) >= limit:
                break
    return close
