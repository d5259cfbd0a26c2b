"""Debugging tools built on the provider: ``explain`` (trace one request) and ``lint`` (check a config)."""
