"""The pure parts of bench/hostile_bench.py: arguments, per-mode flags, summary and ratios.

No timing is asserted: the benchmark itself prints its numbers.
"""

from __future__ import annotations

import math

import pytest

from adapter.cli import build_parser
from bench.hostile_bench import LIMITS_OFF, Result, mode_flags, parse_args, ratio


def test_defaults_and_modes() -> None:
    args = parse_args([])
    assert (args.hostile, args.duration, args.flood_rate, args.modes) == (2000, 15.0, 50.0, ["on", "off"])
    assert parse_args(["--modes", "off", "--hostile", "10"]).modes == ["off"]


@pytest.mark.parametrize(
    "argv", [["--modes", "sideways"], ["--modes", ""], ["--duration", "0"], ["--hostile", "-1"]]
)
def test_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


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


def test_summary_percentiles_and_ratio() -> None:
    r = Result("on", latencies=[0.001 * i for i in range(1, 101)], hwm_kib=2048, rss_kib=1024)
    s = r.summary()
    assert s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    assert s["peak_rss_mib"] == 2 and s["end_rss_mib"] == 1 and s["new_conn_ok"] == "0/0"
    assert math.isnan(float(Result("off").summary()["p99_ms"]))
    assert ratio(3.0, 1.5) == "2.00x" and ratio(1.0, 0.0) == "n/a" and ratio(math.nan, 1.0) == "n/a"
