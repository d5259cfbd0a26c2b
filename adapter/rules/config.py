"""The prometheus-adapter rule file (``rules``, ``externalRules``, ``resourceRules``), validated at load.

Upstream unmarshals strictly and compiles regexes/templates when it builds its namers, so a typo
surfaces as a Go error without a line number. Here everything is checked while loading, against
the YAML node tree (which keeps line numbers), and every error reads
``FILE:LINE: rules[2].name.matches: invalid regex '(' (missing ')'); <what to do>``.

Differences from upstream, on purpose:
- a rule without ``metricsQuery`` is rejected (upstream accepts it and then fails every query
  with "empty query produced by metrics query template");
- ``name.as`` references to capture groups that do not exist (``$1_per_second``) are rejected;
- ``labelValueReplacements`` (a later upstream addition) is accepted and applied to values.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from adapter.errors import ConfigError
from adapter.rules.naming import (
    MetricNamer,
    SeriesFilter,
    check_as_template,
    compile_go_regex,
    default_as,
    describe_regex_error,
)
from adapter.rules.templates import Template, TemplateError, parse_template

#: Fields a metricsQuery may use (upstream's queryTemplateArgs).
QUERY_FIELDS = ("Series", "LabelMatchers", "LabelValuesByName", "GroupBy", "GroupBySlice")
#: Fields a resources.template may use.
RESOURCE_FIELDS = ("Group", "Resource")
#: Fields of resourceRules containerQuery/nodeQuery (same arguments as metricsQuery upstream).
RESOURCE_QUERY_FIELDS = QUERY_FIELDS

EXAMPLE_QUERY = "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"


@dataclass(frozen=True)
class Location:
    """Where a value came from: ``file:line`` (1-based) plus its path in the document."""

    source: str
    line: int
    path: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.path}"


@dataclass(frozen=True)
class GroupResourceRef:
    """An override target as written (``resource`` may be singular, plural or a kind)."""

    resource: str
    group: str | None = None


@dataclass(frozen=True)
class ResourceMapping:
    template: Template | None = None
    overrides: dict[str, GroupResourceRef] = field(default_factory=dict)
    namespaced: bool | None = None

    @property
    def template_source(self) -> str | None:
        return self.template.source if self.template else None


@dataclass(frozen=True)
class LabelValueReplacement:
    find: str
    replace: str


@dataclass(frozen=True)
class DiscoveryRule:
    """One entry of ``rules`` or ``externalRules``."""

    kind: str  # "rules" or "externalRules"
    index: int
    series_query: str
    namer: MetricNamer
    resources: ResourceMapping
    metrics_query: Template
    name_matches: str
    name_as: str
    label_value_replacements: tuple[LabelValueReplacement, ...] = ()
    location: Location | None = None

    @property
    def id(self) -> str:
        """``rules[3]`` / ``externalRules[0]``: how logs, lint and explain name a rule."""
        return f"{self.kind}[{self.index}]"

    @property
    def external(self) -> bool:
        return self.kind == "externalRules"

    @property
    def external_namespaced(self) -> bool:
        """External rules add the namespace matcher unless ``resources.namespaced: false``."""
        return self.resources.namespaced is not False

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DiscoveryRule) and other.id == self.id and other.location == self.location


@dataclass(frozen=True)
class ResourceRule:
    container_query: Template
    node_query: Template
    resources: ResourceMapping
    container_label: str


@dataclass(frozen=True)
class ResourceRules:
    """``resourceRules`` (metrics.k8s.io, for ``kubectl top``): parsed and validated."""

    cpu: ResourceRule
    memory: ResourceRule
    window_seconds: float


@dataclass(frozen=True)
class AdapterConfig:
    rules: tuple[DiscoveryRule, ...] = ()
    external_rules: tuple[DiscoveryRule, ...] = ()
    resource_rules: ResourceRules | None = None
    source: str = "<config>"
    digest: str = ""

    @property
    def all_rules(self) -> tuple[DiscoveryRule, ...]:
        return self.rules + self.external_rules


# --- YAML node helpers ---------------------------------------------------------------------------

_constructor = yaml.constructor.SafeConstructor()


class _Ctx:
    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()

    def fail(self, node: yaml.Node | None, path: str, message: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else 1
        return ConfigError(f"{self.source}:{line}: {path}: {message}")

    def loc(self, node: yaml.Node, path: str) -> Location:
        return Location(self.source, node.start_mark.line + 1, path)


def _mapping(
    ctx: _Ctx, node: yaml.Node, path: str, allowed: dict[str, str]
) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """Check ``node`` is a mapping with only ``allowed`` keys (value: a hint for typos)."""
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise ctx.fail(node, path, f"expected a mapping with keys {', '.join(allowed)}, got {_kind(node)}")
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key is None:
            raise ctx.fail(key_node, path, "keys must be plain strings")
        if key not in allowed:
            close = [k for k in allowed if k.lower() == key.lower() or k.lower().startswith(key.lower()[:4])]
            hint = f"; did you mean '{close[0]}'?" if close else f"; allowed keys: {', '.join(allowed)}"
            raise ctx.fail(key_node, f"{path}.{key}" if path else key, f"unknown key '{key}'{hint}")
        if key in out:
            raise ctx.fail(
                key_node,
                f"{path}.{key}" if path else key,
                f"duplicate key '{key}' (first at line {out[key][0].start_mark.line + 1}); remove one",
            )
        out[key] = (key_node, value_node)
    return out


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"{_constructor.construct_object(node)!r}"


def _string(
    ctx: _Ctx, node: yaml.Node | None, path: str, *, required: bool = False, allow_empty: bool = True
) -> str:
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"):
        if required:
            raise ctx.fail(node, path, "missing; this field is required")
        return ""
    if not isinstance(node, yaml.ScalarNode):
        raise ctx.fail(node, path, f"expected a string, got {_kind(node)}")
    value = node.value
    if not value and not allow_empty:
        raise ctx.fail(node, path, "must not be empty")
    return value


def _bool(ctx: _Ctx, node: yaml.Node, path: str) -> bool:
    value = _constructor.construct_object(node) if isinstance(node, yaml.ScalarNode) else None
    if not isinstance(value, bool):
        raise ctx.fail(node, path, f"expected true or false, got {_kind(node)}")
    return value


def _sequence(ctx: _Ctx, node: yaml.Node | None, path: str) -> list[yaml.Node]:
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"):
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise ctx.fail(node, path, f"expected a list, got {_kind(node)}")
    return list(node.value)


def _regex(ctx: _Ctx, node: yaml.Node, path: str) -> re.Pattern[str]:
    text = _string(ctx, node, path, required=True, allow_empty=False)
    try:
        return compile_go_regex(text)
    except re.error as err:
        raise ctx.fail(
            node,
            path,
            f"invalid regex {text!r} — {describe_regex_error(text, err)}; "
            "fix the regular expression (Go RE2 syntax)",
        ) from None


def _template(ctx: _Ctx, node: yaml.Node, path: str, fields: tuple[str, ...]) -> Template:
    text = _string(ctx, node, path, required=True, allow_empty=False)
    try:
        return parse_template(text, fields)
    except TemplateError as err:
        raise ctx.fail(
            node, path, f"invalid template at character {err.offset + 1}: {err.message} (in {text!r})"
        ) from None


# --- sections ------------------------------------------------------------------------------------


def _resources(ctx: _Ctx, node: yaml.Node | None, path: str, *, external: bool) -> ResourceMapping:
    if node is None:
        return ResourceMapping()
    keys = {"template": "", "overrides": "", "namespaced": ""}
    m = _mapping(ctx, node, path, keys)
    template = (
        _template(ctx, m["template"][1], f"{path}.template", RESOURCE_FIELDS) if "template" in m else None
    )
    if template is not None and not (template.references("Resource")):
        raise ctx.fail(
            m["template"][1],
            f"{path}.template",
            "must contain <<.Resource>> (e.g. '<<.Resource>>' or 'kube_<<.Group>>_<<.Resource>>')",
        )
    overrides: dict[str, GroupResourceRef] = {}
    if "overrides" in m:
        ov_node = m["overrides"][1]
        if isinstance(ov_node, yaml.MappingNode):
            for key_node, value_node in ov_node.value:
                label = _string(ctx, key_node, f"{path}.overrides", allow_empty=False)
                sub = f"{path}.overrides.{label}"
                if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label):
                    raise ctx.fail(key_node, sub, f"{label!r} is not a valid Prometheus label name")
                gm = _mapping(ctx, value_node, sub, {"group": "", "resource": ""})
                if "resource" not in gm:
                    raise ctx.fail(
                        value_node,
                        f"{sub}.resource",
                        'missing; write e.g. {resource: "pod"} or {group: "apps", resource: "deployment"}',
                    )
                resource = _string(ctx, gm["resource"][1], f"{sub}.resource", allow_empty=False)
                group = _string(ctx, gm["group"][1], f"{sub}.group") if "group" in gm else None
                overrides[label] = GroupResourceRef(resource, group)
        elif not (isinstance(ov_node, yaml.ScalarNode) and ov_node.tag == "tag:yaml.org,2002:null"):
            raise ctx.fail(
                ov_node,
                f"{path}.overrides",
                f"expected a mapping of label -> {{resource: ...}}, got {_kind(ov_node)}",
            )
    namespaced = None
    if "namespaced" in m:
        namespaced = _bool(ctx, m["namespaced"][1], f"{path}.namespaced")
    return ResourceMapping(template, overrides, namespaced)


def _rule(ctx: _Ctx, node: yaml.Node, kind: str, index: int) -> DiscoveryRule:
    path = f"{kind}[{index}]"
    keys = {
        "seriesQuery": "",
        "seriesFilters": "",
        "resources": "",
        "name": "",
        "metricsQuery": "",
        "labelValueReplacements": "",
    }
    m = _mapping(ctx, node, path, keys)
    if not m:
        raise ctx.fail(node, path, "empty rule; it needs at least seriesQuery and metricsQuery")
    if "seriesQuery" not in m:
        raise ctx.fail(
            node,
            f"{path}.seriesQuery",
            "missing; add the series selector to discover, e.g. 'http_requests_total{namespace!=\"\"}'",
        )
    series_query = _string(ctx, m["seriesQuery"][1], f"{path}.seriesQuery", required=True, allow_empty=False)

    filters: list[SeriesFilter] = []
    for i, fnode in enumerate(
        _sequence(ctx, m.get("seriesFilters", (None, None))[1], f"{path}.seriesFilters")
    ):
        fpath = f"{path}.seriesFilters[{i}]"
        fm = _mapping(ctx, fnode, fpath, {"is": "", "isNot": ""})
        if ("is" in fm) == ("isNot" in fm):
            raise ctx.fail(fnode, fpath, "needs exactly one of 'is' or 'isNot'")
        key = "is" if "is" in fm else "isNot"
        filters.append(SeriesFilter(_regex(ctx, fm[key][1], f"{fpath}.{key}"), key == "is"))

    matches_text, as_text = "", ""
    name_node = m.get("name", (None, None))[1]
    nm = _mapping(ctx, name_node, f"{path}.name", {"matches": "", "as": ""}) if name_node is not None else {}
    if "matches" in nm and _string(ctx, nm["matches"][1], f"{path}.name.matches"):
        matches_text = nm["matches"][1].value
        pattern = _regex(ctx, nm["matches"][1], f"{path}.name.matches")
    else:
        pattern = compile_go_regex(".*")
    if "as" in nm:
        as_text = _string(ctx, nm["as"][1], f"{path}.name.as")
    if as_text:
        problem = check_as_template(pattern, as_text)
        if problem:
            raise ctx.fail(nm["as"][1], f"{path}.name.as", f"{problem}")
        name_as = as_text
    else:
        default = default_as(pattern)
        if default is None:
            raise ctx.fail(
                nm["matches"][1],
                f"{path}.name.as",
                f"missing; name.matches {matches_text!r} has {pattern.groups} capture groups, "
                'so say which to use, e.g. as: "${1}"',
            )
        name_as = default
    # As upstream, ``matches`` also acts as an implicit ``is`` filter (see MetricNamer.keeps).
    namer = MetricNamer(pattern, name_as, tuple(filters))

    resources = _resources(
        ctx, m.get("resources", (None, None))[1], f"{path}.resources", external=kind == "externalRules"
    )
    # ``namespaced`` only means something for externalRules; upstream ignores it on rules, so do we.
    if kind == "rules" and resources.template is None and not resources.overrides:
        raise ctx.fail(
            node,
            f"{path}.resources",
            'missing; map labels to Kubernetes resources, e.g. resources: {template: "<<.Resource>>"} '
            "or overrides: {namespace: {resource: namespace}, pod: {resource: pod}}",
        )

    if "metricsQuery" not in m or not _string(ctx, m["metricsQuery"][1], f"{path}.metricsQuery"):
        where = m["metricsQuery"][1] if "metricsQuery" in m else node
        raise ctx.fail(
            where,
            f"{path}.metricsQuery",
            f"missing; add e.g. metricsQuery: '{EXAMPLE_QUERY}' (upstream accepts a rule without "
            "one but every query for it fails)",
        )
    query = _template(ctx, m["metricsQuery"][1], f"{path}.metricsQuery", QUERY_FIELDS)

    repl: list[LabelValueReplacement] = []
    for i, rnode in enumerate(
        _sequence(ctx, m.get("labelValueReplacements", (None, None))[1], f"{path}.labelValueReplacements")
    ):
        rp = f"{path}.labelValueReplacements[{i}]"
        rm = _mapping(ctx, rnode, rp, {"find": "", "replace": ""})
        find = _string(ctx, rm.get("find", (None, None))[1], f"{rp}.find", required=True, allow_empty=False)
        repl.append(
            LabelValueReplacement(find, _string(ctx, rm.get("replace", (None, None))[1], f"{rp}.replace"))
        )

    return DiscoveryRule(
        kind=kind,
        index=index,
        series_query=series_query,
        namer=namer,
        resources=resources,
        metrics_query=query,
        name_matches=matches_text,
        name_as=name_as,
        label_value_replacements=tuple(repl),
        location=ctx.loc(node, path),
    )


_DURATION_RE = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_prom_duration(text: str) -> float | None:
    """Prometheus duration (``1h30m``, ``2m``, ``500ms``) in seconds, or None if not one."""
    text = text.strip()
    if not text or not re.fullmatch(r"(?:\d+(?:ms|s|m|h|d|w|y))+", text):
        return None
    return float(sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_RE.findall(text)))


def _resource_rules(ctx: _Ctx, node: yaml.Node) -> ResourceRules:
    path = "resourceRules"
    m = _mapping(ctx, node, path, {"cpu": "", "memory": "", "window": ""})
    rules: dict[str, ResourceRule] = {}
    for which in ("cpu", "memory"):
        if which not in m:
            raise ctx.fail(node, f"{path}.{which}", "missing; resourceRules needs both cpu and memory")
    for which in ("cpu", "memory"):
        sub = f"{path}.{which}"
        rm = _mapping(
            ctx,
            m[which][1],
            sub,
            {"containerQuery": "", "nodeQuery": "", "resources": "", "containerLabel": ""},
        )
        for req in ("containerQuery", "nodeQuery"):
            if req not in rm:
                raise ctx.fail(m[which][1], f"{sub}.{req}", "missing; this field is required")
        resources = _resources(ctx, rm.get("resources", (None, None))[1], f"{sub}.resources", external=False)
        if resources.template is None and not resources.overrides:
            raise ctx.fail(
                m[which][1],
                f"{sub}.resources",
                "missing; map at least the node, namespace and pod labels to resources",
            )
        label = _string(
            ctx,
            rm.get("containerLabel", (None, None))[1],
            f"{sub}.containerLabel",
            required=True,
            allow_empty=False,
        )
        rules[which] = ResourceRule(
            _template(ctx, rm["containerQuery"][1], f"{sub}.containerQuery", RESOURCE_QUERY_FIELDS),
            _template(ctx, rm["nodeQuery"][1], f"{sub}.nodeQuery", RESOURCE_QUERY_FIELDS),
            resources,
            label,
        )
    window = 60.0
    if "window" in m:
        text = _string(ctx, m["window"][1], f"{path}.window", allow_empty=False)
        parsed = parse_prom_duration(text)
        if parsed is None or parsed <= 0:
            raise ctx.fail(
                m["window"][1],
                f"{path}.window",
                f"invalid duration {text!r}; use a Prometheus duration such as 1m or 30s",
            )
        window = parsed
    return ResourceRules(rules["cpu"], rules["memory"], window)


def parse_config(text: str, *, source: str = "<config>") -> AdapterConfig:
    """Parse and validate config text; raises :class:`ConfigError` naming ``source:line``."""
    ctx = _Ctx(source, text)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(
            f"{source}:{line}: invalid YAML: {err.problem or err}; fix the syntax "
            "(check indentation and quoting)"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {err}") from None
    if root is None:
        raise ConfigError(
            f"{source}: the config is empty; add at least one entry under 'rules' or 'externalRules'"
        )
    top = _mapping(ctx, root, "", {"rules": "", "externalRules": "", "resourceRules": ""})
    rules = tuple(
        _rule(ctx, n, "rules", i)
        for i, n in enumerate(_sequence(ctx, top.get("rules", (None, None))[1], "rules"))
    )
    external = tuple(
        _rule(ctx, n, "externalRules", i)
        for i, n in enumerate(_sequence(ctx, top.get("externalRules", (None, None))[1], "externalRules"))
    )
    rr_node = top.get("resourceRules", (None, None))[1]
    resource_rules = None
    if rr_node is not None and not (isinstance(rr_node, yaml.ScalarNode) and rr_node.tag.endswith(":null")):
        resource_rules = _resource_rules(ctx, rr_node)
    if not rules and not external and resource_rules is None:
        raise ConfigError(
            f"{source}:1: the config has no rules; add entries under 'rules', 'externalRules' "
            "or 'resourceRules'"
        )
    digest = hashlib.sha256(text.encode()).hexdigest()
    return AdapterConfig(rules, external, resource_rules, source, digest)


def load_config(path: Path | str) -> AdapterConfig:
    """Read and validate a config file (the adapter's ``--config``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: config file not found; pass the path of the adapter rules file (--config)"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: cannot read the config file: {err}") from None
    return parse_config(text, source=str(p))
