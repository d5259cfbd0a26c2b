"""Streaming parse of a ``/api/v1/series`` answer, reduced as it arrives to what discovery needs.

A series answer is ``{"status": "success", "data": [{label: value, ...}, ...], ...}`` and grows
with every series Prometheus holds (a million series is over 100 MB of JSON). Discovery only
needs, per series name, the distinct *sets of label names* (values are dropped, as upstream), so
:class:`SeriesStreamParser` parses the ``data`` array element by element from the byte chunks the
HTTP client hands over and passes each label set on at once; :class:`SeriesShapes` keeps only
name -> distinct label-name sets. Neither the body nor the list of series is ever held: memory
is bounded by the distinct shapes plus one chunk (and at most ``max_pending_chars`` of one
unfinished element).

The parser is a small state machine over the top-level object; runs of whole elements are
decoded in one C-level ``json.loads`` call (the cut is tried at the last ``}`` of the buffer: it
parses only if it falls between elements, otherwise that stretch is decoded element by element),
so the cost per series stays close to a plain ``json.loads`` of the whole body.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_PENDING_CHARS", "SeriesShapes", "SeriesStreamError", "SeriesStreamParser"]

#: Largest unfinished element (characters) the parser waits on before calling the answer broken.
MAX_PENDING_CHARS = 1 << 20

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()

# States of the top-level walk.
_START, _KEY_FIRST, _KEY, _COLON, _VALUE, _NEXT_KEY = range(6)
_ELEM_FIRST, _ELEM, _NEXT_ELEM, _DONE = range(6, 10)


class SeriesStreamError(ValueError):
    """The series answer is not the JSON Prometheus sends (truncated, malformed, wrong shape)."""


class SeriesShapes:
    """Series name -> distinct label-name sets (``__name__`` and all values dropped).

    Equal label-name sets are stored once across names (a broad query over thousands of names
    usually has a handful of distinct sets).
    """

    __slots__ = ("_sets", "series", "shapes")

    def __init__(self) -> None:
        self.shapes: dict[str, set[frozenset[str]]] = {}
        #: Series seen (for logs); nothing else of them is kept.
        self.series = 0
        self._sets: dict[frozenset[str], frozenset[str]] = {}

    def add(self, labels: dict[str, Any]) -> None:
        self.series += 1
        name = labels.get("__name__")
        if not name:
            return
        key = frozenset(labels)
        if "__name__" in key:
            key = key - {"__name__"}
        shared = self._sets.setdefault(key, key)
        found = self.shapes.get(name)
        if found is None:
            self.shapes[name] = {shared}
        else:
            found.add(shared)


class SeriesStreamParser:
    """Feed it the body's byte chunks in order, then :meth:`close`; ``on_series`` gets each
    element of ``data`` (a label dict) as soon as it is complete. Raises :class:`SeriesStreamError`
    on anything that is not a well-formed series answer, including one cut short."""

    def __init__(
        self, on_series: Callable[[dict[str, Any]], None], *, max_pending_chars: int = MAX_PENDING_CHARS
    ) -> None:
        self._on_series = on_series
        self._max_pending = max_pending_chars
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._buf = ""
        self._pos = 0
        #: Characters dropped from the front of the buffer (for error offsets).
        self._base = 0
        self._state = _START
        self._key = ""
        #: Buffer index up to which whole-run decoding is known to fail (decode one by one).
        self._single_until = -1
        #: Top-level members other than ``data`` (status, warnings, ...): small values.
        self.fields: dict[str, Any] = {}
        self.elements = 0
        self.saw_data = False

    # --- input ----------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        try:
            text = self._utf8.decode(chunk)
        except UnicodeDecodeError as err:
            raise SeriesStreamError(
                f"series answer is not UTF-8 near byte {err.start}: {err.reason}"
            ) from None
        if self._pos:
            self._base += self._pos
            self._single_until -= self._pos
            self._buf = self._buf[self._pos :] + text
            self._pos = 0
        else:
            self._buf += text
        self._run(eof=False)

    def close(self) -> None:
        try:
            tail = self._utf8.decode(b"", final=True)
        except UnicodeDecodeError as err:
            raise SeriesStreamError(f"series answer ends inside a UTF-8 sequence: {err.reason}") from None
        self._buf += tail
        self._run(eof=True)
        if self._state != _DONE:
            raise self._truncated("")

    def _truncated(self, detail: str) -> SeriesStreamError:
        where = "inside the data array" if self._state in (_ELEM_FIRST, _ELEM, _NEXT_ELEM) else "early"
        return SeriesStreamError(
            f"series answer is truncated: it ends {where} after {self._base + len(self._buf)} characters "
            f"and {self.elements} series{detail}"
        )

    # --- the walk -------------------------------------------------------------------------------

    def _fail(self, what: str) -> SeriesStreamError:
        return SeriesStreamError(
            f"series answer is not valid JSON at character {self._base + self._pos}: {what}"
        )

    def _decode_one(self, eof: bool, scalar_ok: bool) -> tuple[Any, bool]:
        """(value, True) decoded at ``_pos``, or (None, False) when more input is needed."""
        buf, pos = self._buf, self._pos
        try:
            value, end = _DECODER.raw_decode(buf, pos)
        except json.JSONDecodeError as err:
            # Well before the buffer's end (and not an open string) more input cannot help.
            broken = err.pos + 16 < len(buf) and not err.msg.startswith("Unterminated string")
            if not eof and not broken and len(buf) - pos <= self._max_pending:
                return None, False
            if broken:
                raise self._fail(err.msg) from None
            if eof:
                raise self._truncated(f" ({err.msg})") from None
            raise self._fail(f"{err.msg} (an element over {self._max_pending} characters)") from None
        # A number (or true/false/null) that ends the buffer may continue in the next chunk.
        if scalar_ok and end == len(buf) and not eof and not isinstance(value, (str, dict, list)):
            return None, False
        self._pos = end
        return value, True

    def _run(self, eof: bool) -> None:
        ws = _WS.match
        while True:
            self._pos = ws(self._buf, self._pos).end()
            if self._pos >= len(self._buf):
                return
            c = self._buf[self._pos]
            state = self._state
            if state in (_ELEM, _ELEM_FIRST):
                if c == "]" and state == _ELEM_FIRST:
                    self._pos += 1
                    self._state = _NEXT_KEY
                    continue
                if c != "{":
                    raise self._fail(f"a series must be an object of labels, found {c!r}")
                if not self._elements_run() and not self._element(eof):
                    return
                self._state = _NEXT_ELEM
            elif state == _NEXT_ELEM:
                self._pos += 1
                if c == ",":
                    self._state = _ELEM
                elif c == "]":
                    self._state = _NEXT_KEY
                else:
                    raise self._fail(f"expected ',' or ']' in the data array, found {c!r}")
            elif state == _START:
                if c != "{":
                    raise self._fail(
                        f"expected a JSON object, found {c!r} (is the URL Prometheus, not a login page?)"
                    )
                self._pos += 1
                self._state = _KEY_FIRST
            elif state in (_KEY_FIRST, _KEY):
                if c == "}" and state == _KEY_FIRST:
                    self._pos += 1
                    self._state = _DONE
                    continue
                if c != '"':
                    raise self._fail(f"expected a member name, found {c!r}")
                key, ok = self._decode_one(eof, scalar_ok=False)
                if not ok:
                    return
                self._key = key
                self._state = _COLON
            elif state == _COLON:
                if c != ":":
                    raise self._fail(f"expected ':', found {c!r}")
                self._pos += 1
                self._state = _VALUE
            elif state == _VALUE:
                if self._key == "data" and c == "[":
                    self._pos += 1
                    self.saw_data = True
                    self._state = _ELEM_FIRST
                    continue
                value, ok = self._decode_one(eof, scalar_ok=True)
                if not ok:
                    return
                if self._key == "data" and value is not None:
                    raise self._fail(f"'data' must be a list of series, found {type(value).__name__}")
                self.fields[self._key] = value
                self._state = _NEXT_KEY
            elif state == _NEXT_KEY:
                self._pos += 1
                if c == ",":
                    self._state = _KEY
                elif c == "}":
                    self._state = _DONE
                else:
                    raise self._fail(f"expected ',' or '}}' after a member, found {c!r}")
            else:  # _DONE
                raise self._fail(f"unexpected {c!r} after the end of the answer")

    def _element(self, eof: bool) -> bool:
        value, ok = self._decode_one(eof, scalar_ok=False)
        if not ok:
            return False
        if not isinstance(value, dict):
            raise self._fail(f"a series must be an object of labels, found {type(value).__name__}")
        self.elements += 1
        self._on_series(value)
        return True

    def _elements_run(self) -> bool:
        """Decode every whole element from ``_pos`` to the last ``}`` of the buffer in one call.

        True when it did (``_pos`` then sits after the run); False when the cut is not between
        elements (a ``}`` inside a value, the array's end in the run) or nothing is complete.
        """
        buf, pos = self._buf, self._pos
        if pos <= self._single_until:
            return False
        cut = buf.rfind("}", pos)
        if cut <= pos:
            return False
        try:
            run = json.loads("[" + buf[pos : cut + 1] + "]")
        except ValueError:
            self._single_until = cut
            return False
        on_series = self._on_series
        for value in run:
            if not isinstance(value, dict):
                raise self._fail(f"a series must be an object of labels, found {type(value).__name__}")
            on_series(value)
        self.elements += len(run)
        self._pos = cut + 1
        return True
