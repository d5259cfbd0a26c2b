"""The pure parts of bench/: statistics, exporter text, response checks, the results table.

No timing is asserted anywhere (DESIGN.md §6): the benchmark itself only prints ratios.
"""

from __future__ import annotations

import json
import math
import os
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench import adapter_bench, resource_diff
from bench.adapters import (
    AdapterProcess,
    CommonArgs,
    cpu_seconds,
    memory_kib,
    ours_argv,
    peer_argv,
    rule_config,
)
from bench.exporter import filler_text, kubelet_text, mix_text, pods_text, sample_line
from bench.load import check_body
from bench.report import Row, format_table, ratio, verdict, write_json
from bench.stats import bursts, percentile, pool, summarize

# ----------------------------------------------------------------------------------- statistics


def test_percentile_interpolates_like_numpy_linear() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([4, 1, 3, 2], 0) == 1  # input order does not matter
    assert percentile([4, 1, 3, 2], 100) == 4
    # 1..100: rank (99 * 0.99) = 98.01 -> 99 + 0.01 * (100 - 99)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_nan_and_bad_q_is_refused() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="out of range"):
        percentile([1.0], 101)


def test_summarize_keeps_errors_out_of_latency() -> None:
    r = summarize("ours", "u", 4, 2.0, [0.010, 0.020, 0.030], ["http-500", "items-3", "http-500"])
    assert (r.requests, r.ok, r.errors) == (6, 3, 3)
    assert r.rps == 1.5  # successful completions per second of the window
    assert r.p50_ms == pytest.approx(20.0)
    assert r.max_ms == pytest.approx(30.0)
    assert r.error_kinds == {"http-500": 2, "items-3": 1}
    r.cpu_s, r.apiserver_cpu_s = 0.3, 0.03
    assert r.cpu_ms_per_request == pytest.approx(100.0)
    assert r.apiserver_cpu_ms_per_request == pytest.approx(10.0)


def test_summarize_all_errors_gives_no_fake_latency() -> None:
    r = summarize("peer", "u", 1, 1.0, [], ["timeout"])
    assert r.ok == 0 and r.rps == 0
    assert math.isnan(r.p50_ms) and math.isnan(r.cpu_ms_per_request)
    assert r.to_json()["p50_ms"] is None  # JSON gets null, never NaN


def test_pool_merges_samples_not_percentiles() -> None:
    a = summarize("ours", "u", 2, 10.0, [0.001] * 99, [])
    b = summarize("ours", "u", 2, 10.0, [0.100], ["timeout"])
    a.cpu_s, b.cpu_s = 1.0, 2.0
    a.loadavg, b.loadavg = (1.0, 2.0, 3.0), (3.0, 4.0, 5.0)
    merged = pool([a, b])
    assert (merged.ok, merged.errors, merged.requests) == (100, 1, 101)
    assert merged.rps == pytest.approx(5.0)  # 100 completions over 20 s
    assert merged.p50_ms == pytest.approx(1.0)  # pooled samples: one slow request stays the tail
    assert merged.p99_ms == pytest.approx(1.0 + 0.01 * 99.0)
    assert merged.cpu_s == 3.0 and merged.cpu_ms_per_request == pytest.approx(30.0)
    assert merged.loadavg == (2.0, 3.0, 4.0)
    assert merged.error_kinds == {"timeout": 1}
    b.cpu_s = None
    assert pool([a, b]).cpu_s is None  # an unknown round makes the total unknown, not smaller
    with pytest.raises(ValueError):
        pool([])


def test_bursts_sums_complete_runs_only() -> None:
    deltas = [0.5, 0.0, 0.01, 0.2, 0.3, 0.0, 0.0, 0.4, 0.0, 0.1, 0.2]
    # [0.5] touches the start and [0.1, 0.2] the end: both may be partial, so both are dropped.
    assert bursts(deltas, 0.02) == pytest.approx([0.5, 0.4])
    assert bursts([0.0, 0.01, 0.0], 0.02) == []
    assert bursts([], 0.02) == []


# ------------------------------------------------------------------------------------- exporter


def test_sample_line_escapes_label_values() -> None:
    assert sample_line("m", [("a", 'x"y\\z\n')], 1.5) == 'm{a="x\\"y\\\\z\\n"} 1.5'
    assert sample_line("m", [], 2) == "m 2"


def test_pods_text_parses_and_counts_up_per_pod() -> None:
    text = pods_text(12, elapsed_s=10.0)
    (family,) = list(text_string_to_metric_families(text))
    assert family.name == "http_requests" and family.type == "counter"
    values = {s.labels["pod"]: s.value for s in family.samples if s.name == "http_requests_total"}
    assert len(values) == 12
    assert values["bench-0"] == 10.0 and values["bench-9"] == 100.0 and values["bench-10"] == 10.0
    assert {s.labels["namespace"] for s in family.samples} == {"bench"}


def test_filler_text_has_exactly_total_unique_series_grouped_by_name() -> None:
    text = filler_text(total=1003, n_pods=7, n_metrics=5)
    families = list(text_string_to_metric_families(text))  # the real parser: grouping must be valid
    assert sorted(f.name for f in families) == [f"bench_filler_{j}" for j in range(5)]
    samples = [s for f in families for s in f.samples if s.name.endswith("_total")]
    assert len(samples) == 1003
    assert len({s.labels["idx"] for s in samples}) == 1003
    assert {s.labels["pod"] for s in samples} == {f"bench-{i}" for i in range(7)}
    assert text.count("# TYPE ") == 5
    assert filler_text(0, 5) == ""
    with pytest.raises(ValueError):
        filler_text(10, 0)


def test_mix_text_is_total_unique_cluster_like_series() -> None:
    text = mix_text(total=1003, n_metrics=10, n_namespaces=3, containers=2)
    families = list(text_string_to_metric_families(text))
    assert len(families) == 10 and all(f.name.startswith("container_") for f in families)
    samples = [s for f in families for s in f.samples if not s.name.endswith("_created")]
    assert len(samples) == 1003
    assert len({(s.name, tuple(sorted(s.labels.items()))) for s in samples}) == 1003  # no synthetic id
    assert {s.labels["namespace"] for s in samples} == {"team-0", "team-1", "team-2"}
    assert len({s.labels["pod"] for s in samples}) == 51  # ceil(1003 / 10) series per name / 2 containers
    assert {frozenset(s.labels) for s in samples} == {
        frozenset({"namespace", "pod", "container"}),
        frozenset({"namespace", "pod", "container", "device"}),
    }
    assert mix_text(0) == ""
    with pytest.raises(ValueError):
        mix_text(10, n_namespaces=0)


def test_discovery_sizes_and_rules() -> None:
    from adapter.rules.config import parse_config
    from bench.discovery_bench import DISCOVERY_RULES, parse_sizes

    assert parse_sizes("100k,10k, 1M") == [10_000, 100_000, 1_000_000]
    for bad in ("10x", "", "5"):
        with pytest.raises(ValueError, match="--discovery"):
            parse_sizes(bad)
    rules = parse_config(DISCOVERY_RULES).all_rules
    assert [r.series_query for r in rules] == [
        '{__name__=~"^.*_total$",namespace!="",pod!=""}',
        '{__name__=~"^container_.*",namespace!="",pod!=""}',
    ]
    assert adapter_bench.parse_args(["--discovery", "10k,100k"]).discovery == [10_000, 100_000]


def test_wait_for_head_series_reads_the_tsdb_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.prom import BenchPrometheus
    from harness.localprom import LocalPrometheusError

    prom = BenchPrometheus([], data_dir=tmp_path)
    seen = iter([10, 500, 1000])
    paths: list[str] = []

    def fake_get(path: str, params: object = None, timeout: float = 5.0) -> dict:
        paths.append(path)
        return {"data": {"headStats": {"numSeries": next(seen, 1000)}}}

    monkeypatch.setattr(prom, "_get", fake_get)
    prom.wait_for_head_series(1000, timeout=10, progress=None)
    assert paths == ["/api/v1/status/tsdb"] * 3
    with pytest.raises(LocalPrometheusError, match="1000 of 2000 series in the head"):
        prom.wait_for_head_series(2000, timeout=1.5, progress=None)


# ------------------------------------------------------------------------------ response checks


def _body(n: int) -> bytes:
    items = [{"describedObject": {"kind": "Pod", "name": f"bench-{i}"}, "value": "1"} for i in range(n)]
    return json.dumps({"kind": "MetricValueList", "apiVersion": "custom.metrics.k8s.io/v1beta1",
                       "items": items}).encode()  # fmt: skip


@pytest.mark.parametrize("full", [False, True])
def test_check_body_counts_items_both_ways(full: bool) -> None:
    assert check_body(200, _body(5), 5, full) is None
    assert check_body(200, _body(4), 5, full) == "items-4"
    assert check_body(404, _body(5), 5, full) == "http-404"
    assert check_body(200, b'{"kind":"Status"}', 5, full) == "not-a-MetricValueList"


# ---------------------------------------------------------------------------------------- table


def test_ratio_and_verdict_directions() -> None:
    assert ratio(200, 100) == 2.0
    assert ratio(1, 0) is None and ratio(None, 3) is None and ratio(math.nan, 3) is None
    assert verdict(200, 100, "higher") == "ours 2.00x better"
    assert verdict(200, 100, "lower") == "peer 2.00x better"
    assert verdict(25, 100, "lower") == "ours 4.00x better"
    assert verdict(102, 100, "higher") == "about equal"
    assert verdict(0, 3, "lower") == "ours better (0 vs 3)"
    assert verdict(5, None, "lower") == ""


def test_format_table_aligns_and_never_invents_a_ratio() -> None:
    rows = [
        Row("N=100 v1beta1 throughput (req/s)", 300.0, 100.0, "higher"),
        Row("memory VmRSS (MiB)", 80.0, None, "lower"),
    ]
    text = format_table(rows, title="T")
    lines = text.splitlines()
    assert lines[0] == "T"
    assert lines[1].split() == ["metric", "ours", "peer", "ours/peer", "better", "verdict"]
    tput = next(ln for ln in lines if ln.startswith("N=100"))
    assert "300.0" in tput and "100.0" in tput and "3.000" in tput and "ours 3.00x better" in tput
    assert "higher is better" in tput
    mem = next(ln for ln in lines if ln.startswith("memory"))
    assert mem.split()[3:6] == ["80.0", "n/a", "n/a"]  # no peer -> no ratio, no verdict
    assert mem.rstrip().endswith("lower is better")
    # Columns line up: every row's ratio column ends at the same offset as the header's.
    end = lines[1].index("ours/peer") + len("ours/peer")
    assert tput[end - 5 : end] == "3.000" and mem[end - 3 : end] == "n/a"


def test_write_json_turns_nan_into_null(tmp_path: Path) -> None:
    out = write_json(tmp_path / "r" / "x.json", {"a": math.nan, "b": [1.0, math.inf], "p": tmp_path})
    assert json.loads(out.read_text()) == {"a": None, "b": [1.0, None], "p": str(tmp_path)}


# ------------------------------------------------------------------------- config and processes


def test_cli_pod_counts_sorted_and_validated() -> None:
    assert adapter_bench.parse_args(["--pods", "1000,100,100"]).pods == [100, 1000]
    with pytest.raises(SystemExit):
        adapter_bench.parse_args(["--pods", "ten"])
    with pytest.raises(SystemExit):
        adapter_bench.parse_args(["--pods", "0"])


def test_both_adapters_get_the_same_rule_and_delegated_auth(tmp_path: Path) -> None:
    rules = yaml.safe_load(rule_config())["rules"]
    assert len(rules) == 1 and rules[0]["name"] == {"matches": "^(.*)_total$", "as": "${1}"}
    c = CommonArgs(
        tmp_path / "rules.yaml", "http://127.0.0.1:9", tmp_path / "kc", tmp_path / "c", tmp_path / "k"
    )
    ours = ours_argv(c, 8443)
    assert ours[ours.index("--authn-mode") + 1] == "delegated"
    assert ours[ours.index("--authz-mode") + 1] == "delegated"
    assert ours[ours.index("--metrics-relist-interval") + 1] == "30s"
    peer = peer_argv(Path("/bin/adapter"), c, 8444, client_qps=1000)
    for flag in ("--lister-kubeconfig", "--authentication-kubeconfig", "--authorization-kubeconfig"):
        assert f"{flag}={tmp_path / 'kc'}" in peer
    assert "--metrics-relist-interval=30s" in peer and "--secure-port=8444" in peer
    assert "--client-qps=1000" in peer and "--client-burst=2000" in peer
    assert not any(a.startswith("--client-qps") for a in peer_argv(Path("/bin/adapter"), c, 1))


def test_proc_readings_of_this_process() -> None:
    mem = memory_kib(os.getpid())
    assert mem["rss"] > 0 and mem["hwm"] >= mem["rss"]
    assert (cpu_seconds(os.getpid()) or 0) > 0
    assert memory_kib(2**22 + 12345) == {} and cpu_seconds(2**22 + 12345) is None


# ---------------------------------------------------------------------------- the run's phases


def _target(key: str, versions: tuple[str, ...] = ("v1beta1",)) -> adapter_bench.Target:
    proc = AdapterProcess(key, [], Path(f"/nonexistent/{key}.log"))  # never started
    return adapter_bench.Target(key, key, proc, 1, list(versions))


def test_plan_derives_filler_settle_time_and_notes() -> None:
    plan = adapter_bench._plan(adapter_bench.parse_args(["--pods", "100,1000", "--series", "500"]))
    assert (plan.max_n, plan.filler, plan.settle_s) == (1000, 0, 60.0)  # two relists of 30s
    assert plan.notes == ["--series 500 < 1000 pods: no filler series"]
    plan = adapter_bench._plan(adapter_bench.parse_args(["--pods", "10", "--settle", "3", "--relist", "1m"]))
    assert (plan.max_n, plan.filler, plan.settle_s, plan.notes) == (10, 99_990, 3, [])
    with pytest.raises(SystemExit, match="--relist '1m30s'"):
        adapter_bench._plan(adapter_bench.parse_args(["--relist", "1m30s"]))


def test_round_order_alternates_who_goes_first_and_skips_failed_targets() -> None:
    ours, ttl0, peer, qps5 = (_target(k) for k in ("ours", "ours-ttl0", "peer", "peer-qps5"))
    targets = [ours, ttl0, peer, qps5]

    def keys(step: int, rnd: int) -> list[str]:
        return [t.key for t in adapter_bench._round_order(targets, step, rnd)]

    assert keys(0, 1) == ["peer", "peer-qps5", "ours", "ours-ttl0"]
    assert keys(0, 2) == ["ours", "ours-ttl0", "peer", "peer-qps5"]
    assert keys(1, 1) == keys(0, 2) and keys(1, 2) == keys(0, 1)
    peer.failed = "did not serve"
    assert keys(0, 1) == ["peer-qps5", "ours", "ours-ttl0"]


def test_pooled_gives_one_result_per_target_n_and_version_in_first_run_order() -> None:
    def one(key: str, n: int, rnd: int, latency_s: float) -> object:
        r = summarize(key, "u", 1, 1.0, [latency_s], [])
        r.pods, r.version, r.round_no = n, "v1beta1", rnd
        return r

    runs = [one("peer", 10, 1, 0.002), one("ours", 10, 1, 0.001), one("ours", 10, 2, 0.003)]
    runs += [one("peer", 10, 2, 0.004), one("ours", 20, 1, 0.005)]
    pooled = adapter_bench._pooled(runs)  # type: ignore[arg-type]
    assert [(r.target, r.pods, r.ok, r.duration_s) for r in pooled] == [
        ("peer", 10, 2, 2.0),
        ("ours", 10, 2, 2.0),
        ("ours", 20, 1, 1.0),
    ]


async def test_wait_all_marks_a_target_that_never_serves_failed_instead_of_raising(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, str, int, float]] = []

    async def wait_serving(t, version, n, tls, timeout, progress):  # type: ignore[no-untyped-def]
        asked.append((t.key, version, n, timeout))
        if t.key == "peer":
            raise adapter_bench.BenchError("peer did not serve 10 items")
        return 0.5

    monkeypatch.setattr(adapter_bench, "_wait_serving", wait_serving)
    ours, peer = _target("ours", ("v1beta1", "v1beta2")), _target("peer", ("v1beta1", "v1beta2"))
    gone = _target("peer-qps5")
    gone.failed = "earlier"
    lines: list[str] = []
    await adapter_bench._wait_all(
        [ours, peer, gone],
        10,
        first=True,
        tls=None,
        timeout=7.0,
        progress=lines.append,  # type: ignore[arg-type]
    )
    assert (ours.failed, peer.failed, gone.failed) == (None, "peer did not serve 10 items", "earlier")
    assert ours.ready_s is not None and peer.ready_s is None
    assert sorted(asked) == [
        ("ours", "v1beta1", 10, 7.0),
        ("ours", "v1beta2", 10, 7.0),
        ("peer", "v1beta1", 10, 7.0),
    ]
    assert "peer: FAILED: peer did not serve 10 items" in lines
    assert any(line.startswith("ours: serving 10 items after ") for line in lines)


def test_final_peer_status_says_why_a_built_peer_is_missing() -> None:
    peer = _target("peer")
    targets = [_target("ours"), peer]
    assert adapter_bench._final_peer_status(targets, Path("/bin/peer"), "built") == "built"
    peer.failed = "timed out"
    assert adapter_bench._final_peer_status(targets, Path("/bin/peer"), "built") == "failed: timed out"
    off = "disabled (--no-peer)"
    assert adapter_bench._final_peer_status([_target("ours")], None, off) == off


# ------------------------------------------------------------------ metrics.k8s.io differential


def _pod(ns: str, name: str, window: str = "1m0s", **containers: tuple[str, str]) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "window": window,
        "containers": [
            {"name": c, "usage": {"cpu": cpu, "memory": mem}} for c, (cpu, mem) in containers.items()
        ],
    }


def _list(*items: dict[str, object]) -> resource_diff.Answer:
    return resource_diff.Answer(200, {"kind": "PodMetricsList", "items": list(items)})


def test_quantities_and_durations_parse_exactly() -> None:
    q = resource_diff.parse_quantity
    assert q("250m") == Decimal("0.25") and q("1Mi") == 2**20 and q("1e3") == 1000
    assert q("12345678") == 12345678 and q("2Gi") == 2 * 2**30 and q("5000000n") == Decimal("0.005")
    with pytest.raises(ValueError, match="quantity"):
        q("lots")
    assert resource_diff.parse_duration("1m0s") == 60 and resource_diff.parse_duration("1.5s") == 1.5
    with pytest.raises(ValueError, match="duration"):
        resource_diff.parse_duration("1 minute")


def test_compare_accepts_rounding_within_tolerance() -> None:
    # upstream truncates to whole millicores and serves memory in milli-units; ours is exact
    ours = _list(_pod("a", "p", app=("10300u", "16777339")))
    peer = _list(_pod("a", "p", app=("10m", "16777339")))
    assert resource_diff.compare("/pods", ours, peer) == []
    far = _list(_pod("a", "p", app=("12m", "16777339")))
    (d,) = resource_diff.compare("/pods", ours, far)
    assert (d.object, d.field, d.intended) == ("a/p", "cpu[app]", False)
    big = _list(_pod("a", "p", app=("10300u", "20Mi")))
    (d,) = resource_diff.compare("/pods", ours, big)
    assert d.field == "memory[app]"


def test_compare_reports_listing_window_and_container_differences() -> None:
    ours = _list(_pod("a", "p", app=("10m", "1Mi")), _pod("a", "only-ours", app=("1m", "1Mi")))
    peer = _list(_pod("a", "p", window="30s", app=("10m", "1Mi"), side=("5m", "1Mi")))
    diffs = resource_diff.compare("/namespaces/a/pods", ours, peer)
    assert {(d.object, d.field, d.ours, d.peer) for d in diffs} == {
        ("a/only-ours", "listed", "yes", "no"),
        ("a/p", "window", "1m0s", "30s"),
        ("a/p", "containers", "app", "app,side"),
    }
    assert not any(d.intended for d in diffs)


def test_upstreams_zero_fill_is_the_intended_difference() -> None:
    peer_pod = _pod("a", "p5", app=("10m", "1Mi"), sidecar=("5m", "0"))
    (d,) = resource_diff.compare("/pods", _list(), _list(peer_pod))
    assert (d.field, d.ours, d.peer, d.intended) == ("listed", "no", "yes", True)
    missing = resource_diff.Answer(404, {"kind": "Status", "code": 404})
    (d,) = resource_diff.compare("/namespaces/a/pods/p5", missing, resource_diff.Answer(200, peer_pod))
    assert (d.field, d.intended) == ("status", True)
    # a pod only the peer lists with real values is not explained away
    (d,) = resource_diff.compare("/pods", _list(), _list(_pod("a", "q", app=("10m", "1Mi"))))
    assert not d.intended
    # the same refusal on both sides is no difference
    assert resource_diff.compare("/x", missing, missing) == []


def test_compare_nodes_and_the_summary_line() -> None:
    node = {"metadata": {"name": "n0"}, "window": "1m0s", "usage": {"cpu": "500m", "memory": "2Gi"}}
    other = {**node, "usage": {"cpu": "600m", "memory": "2Gi"}}
    ok = resource_diff.Answer(200, node)
    assert resource_diff.compare("/nodes/n0", ok, ok) == []
    diffs = resource_diff.compare("/nodes/n0", ok, resource_diff.Answer(200, other))
    assert [(d.object, d.field) for d in diffs] == [("n0", "cpu")]
    assert resource_diff.objects_in(_list(node, node)) == 2 and resource_diff.objects_in(ok) == 1
    intended = resource_diff.compare("/pods", _list(), _list(_pod("a", "p", app=("1m", "0"))))
    line = resource_diff.summary_line(3, 7, [*diffs, *intended])
    assert line == (
        "3 request pairs, 7 objects, 2 differences: "
        "1 intended (upstream's 0 for a missing sample), 0 known (upstream lists Running pods only), "
        "1 unexplained (cpu)"
    )
    assert "intended" in resource_diff.format_differences(intended)
    assert "UNEXPLAINED" in resource_diff.format_differences(diffs)
    # a pod only ours serves because the peer lists Running pods only: known, when told so
    pending = {"ns/p": resource_diff.RUNNING_ONLY}
    (d,) = resource_diff.compare("/pods", _list(_pod("ns", "p", app=("1m", "1Mi"))), _list(), known=pending)
    assert d.known and not d.intended
    one = resource_diff.Answer(200, _pod("ns", "p", app=("1m", "1Mi")))
    (d,) = resource_diff.compare("/x", one, resource_diff.Answer(404, None), known=pending)
    assert (d.field, d.known) == ("status", True)
    assert resource_diff.format_differences([]) == "differences: (none)"


def test_largest_gaps_over_objects_both_serve() -> None:
    ours = _list(_pod("a", "p", app=("10300043n", "16777339")), _pod("a", "q", app=("99", "1Gi")))
    peer = _list(_pod("a", "p", app=("10m", "16777339")))
    node = {"metadata": {"name": "n0"}, "usage": {"cpu": "146595181n", "memory": "2Gi"}}
    peer_node = {**node, "usage": {"cpu": "146m", "memory": "2Gi"}}
    gaps = resource_diff.largest_gaps(
        [(ours, peer), (resource_diff.Answer(200, node), resource_diff.Answer(200, peer_node))]
    )
    assert gaps == {"cpu_millicores": pytest.approx(0.595181), "memory_bytes": 0.0}  # q: peer has none


def test_fixture_has_its_edge_cases_and_kubelet_series() -> None:
    fx = resource_diff.fixture(20, 2, 1)
    assert len(fx.pods) == 20 and fx.nodata_pod == "diff-1/diff-19"
    by_pod = {f"{p['namespace']}/{p['pod']}": p["containers"] for p in fx.spec["pods"]}
    assert fx.nodata_pod not in by_pod
    assert by_pod[fx.cpu_only_pod]["sidecar"] == {"cpu": 0.005}
    assert "sidecar" not in by_pod[fx.spec_only_pod]
    families = {f.name: f for f in text_string_to_metric_families(kubelet_text(fx.spec, 60.0))}
    assert set(families) == {"container_cpu_usage_seconds", "container_memory_working_set_bytes",
                             "node_cpu_usage_seconds", "node_memory_working_set_bytes"}  # fmt: skip
    mem = {s.labels["pod"]: s.value for s in families["container_memory_working_set_bytes"].samples
           if s.labels["container"] == "app"}  # fmt: skip
    assert mem["diff-0"] == 16 * 2**20 + 123  # every digit survives the exposition
    with pytest.raises(ValueError, match="pods >= 12"):
        resource_diff.fixture(5, 1, 1)
    assert "/pods?labelSelector=tier%3Dfront" in resource_diff.requests_for(fx)


def test_resource_rules_drop_the_kubelet_scrape_matcher() -> None:
    rules = resource_diff.resource_rules(
        (Path(__file__).parents[2] / "manifests/base/adapter/config.yaml").read_text()
    )
    assert rules["window"] == "1m" and rules["cpu"]["containerLabel"] == "container"
    for which in ("cpu", "memory"):
        assert "metrics_path" not in rules[which]["containerQuery"] + rules[which]["nodeQuery"]
