"""hpa-kit adapter: a custom + external metrics API server backed by Prometheus.

Data flows rule -> registry -> query -> API response:
config (rules) -> naming/resources (registry of discovered metrics) -> PromQL (query) -> provider
-> API layer (Kubernetes-shaped JSON).
"""
