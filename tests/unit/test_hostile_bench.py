"""The pure parts of bench/hostile_bench.py: arguments, per-mode flags, summary and ratios.

No timing is asserted: the benchmark itself prints its numbers.
"""

from __future__ import annotations

import math

import pytest

from adapter.cli import build_parser
from bench.hostile_bench import (
    LIMITS_OFF,
    Result,
    attacker_source,
    gate_counts,
    mode_flags,
    parse_args,
    ratio,
)


def test_defaults_and_modes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = parse_args([])
    assert (args.hostile, args.duration, args.flood_rate, args.modes) == (2000, 15.0, 50.0, ["on", "off"])
    assert args.sources == [1] and args.baseline_src is None
    assert parse_args(["--modes", "off", "--hostile", "10"]).modes == ["off"]
    assert parse_args(["--sources", "1,50"]).sources == [1, 50]
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "__main__.py").write_text("")
    args = parse_args(["--modes", "before,on", "--baseline-src", str(tmp_path)])
    assert args.modes == ["before", "on"] and args.baseline_src == tmp_path


@pytest.mark.parametrize(
    "argv",
    [
        ["--modes", "sideways"],
        ["--modes", ""],
        ["--duration", "0"],
        ["--hostile", "-1"],
        ["--sources", "0"],
        ["--sources", "x"],
        ["--sources", ""],
        ["--modes", "before"],  # no --baseline-src
        ["--modes", "before", "--baseline-src", "/nonexistent"],
    ],
)
def test_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_attacker_sources_distinct_loopback_never_the_legit_one() -> None:
    assert {attacker_source(i, 1) for i in range(100)} == {"127.1.0.1"}
    many = [attacker_source(i, 600) for i in range(600)]
    assert len(set(many)) == 600 and attacker_source(600, 600) == many[0]
    assert all(a.startswith("127.1.") and a != "127.0.0.1" for a in many)
    assert all(0 < int(a.rsplit(".", 1)[1]) < 255 for a in many)  # never .0 or .255


def test_gate_counts_from_metrics_text() -> None:
    text = "\n".join(
        [
            "# HELP hpakit_adapter_connections_closed_total x",
            'hpakit_adapter_connections_closed_total{reason="over_limit"} 3.0',
            'hpakit_adapter_connections_closed_total{reason="per_source_limit"} 40.0',
            'hpakit_adapter_connections_closed_total{reason="handshake"} 7.0',  # not a refusal
            'hpakit_adapter_connections_evicted_total{state="handshake"} 5.0',
            'hpakit_adapter_connections_evicted_total{state="idle"} 2.0',
        ]
    )
    assert gate_counts(text) == (43, 7)
    assert gate_counts("") == (0, 0)


def test_off_flags_parse_and_put_every_limit_out_of_reach() -> None:
    args = build_parser().parse_args(["serve", *mode_flags("off")])
    assert args.max_connections == 0
    assert min(args.tls_handshake_timeout, args.request_header_timeout, args.idle_timeout) >= 3600
    assert min(args.max_request_header_bytes, args.max_request_body_bytes) >= 1 << 30
    assert mode_flags("on") == [] and mode_flags("on", "--max-connections 100") == [
        "--max-connections",
        "100",
    ]
    assert mode_flags("off") == LIMITS_OFF and mode_flags("off") is not LIMITS_OFF
    assert mode_flags("before", "--max-connections 100") == []  # the baseline keeps its defaults


def test_summary_percentiles_and_ratio() -> None:
    r = Result("on", latencies=[0.001 * i for i in range(1, 101)], hwm_kib=2048, rss_kib=1024)
    s = r.summary()
    assert s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    assert s["peak_rss_mib"] == 2 and s["end_rss_mib"] == 1 and s["new_conn_ok"] == "0/0"
    r = Result("on", sources=50, new_ok=3, new_total=5, new_latencies=[0.01, 0.02, 0.03])
    assert r.summary()["new_errors"] == 2 and r.summary()["sources"] == 50
    assert r.summary()["new_p99_ms"] == pytest.approx(29.8)
    assert math.isnan(float(Result("off").summary()["p99_ms"]))
    assert ratio(3.0, 1.5) == "2.00x" and ratio(1.0, 0.0) == "n/a" and ratio(math.nan, 1.0) == "n/a"
