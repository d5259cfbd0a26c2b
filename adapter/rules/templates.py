"""A small Go ``text/template`` subset with ``<< >>`` delimiters, for metricsQuery and resources.template.

prometheus-adapter compiles these strings with Go's text/template, so existing configs use Go syntax.
We implement only what those configs need, but parse everything up front: an unknown field, an
unknown function or an unbalanced ``<<range>>`` fails when the config is loaded (with the offset
of the bad action), never at request time.

Supported: text; ``<<.Field>>``; ``<<$>>``/``<<$.Field>>``; variables from ``<<range $i, $v := X>>``;
``<<range X>>...<<else>>...<<end>>``; ``<<if X>>...<<else>>...<<end>>``; the functions
``index``, ``len``, ``print``, ``eq``, ``ne``, ``not``, ``and``, ``or`` (Go built-ins); string
literals; decimal number literals (``42``, ``-7``, ``1.5``, ``.5``, ``1e3``: an int unless the text
has ``.``, ``e`` or ``E``, then a float64, as Go decides); parenthesised sub-expressions;
``<<- `` / `` ->>`` whitespace trimming and ``<</* comments */>>``. Values print the way Go prints
them (a ``[]string`` as ``[a b]``, a float64 with ``%v``: ``1.5``, ``1000``, ``1e+06``). Number
syntax Go accepts but this subset does not (hex, octal, binary, ``_`` separators, imaginary,
character constants) and numbers Go rejects or overflows fail at load, naming the literal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

LEFT, RIGHT = "<<", ">>"
FUNCTIONS = frozenset({"index", "len", "print", "eq", "ne", "not", "and", "or"})


class TemplateError(ValueError):
    """A template that cannot be parsed or rendered; ``offset`` points into the source."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# --- AST ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """``.A.B`` (root=None: relative to dot) or ``$x.A`` (root = variable name, "$" = the data)."""

    root: str | None
    path: tuple[str, ...]


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Any, ...]


@dataclass
class Text:
    text: str


@dataclass
class Action:
    expr: Any
    offset: int


@dataclass
class Block:
    """``range`` or ``if``."""

    kind: str
    expr: Any
    variables: tuple[str, ...]
    body: list[Any] = field(default_factory=list)
    else_body: list[Any] = field(default_factory=list)
    offset: int = 0


# --- lexing the inside of one action -------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<decl>:=)
    | (?P<punct>[(),|=])
    | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)

_GO_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}


def _unquote(lit: str, offset: int) -> str:
    body = lit[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt in _GO_ESCAPES:
                out.append(_GO_ESCAPES[nxt])
                i += 2
                continue
            if nxt in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[nxt]
                digits = body[i + 2 : i + 2 + width]
                if len(digits) != width or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                    raise TemplateError(f"bad escape in string literal {lit}", offset)
                out.append(chr(int(digits, 16)))
                i += 2 + width
                continue
            raise TemplateError(f"unknown escape \\{nxt} in string literal {lit}", offset)
        out.append(ch)
        i += 1
    return "".join(out)


_NUMBER_WORD_RE = re.compile(r"[+-]?[\w.]+(?:(?<=[eEpP])[+-][\w.]*)*")
_INT64 = (-(2**63), 2**63 - 1)


def _number_error(literal: str, why: str, offset: int) -> TemplateError:
    return TemplateError(
        f"number literal {literal} {why}; supported: decimal integers (42, -7) and decimal floats "
        "(1.5, .5, 1e3), which print as Go prints them",
        offset,
    )


def _number(src: str, m: re.Match[str], offset: int) -> int | float:
    """The value of the number token ``m``, or a load-time error for what the subset cannot render."""
    start, end = m.span("num")
    text = m.group("num")
    if end < len(src) and (src[end].isalnum() or src[end] in "_."):
        word = _NUMBER_WORD_RE.match(src, start)
        literal = word.group(0) if word else text
        raise _number_error(literal, "is not supported (hex, octal, binary, '_', imaginary)", offset + start)
    if not any(c in text for c in ".eE"):
        digits = text.lstrip("+-")
        if len(digits) > 1 and digits.startswith("0"):
            raise _number_error(text, "is octal in Go and not supported", offset + start)
        value = int(text)
        if not _INT64[0] <= value <= _INT64[1]:
            raise _number_error(text, "overflows Go's int", offset + start)
        return value
    number = float(text)
    if math.isinf(number):
        raise _number_error(text, "is out of float64 range", offset + start)
    return number


def _lex(src: str, offset: int) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    src = src.rstrip()
    while pos < len(src):
        m = _TOKEN_RE.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"unexpected {src[pos:].strip()[:20]!r} in action", offset + pos)
        kind = m.lastgroup or ""
        if kind == "num":
            _number(src, m, offset)  # refuse here, where the literal's own offset is known
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class _ExprParser:
    def __init__(self, tokens: list[tuple[str, str]], offset: int) -> None:
        self.tokens = tokens
        self.i = 0
        self.offset = offset

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def fail(self, msg: str) -> TemplateError:
        return TemplateError(msg, self.offset)

    def pipeline(self) -> Any:
        expr = self.command()
        tok = self.peek()
        if tok and tok == ("punct", "|"):
            raise self.fail("pipelines ('|') are not supported; call the function directly, e.g. (len .X)")
        return expr

    def command(self) -> Any:
        operands: list[Any] = []
        while (tok := self.peek()) is not None and tok not in (("punct", ")"), ("punct", "|")):
            operands.append(self.operand())
        if not operands:
            raise self.fail("missing value in action")
        head = operands[0]
        if isinstance(head, Call) and not head.args and len(operands) >= 1 and head.func in FUNCTIONS:
            return Call(head.func, tuple(operands[1:]))
        if len(operands) > 1:
            raise self.fail(f"{len(operands)} values in one action; only a function call takes arguments")
        return head

    def operand(self) -> Any:
        kind, text = self.tokens[self.i]
        self.i += 1
        if kind == "str":
            return Literal(_unquote(text, self.offset))
        if kind == "raw":
            return Literal(text[1:-1])
        if kind == "num":
            return Literal(float(text) if any(c in text for c in ".eE") else int(text))
        if kind == "field":
            return Field(None, tuple(p for p in text.split(".") if p))
        if kind == "var":
            name, *path = text.split(".")
            return Field(name, tuple(path))
        if kind == "ident":
            if text in ("true", "false"):
                return Literal(text == "true")
            if text == "nil":
                return Literal(None)
            if text not in FUNCTIONS:
                raise self.fail(f'function "{text}" not defined (supported: {", ".join(sorted(FUNCTIONS))})')
            return Call(text, ())
        if (kind, text) == ("punct", "("):
            inner = self.pipeline()
            if self.peek() != ("punct", ")"):
                raise self.fail("missing ')'")
            self.i += 1
            return inner
        raise self.fail(f"unexpected {text!r} in action")


# --- parsing the whole template ------------------------------------------------------------------

_KEYWORDS = ("range", "if", "else", "end", "with", "define", "template", "block", "break", "continue")


@dataclass
class Template:
    """A parsed template; :meth:`render` evaluates it against a mapping of field values."""

    source: str
    nodes: list[Any]
    fields: frozenset[str]

    def render(self, data: Mapping[str, Any]) -> str:
        out: list[str] = []
        _exec(self.nodes, data, data, {"$": data}, out)
        return "".join(out)

    def references(self, name: str) -> bool:
        """Whether the template mentions top-level field ``name`` anywhere (used by lint)."""
        return name in _collect_fields(self.nodes)


def _collect_fields(nodes: list[Any]) -> set[str]:
    seen: set[str] = set()

    def walk_expr(e: Any) -> None:
        if isinstance(e, Field) and e.path:
            seen.add(e.path[0])
        elif isinstance(e, Call):
            for a in e.args:
                walk_expr(a)

    for n in nodes:
        if isinstance(n, Action):
            walk_expr(n.expr)
        elif isinstance(n, Block):
            walk_expr(n.expr)
            seen |= _collect_fields(n.body) | _collect_fields(n.else_body)
    return seen


def parse_template(source: str, fields: Collection[str]) -> Template:
    """Parse ``source``; ``fields`` are the names allowed after the root dot (e.g. ``Series``)."""
    allowed = frozenset(fields)
    root: list[Any] = []
    stack: list[tuple[Block, list[Any]]] = []  # (block, list we are appending to)
    current = root
    variables: list[set[str]] = [{"$"}]
    in_range = 0
    pos = 0
    trim_next = False
    while pos < len(source):
        start = source.find(LEFT, pos)
        if start < 0:
            text = source[pos:]
            if trim_next:
                text = text.lstrip()
            current.append(Text(text))
            break
        end = source.find(RIGHT, start + len(LEFT))
        if end < 0:
            raise TemplateError(f"unclosed action: '{LEFT}' without a matching '{RIGHT}'", start)
        inner = source[start + len(LEFT) : end]
        text = source[pos:start]
        if trim_next:
            text = text.lstrip()
        trim_next = False
        if inner.startswith("- ") or inner == "-":
            text = text.rstrip()
            inner = inner[1:]
        if inner.endswith(" -"):
            trim_next = True
            inner = inner[:-1]
        if text:
            current.append(Text(text))
        pos = end + len(RIGHT)
        stripped = inner.strip()
        if stripped.startswith("/*"):
            if not stripped.endswith("*/"):
                raise TemplateError("unclosed comment", start)
            continue
        tokens = _lex(inner, start + len(LEFT))
        if not tokens:
            raise TemplateError("empty action", start)
        head_kind, head = tokens[0]
        if head_kind == "ident" and head in _KEYWORDS:
            if head in ("range", "if"):
                rest = tokens[1:]
                names: tuple[str, ...] = ()
                decl = [i for i, t in enumerate(rest) if t[0] == "decl"]
                if decl:
                    if head != "range":
                        raise TemplateError("variable declarations are only supported in range", start)
                    lhs = [t for t in rest[: decl[0]] if t != ("punct", ",")]
                    if not 1 <= len(lhs) <= 2 or any(k != "var" or "." in v for k, v in lhs):
                        raise TemplateError("range wants '$v :=' or '$i, $v :='", start)
                    names = tuple(v for _, v in lhs)
                    rest = rest[decl[0] + 1 :]
                parser = _ExprParser(rest, start)
                expr = parser.pipeline()
                if parser.peek() is not None:
                    raise TemplateError(f"unexpected {parser.peek()[1]!r} in {head}", start)  # type: ignore[index]
                _check_expr(expr, allowed, variables, in_range, start)
                block = Block(head, expr, names, offset=start)
                current.append(block)
                stack.append((block, current))
                current = block.body
                variables.append(set(names))
                if head == "range":
                    in_range += 1
            elif head == "else":
                if not stack or len(tokens) > 1:
                    raise TemplateError(
                        "unexpected <<else>> (only '<<else>>' inside range/if is supported)", start
                    )
                block = stack[-1][0]
                if current is block.else_body:
                    raise TemplateError("second <<else>> in one block", start)
                current = block.else_body
            elif head == "end":
                if not stack:
                    raise TemplateError("unexpected <<end>> without <<range>> or <<if>>", start)
                block, parent = stack.pop()
                variables.pop()
                if block.kind == "range":
                    in_range -= 1
                current = parent
            else:
                raise TemplateError(f"'{head}' is not supported in adapter templates", start)
            continue
        parser = _ExprParser(tokens, start)
        expr = parser.pipeline()
        if parser.peek() is not None:
            raise TemplateError(f"unexpected {parser.peek()[1]!r} in action", start)  # type: ignore[index]
        _check_expr(expr, allowed, variables, in_range, start)
        current.append(Action(expr, start))
    if stack:
        raise TemplateError(f"unclosed <<{stack[-1][0].kind}>>: add <<end>>", stack[-1][0].offset)
    return Template(source, root, allowed)


def _names(allowed: frozenset[str]) -> str:
    return ", ".join("." + f for f in sorted(allowed))


def _check_expr(
    expr: Any, allowed: frozenset[str], variables: list[set[str]], in_range: int, offset: int
) -> None:
    if isinstance(expr, Field):
        if expr.root is None:
            if in_range and expr.path:
                raise TemplateError(
                    f"inside range, '.' is the element, so '.{'.'.join(expr.path)}' has no value; "
                    f"use '$.{'.'.join(expr.path)}'",
                    offset,
                )
            if not in_range and expr.path and expr.path[0] not in allowed:
                raise TemplateError(
                    f"unknown field '.{expr.path[0]}' (available: {_names(allowed)})",
                    offset,
                )
            if not in_range and len(expr.path) > 1:
                raise TemplateError(f"'.{'.'.join(expr.path)}': '.{expr.path[0]}' has no fields", offset)
        else:
            if not any(expr.root in scope for scope in variables):
                raise TemplateError(f"undefined variable {expr.root}", offset)
            if expr.root == "$" and expr.path and expr.path[0] not in allowed:
                raise TemplateError(
                    f"unknown field '$.{expr.path[0]}' (available: {_names(allowed)})",
                    offset,
                )
    elif isinstance(expr, Call):
        arity = {
            "index": (2, None),
            "len": (1, 1),
            "not": (1, 1),
            "eq": (2, None),
            "ne": (2, 2),
            "print": (0, None),
            "and": (1, None),
            "or": (1, None),
        }[expr.func]
        lo, hi = arity
        if len(expr.args) < lo or (hi is not None and len(expr.args) > hi):
            raise TemplateError(f"wrong number of arguments for {expr.func}: {len(expr.args)}", offset)
        for a in expr.args:
            _check_expr(a, allowed, variables, in_range, offset)


# --- evaluation ----------------------------------------------------------------------------------


def go_string(value: Any) -> str:
    """Print ``value`` the way Go's fmt %v does for the types templates see."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{go_string(k)}:{go_string(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def go_float(value: float) -> str:
    """``value`` as Go's ``%v`` prints a float64: strconv's ``'g'`` with the shortest digits.

    The digits are the shortest that round-trip (Python's ``repr`` finds the same ones); the %e form
    is used when the decimal exponent is below -4 or at least 6, with a signed exponent of two or
    more digits; otherwise the %f form without trailing zeros.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    neg = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return neg + "0"
    _, digit_tuple, exp = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + int(exp)  # where the decimal point goes, counted from the first digit
    exponent = point - 1
    if exponent < -4 or exponent >= 6:
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{head}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{neg}{digits}{'0' * (point - len(digits))}"
    return f"{neg}{digits[:point]}.{digits[point:]}"


def _truthy(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, (str, list, tuple, Mapping)):
        return len(value) > 0
    return bool(value)


def _eval(expr: Any, dot: Any, env: dict[str, Any]) -> Any:
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Field):
        value = dot if expr.root is None else env[expr.root]
        for part in expr.path:
            if not isinstance(value, Mapping) or part not in value:
                raise TemplateError(f"can't evaluate field {part}")
            value = value[part]
        return value
    if isinstance(expr, Call):
        args = [_eval(a, dot, env) for a in expr.args]
        f = expr.func
        if f == "index":
            value = args[0]
            for key in args[1:]:
                if isinstance(value, Mapping):
                    value = value.get(key, "")
                elif isinstance(value, (list, tuple)) and isinstance(key, int):
                    if not 0 <= key < len(value):
                        raise TemplateError(f"index out of range: {key}")
                    value = value[key]
                else:
                    raise TemplateError(f"can't index {go_string(value)} with {key!r}")
            return value
        if f == "len":
            return len(args[0])
        if f == "print":
            # Go's fmt.Sprint puts spaces between operands when neither is a string.
            out = ""
            for i, a in enumerate(args):
                if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
                    out += " "
                out += go_string(a)
            return out
        if f == "not":
            return not _truthy(args[0])
        if f == "eq":
            return any(args[0] == a for a in args[1:])
        if f == "ne":
            return args[0] != args[1]
        if f == "and":
            for a in args:
                if not _truthy(a):
                    return a
            return args[-1]
        if f == "or":
            for a in args:
                if _truthy(a):
                    return a
            return args[-1]
    raise TemplateError(f"cannot evaluate {expr!r}")


def _exec(nodes: list[Any], dot: Any, root: Any, env: dict[str, Any], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, Text):
            out.append(node.text)
        elif isinstance(node, Action):
            out.append(go_string(_eval(node.expr, dot, env)))
        elif isinstance(node, Block):
            value = _eval(node.expr, dot, env)
            if node.kind == "if":
                _exec(node.body if _truthy(value) else node.else_body, dot, root, env, out)
                continue
            if isinstance(value, Mapping):
                items = [(k, value[k]) for k in sorted(value)]
            elif isinstance(value, (list, tuple)):
                items = list(enumerate(value))
            elif value is None:
                items = []
            else:
                raise TemplateError(f"range can't iterate over {go_string(value)}")
            if not items:
                _exec(node.else_body, dot, root, env, out)
                continue
            for key, elem in items:
                inner = dict(env)
                if len(node.variables) == 1:
                    inner[node.variables[0]] = elem
                elif len(node.variables) == 2:
                    inner[node.variables[0]] = key
                    inner[node.variables[1]] = elem
                _exec(node.body, elem, root, inner, out)
