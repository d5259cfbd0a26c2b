"""Prometheus HTTP API client: one pooled connection set, exact values, errors that say what to do.

- One ``httpx.AsyncClient`` for the process: keep-alive connections instead of a handshake per
  query, and one place for the timeout, CA and bearer token.
- Long queries (big name lists) go as a POST form: URLs over a few KiB are cut by proxies and
  rejected by servers, which upstream hits with large selectors.
- Sample values are parsed from Prometheus' strings into ``Decimal`` (never through float), so
  ``1e+30`` or ``0.000000001`` stay exact; NaN and +/-Inf are recognised, not served.

Error policy: anything that means "Prometheus could not answer" (connect refused, timeout, 5xx,
``errorType`` timeout/canceled/unavailable) raises :class:`BackendUnavailable` (503, retry).
A query Prometheus *rejects* (``bad_data``, ``execution``: 400/422) is the rule's fault, not the
client's and not transient, so it raises :class:`PrometheusQueryError` (500) naming the query.
"""

from __future__ import annotations

import functools
import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx

from adapter.errors import AdapterError, BackendUnavailable
from adapter.provider.prometheus.series_stream import SeriesShapes, SeriesStreamError, SeriesStreamParser
from adapter.telemetry import PROM_QUERIES

log = logging.getLogger(__name__)

#: Encoded query length above which we POST instead of GET.
POST_THRESHOLD = 4000
#: Largest Prometheus answer read (``--prometheus-max-response-bytes``); parsed, an answer costs
#: several times its size, and an HPA never needs more than a few MiB.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class PrometheusQueryError(AdapterError):
    """Prometheus rejected a query we built (the rule's metricsQuery is wrong): 500."""

    code = 500
    reason = "InternalError"


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector (or a scalar: empty labels)."""

    labels: dict[str, str]
    timestamp: Decimal
    value: Decimal

    @property
    def finite(self) -> bool:
        return self.value.is_finite()

    @property
    def time(self) -> datetime:
        return _utc_time(self.timestamp)


@functools.lru_cache(maxsize=256)
def _utc_time(timestamp: Decimal) -> datetime:
    """A sample timestamp as an aware UTC datetime (cached: one query's samples share theirs)."""
    return datetime.fromtimestamp(float(timestamp), tz=UTC)


@dataclass
class QueryResult:
    """What came back for one instant query; ``raw`` is the response body for explain."""

    query: str
    samples: list[Sample] = field(default_factory=list)
    result_type: str = "vector"
    warnings: list[str] = field(default_factory=list)
    method: str = "GET"
    raw: str = ""
    duration: float = 0.0


def approx_size(result: QueryResult) -> int:
    """Approximate bytes a parsed result keeps alive (for the cache's byte budget; errs high)."""
    size = 400 + len(result.query) + len(result.raw) + sum(len(w) for w in result.warnings)
    for sample in result.samples:
        size += 600  # the Sample, its label dict and two Decimals
        for key, value in sample.labels.items():
            size += 110 + len(key) + len(value)
    return size


def parse_value(text: Any) -> Decimal:
    """Prometheus sample value string -> exact Decimal ("NaN", "+Inf", "-Inf" included)."""
    if isinstance(text, Decimal):
        return text
    s = str(text)
    try:
        return Decimal(s)
    except InvalidOperation:
        raise ValueError(f"not a Prometheus sample value: {s!r}") from None


def _parse_pair(pair: Any) -> tuple[Decimal, Decimal]:
    if not isinstance(pair, list) or len(pair) != 2:
        raise ValueError(f"malformed sample {pair!r}")
    ts = pair[0] if isinstance(pair[0], Decimal) else Decimal(str(pair[0]))
    return ts, parse_value(pair[1])


def parse_query_response(query: str, body: bytes) -> QueryResult:
    """Parse a ``/api/v1/query`` success body."""
    doc = json.loads(body, parse_float=Decimal, parse_int=Decimal)
    data = doc.get("data") or {}
    rtype = data.get("resultType", "vector")
    result = data.get("result")
    out = QueryResult(query, result_type=rtype, warnings=list(doc.get("warnings") or []))
    if rtype == "vector":
        for item in result or []:
            ts, value = _parse_pair(item.get("value"))
            out.samples.append(Sample(dict(item.get("metric") or {}), ts, value))
    elif rtype == "scalar":
        ts, value = _parse_pair(result)
        out.samples.append(Sample({}, ts, value))
    else:
        raise PrometheusQueryError(
            f"query returned a {rtype}, not an instant vector: {query!r}; "
            "the rule's metricsQuery must evaluate to an instant vector (no bare range selector)"
        )
    return out


class PrometheusClient:
    """Async client for the parts of the Prometheus HTTP API the adapter uses."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        ca_file: str | None = None,
        token_file: str | None = None,
        insecure_skip_verify: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        post_threshold: int = POST_THRESHOLD,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.post_threshold = post_threshold
        self.max_response_bytes = max_response_bytes
        self._token_file = token_file
        self._token: tuple[float, str] | None = None
        verify: ssl.SSLContext | bool = True
        if insecure_skip_verify:
            verify = False
        elif ca_file:
            verify = ssl.create_default_context(cafile=ca_file)
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout),
            verify=verify,
            transport=transport,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            headers={"User-Agent": "hpa-kit-adapter"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- auth -----------------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        """Bearer token re-read when the file changes (projected tokens rotate)."""
        if not self._token_file:
            return {}
        path = Path(self._token_file)
        try:
            mtime = path.stat().st_mtime
            if self._token is None or self._token[0] != mtime:
                self._token = (mtime, path.read_text().strip())
        except OSError as err:
            raise BackendUnavailable(
                f"cannot read the Prometheus bearer token file {self._token_file}: {err}; "
                "check --prometheus-token-file"
            ) from None
        return {"Authorization": f"Bearer {self._token[1]}"}

    # --- transport ------------------------------------------------------------------------------

    async def _request(
        self,
        endpoint: str,
        params: list[tuple[str, str]],
        what: str,
        sink: Callable[[bytes], None] | None = None,
    ) -> tuple[bytes, str]:
        """(body, method) of a 200 answer. With ``sink``, a 200 body is not kept: each chunk goes
        to ``sink`` as it arrives (uncapped: the sink bounds its own memory) and body is b""."""
        path = f"/api/v1/{endpoint}"
        encoded = httpx.QueryParams(list[tuple[str, str | int | float | bool | None]](params))
        method = "POST" if len(str(encoded)) > self.post_threshold else "GET"
        started = time.perf_counter()
        try:
            if method == "POST":
                request = self._client.build_request(
                    "POST", path, data=_group(params), headers=self._auth_headers()
                )
            else:
                request = self._client.build_request(
                    "GET", path, params=encoded, headers=self._auth_headers()
                )
            resp = await self._client.send(request, stream=True)
            try:
                status = resp.status_code
                if sink is not None and status == 200:
                    async for chunk in resp.aiter_bytes():
                        sink(chunk)
                    content = b""
                else:
                    content = await self._read_capped(resp, what)
            finally:
                await resp.aclose()
        except httpx.TimeoutException:
            PROM_QUERIES.labels(endpoint, "timeout").observe(time.perf_counter() - started)
            raise BackendUnavailable(
                f"prometheus at {self.url} did not answer {what} within {self.timeout:g}s; "
                "check Prometheus' load or raise --prometheus-timeout"
            ) from None
        except httpx.HTTPError as err:
            PROM_QUERIES.labels(endpoint, "error").observe(time.perf_counter() - started)
            if isinstance(err, httpx.ConnectError):
                raise BackendUnavailable(
                    f"prometheus at {self.url} unreachable: {_connect_reason(err)}; "
                    "check --prometheus-url and that Prometheus is running"
                ) from None
            raise BackendUnavailable(
                f"prometheus at {self.url} failed during {what}: {type(err).__name__}: {err}; "
                "check --prometheus-url and the network path to Prometheus"
            ) from None
        except BackendUnavailable:
            PROM_QUERIES.labels(endpoint, "error").observe(time.perf_counter() - started)
            raise
        outcome = "success" if status == 200 else "error"
        PROM_QUERIES.labels(endpoint, outcome).observe(time.perf_counter() - started)
        if status == 200:
            return content, method
        self._raise_for(status, content, what)
        raise AssertionError("unreachable")

    async def _read_capped(self, resp: httpx.Response, what: str) -> bytes:
        """The body, refused (503) as soon as it is known to exceed ``max_response_bytes``."""
        cap = self.max_response_bytes
        too_large = BackendUnavailable(
            f"prometheus' answer to {what} is larger than {cap} bytes; the adapter does not read it. "
            "Narrow the rule's metricsQuery (fewer series: aggregate, filter labels) or raise "
            "--prometheus-max-response-bytes"
        )
        length = resp.headers.get("content-length", "")
        if length.isdigit() and int(length) > cap:
            raise too_large
        chunks: list[bytes] = []
        total = 0
        async for chunk in resp.aiter_bytes():
            total += len(chunk)
            if total > cap:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def _raise_for(self, status_code: int, content: bytes, what: str) -> None:
        text = content.decode("utf-8", "replace")
        error_type, error = "", text[:500]
        try:
            doc = json.loads(text)
            error_type, error = doc.get("errorType", ""), doc.get("error", error)
        except (ValueError, AttributeError):
            pass
        if status_code in (401, 403):
            raise BackendUnavailable(
                f"prometheus at {self.url} refused {what}: HTTP {status_code} {error}; "
                "check --prometheus-token-file / the proxy's authorization"
            )
        if status_code in (400, 422) and error_type in ("bad_data", "execution", ""):
            raise PrometheusQueryError(
                f"prometheus rejected {what}: {error_type or status_code}: {error}; "
                "fix the rule's metricsQuery (try `hpa-kit-adapter explain` to see the PromQL)"
            )
        raise BackendUnavailable(
            f"prometheus at {self.url} failed {what}: HTTP {status_code}"
            f"{' ' + error_type if error_type else ''}: {error}; retry later or check Prometheus' logs"
        )

    # --- API ------------------------------------------------------------------------------------

    async def query(
        self, promql: str, time: float | datetime | None = None, *, keep_raw: bool = False
    ) -> QueryResult:
        """Instant query. Raises BackendUnavailable / PrometheusQueryError.

        ``keep_raw`` keeps the response body in ``result.raw`` (explain shows it; the served path
        never needs it, and it would double what the cache holds).
        """
        params = [("query", promql)]
        if time is not None:
            ts = time.timestamp() if isinstance(time, datetime) else time
            params.append(("time", f"{ts:.3f}"))
        started = _now()
        body, method = await self._request("query", params, f"query {_short(promql)}")
        try:
            result = parse_query_response(promql, body)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise BackendUnavailable(
                f"prometheus at {self.url} sent an unparsable answer to {_short(promql)}: {err}; "
                "is --prometheus-url pointing at Prometheus (not Grafana or a login proxy)?"
            ) from None
        result.method = method
        if keep_raw:
            result.raw = body.decode("utf-8", "replace")
        result.duration = _now() - started
        return result

    async def series(
        self, match: list[str], start: float | None = None, end: float | None = None
    ) -> list[dict[str, str]]:
        """``/api/v1/series``: label sets of the series matching any of ``match``.

        Keeps every series; discovery uses :meth:`series_shapes`, which does not.
        """
        out: list[dict[str, str]] = []
        await self._series_stream(match, start, end, lambda labels: out.append(dict(labels)))
        return out

    async def series_shapes(
        self, match: list[str], start: float | None = None, end: float | None = None
    ) -> SeriesShapes:
        """``/api/v1/series`` reduced while it streams in to series name -> label-name sets.

        Memory is bounded by the distinct (name, label-name set) pairs, not by the series: the
        body is parsed chunk by chunk and never held, so it is not subject to
        ``max_response_bytes`` either.
        """
        shapes = SeriesShapes()
        await self._series_stream(match, start, end, shapes.add)
        return shapes

    async def _series_stream(
        self,
        match: list[str],
        start: float | None,
        end: float | None,
        on_series: Callable[[dict[str, str]], None],
    ) -> None:
        params = [("match[]", m) for m in match]
        if start is not None:
            params.append(("start", f"{start:.3f}"))
        if end is not None:
            params.append(("end", f"{end:.3f}"))
        parser = SeriesStreamParser(on_series)
        try:
            await self._request("series", params, f"series {match!r}", sink=parser.feed)
            parser.close()
        except SeriesStreamError as err:
            raise BackendUnavailable(
                f"prometheus at {self.url} sent an unparsable series answer: {err}; "
                "is --prometheus-url pointing at Prometheus (not a proxy that cuts or rewrites answers)?"
            ) from None

    async def scrape_interval(self) -> float | None:
        """Global scrape interval from ``/api/v1/status/config`` (None if unknown)."""
        import yaml

        from adapter.rules.config import parse_prom_duration

        body, _ = await self._request("status/config", [], "status/config")
        try:
            doc = json.loads(body)
            cfg = yaml.safe_load(doc["data"]["yaml"]) or {}
            text = (cfg.get("global") or {}).get("scrape_interval", "1m")
            return parse_prom_duration(str(text))
        except (ValueError, KeyError, TypeError, yaml.YAMLError):
            return None

    async def ready(self) -> bool:
        try:
            resp = await self._client.get("/-/ready", headers=self._auth_headers())
            return resp.status_code == 200
        except httpx.HTTPError:
            return False


def _group(params: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in params:
        out.setdefault(k, []).append(v)
    return out


def _short(q: str, n: int = 120) -> str:
    q = " ".join(q.split())
    return repr(q if len(q) <= n else q[: n - 3] + "...")


def _now() -> float:
    return time.perf_counter()


def _connect_reason(err: BaseException) -> str:
    """Dig through httpx/anyio wrapping ("All connection attempts failed") for the OS reason."""
    chain: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    text = "; ".join(dict.fromkeys(str(e) for e in chain if str(e))) or type(err).__name__
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if (
        "name or service not known" in lowered
        or "nodename nor servname" in lowered
        or "getaddrinfo" in lowered
    ):
        return f"cannot resolve host ({text})"
    if "certificate" in lowered or "ssl" in lowered:
        return f"TLS handshake failed ({text}); check --prometheus-ca-file"
    return text
