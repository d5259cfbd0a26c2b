"""The streamed /api/v1/series parse: same answer as json.loads for any chunking, clear errors for
anything cut or malformed, and discovery memory bounded by distinct names, not by series."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.errors import BackendUnavailable
from adapter.kube.mapper import StaticResourceMapper
from adapter.provider.prometheus.client import PrometheusClient
from adapter.provider.prometheus.registry import Registry, discover
from adapter.provider.prometheus.series_stream import (
    SeriesShapes,
    SeriesStreamError,
    SeriesStreamParser,
)
from adapter.rules.config import parse_config

# Values that trip a naive scanner: braces, commas, quotes, escapes, multi-byte UTF-8.
TRICKY = ["a}b", "},{", '"}', "back\\slash", "é漢😀", "}]}", "\n\t", "{", ",", "]"]


def parse(body: bytes, chunk_sizes: Iterator[int] | None = None, **kw: int) -> tuple[list[dict], dict]:
    got: list[dict] = []
    parser = SeriesStreamParser(got.append, **kw)
    pos = 0
    while pos < len(body):
        n = next(chunk_sizes) if chunk_sizes is not None else len(body)
        parser.feed(body[pos : pos + max(1, n)])
        pos += max(1, n)
    parser.close()
    return got, parser.fields


def chunks_of(n: int) -> Iterator[int]:
    while True:
        yield n


label_values = st.one_of(st.sampled_from(TRICKY), st.text(max_size=12))
series_st = st.dictionaries(
    st.sampled_from(["__name__", "namespace", "pod", "job", "le", "x}y", 'q"']), label_values, max_size=6
)


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(series_st, max_size=30),
    chunk=st.integers(min_value=1, max_value=97),
    indent=st.sampled_from([None, 0, 2]),
    warnings=st.booleans(),
    ascii_only=st.booleans(),
)
def test_any_chunking_gives_what_json_loads_gives(
    data: list[dict[str, str]], chunk: int, indent: int | None, warnings: bool, ascii_only: bool
) -> None:
    doc: dict = {"status": "success", "data": data}
    if warnings:
        doc = {"warnings": ["w}1", "w,2"], **doc, "infos": {"n": 1.5}}
    body = json.dumps(doc, indent=indent, ensure_ascii=ascii_only).encode()
    got, fields = parse(body, chunks_of(chunk))
    assert got == json.loads(body)["data"]
    assert fields["status"] == "success"
    if warnings:
        assert fields["warnings"] == ["w}1", "w,2"] and fields["infos"] == {"n": 1.5}


def test_big_chunks_take_the_fast_path_and_agree() -> None:
    data = [{"__name__": f"m{i % 7}", "pod": f"p{i}", "v": TRICKY[i % len(TRICKY)]} for i in range(5000)]
    body = json.dumps({"status": "success", "data": data}).encode()
    for size in (1, 13, 4096, 65536, len(body)):
        assert parse(body, chunks_of(size))[0] == data


@pytest.mark.parametrize(
    "body",
    [b'{"status":"success","data":[]}', b'{"status":"success"}', b'{"status":"success","data":null}', b"{}"],
)
def test_empty_answers(body: bytes) -> None:
    assert parse(body, chunks_of(3))[0] == []


def test_every_truncation_is_an_error() -> None:
    data = [{"__name__": "a", "pod": "x}"}, {"__name__": "b"}]
    body = json.dumps({"status": "success", "data": data}).encode()
    for cut in range(len(body)):
        with pytest.raises(SeriesStreamError, match="series answer is truncated"):
            parse(body[:cut], chunks_of(5))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"<html>login</html>", "expected a JSON object"),
        (b'[{"__name__":"a"}]', "expected a JSON object"),
        (b'{"status":"success","data":{"a":1}}', "'data' must be a list"),
        (b'{"status":"success","data":["a"]}', "must be an object of labels"),
        (b'{"status":"success","data":[{"__name__":"a"} {"__name__":"b"}]}', "expected ',' or ']'"),
        (b'{"status":"success","data":[]} x', "after the end"),
        (b'{"status":"success","data":[{"__name__":"a"]}', "truncated"),
        (b'{"status" "success"}', "expected ':'"),
        (b'{"status":"success",,}', "expected a member name"),
        (b'{"data":[{"a":"\xff"}]}', "not UTF-8"),
    ],
)
def test_malformed_answers_say_where(body: bytes, says: str) -> None:
    for size in (1, 7, len(body)):
        with pytest.raises(SeriesStreamError, match=says):
            parse(body, chunks_of(size))


def test_malformed_element_mid_stream_fails_without_buffering_the_rest() -> None:
    """A broken element is reported once more than max_pending characters pile up behind it."""
    good = b'{"__name__":"m","pod":"p"},' * 1000
    body = b'{"status":"success","data":[' + good + b'{"__name__":"m",' + good + b'{"__name__":"z"}]}'
    parser = SeriesStreamParser(lambda _: None, max_pending_chars=4096)
    with pytest.raises(SeriesStreamError, match="not valid JSON"):
        for i in range(0, len(body), 512):
            parser.feed(body[i : i + 512])
    assert len(parser._buf) < 4096 + 2 * 512  # never held much more than the bound


def test_shapes_drop_values_and_share_label_sets() -> None:
    shapes = SeriesShapes()
    for labels in (
        {"__name__": "a", "pod": "1", "namespace": "n"},
        {"__name__": "a", "pod": "2", "namespace": "m"},
        {"__name__": "b", "namespace": "n", "pod": "3"},
        {"__name__": "a", "pod": "1"},
        {"pod": "nameless"},
    ):
        shapes.add(labels)
    assert shapes.series == 5
    assert shapes.shapes == {
        "a": {frozenset({"pod", "namespace"}), frozenset({"pod"})},
        "b": {frozenset({"pod", "namespace"})},
    }
    (a_set,) = [s for s in shapes.shapes["a"] if len(s) == 2]
    (b_set,) = shapes.shapes["b"]
    assert a_set is b_set


# ---------------------------------------------------------------- discovery through the client

RULES = parse_config(
    """
rules:
- seriesQuery: '{__name__=~"^container_.*",namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name: {matches: "^(.*)_total$", as: "${1}"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
"""
)


def _series_body(n_series: int, n_names: int) -> Iterator[bytes]:
    """A /api/v1/series answer of ``n_series`` realistic series over ``n_names`` names, made
    lazily in ~64 KiB chunks (the way httpx hands a network body over)."""
    yield b'{"status":"success","data":['
    batch: list[str] = []
    size = 0
    for i in range(n_series):
        ns = f"team-{i % 7}"
        item = (
            f'{{"__name__":"container_metric_{i % n_names}_total","container":"c{i % 3}",'
            f'"instance":"10.0.{i % 250}.{i % 200}:10250","job":"kubelet","namespace":"{ns}",'
            f'"pod":"{ns}-pod-{i // n_names}"}}'
        )
        batch.append(item if i == 0 else "," + item)
        size += len(item)
        if size > 65536:
            yield "".join(batch).encode()
            batch, size = [], 0
    yield ("".join(batch) + "]}").encode()


def _streaming_client(bodies: Iterator[Iterator[bytes]]) -> PrometheusClient:
    async def handler(request: httpx.Request) -> httpx.Response:
        chunks = next(bodies)

        async def stream() -> AsyncIterator[bytes]:
            for c in chunks:
                yield c

        return httpx.Response(200, content=stream())

    return PrometheusClient("http://prom.test", transport=httpx.MockTransport(handler))


async def test_discovery_memory_follows_names_not_series() -> None:
    """200k series (~33 MB of JSON) over 400 names: the traced peak stays within a bound that
    grows with the names (and one chunk), far below the body (reading it whole costs > 30 MB)."""
    n_series, n_names = 200_000, 400
    prom = _streaming_client(iter([_series_body(n_series, n_names)]))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        index = await discover(RULES, prom, StaticResourceMapper())
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
        await prom.aclose()
    assert len(index.custom) == 2 * n_names  # pods and namespaces of every name
    bound = 2 * 1024 * 1024 + n_names * 4096
    assert peak < bound, (
        f"discovery peak {peak / 2**20:.1f} MiB > {bound / 2**20:.1f} MiB ({n_series} series)"
    )


async def test_truncated_or_malformed_stream_keeps_the_last_good_index() -> None:
    def cut(chunks: Iterator[bytes], keep: int) -> Iterator[bytes]:
        for i, c in enumerate(chunks):
            if i == keep:
                yield c[: len(c) // 2]
                return
            yield c

    def garbled(chunks: Iterator[bytes]) -> Iterator[bytes]:
        for i, c in enumerate(chunks):
            yield c.replace(b'"job"', b'"job" "x"', 1) if i == 2 else c

    bodies = iter(
        [
            _series_body(20_000, 50),
            cut(_series_body(20_000, 50), keep=3),
            garbled(_series_body(20_000, 50)),
            _series_body(20_000, 60),
        ]
    )
    prom = _streaming_client(bodies)
    try:
        reg = Registry(prom, StaticResourceMapper())
        first = await reg.refresh(RULES)
        assert len(first.custom) == 100
        with pytest.raises(
            BackendUnavailable, match=r"unparsable series answer: .*truncated.*inside the data"
        ):
            await reg.refresh(RULES)
        assert reg.current() is first and reg.consecutive_failures == 1
        with pytest.raises(BackendUnavailable, match=r"unparsable series answer: .*Expecting ':'"):
            await reg.refresh(RULES)
        assert reg.current() is first and reg.consecutive_failures == 2
        assert "unparsable series answer" in (reg.last_error or "")
        assert len((await reg.refresh(RULES)).custom) == 120
    finally:
        await prom.aclose()


async def test_series_answer_is_not_capped_by_max_response_bytes() -> None:
    """Streamed, a series answer larger than the query cap is fine (memory does not follow it)."""
    prom = _streaming_client(iter([_series_body(5_000, 10)]))
    prom.max_response_bytes = 64 * 1024
    try:
        shapes = await prom.series_shapes(['{__name__=~".+"}'])
    finally:
        await prom.aclose()
    assert shapes.series == 5_000 and len(shapes.shapes) == 10
