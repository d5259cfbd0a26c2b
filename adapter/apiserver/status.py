"""``metav1.Status`` failure bodies: the one shape every error response takes.

Clients of an aggregated API (the HPA controller, ``kubectl get --raw``, the aggregator itself)
decode errors as ``Status`` objects and surface ``message`` to users, so every failure, including
ones we did not anticipate, must be a well-formed Status and never a traceback or an HTML page.
Unexpected exceptions become a generic 500 ``InternalError`` here and are logged in full instead.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from aiohttp import web

from adapter.errors import AdapterError, TooManyRequests

log = logging.getLogger(__name__)

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

INTERNAL_MESSAGE = "an internal error occurred in the metrics adapter; its log has the details"


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``Status`` object with ``status: Failure`` (``details`` omitted when empty, as upstream)."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details:
        body["details"] = details
    body["code"] = code
    return body


def reason_for_code(code: int) -> str:
    return _REASONS.get(code, "InternalError" if code >= 500 else "BadRequest")


def status_for_error(err: AdapterError) -> dict[str, Any]:
    return status_body(err.code, err.reason, err.message, err.details)


def status_response(body: dict[str, Any], *, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=int(body["code"]),
        text=json.dumps(body),
        content_type="application/json",
        headers=headers,
    )


def error_response(err: BaseException, *, headers: dict[str, str] | None = None) -> web.Response:
    """Map any exception to a Status response; unexpected ones are logged with their traceback."""
    if isinstance(err, TooManyRequests):
        headers = {**(headers or {}), "Retry-After": str(max(1, math.ceil(err.retry_after)))}
    if isinstance(err, AdapterError):
        return status_response(status_for_error(err), headers=headers)
    if isinstance(err, web.HTTPException):
        # aiohttp's own routing errors (404 unmatched path, 405 wrong method).
        code = err.status
        message = {
            404: "the server could not find the requested resource",
            405: "the server does not allow this method on the requested resource",
        }.get(code, err.reason)
        return status_response(status_body(code, reason_for_code(code), message), headers=headers)
    log.error("unexpected error while serving a request", exc_info=err)
    return status_response(status_body(500, "InternalError", INTERNAL_MESSAGE), headers=headers)
