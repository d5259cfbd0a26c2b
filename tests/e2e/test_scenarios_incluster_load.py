# Named after test_scenarios on purpose: e2e files run alphabetically, and test_local_cluster must run
# before anything installs the stack (its HPA check needs the metrics APIService group free).
"""In-cluster Locust (the ``existing`` provider's load path) against the installed stack.

Runs on any provider: on ``local``/``kind`` it proves the same Jobs an ``existing`` cluster gets. The
load is kept far below the ``hits`` HPA's target (100 hits/s per replica) so the Deployment keeps its
pods and the Service's ``total_hit_count`` (a per-pod gauge) can only rise.
"""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from harness import hpa
from harness.incluster_load import RUN_LABEL, InClusterLocust, cluster_service_url
from harness.kubectl import Kubectl
from harness.load import Stage
from harness.stack import DEMO_NS, Stack
from harness.waits import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

HITS_QUERY = 'sum(total_hit_count{service="hits"})'


def _hits(stack: Stack) -> float:
    query = urllib.parse.quote(HITS_QUERY, safe="")
    result = stack.prometheus_api(f"/api/v1/query?query={query}")["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def _locust_jobs(kubectl: Kubectl) -> dict[str, Any]:
    items = kubectl.get("jobs", namespace=DEMO_NS, selector="app.kubernetes.io/name=locust")["items"]
    return {j["metadata"]["name"]: j for j in items}


def _two_users_loading(run: InClusterLocust) -> tuple[bool, str]:
    """A probe: some history row has 2 users and requests/s > 0; the detail is the latest row."""
    hist = run.history()
    if not hist:
        return False, "no history rows yet"
    last = hist[-1]
    done = any(s.users == 2 and s.rps > 0 for s in hist)
    latest = f"{last.users} users, {last.rps:g} req/s, {last.failures_per_s:g} failures/s"
    return done, f"{len(hist)} rows, latest: {latest}"


def test_in_cluster_locust_loads_a_service_and_cleans_up(
    stack: Stack, cluster: object, kubectl: Kubectl, scenario_dir: Path
) -> None:
    if getattr(cluster, "provider", "") != "existing":
        # The Locust image is lazy (only this path needs it); existing clusters must already have it.
        cluster.load_images(["locust"])  # type: ignore[attr-defined]
    # The premise "the sum can only rise" needs the Deployment to keep its pods: a scenario before this
    # one may have left hits scaled out, and its scale-in (a deleted pod's gauge leaves the sum) once
    # landed in the middle of this test (CI: 4 -> 1 replicas, the sum fell). At minReplicas with a
    # load far below target nothing scales; and Prometheus must have dropped the deleted pods' series.
    hpa.settle_at_min(kubectl, DEMO_NS, "hits", progress=None)

    def only_live_pods_scraped() -> tuple[bool, str]:
        pods = kubectl.get("pods", namespace=DEMO_NS, selector="hpa-kit/scenario=hits")["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        # Fresh samples only: after a Prometheus restart its WAL brings back series no scrape renews.
        series = stack.promql('count(timestamp(total_hit_count{service="hits"}) > time() - 15)')
        return series == len(live), f"{series:g} freshly scraped series for {len(live)} live hits pod(s)"

    wait_for("Prometheus scraping only the hits pods that exist", only_live_pods_scraped, timeout=120,
             interval=3)  # fmt: skip
    installed = _locust_jobs(kubectl)
    before = _hits(stack)
    url = cluster_service_url(kubectl, DEMO_NS, "hits")
    assert url == "http://hits.hpa-demo.svc:8080"

    # 3 users x ~10 req/s for 20 s: ~600 hits, a fraction of one replica's target.
    run = InClusterLocust(kubectl, DEMO_NS, url, "HitUser", [Stage(20, 3, 3)], workers=1,
                          out_dir=scenario_dir / "load")  # fmt: skip
    t0 = time.monotonic()
    with run:
        assert run.running
        wait_for(
            "Locust history with users > 0",
            lambda: (any(s.users > 0 for s in run.history()), f"{len(run.history())} rows"),
            timeout=60,
            interval=2,
        )
        rc = run.wait(timeout=120)
        ran_s = time.monotonic() - t0
    logs = "\n".join(p.read_text()[-2000:] for p in (scenario_dir / "load").glob("locust-master-*.log"))
    assert rc == 0, f"Locust master exited {rc}:\n{logs}"
    hist = run.history()
    assert max(s.users for s in hist) == 3
    assert any(s.rps > 5 for s in hist), [(s.users, s.rps) for s in hist]
    assert 15 < ran_s < 120, f"the 20 s shape took {ran_s:.0f}s from start() to exit"

    # Prometheus scrapes every 5 s: the hits arrive within a couple of scrapes.
    wait_for(
        "total_hit_count of Service hits to rise",
        lambda: (_hits(stack) - before > 100, f"{before:.0f} -> {_hits(stack):.0f}"),
        timeout=60,
        interval=3,
    )

    # Pods gone, the installed (suspended) Jobs back as they were.
    assert kubectl.get("pods", namespace=DEMO_NS, selector=f"{RUN_LABEL}={run.run_id}")["items"] == []
    after = _locust_jobs(kubectl)
    assert set(after) == set(installed)
    for name, job in after.items():
        assert job["spec"]["suspend"] is True and RUN_LABEL not in (job["metadata"].get("labels") or {})
        assert job["spec"]["template"]["spec"]["containers"][0].get("envFrom"), name
    assert (scenario_dir / "load" / "load_stats_history.csv").is_file()


def test_in_cluster_locust_stopped_mid_run_keeps_history_and_leaves_no_pods(
    stack: Stack, cluster: object, kubectl: Kubectl, scenario_dir: Path
) -> None:
    """The scenarios' pattern: a long shape, stopped once the HPA did its part."""
    if getattr(cluster, "provider", "") != "existing":
        cluster.load_images(["locust"])  # type: ignore[attr-defined]
    url = cluster_service_url(kubectl, DEMO_NS, "hits")
    run = InClusterLocust(kubectl, DEMO_NS, url, "HitUser", [Stage(600, 2, 2)], workers=2,
                          out_dir=scenario_dir / "load")  # fmt: skip
    run.start()
    try:
        wait_for("Locust history with 2 users and requests/s > 0", lambda: _two_users_loading(run),
                 timeout=90, interval=2)  # fmt: skip
        assert run.running
    finally:
        t0 = time.monotonic()
        run.stop()
        stop_s = time.monotonic() - t0
    assert not run.running
    assert stop_s < 60, f"stop() took {stop_s:.0f}s: SIGTERM not reaching Locust?"
    assert kubectl.get("pods", namespace=DEMO_NS, selector=f"{RUN_LABEL}={run.run_id}")["items"] == []
    assert any(s.users == 2 and s.rps > 0 for s in run.history())
    assert len(list((scenario_dir / "load").glob("locust-worker-*.log"))) == 2
