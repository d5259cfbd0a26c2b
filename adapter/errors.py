"""The adapter's one error hierarchy; the API layer turns any of them into a ``metav1.Status``.

Every layer raises one of these instead of returning ad-hoc codes, so that the HTTP layer has one
place that maps failures to the exact Kubernetes ``Status`` shape (reason + code) and a message
that says what to do next, and start-up code catches one root (:class:`AdapterError`)::

    AdapterError (500)
    ├── BadRequest (400), Unauthorized (401), Forbidden (403)
    ├── NotFound (404) ── MetricNotFound
    ├── BackendUnavailable (503)
    ├── KubeError (503): the Kubernetes API answered an error ── WatchExpired (in adapter.kube.client)
    └── ConfigError: a bad rules file, kubeconfig or certificate (start-up and reload)
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


class TooManyRequests(AdapterError):
    """Refused to protect a backend (e.g. TokenReviews of unknown tokens): 429 with Retry-After."""

    code = 429
    reason = "TooManyRequests"

    def __init__(self, message: str, *, retry_after: float = 1.0, details: dict | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class BackendUnavailable(AdapterError):
    """Prometheus (or the Kubernetes API) could not answer: 503, retry later."""

    code = 503
    reason = "ServiceUnavailable"


class KubeError(AdapterError):
    """The Kubernetes API answered with an error.

    ``status`` is its HTTP code and ``kube_reason``/``message`` come from its ``Status`` body. Should
    one reach a client of the adapter it is a 503: the adapter could not get what it needed.
    """

    code = 503
    reason = "ServiceUnavailable"

    def __init__(self, status: int, kube_reason: str, message: str) -> None:
        super().__init__(f"{status} {kube_reason}: {message}")
        self.status = status
        self.kube_reason = kube_reason
        self.message = message


class ConfigError(AdapterError):
    """Invalid adapter configuration; the message names the location and the fix."""
