"""Kubernetes label selectors: parsing the ``labelSelector`` query syntax and matching labels.

The grammar follows the documented Kubernetes selector syntax: comma-separated requirements of the
form ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k`` (exists), ``!k`` (does
not exist), ``k>N`` and ``k<N``. Parsing errors raise :class:`adapter.errors.BadRequest` naming the
offending part, so the API answers 400 instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from adapter.errors import BadRequest

OPERATORS = ("=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt")

# Label keys: optional DNS-subdomain prefix + "/" + name (63 chars, alnum at both ends).
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY_RE = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^({_NAME})?$")


@dataclass(frozen=True)
class Requirement:
    """One selector requirement. ``op`` is one of :data:`OPERATORS` (``==`` is folded to ``=``)."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("gt", "lt"):
            if not present:
                return False
            try:
                have = int(value)  # type: ignore[arg-type]
            except ValueError:
                return False
            want = int(self.values[0])
            return have > want if self.op == "gt" else have < want
        raise AssertionError(self.op)

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return f"!{self.key}"
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        if self.op == "gt":
            return f"{self.key}>{self.values[0]}"
        if self.op == "lt":
            return f"{self.key}<{self.values[0]}"
        return f"{self.key}{self.op}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    """A parsed selector; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = LabelSelector()


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise BadRequest(f"invalid label selector {text!r}: unbalanced ')'")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise BadRequest(f"invalid label selector {text!r}: unbalanced '('")
    parts.append("".join(current))
    return parts


def _check_key(key: str, whole: str) -> str:
    if not _KEY_RE.match(key):
        raise BadRequest(
            f"invalid label selector {whole!r}: {key!r} is not a valid label key "
            "(want [prefix/]name, name up to 63 alphanumerics, '-', '_' or '.')"
        )
    return key


def _check_value(value: str, whole: str) -> str:
    if not _VALUE_RE.match(value):
        raise BadRequest(
            f"invalid label selector {whole!r}: {value!r} is not a valid label value "
            "(up to 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric)"
        )
    return value


_SET_RE = re.compile(r"^\s*(?P<key>[^\s!=<>()]+)\s+(?P<op>in|notin)\s*\((?P<vals>[^()]*)\)\s*$")
_CMP_RE = re.compile(r"^\s*(?P<key>[^\s!=<>()]+)\s*(?P<op>==|!=|=|>|<)\s*(?P<val>[^\s!=<>()]*)\s*$")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a Kubernetes label selector string; ``None`` or blank means "everything"."""
    if text is None or not text.strip():
        return EVERYTHING
    reqs: list[Requirement] = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            raise BadRequest(f"invalid label selector {text!r}: empty requirement (stray comma?)")
        if m := _SET_RE.match(part):
            vals = tuple(v.strip() for v in m["vals"].split(",")) if m["vals"].strip() else ()
            if not vals:
                raise BadRequest(f"invalid label selector {text!r}: '{m['op']}' needs at least one value")
            for v in vals:
                _check_value(v, text)
            reqs.append(Requirement(_check_key(m["key"], text), m["op"], tuple(sorted(set(vals)))))
        elif m := _CMP_RE.match(part):
            op = {"==": "=", ">": "gt", "<": "lt"}.get(m["op"], m["op"])
            val = m["val"]
            if op in ("gt", "lt"):
                if not re.fullmatch(r"-?\d+", val):
                    raise BadRequest(
                        f"invalid label selector {text!r}: {m['op']!r} needs an integer, got {val!r}"
                    )
            else:
                _check_value(val, text)
            reqs.append(Requirement(_check_key(m["key"], text), op, (val,)))
        elif part.startswith("!"):
            reqs.append(Requirement(_check_key(part[1:].strip(), text), "!"))
        elif re.fullmatch(r"[^\s!=<>(),]+", part):
            reqs.append(Requirement(_check_key(part, text), "exists"))
        else:
            raise BadRequest(
                f"invalid label selector {text!r}: cannot parse {part!r} "
                "(use k=v, k!=v, k in (a,b), k notin (a,b), k, !k)"
            )
    return LabelSelector(tuple(sorted(reqs, key=lambda r: (r.key, r.op, r.values))))


# --- field selectors (metrics.k8s.io's fieldSelector) ------------------------------------------

#: The object fields a metrics.k8s.io fieldSelector may name (as metrics-server accepts).
FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class FieldRequirement:
    """``field=value`` or ``field!=value`` (``==`` folded to ``=``)."""

    field: str
    op: str
    value: str

    def matches(self, namespace: str | None, name: str) -> bool:
        have = name if self.field == "metadata.name" else (namespace or "")
        return (have == self.value) == (self.op == "=")


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector over an object's name and namespace; empty matches everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, namespace: str | None, name: str) -> bool:
        return all(r.matches(namespace, name) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(f"{r.field}{r.op}{r.value}" for r in self.requirements)


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` not preceded by a backslash (field selector values escape ``\\ , =``)."""
    parts, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _unescape_field_value(value: str, whole: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise BadRequest(f"invalid field selector {whole!r}: invalid escape in {value!r}")
            out.append(value[i + 1])
            i += 2
            continue
        if ch in ",=":
            raise BadRequest(f"invalid field selector {whole!r}: unescaped {ch!r} in {value!r}")
        out.append(ch)
        i += 1
    return "".join(out)


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse ``metadata.name=x,metadata.namespace!=y`` (``=``, ``==``, ``!=``); blank is everything.

    Only :data:`FIELDS` may be named: another field is a 400 that lists the supported ones, as a
    Kubernetes server refuses a field label it does not index.
    """
    if text is None or not text.strip():
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for raw in _split_unescaped(text, ","):
        part = raw.strip()
        if not part:
            raise BadRequest(f"invalid field selector {text!r}: empty requirement (stray comma?)")
        m = re.match(r"^([^=!\s]+)\s*(!=|==|=)\s*(.*)$", part)
        if m is None:
            raise BadRequest(
                f"invalid field selector {text!r}: cannot parse {part!r} (use field=value or field!=value)"
            )
        key, op, value = m.group(1), m.group(2), m.group(3).strip()
        if key not in FIELDS:
            raise BadRequest(
                f'invalid field selector {text!r}: field label "{key}" is not supported; '
                f"use {' or '.join(FIELDS)}"
            )
        reqs.append(FieldRequirement(key, "!=" if op == "!=" else "=", _unescape_field_value(value, text)))
    return FieldSelector(tuple(reqs))
