"""mockmetrics: a small HTTP app whose Prometheus metrics respond to real load.

It is the workload behind hpa-kit's HPA scenarios: ``total_hit_count`` (Object metric on the Service),
``pm_status`` (PHP-FPM-like pool, Pods metric), ``http_requests_total`` (per-pod request rate) and
``queue_depth`` (External metric), plus a dial for deterministic tests. See :mod:`mockmetrics.app` for the
routes and :mod:`mockmetrics.metrics` for the metric contract.
"""
