"""The adapter's own metrics (served on ``/metrics``), in one registry shared by every layer.

Kept in one module so the API layer, the Prometheus client and the discovery loop record into
the same registry without importing each other.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Histogram(
    "hpakit_adapter_request_duration_seconds",
    "API requests served, by route template and HTTP code.",
    ["route", "code"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
PROM_QUERIES = Histogram(
    "hpakit_adapter_prometheus_query_duration_seconds",
    "Queries sent to Prometheus, by endpoint (query, series) and outcome (success, error, timeout).",
    ["endpoint", "outcome"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
DISCOVERY_DURATION = Histogram(
    "hpakit_adapter_discovery_duration_seconds",
    "Duration of one discovery (relist) pass over all rules.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
DISCOVERY_LAST_SUCCESS = Gauge(
    "hpakit_adapter_discovery_last_success_timestamp_seconds",
    "Unix time of the last successful discovery; age = time() - this.",
    registry=REGISTRY,
)
DISCOVERY_FAILURES = Counter(
    "hpakit_adapter_discovery_failures",
    "Discovery passes that failed (the last good index is kept).",
    registry=REGISTRY,
)
DISCOVERED_METRICS = Gauge(
    "hpakit_adapter_discovered_metrics",
    "Metrics currently served, by API (custom, external, resource).",
    ["api"],
    registry=REGISTRY,
)
CACHE = Counter(
    "hpakit_adapter_result_cache",
    "Result cache lookups by outcome (hit, miss, coalesced).",
    ["outcome"],
    registry=REGISTRY,
)
OBJECTS_WITHOUT_DATA = Counter(
    "hpakit_adapter_objects_without_data",
    "Objects that matched a request but had no sample in Prometheus (reported, not dropped).",
    ["resource", "metric"],
    registry=REGISTRY,
)
NONFINITE_VALUES = Counter(
    "hpakit_adapter_nonfinite_values",
    "Samples that were NaN or +/-Inf and could not be served as a quantity.",
    ["api"],
    registry=REGISTRY,
)
CONFIG_RELOADS = Counter(
    "hpakit_adapter_config_reloads",
    "Config and certificate reloads by kind (config, certs) and outcome (success, error).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
OPEN_CONNECTIONS = Gauge(
    "hpakit_adapter_open_connections",
    "Connections open on the secure port (TLS handshake pending or done), counted by the gate.",
    registry=REGISTRY,
)
ASYNCIO_TASKS = Gauge(
    "hpakit_adapter_asyncio_tasks",
    "asyncio tasks not yet done in the server's event loop, counted when /metrics is scraped "
    "(the scrape's own handler task included): a number that only grows is a task leak.",
    registry=REGISTRY,
)
CONNECTIONS_CLOSED = Counter(
    "hpakit_adapter_connections_closed",
    "Connections the gate closed, by reason: refused at accept: over_limit (--max-connections "
    "reached and every open connection busy with a request), per_source_limit "
    "(--max-connections-per-source); later: handshake (failed or timed out), header_timeout, "
    "status_400/411/413/431 (request head or body refused).",
    ["reason"],
    registry=REGISTRY,
)
CONNECTIONS_EVICTED = Counter(
    "hpakit_adapter_connections_evicted",
    "Open connections the gate closed to admit a new one at --max-connections, by the state the "
    "evicted one was in: handshake (TLS not done), no_request (no complete request yet), idle "
    "(keep-alive between requests). Connections with a request in flight are never evicted.",
    ["state"],
    registry=REGISTRY,
)
for _reason in ("over_limit", "per_source_limit"):  # refusals are 0, not absent, until they happen
    CONNECTIONS_CLOSED.labels(reason=_reason)
for _state in ("handshake", "no_request", "idle"):
    CONNECTIONS_EVICTED.labels(state=_state)
