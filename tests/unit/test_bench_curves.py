"""The request-cost curve of bench.adapter_bench: text, JSON and PNG from pooled load results."""

from __future__ import annotations

from pathlib import Path

from bench.curves import curve_points, curves_json, format_curve, plot_curves
from bench.stats import LoadResult


def result(target: str, pods: int, version: str, rps: float, p99: float, cpu_s: float | None) -> LoadResult:
    ok = int(rps * 10)
    r = LoadResult(target, "https://x", 16, 10.0, ok, ok, 0, rps, p99 / 2, p99, p99 / 2, p99, cpu_s=cpu_s)
    r.pods, r.version = pods, version
    return r


RESULTS = [
    result("ours", 100, "v1beta1", 200.0, 50.0, 4.0),
    result("peer", 100, "v1beta1", 40.0, 500.0, 6.0),
    result("ours", 1000, "v1beta1", 100.0, 100.0, 10.0),
    result("peer", 1000, "v1beta1", 10.0, 2000.0, 20.0),
    result("ours", 10000, "v1beta1", 10.0, 1000.0, 8.0),  # the peer never answered at 10,000
]


def test_points_follow_the_sizes_and_mark_the_missing_ones() -> None:
    ours = curve_points(RESULTS, "ours", "v1beta1", [100, 1000, 10000])
    peer = curve_points(RESULTS, "peer", "v1beta1", [100, 1000, 10000])
    assert ours["rps"] == [200.0, 100.0, 10.0]
    assert ours["cpu_ms_per_request"] == [2.0, 10.0, 80.0]  # 1000 * cpu_s / ok (ok = 10 * rps)
    assert peer["p99_ms"] == [500.0, 2000.0, None]


def test_table_has_one_line_per_size_with_ratios() -> None:
    text = format_curve(RESULTS, [100, 1000, 10000], "v1beta1", title="t")
    lines = text.splitlines()
    assert lines[0] == "t"
    assert len(lines) == 5  # title, header, three sizes
    row_1000 = lines[3].split()
    assert row_1000[0] == "1000"
    assert row_1000[1:4] == ["100.0", "10.0", "10.00x"]  # req/s ours, peer, ours/peer
    assert row_1000[7:10] == ["100", "2000", "0.05x"]  # p99 ours, peer, ours/peer
    assert lines[4].split()[1:4] == ["10.0", "n/a", "n/a"]  # no made-up ratio without the peer


def test_json_and_png(tmp_path: Path) -> None:
    doc = curves_json(RESULTS, [100, 1000, 10000], ["ours", "peer"])
    assert doc["v1beta1"]["peer"]["rps"] == [40.0, 10.0, None]
    png = plot_curves(RESULTS, [100, 1000, 10000], [("ours", "ours"), ("peer", "peer")], tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_durations_give_each_pod_count_its_window() -> None:
    import pytest

    from bench.adapter_bench import duration_for, parse_args

    args = parse_args(["--pods", "100,1000,10000", "--durations", "8,8,30"])
    assert [duration_for(args, n) for n in args.pods] == [8.0, 8.0, 30.0]
    args = parse_args(["--pods", "100,1000", "--duration", "5"])
    assert [duration_for(args, n) for n in args.pods] == [5.0, 5.0]
    assert parse_args([]).pods == [100, 1000, 10000]
    with pytest.raises(SystemExit):
        parse_args(["--pods", "100,1000", "--durations", "8"])
    with pytest.raises(SystemExit):
        parse_args(["--durations", "8,0,3"])


def test_hpas_plot_draws_each_adapter_against_n_and_leaves_out_failed_runs(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from bench.hpas import PLOT_PANELS, SyncResult, plot_hpas

    def res(target: str, n: int, p99: float, failed: str | None = None) -> SyncResult:
        return SyncResult(target, n, 60.0, syncs=4 * n, ok=4 * n, p99_ms=p99, adapter_cpu_s=0.02 * n,
                          apiserver_cpu_s=None, failed=failed)  # fmt: skip

    results = [res("ours", 10, 38.0), res("ours", 100, 179.0), res("peer", 10, 63.0),
               res("peer", 100, 18_100.0), res("peer", 1000, 1.0, failed="APIService race")]  # fmt: skip
    drawn: list[object] = []
    real = plt.Figure.savefig

    def spy(fig: plt.Figure, *args: object, **kw: object) -> None:
        drawn.append(fig)
        real(fig, *args, **kw)  # type: ignore[arg-type]

    plt.Figure.savefig = spy  # type: ignore[method-assign]
    try:
        path = plot_hpas(results, tmp_path / "hpas.png", title="t")
    finally:
        plt.Figure.savefig = real  # type: ignore[method-assign]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    [fig] = drawn
    p99, cpu, apiserver, _errors = fig.axes  # type: ignore[attr-defined]
    assert len(fig.axes) == len(PLOT_PANELS)  # type: ignore[attr-defined]
    lines = {line.get_label(): line for line in p99.lines}
    assert list(lines["ours"].get_xdata()) == [10, 100] and list(lines["ours"].get_ydata()) == [38.0, 179.0]
    assert list(lines["peer"].get_xdata()) == [10, 100], "the failed N=1000 run is not drawn"
    assert [list(line.get_ydata()) for line in cpu.lines] == [[5.0, 5.0], [5.0, 5.0]]  # 0.02*n s / 4n syncs
    assert len(apiserver.lines) == 0, "an unmeasured value is left out, not drawn as zero"


def test_hpas_p99_by_minute_places_a_stall_in_time() -> None:
    from bench.hpas import p99_by_minute

    # a 20 s stall in minute 0, fast syncs in minutes 1 and 2 (none in 3): three values, the first high
    lat = [(5.0, 20.0)] * 5 + [(float(t), 0.01) for t in range(0, 180)]
    out = p99_by_minute(lat)
    assert len(out) == 3
    assert out[0] > 10_000 and round(out[1], 6) == round(out[2], 6) == 10.0
    assert p99_by_minute([]) == []
