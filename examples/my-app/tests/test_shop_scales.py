"""shop scales on its own request rate, by the numbers.

Everything comes from hpa-kit's pytest plugin (installed with the kit): ``stack`` (the reference
install, with deploy/adapter-rules.yaml added to the adapter), ``kubectl``, ``load`` (Locust with our
locustfile, run where it reaches the cluster), ``hpa_recorder`` (plot + CSV in reports/) and the
``harness.hpa`` vocabulary. The assertions compare three independent readings: what the adapter
serves through the aggregator, what Prometheus says directly, and what Locust counted sending.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from harness import hpa
from harness.kubectl import Kubectl
from harness.load import Stage, served_rps
from harness.stack import Stack, wait_rollout

HERE = Path(__file__).resolve().parents[1]
NS = "my-app"
SHOPPERS = 10  # two requests/s each (locustfile.py): 20 req/s over a 5 req/s/pod target -> 4 pods
PER_POD = f'avg(sum by (pod) (rate(http_requests_total{{namespace="{NS}",path="/"}}[1m])))'

pytestmark = [pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def shop(stack: Stack, kubectl: Kubectl) -> Any:
    """Our Deployment, Service, ServiceMonitor and HPA, applied to the kit's cluster; removed after."""
    kubectl.run("apply", "--server-side", "-f", str(HERE / "deploy" / "app.yaml"))
    kubectl.run("apply", "--server-side", "-f", str(HERE / "deploy" / "hpa.yaml"))
    wait_rollout(kubectl, NS, "shop", timeout=180)
    yield "shop"
    kubectl.run("delete", "namespace", NS, "--wait=false", "--ignore-not-found")


def test_shop_scales_out_to_what_its_traffic_needs_and_back(
    shop: str, stack: Stack, kubectl: Kubectl, load: Any, hpa_recorder: Any
) -> None:
    hpa.settle_at_min(kubectl, NS, shop)
    run = load(NS, shop, "Shopper", [Stage(600, SHOPPERS, 5)], locustfile=HERE / "locustfile.py")
    direct = lambda: stack.promql(PER_POD)  # noqa: E731
    with hpa_recorder(NS, shop, load=run, direct=direct) as rec:
        t0 = time.monotonic()
        _, took = hpa.expect_scale_out(kubectl, NS, shop, within=240)
        history = hpa.hold_until_steady(kubectl, NS, shop, direct, since=t0, window_s=60, floor=0.5)
        rec.mark("steady")
        rps = served_rps(run.history(), 60)
        run.stop()
        rec.mark("load stop")
        back = hpa.expect_scale_in(kubectl, NS, shop, within=300)
    final = history[-1]
    print(f"first scale-out after {took:.0f}s; steady at {final.current} pods; served "
          f"{final.served:.2f}/pod, Prometheus {final.direct:.2f}/pod, Locust {rps:.1f} req/s; "
          f"back to 1 after {back:.0f}s")  # fmt: skip

    # 1. The adapter serves what Prometheus says, and the controller decided what the formula says.
    problems = hpa.oracle_check(history, rel=0.10, floor=0.5)
    assert not problems, "\n".join(problems)
    # 2. Prometheus counts the traffic Locust sent (per pod).
    assert final.direct == pytest.approx(rps / final.current, rel=0.20), (
        f"Prometheus says {final.direct:.2f} req/s per pod; Locust sent {rps:.1f} req/s to {final.current}"
    )
    # 3. The replica count is the one that traffic calls for (20 req/s / 5 per pod -> 4).
    allowed = hpa.expected_replicas(final.spec, rps / final.current, current=final.current, rel=0.20)
    assert final.current in allowed, f"steady at {final.current} pods; {rps:.1f} req/s call for {allowed}"
    assert final.current >= 3
    metric = hpa.current_metrics(kubectl, NS, shop)
    assert metric and metric[0]["pods"]["metric"]["name"] == "shop_requests_per_second"
