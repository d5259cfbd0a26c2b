"""The provider's evaluation memo and the API's kept renderings: a repeated pods/* request over the
same cached Prometheus answer and the same objects is answered from what the first one built, and
anything that changes the answer (a new Prometheus answer, a changed object, another selector,
a relist) builds it anew. Every test compares against a fresh evaluation (cache and memo off)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from adapter.apiserver.routes import _custom_text, custom_list_text, custom_value_json
from adapter.kube.mapper import StaticResourceMapper
from adapter.provider.base import CustomMetricInfo, GroupResource, SharedValues
from adapter.provider.prometheus.cache import Memo
from adapter.provider.prometheus.provider import PrometheusProvider
from adapter.rules.config import load_config
from adapter.selectors import EVERYTHING, parse_label_selector
from adapter.telemetry import REGISTRY
from tests.support.adapter_support import FIXTURES, FakeLister, FakePrometheus, pod_series

PODS = GroupResource("", "pods")
FPM = CustomMetricInfo(PODS, True, "fpm_active_rate")
WEB = parse_label_selector("app=web")


def fake_prometheus() -> FakePrometheus:
    fake = FakePrometheus(
        series_data=[pod_series("pm_status", "demo", f"web-{i}", state="active processes") for i in range(4)]
    )
    fake.rows = [({"pod": f"web-{i}", "namespace": "demo"}, str(i / 4)) for i in range(3)]  # web-3: no data
    return fake


async def provider(
    fake: FakePrometheus, lister: FakeLister, ttl: float, now: list[float]
) -> PrometheusProvider:
    p = PrometheusProvider(
        load_config(FIXTURES / "seed-rules.yaml"),
        fake.client(),
        StaticResourceMapper(),
        lister,
        cache_ttl=ttl,
    )
    p.cache._clock = lambda: now[0]
    await p.refresh()
    return p


@pytest.fixture
def lister() -> FakeLister:
    lst = FakeLister()
    for i in range(4):
        lst.add("pods", "demo", f"web-{i}", app="web")
    lst.add("pods", "demo", "other", app="other")
    return lst


def without_data_count() -> float:
    labels = {"resource": "pods", "metric": "fpm_active_rate"}
    return REGISTRY.get_sample_value("hpakit_adapter_objects_without_data_total", labels) or 0.0


async def test_a_repeated_request_shares_the_first_answer_and_still_counts_what_it_lacks(
    lister: FakeLister,
) -> None:
    fake, now = fake_prometheus(), [0.0]
    p = await provider(fake, lister, 5, now)
    before = without_data_count()
    first = await p.get_metric_by_selector("demo", WEB, FPM, EVERYTHING)
    again = await p.get_metric_by_selector("demo", WEB, FPM, EVERYTHING)
    assert isinstance(first, SharedValues) and again is first and len(fake.queries) == 1
    assert [(v.described_object.name, str(v.value)) for v in first] == [
        ("web-0", "0.0"), ("web-1", "0.25"), ("web-2", "0.5"),
    ]  # fmt: skip
    assert without_data_count() - before == 2  # web-3 lacked data on both requests, counted twice

    fresh = await provider(fake, lister, 0, [0.0])  # no cache, so no reuse: the reference answer
    assert await fresh.get_metric_by_selector("demo", WEB, FPM, EVERYTHING) == first
    await p.prom.aclose()
    await fresh.prom.aclose()


async def test_a_new_prometheus_answer_a_changed_object_or_a_relist_rebuild_the_answer(
    lister: FakeLister,
) -> None:
    fake, now = fake_prometheus(), [0.0]
    p = await provider(fake, lister, 5, now)
    first = await p.get_metric_by_selector("demo", WEB, FPM, EVERYTHING)

    fake.rows[0] = ({"pod": "web-0", "namespace": "demo"}, "7")
    assert await p.get_metric_by_selector("demo", WEB, FPM, EVERYTHING) is first  # still cached
    now[0] = 6.0  # the cached answer expired: Prometheus is asked again, and its new value served
    second = await p.get_metric_by_selector("demo", WEB, FPM, EVERYTHING)
    assert second is not first and str(second[0].value) == "7" and len(fake.queries) == 2

    # web-1 relabelled (the watch cache hands out a new object): same query, new objects -> rebuilt
    pods = lister.objects["pods"]
    pods[1] = replace(pods[1], labels={"app": "web", "tier": "x"})
    third = await p.get_metric_by_selector("demo", WEB, FPM, EVERYTHING)
    assert third is not second and third == second and len(fake.queries) == 2  # same cached answer

    await p.refresh()  # discovery rebuilds its entries: nothing built from the old ones is reused
    assert await p.get_metric_by_selector("demo", WEB, FPM, EVERYTHING) is not third
    await p.prom.aclose()


async def test_another_selector_or_metric_selector_is_its_own_answer(lister: FakeLister) -> None:
    fake, now = fake_prometheus(), [0.0]
    p = await provider(fake, lister, 5, now)
    web = await p.get_metric_by_selector("demo", WEB, FPM, EVERYTHING)
    everything = await p.get_metric_by_selector("demo", EVERYTHING, FPM, EVERYTHING)
    assert [v.described_object.name for v in everything] == [
        "web-0",
        "web-1",
        "web-2",
    ] and everything is not web
    narrowed = await p.get_metric_by_selector("demo", WEB, FPM, parse_label_selector("state=x"))
    assert narrowed is not web and all(v.metric_selector is not None for v in narrowed)
    await p.prom.aclose()


def test_kept_renderings_equal_a_fresh_rendering_per_version_and_selector() -> None:
    values = SharedValues(custom_value for custom_value in _values(3))
    sel = parse_label_selector("state=x")
    for version in ("v1beta1", "v1beta2"):
        for request_selector in (None, sel):
            text = _custom_text(version, values, request_selector)
            expected = {
                "kind": "MetricValueList",
                "apiVersion": f"custom.metrics.k8s.io/{version}",
                "metadata": {},
                "items": [custom_value_json(version, v, request_selector) for v in values],
            }
            assert json.loads(text) == expected
            assert _custom_text(version, values, request_selector) is text  # kept, not re-encoded
    assert len(values.rendered) == 4
    plain = list(values)  # a provider's own list: rendered each time, nothing kept
    assert _custom_text("v1beta2", plain, None) == custom_list_text("v1beta2", plain, None)


def _values(n: int) -> list:  # type: ignore[type-arg]
    from datetime import UTC, datetime
    from decimal import Decimal

    from adapter.provider.base import MetricValue, ObjectReference

    ts = datetime(2024, 5, 1, tzinfo=UTC)
    return [
        MetricValue(ObjectReference("Pod", f"web-{i}", "demo", "v1"), "fpm_active_rate", ts, Decimal(i), 60)
        for i in range(n)
    ]


def test_memo_is_bounded_by_entries_and_by_weight() -> None:
    memo: Memo[str] = Memo(max_entries=3, max_weight=10)
    for key, weight in (("a", 2), ("b", 2), ("c", 2)):
        memo.put(key, key.upper(), weight)
    assert memo.get("a") == "A"  # a is now the most recently used
    memo.put("d", "D", 2)  # a fourth entry: the least recently used (b) goes
    assert memo.get("b") is None and [memo.get(k) for k in "acd"] == ["A", "C", "D"]
    memo.put("e", "E", 8)  # 6 + 8 > 10: a and c go (least recent first), d stays
    assert (memo.get("a"), memo.get("c"), memo.get("d"), memo.get("e")) == (None, None, "D", "E")
    assert memo.weight == 10 and len(memo) == 2
    memo.put("huge", "H", 11)  # heavier than the whole memo: not kept, nothing evicted for it
    assert memo.get("huge") is None and len(memo) == 2
    memo.put("d", "D2", 1)  # replacing an entry replaces its weight
    assert memo.weight == 9 and memo.get("d") == "D2"
    with pytest.raises(ValueError):
        Memo(max_entries=0, max_weight=1)
