"""Series labels <-> Kubernetes resources (a rule's ``resources`` block), through the ResourceMapper.

A label names a resource either by an ``overrides`` entry or by matching ``resources.template``
(``<<.Resource>>`` -> the label ``pod`` means pods). Every candidate goes through the cluster's
ResourceMapper, so resources the cluster does not serve are skipped (and reported, so lint and
explain can say why a metric did not show up), and the group is filled in from discovery.

The reverse direction (which label holds a resource's object names) renders the template with
the *singular* resource name and the group with ``.``/``-`` replaced by ``_``, as upstream does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from adapter.provider.base import GroupResource, ResourceInfo, ResourceMapper
from adapter.rules.config import ResourceMapping
from adapter.rules.templates import Action, Field, Template, Text

log = logging.getLogger(__name__)

NAMESPACES = GroupResource("", "namespaces")


def singular(info: ResourceInfo) -> str:
    """The singular resource name: Kubernetes' convention is the lower-cased kind."""
    return info.kind.lower()


def sanitize_group(group: str) -> str:
    return group.replace(".", "_").replace("-", "_")


def template_regex(template: Template, *, greedy_group: bool = False) -> re.Pattern[str] | None:
    """Turn ``kube_<<.Group>>_<<.Resource>>`` into ``^kube_(?P<group>.+?)_(?P<resource>.+?)$``.

    Only text and the two fields are meaningful in a resource template; anything fancier
    (range/if/functions) cannot be inverted, so such a template only works in one direction.
    Group names contain ``_`` after sanitising, so a label splits ambiguously; callers try the
    lazy and the greedy group variants and keep the split the cluster knows.
    """
    parts: list[str] = ["^"]
    seen: set[str] = set()
    for node in template.nodes:
        if isinstance(node, Text):
            parts.append(re.escape(node.text))
        elif (
            isinstance(node, Action)
            and isinstance(node.expr, Field)
            and node.expr.root is None
            and node.expr.path in (("Group",), ("Resource",))
        ):
            name = node.expr.path[0].lower()
            quant = "+" if greedy_group and name == "group" else "+?"
            parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.{quant})")
            seen.add(name)
        else:
            return None
    parts.append("$")
    return re.compile("".join(parts))


@dataclass(frozen=True)
class LabelResource:
    """A series label that names objects of ``resource``."""

    label: str
    resource: ResourceInfo


@dataclass
class SeriesResources:
    resources: list[LabelResource] = field(default_factory=list)
    namespaced: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (label, why)


class ResourceConverter:
    """One rule's ``resources`` block, resolved against the cluster's resources."""

    def __init__(self, mapping: ResourceMapping, mapper: ResourceMapper) -> None:
        self.mapping = mapping
        self.mapper = mapper
        self._regexes = (
            [
                r
                for r in (
                    template_regex(mapping.template),
                    template_regex(mapping.template, greedy_group=True),
                )
                if r is not None
            ]
            if mapping.template
            else []
        )
        self.override_errors: list[tuple[str, str]] = []
        self._label_to_res: dict[str, ResourceInfo] = {}
        for label, ref in mapping.overrides.items():
            info = mapper.resource_for(ref.resource, ref.group or None)
            if info is None:
                gr = f"{ref.resource}.{ref.group}" if ref.group else ref.resource
                self.override_errors.append((label, f"the cluster has no resource {gr!r}"))
                continue
            self._label_to_res[label] = info
        self._res_to_label = {info.group_resource: label for label, info in self._label_to_res.items()}

    def resource_for_label(self, label: str) -> tuple[ResourceInfo | None, str]:
        """The resource a label names (or None and the reason it does not name one)."""
        if label in self._label_to_res:
            return self._label_to_res[label], ""
        if label in self.mapping.overrides:
            return None, dict(self.override_errors).get(label, "override not resolvable")
        if not self._regexes:
            return None, "no override and no template"
        why = "does not match resources.template"
        for regex in self._regexes:
            m = regex.match(label)
            if m is None:
                continue
            resource = m.group("resource")
            group = m.groupdict().get("group")
            info = self.mapper.resource_for(resource, group if group else None)
            if info is None and group:
                # The template sanitises dots to underscores; try the group with dots restored.
                info = self.mapper.resource_for(resource, group.replace("_", "."))
            if info is not None:
                return info, ""
            why = f"the cluster has no resource {resource!r}" + (f" in group {group!r}" if group else "")
        return None, why

    def resources_for_series(self, labels: Iterable[str]) -> SeriesResources:
        out = SeriesResources()
        for label in sorted(labels):
            if label == "__name__":
                continue
            info, why = self.resource_for_label(label)
            if info is None:
                if label in self.mapping.overrides or why.startswith("the cluster"):
                    out.skipped.append((label, why))
                continue
            out.resources.append(LabelResource(label, info))
            if info.group_resource == NAMESPACES:
                out.namespaced = True
        return out

    def label_for_resource(self, gr: GroupResource) -> str | None:
        """The label holding object names of ``gr`` (None when the rule cannot name it)."""
        if gr in self._res_to_label:
            return self._res_to_label[gr]
        if self.mapping.template is None:
            return None
        info = self.mapper.resource_for(gr.resource, gr.group)
        singular_name = singular(info) if info else gr.resource.rstrip("s")
        return self.mapping.template.render({"Group": sanitize_group(gr.group), "Resource": singular_name})

    def namespace_label(self) -> str:
        """The namespace label; falls back to ``namespace`` for rules that do not map it."""
        return self.label_for_resource(NAMESPACES) or "namespace"
