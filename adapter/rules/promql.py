"""PromQL pieces for one request: label matchers, the metricsQuery arguments, and the window.

Two escapings are easy to confuse, so they are separate functions: ``regex_escape`` makes a
literal safe inside a (fully anchored) RE2 regex, ``quote`` makes any string a PromQL
double-quoted literal. An object name ``a.b`` therefore becomes ``pod=~"a\\\\.b|c"``: upstream
joins names unescaped, so ``a.b`` also matches ``aXb``.

Name lists are deduplicated and sorted (identical requests render identical queries, which is
what lets the cache coalesce them), and a common prefix is factored out
(``web-(?:a|b)``): exact, because Prometheus anchors regex matchers at both ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from adapter.errors import BadRequest
from adapter.rules.config import DiscoveryRule, parse_prom_duration
from adapter.rules.templates import Template
from adapter.selectors import LabelSelector, Requirement

_RE2_META = set("\\.+*?()|[]{}^$")
#: str.translate tables: one C-level pass per string (a pods/* query over 1,000 pods quotes ~10 kB;
#: the per-character Python loops these replace were a third of the adapter's CPU per request).
_RE2_ESCAPES = {ord(ch): "\\" + ch for ch in _RE2_META}
_QUOTE_ESCAPES = {
    **{c: f"\\u{c:04x}" for c in (*range(0x20), 0x7F)},
    ord("\\"): "\\\\",
    ord('"'): '\\"',
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def regex_escape(value: str) -> str:
    """Escape RE2 metacharacters so ``value`` matches only itself."""
    return value.translate(_RE2_ESCAPES)


def quote(value: str) -> str:
    """A PromQL double-quoted string literal for ``value``: ``\\``, ``"``, ``\\n``, ``\\r``, ``\\t``
    escaped as such, other control characters (and DEL) as ``\\uXXXX``."""
    return '"' + value.translate(_QUOTE_ESCAPES) + '"'


def _escape_join(values: Sequence[str]) -> str:
    """``"|".join(regex_escape(v) for v in values)`` in one translate over the joined text (a NUL
    stands in for the separators; values that contain one take the per-value path)."""
    joined = "\0".join(values)
    if joined.count("\0") != len(values) - 1:
        return "|".join(regex_escape(v) for v in values)
    return joined.translate(_RE2_ESCAPES).replace("\0", "|")


def _common_prefix(values: Sequence[str]) -> str:
    first, last = min(values), max(values)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def alternation(values: Iterable[str]) -> str:
    """An RE2 regex (unanchored text; Prometheus anchors it) matching exactly ``values``."""
    unique = sorted(set(values))
    if not unique:
        raise ValueError("alternation of no values")
    if len(unique) == 1:
        return regex_escape(unique[0])
    prefix = _common_prefix(unique)
    if len(prefix) >= 3:
        rest = _escape_join([v[len(prefix) :] for v in unique])
        return f"{regex_escape(prefix)}(?:{rest})"
    return _escape_join(unique)


def names_matcher(label: str, names: Iterable[str]) -> str:
    """``label="a"`` for one name, ``label=~"..."`` for several (escaped, compact)."""
    unique = sorted(set(names))
    if len(unique) == 1:
        return f"{label}={quote(unique[0])}"
    return f"{label}=~{quote(alternation(unique))}"


def requirement_matcher(req: Requirement) -> str:
    """One metricLabelSelector requirement as a PromQL matcher (values matched literally)."""
    if req.op == "=":
        return f"{req.key}={quote(req.values[0])}"
    if req.op == "!=":
        return f"{req.key}!={quote(req.values[0])}"
    if req.op == "in":
        return f"{req.key}=~{quote(alternation(req.values))}"
    if req.op == "notin":
        return f"{req.key}!~{quote(alternation(req.values))}"
    if req.op == "exists":
        return f'{req.key}=~".+"'
    if req.op == "!":
        return f'{req.key}=""'
    raise BadRequest(
        f"metricLabelSelector {req} cannot be expressed in PromQL: '>'/'<' are not supported; "
        "use =, !=, in, notin, exists or !exists"
    )


def _label_name(key: str) -> str:
    """Kubernetes label keys may contain '/', '.', '-'; Prometheus label names cannot."""
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key):
        raise BadRequest(
            f"metricLabelSelector key {key!r} is not a valid Prometheus label name "
            "([a-zA-Z_][a-zA-Z0-9_]*); select on the label as Prometheus stores it"
        )
    return key


@dataclass
class QueryArgs:
    """The metricsQuery template arguments (upstream's names)."""

    Series: str
    matchers: list[str] = field(default_factory=list)
    LabelValuesByName: dict[str, str] = field(default_factory=dict)
    GroupBySlice: list[str] = field(default_factory=list)

    def as_template_data(self) -> dict[str, object]:
        return {
            "Series": self.Series,
            "LabelMatchers": ",".join(self.matchers),
            "LabelValuesByName": dict(self.LabelValuesByName),
            "GroupBy": ",".join(self.GroupBySlice),
            "GroupBySlice": list(self.GroupBySlice),
        }


def _values_text(values: Iterable[str]) -> str:
    """LabelValuesByName entry: values joined by ``|`` for use inside ``label=~"..."``.

    Each value is regex-escaped and the whole is escaped for a PromQL string, so a template
    author can paste it between double quotes (upstream passes values through raw).
    """
    return quote(_escape_join(sorted(set(values))))[1:-1]


def _replace(rule: DiscoveryRule, value: str) -> str:
    for r in rule.label_value_replacements:
        value = value.replace(r.find, r.replace)
    return value


def _selector_parts(rule: DiscoveryRule, selector: LabelSelector | None, args: QueryArgs) -> None:
    if selector is None:
        return
    for req in selector.requirements:
        req = Requirement(_label_name(req.key), req.op, tuple(_replace(rule, v) for v in req.values))
        args.matchers.append(requirement_matcher(req))
        args.LabelValuesByName[req.key] = _values_text(req.values)


def custom_query_args(
    rule: DiscoveryRule,
    series: str,
    resource_label: str,
    names: Sequence[str],
    *,
    namespace: str | None,
    namespace_label: str,
    metric_selector: LabelSelector | None,
) -> QueryArgs:
    """Arguments for a custom-metrics query over ``names`` of one resource."""
    if not names:
        raise ValueError("custom query needs at least one object name")
    args = QueryArgs(series)
    _selector_parts(rule, metric_selector, args)
    if namespace:
        args.matchers.append(f"{namespace_label}={quote(_replace(rule, namespace))}")
        args.LabelValuesByName[namespace_label] = _values_text([_replace(rule, namespace)])
    replaced = [_replace(rule, n) for n in names]
    args.matchers.append(names_matcher(resource_label, replaced))
    args.LabelValuesByName[resource_label] = _values_text(replaced)
    args.GroupBySlice = [resource_label]
    return args


def external_query_args(
    rule: DiscoveryRule,
    series: str,
    *,
    namespace: str | None,
    namespace_label: str,
    metric_selector: LabelSelector | None,
) -> QueryArgs:
    """Arguments for an external-metrics query; GroupBy is empty, as upstream."""
    args = QueryArgs(series)
    _selector_parts(rule, metric_selector, args)
    if namespace and rule.external_namespaced:
        args.matchers.append(f"{namespace_label}={quote(_replace(rule, namespace))}")
        args.LabelValuesByName[namespace_label] = _values_text([_replace(rule, namespace)])
    return args


def resource_query_args(
    resource_label: str,
    names: Sequence[str],
    *,
    namespace: str | None,
    namespace_label: str | None,
    group_by: Sequence[str],
) -> QueryArgs:
    """Arguments for a resourceRules containerQuery/nodeQuery over ``names`` (pods or nodes).

    ``Series`` is empty (the queries name their series), the matchers select the objects (and the
    namespace, for pods in one namespace) and ``GroupBy`` is ``group_by`` in the given order.
    """
    if not names:
        raise ValueError("resource query needs at least one object name")
    args = QueryArgs("")
    if namespace and namespace_label:
        args.matchers.append(f"{namespace_label}={quote(namespace)}")
        args.LabelValuesByName[namespace_label] = _values_text([namespace])
    args.matchers.append(names_matcher(resource_label, names))
    args.LabelValuesByName[resource_label] = _values_text(names)
    args.GroupBySlice = list(dict.fromkeys(group_by))
    return args


def render_template(template: Template, args: QueryArgs, what: str) -> str:
    """Render any query template; ``what`` names it in the error for an empty result."""
    query = template.render(args.as_template_data()).strip()
    if not query:
        raise ValueError(f"{what} rendered an empty query")
    return query


def render(rule: DiscoveryRule, args: QueryArgs) -> str:
    query = rule.metrics_query.render(args.as_template_data()).strip()
    if not query:
        raise ValueError(f"{rule.id}.metricsQuery rendered an empty query")
    return query


_RANGE_RE = re.compile(r"\[\s*([0-9smhdwy]+)\s*(?::\s*[0-9smhdwy]*\s*)?\]")


def window_seconds(query: str) -> int | None:
    """The largest range selector or subquery range in ``query`` (``[2m]`` -> 120), or None."""
    best: float | None = None
    for m in _RANGE_RE.finditer(query):
        seconds = parse_prom_duration(m.group(1))
        if seconds is not None and (best is None or seconds > best):
            best = seconds
    return int(best) if best is not None else None
