"""The results table and the JSON file: pure formatting, so it is unit-tested.

Every ratio is **ours / peer**. Each row says which direction is better for that metric
(``higher`` for throughput, ``lower`` for latency, memory, CPU, errors, start-up time) and the
verdict column spells it out (``ours 3.10x better``). A row with a missing side gets no ratio
and no verdict: never a made-up number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["Row", "format_table", "ratio", "verdict", "write_json"]

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Row:
    metric: str
    ours: float | None
    peer: float | None
    better: Better
    fmt: str = "{:.1f}"


def _finite(x: float | None) -> bool:
    return x is not None and not math.isnan(x) and not math.isinf(x)


def ratio(ours: float | None, peer: float | None) -> float | None:
    """ours / peer, or None when either side is missing or the peer's value is 0."""
    if not (_finite(ours) and _finite(peer)) or peer == 0:
        return None
    assert ours is not None and peer is not None
    return ours / peer


def verdict(ours: float | None, peer: float | None, better: Better, tie: float = 0.05) -> str:
    """``ours 2.00x better`` / ``peer 1.50x better`` / ``about equal`` (within ``tie``) / ``""``."""
    if not (_finite(ours) and _finite(peer)):
        return ""
    assert ours is not None and peer is not None
    if ours == peer:
        return "about equal"
    if better == "lower":
        good, bad = (ours, peer) if ours < peer else (peer, ours)
        winner = "ours" if ours < peer else "peer"
        if good == 0:
            return f"{winner} better (0 vs {bad:g})"
        factor = bad / good
    else:
        good, bad = (ours, peer) if ours > peer else (peer, ours)
        winner = "ours" if ours > peer else "peer"
        if bad == 0:
            return f"{winner} better ({good:g} vs 0)"
        factor = good / bad
    if factor - 1 < tie:
        return "about equal"
    return f"{winner} {factor:.2f}x better"


def _cell(value: float | None, fmt: str) -> str:
    if not _finite(value):
        return "n/a"
    return fmt.format(value)


def format_table(
    rows: Sequence[Row],
    *,
    ours_label: str = "ours",
    peer_label: str = "peer",
    title: str = "",
) -> str:
    """A fixed-width text table: metric | ours | peer | ours/peer | better | verdict."""
    header = ["metric", ours_label, peer_label, "ours/peer", "better", "verdict"]
    body = []
    for r in rows:
        q = ratio(r.ours, r.peer)
        body.append(
            [
                r.metric,
                _cell(r.ours, r.fmt),
                _cell(r.peer, r.fmt),
                "n/a" if q is None else f"{q:.3f}",
                f"{r.better} is better",
                verdict(r.ours, r.peer, r.better),
            ]
        )
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    right = {1, 2, 3}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    out = [title] if title else []
    out += [line(header), "  ".join("-" * w for w in widths)]
    out += [line(b) for b in body]
    return "\n".join(out)


def _clean(obj: Any) -> Any:
    """NaN/inf become null: JSON has no NaN, and a reader must not mistake it for a number."""
    if isinstance(obj, float):
        return obj if _finite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_clean(doc), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
