"""The Prometheus provider: HTTP client, query cache, discovery registry and the provider itself."""
