"""Request cost against object count: the ``pods/*`` curve of both adapters, as text and as a PNG.

Pure functions over pooled :class:`~bench.stats.LoadResult` s (one per target, N and version), so
the text is unit-tested without a run; the PNG needs matplotlib (the ``[harness]`` extra).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.report import ratio
from bench.stats import LoadResult

__all__ = ["CURVE_METRICS", "curve_points", "curves_json", "format_curve", "plot_curves"]

#: (attribute of LoadResult, column heading, format, better)
CURVE_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("rps", "req/s", "{:.1f}", "higher"),
    ("p50_ms", "p50 ms", "{:.0f}", "lower"),
    ("p99_ms", "p99 ms", "{:.0f}", "lower"),
    ("cpu_ms_per_request", "CPU-ms/req", "{:.2f}", "lower"),
)


def _value(r: LoadResult | None, attr: str) -> float | None:
    if r is None:
        return None
    v = getattr(r, attr)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def curve_points(
    results: Sequence[LoadResult], target: str, version: str, sizes: Sequence[int]
) -> dict[str, list[float | None]]:
    """``{metric: [value at each size]}`` of one target and version (None where not measured)."""
    by_n = {r.pods: r for r in results if r.target == target and r.version == version}
    return {attr: [_value(by_n.get(n), attr) for n in sizes] for attr, *_ in CURVE_METRICS}


def _cell(v: float | None, fmt: str) -> str:
    return "n/a" if v is None else fmt.format(v)


def _ratio_cell(ours: float | None, peer: float | None) -> str:
    q = ratio(ours, peer)
    return "n/a" if q is None else f"{q:.2f}x"


def format_curve(
    results: Sequence[LoadResult],
    sizes: Sequence[int],
    version: str,
    *,
    ours: str = "ours",
    peer: str = "peer",
    title: str = "",
) -> str:
    """One line per pod count: each metric for ours, the peer and ours/peer, side by side."""
    o, p = curve_points(results, ours, version, sizes), curve_points(results, peer, version, sizes)
    header = ["pods"]
    for _, name, _, better in CURVE_METRICS:
        header += [f"{name} ours", f"{name} peer", f"ours/peer ({better})"]
    body = []
    for i, n in enumerate(sizes):
        row = [str(n)]
        for attr, _, fmt, _ in CURVE_METRICS:
            row += [_cell(o[attr][i], fmt), _cell(p[attr][i], fmt), _ratio_cell(o[attr][i], p[attr][i])]
        body.append(row)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [title] if title else []
    lines += ["  ".join(c.rjust(widths[i]) for i, c in enumerate(line)).rstrip() for line in [header, *body]]
    return "\n".join(lines)


def curves_json(
    results: Sequence[LoadResult], sizes: Sequence[int], targets: Sequence[str]
) -> dict[str, Any]:
    """``{version: {target: {metric: [...]}}}`` for the JSON report (and the plot)."""
    out: dict[str, Any] = {}
    for version in dict.fromkeys(r.version for r in results if r.version):
        out[version] = {t: curve_points(results, t, version, sizes) for t in targets}
    return out


def plot_curves(
    results: Sequence[LoadResult],
    sizes: Sequence[int],
    targets: Sequence[tuple[str, str]],
    path: Path,
    *,
    title: str = "",
) -> Path:
    """One panel per metric (log-log), one line per (target, version); written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(4.2 * len(CURVE_METRICS), 3.8))
    versions = list(dict.fromkeys(r.version for r in results if r.version))
    for ax, (attr, name, _, better) in zip(axes, CURVE_METRICS, strict=True):
        for key, label in targets:
            for version in versions:
                ys = curve_points(results, key, version, sizes)[attr]
                pts = [(n, y) for n, y in zip(sizes, ys, strict=True) if y is not None and y > 0]
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", label=f"{label} {version}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("pods matched by pods/*")
        ax.set_title(f"{name} ({better} is better)")
        ax.grid(True, which="both", alpha=0.3)
    return save_panels(fig, axes, path, title=title)


def save_panels(fig: Any, axes: Any, path: Path, *, title: str = "") -> Path:
    """The end of every bench plot: legend on the first panel, title, layout, PNG at ``path``."""
    import matplotlib.pyplot as plt

    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
