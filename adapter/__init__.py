"""hpa-kit adapter: a custom + external metrics API server backed by Prometheus.

One request, in the order the modules see it (ARCHITECTURE.md has the picture):

1. ``apiserver/server.py``   HTTPS listener (reloaded certificates), access log, health, /metrics
2. ``apiserver/auth.py``     front-proxy certificate or bearer token (TokenReview), then
                             SubjectAccessReview
3. ``apiserver/routes.py``   the path and selectors (``selectors.py``) -> which metric of which
                             resource, asked of the ``Provider`` (``provider/base.py``)
4. ``provider/prometheus/provider.py``  the rule serving it, from the discovery index
                             (``provider/prometheus/registry.py``, built from ``rules/config.py``,
                             ``rules/naming.py`` and ``rules/resources.py``); the objects for ``*``
                             from the watch cache (``kube/objects.py``)
5. ``rules/promql.py``       the rule's metricsQuery rendered (``rules/templates.py``) over those
                             objects
6. ``provider/prometheus/cache.py`` -> ``provider/prometheus/client.py``  coalesced, cached query
                             to Prometheus
7. ``apiserver/routes.py``   values as MetricValueList JSON (``apiserver/quantity.py``); any error
                             as a metav1.Status (``errors.py`` -> ``apiserver/status.py``)

Around it: ``app.py`` builds and starts the parts (the composition root), ``cli.py`` parses the
flags, ``kube/`` is cluster access (client, resource mappers, watch cache), ``provider/static.py``
serves constant values, and ``tools/`` holds ``explain`` and ``lint``. The allowed imports between
these layers are a test: ``tests/unit/test_adapter_layers.py``.
"""
