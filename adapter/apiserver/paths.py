"""Kubernetes path-segment rules and the resource a matched route addresses.

Authorization must see exactly what routing saw. The router matches on the *encoded* path (so
``%2F`` stays inside one segment) and decodes each parameter afterwards; a SubjectAccessReview
computed from the fully decoded path would split that segment in two and describe a different
resource than the one served (issue 12). So the authorizer's attributes come from the matched
route's parameters (:func:`route_target`), and a path whose segments Kubernetes itself would
refuse is answered 400 before anyone is asked anything (:func:`validate_request_path`):

* no encoded slash (``%2F``) anywhere in the path;
* a namespace is a DNS-1123 label (``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, at most 63 characters);
* a name, resource or metric is not empty, not ``.`` or ``..`` and contains neither ``/`` nor ``%``
  (``path.ValidatePathSegmentName`` upstream).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from adapter.errors import BadRequest

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_ENCODED_SLASH = re.compile(r"%2f", re.IGNORECASE)


def namespace_problem(value: str) -> str | None:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _DNS1123_LABEL.fullmatch(value):
        return (
            "must be a DNS-1123 label: lower case alphanumeric characters or '-', starting and ending "
            "with an alphanumeric character"
        )
    return None


def segment_problem(value: str) -> str | None:
    """``path.IsValidPathSegmentName`` upstream: what a name in a URL path may not be."""
    if value == "":
        return "may not be empty"
    if value in (".", ".."):
        return f"may not be {value!r}"
    for bad in ("/", "%"):
        if bad in value:
            return f"may not contain {bad!r}"
    return None


@dataclass(frozen=True)
class RouteTarget:
    """The resource a request to one of our resource routes addresses (authorizer attributes)."""

    group: str
    version: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""


#: route name -> (group, how its parameters map to a target); routes.py registers these names.
CUSTOM_NAMESPACED = "custom-namespaced"
CUSTOM_ROOT = "custom-root"
CUSTOM_NAMESPACE = "custom-namespace"
EXTERNAL = "external"
EXTERNAL_ROOT = "external-root"  # external.metrics.k8s.io/v1beta1/{metric}: `namespaced: false` rules
#: metrics.k8s.io/v1beta1: nodes, nodes/{name}, pods, namespaces/{namespace}/pods[/{name}]
RESOURCE_NODES = "resource-nodes"
RESOURCE_NODE = "resource-node"
RESOURCE_PODS = "resource-pods"
RESOURCE_NAMESPACE_PODS = "resource-namespace-pods"
RESOURCE_POD = "resource-pod"
_RESOURCE_ROUTES = {
    RESOURCE_NODES: "nodes",
    RESOURCE_NODE: "nodes",
    RESOURCE_PODS: "pods",
    RESOURCE_NAMESPACE_PODS: "pods",
    RESOURCE_POD: "pods",
}

_NAMESPACE_PARAMS = ("namespace",)
_SEGMENT_PARAMS = ("resource", "name", "metric")


def route_target(
    request: web.Request, custom_group: str, external_group: str, resource_group: str = "metrics.k8s.io"
) -> RouteTarget | None:
    """What the matched resource route addresses, from its (decoded) parameters; None otherwise."""
    route = request.match_info.route
    kind = getattr(route, "name", None)
    m = request.match_info
    if kind == CUSTOM_NAMESPACED:
        return RouteTarget(custom_group, m["version"], m["resource"], m["namespace"], m["name"], m["metric"])
    if kind == CUSTOM_ROOT:
        return RouteTarget(custom_group, m["version"], m["resource"], "", m["name"], m["metric"])
    if kind == CUSTOM_NAMESPACE:
        # as the generic apiserver reads namespaces/{ns}/metrics/{metric}
        return RouteTarget(custom_group, m["version"], "metrics", m["namespace"], m["metric"])
    if kind == EXTERNAL:
        return RouteTarget(external_group, "v1beta1", m["metric"], m["namespace"])
    if kind == EXTERNAL_ROOT:
        return RouteTarget(external_group, "v1beta1", m["metric"])
    if kind in _RESOURCE_ROUTES:
        return RouteTarget(
            resource_group, "v1beta1", _RESOURCE_ROUTES[kind], m.get("namespace", ""), m.get("name", "")
        )
    return None


def validate_request_path(request: web.Request) -> None:
    """Raise :class:`BadRequest` for an encoded slash or a parameter Kubernetes would refuse."""
    if _ENCODED_SLASH.search(request.rel_url.raw_path):
        raise BadRequest(
            f"invalid request path {request.rel_url.raw_path!r}: encoded slashes (%2F) are not allowed "
            "in a path segment"
        )
    m = request.match_info
    for key in _NAMESPACE_PARAMS:
        if key in m and (problem := namespace_problem(m[key])):
            raise BadRequest(f"invalid namespace {m[key]!r}: {problem}", details={"name": m[key]})
    for key in _SEGMENT_PARAMS:
        if key in m and (problem := segment_problem(m[key])):
            raise BadRequest(
                f"invalid {key} {m[key]!r} in the request path: {problem}", details={"name": m[key]}
            )


@web.middleware
async def path_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Refuse bad paths before authentication (no TokenReview or SubjectAccessReview for them)."""
    validate_request_path(request)
    return await handler(request)


__all__ = [
    "CUSTOM_NAMESPACE",
    "CUSTOM_NAMESPACED",
    "CUSTOM_ROOT",
    "EXTERNAL",
    "EXTERNAL_ROOT",
    "RESOURCE_NAMESPACE_PODS",
    "RESOURCE_NODE",
    "RESOURCE_NODES",
    "RESOURCE_POD",
    "RESOURCE_PODS",
    "RouteTarget",
    "namespace_problem",
    "path_middleware",
    "route_target",
    "segment_problem",
    "validate_request_path",
]
