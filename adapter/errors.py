"""Errors the API layer turns into ``metav1.Status`` responses.

Every layer raises one of these instead of returning ad-hoc codes, so that the HTTP layer has one
place that maps failures to the exact Kubernetes ``Status`` shape (reason + code) and a message
that says what to do next.
"""

from __future__ import annotations


class AdapterError(Exception):
    """Base class: ``code`` is the HTTP status, ``reason`` the metav1.StatusReason."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class BadRequest(AdapterError):
    code = 400
    reason = "BadRequest"


class Unauthorized(AdapterError):
    code = 401
    reason = "Unauthorized"


class Forbidden(AdapterError):
    code = 403
    reason = "Forbidden"


class NotFound(AdapterError):
    code = 404
    reason = "NotFound"


class MetricNotFound(NotFound):
    """The metric is not served for that resource (or the object has no data)."""


class BackendUnavailable(AdapterError):
    """Prometheus (or the Kubernetes API) could not answer: 503, retry later."""

    code = 503
    reason = "ServiceUnavailable"


class ConfigError(Exception):
    """Invalid adapter configuration; the message names the location and the fix."""
