"""The aggregated API server: wire formats only (routes, auth, Status errors, quantities), never PromQL."""
