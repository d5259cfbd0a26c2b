"""The watch cache's label index: a selector's answer equals a full scan, whatever the events did.

The reference is the selector matched against every object in the store (what the cache did before
the index); the index only narrows which objects are matched.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.kube.objects import _Informer
from adapter.provider.base import GroupResource, ObjectMeta, ResourceInfo
from adapter.selectors import LabelSelector, parse_label_selector

PODS = ResourceInfo(GroupResource("", "pods"), "v1", "Pod", True)

_keys = st.sampled_from(["app", "tier", "hpa"])
_values = st.sampled_from(["a", "b", "c"])
_labels = st.dictionaries(_keys, _values, max_size=3)
_names = st.sampled_from([f"p{i}" for i in range(8)])
_ns = st.sampled_from(["n1", "n2"])
_event = st.one_of(
    st.tuples(st.just("put"), _ns, _names, _labels),
    st.tuples(st.just("drop"), _ns, _names, st.just({})),
)
_requirement = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", _keys, _values),
    st.builds(lambda k, v: f"{k}!={v}", _keys, _values),
    st.builds(lambda k, a, b: f"{k} in ({a},{b})", _keys, _values, _values),
    st.builds(lambda k, a: f"{k} notin ({a})", _keys, _values),
    _keys,
    st.builds(lambda k: f"!{k}", _keys),
)
_selector = st.lists(_requirement, max_size=3).map(lambda rs: parse_label_selector(",".join(rs)))


def _scan(informer: _Informer, selector: LabelSelector) -> set[tuple[str | None, str]]:
    return {k for k, o in informer.store.items() if selector.matches(o.labels)}


def _indexed(informer: _Informer, selector: LabelSelector) -> set[tuple[str | None, str]]:
    return {(o.namespace, o.name) for o in informer.candidates(selector) if selector.matches(o.labels)}


@settings(max_examples=300, deadline=None)
@given(start=st.lists(st.tuples(_ns, _names, _labels), max_size=8), events=st.lists(_event, max_size=20),
       selectors=st.lists(_selector, min_size=1, max_size=5))  # fmt: skip
def test_indexed_answers_equal_a_full_scan_after_any_events(
    start: list[tuple[str, str, dict[str, str]]],
    events: list[tuple[str, str, str, dict[str, str]]],
    selectors: list[LabelSelector],
) -> None:
    informer = _Informer(PODS)
    informer.replace({(ns, name): ObjectMeta(ns, name, labels) for ns, name, labels in start})
    for op, ns, name, labels in events:
        if op == "put":
            informer.put(ObjectMeta(ns, name, labels))
        else:
            informer.drop((ns, name))
        for selector in selectors:
            assert _indexed(informer, selector) == _scan(informer, selector), (str(selector), informer.store)
    # the index holds nothing the store does not (no key left behind by a relabel or a delete)
    indexed = {(key, pair) for pair, keys in informer.by_label.items() for key in keys}
    stored = {(key, pair) for key, o in informer.store.items() for pair in o.labels.items()}
    assert indexed == stored


def test_an_equality_selector_looks_only_at_the_objects_it_names() -> None:
    """1,000 HPAs each on its own pods: a request's work follows its own 2 pods, not all 2,000."""
    informer = _Informer(PODS)
    informer.replace({("hpas", f"p{i}"): ObjectMeta("hpas", f"p{i}", {"app": "bench", "hpa": f"h{i // 2}"})
                      for i in range(2000)})  # fmt: skip
    looked_at = list(informer.candidates(parse_label_selector("app=bench,hpa=h7")))
    assert sorted(o.name for o in looked_at) == ["p14", "p15"]
    assert len(list(informer.candidates(parse_label_selector("hpa in (h1,h2)")))) == 4
    assert list(informer.candidates(parse_label_selector("hpa=nope"))) == []
    # no equality to narrow by: every object is looked at, as before the index
    assert len(list(informer.candidates(parse_label_selector("hpa,app!=x")))) == 2000
