"""The composition root: the one place that builds the adapter's parts and wires them together.

:func:`serve` reads as the start-up sequence: cluster access -> provider -> authentication and
authorization -> HTTPS server, then wait for SIGTERM. Every part that needs stopping is registered
on one :class:`~contextlib.AsyncExitStack` as soon as it exists, so shutdown (or a failed start-up)
stops exactly what was started, in reverse order. :func:`run_explain` and :func:`run_lint` compose
the debugging tools the same way. Flags are parsed and checked in :mod:`adapter.cli`; this module
takes the parsed ``argparse.Namespace``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from adapter.apiserver.auth import (
    AlwaysAllow,
    Authenticator,
    AuthnConfig,
    AuthnOverrides,
    Authorizer,
    ConfigMapAuthnSource,
    SubjectAccessReviewer,
    TokenReviewer,
    log_requestheader_warnings,
)
from adapter.apiserver.server import (
    AdapterServer,
    ConnectionLimits,
    ServerSettings,
    TLSReloader,
    build_app,
    wait_for_shutdown_signal,
)
from adapter.errors import AdapterError, BackendUnavailable, ConfigError
from adapter.kube.client import KubeClient
from adapter.kube.mapper import ApiDiscoveryMapper, StaticResourceMapper
from adapter.kube.objects import WatchCache
from adapter.provider.base import (
    GroupResource,
    ObjectLister,
    ObjectMeta,
    Provider,
    ResourceInfo,
    ResourceMapper,
    ResourceMetricsProvider,
)
from adapter.provider.prometheus.cache import DEFAULT_MAX_BYTES
from adapter.provider.prometheus.client import PrometheusClient
from adapter.provider.prometheus.provider import PrometheusProvider
from adapter.provider.prometheus.resource import PrometheusResourceProvider
from adapter.provider.static import StaticProvider
from adapter.rules.config import load_config
from adapter.selectors import LabelSelector
from adapter.tools.explain import explain, explain_resource, format_explain
from adapter.tools.lint import format_lint, lint

log = logging.getLogger("adapter")

T = TypeVar("T")


class UsageError(Exception):
    """A bad flag or file: reported as one line, exit 2, nothing started."""


@dataclass(frozen=True)
class Checked:
    """``serve`` flags validated up front (by :func:`adapter.cli.validate_serve`), before any task
    or socket exists."""

    args: argparse.Namespace
    needs_cluster: bool


def on_exit(stack: AsyncExitStack, stop: Callable[[], Awaitable[object]]) -> None:
    """Run ``stop`` when ``stack`` closes; a failing stop is logged and the others still run."""

    async def quietly() -> None:
        try:
            await stop()
        except Exception:
            log.exception("error during shutdown")

    stack.push_async_callback(quietly)


async def _retrying(fn: Callable[[], Awaitable[T]], what: str, *, attempts: int, delay: float = 2.0) -> T:
    """Start-up calls to the cluster: a few retries (the API server may be starting too)."""
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except (AdapterError, OSError) as err:
            if attempt == attempts:
                raise
            log.warning("%s failed (attempt %d/%d), retrying: %s", what, attempt, attempts, err)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - attempts >= 1


# --------------------------------------------------------------------------------------------
# The parts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """Cluster access when there is any: the API client, API discovery and the object cache."""

    kube: KubeClient | None = None
    mapper: ResourceMapper | None = None
    lister: ObjectLister | None = None


async def connect_cluster(stack: AsyncExitStack, args: argparse.Namespace, *, required: bool) -> Cluster:
    """Client, started API discovery and watch cache; an empty :class:`Cluster` when not wanted.

    Without ``required`` (or ``--kubeconfig``) the cluster is still used when running in one, and
    its absence is only a warning.
    """
    wanted = required or bool(args.kubeconfig)
    if not wanted and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return Cluster()
    try:
        kube = KubeClient.from_kubeconfig_or_cluster(args.kubeconfig)
    except ConfigError as err:
        if wanted:
            raise UsageError(str(err)) from None
        log.warning("no cluster access (%s): '*' requests will be answered with 404", err)
        return Cluster()
    on_exit(stack, kube.aclose)
    mapper = ApiDiscoveryMapper(kube)
    await _retrying(mapper.start, "API discovery", attempts=10)
    on_exit(stack, mapper.stop)
    lister = WatchCache(kube)
    on_exit(stack, lister.stop)
    return Cluster(kube, mapper, lister)


def prometheus_provider(
    args: argparse.Namespace,
    mapper: ResourceMapper,
    lister: ObjectLister,
    *,
    relist_interval: float = 60.0,
    cache_ttl: float = 5.0,
    cache_max_bytes: int = DEFAULT_MAX_BYTES,
) -> PrometheusProvider:
    """From the ``--config`` and ``--prometheus-*`` flags ``serve``, ``explain`` and ``lint`` share."""
    return PrometheusProvider.from_settings(
        config_path=Path(args.config),
        prometheus_url=args.prometheus_url,
        mapper=mapper,
        lister=lister,
        prometheus_timeout=args.prometheus_timeout,
        relist_interval=relist_interval,
        cache_ttl=cache_ttl,
        prometheus_ca_file=args.prometheus_ca_file,
        prometheus_token_file=args.prometheus_token_file,
        cache_max_bytes=cache_max_bytes,
        prometheus_max_response_bytes=args.prometheus_max_response_bytes,
    )


def make_provider(args: argparse.Namespace, cluster: Cluster) -> Provider:
    """The ``--provider``: Prometheus (needs the cluster's mapper and lister) or static values."""
    if args.provider == "prometheus":
        assert cluster.mapper is not None and cluster.lister is not None  # needs_cluster: connected
        return prometheus_provider(
            args,
            cluster.mapper,
            cluster.lister,
            relist_interval=args.metrics_relist_interval,
            cache_ttl=args.cache_ttl,
            cache_max_bytes=args.cache_max_bytes,
        )
    mapper = cluster.mapper or StaticResourceMapper()  # the built-in kinds without a cluster
    resources = []
    for name in args.static_resources:
        found = mapper.resource_for(name)
        resources.append(found.group_resource if found else GroupResource.parse(name))
    return StaticProvider(
        value=args.static_value,
        metrics=args.static_metrics,
        external_metrics=args.static_external_metrics
        if args.static_external_metrics is not None
        else args.static_metrics,
        resources=resources,
        mapper=mapper,
        lister=cluster.lister,
    )


def make_resource_provider(provider: Provider) -> ResourceMetricsProvider | None:
    """metrics.k8s.io from the Prometheus provider's ``resourceRules`` (read at each request, so a
    config reload adds or removes them); the static provider serves no resource metrics."""
    if not isinstance(provider, PrometheusProvider):
        return None
    return PrometheusResourceProvider(
        lambda: provider.config.resource_rules, provider.run_query, provider.mapper, provider.lister
    )


def load_tls(args: argparse.Namespace) -> TLSReloader:
    """The serving certificate (reloaded on change); client CAs are added by :func:`make_auth`."""
    try:
        return TLSReloader(args.tls_cert_file, args.tls_private_key_file)
    except (OSError, ValueError) as err:
        raise UsageError(
            f"cannot load --tls-cert-file/--tls-private-key-file: {err}; "
            "check that the key matches the certificate"
        ) from None


async def make_auth(
    stack: AsyncExitStack, args: argparse.Namespace, cluster: Cluster, tls: TLSReloader
) -> tuple[Authenticator, Authorizer]:
    """``--authn-mode`` (delegated: the kube-system configmap, watched, + TokenReview) and
    ``--authz-mode`` (delegated: SubjectAccessReview). The client CAs go into ``tls``."""
    overrides = AuthnOverrides(
        requestheader_client_ca_file=args.requestheader_client_ca_file,
        requestheader_allowed_names=tuple(args.requestheader_allowed_names)
        if args.requestheader_allowed_names is not None
        else None,
        client_ca_file=args.client_ca_file,
    )
    if args.authn_mode == "delegated":
        assert cluster.kube is not None  # needs_cluster: connected
        source = ConfigMapAuthnSource(
            cluster.kube, overrides, on_change=lambda cfg: tls.add_client_cas(cfg.ca_pems())
        )
        await _retrying(source.load, "reading the authentication configmap", attempts=5)
        source.start()
        on_exit(stack, source.stop)
        authenticator = Authenticator(
            source.current,
            tokens=TokenReviewer(
                cluster.kube, review_rate=args.token_review_rate, review_burst=args.token_review_burst
            ),
            allow_anonymous=args.allow_anonymous,
        )
    else:
        static_cfg = overrides.apply(AuthnConfig())
        log_requestheader_warnings(static_cfg)
        tls.add_client_cas(static_cfg.ca_pems())
        authenticator = Authenticator(lambda: static_cfg, allow_anonymous=True)
    authorizer: Authorizer
    if args.authz_mode == "delegated":
        assert cluster.kube is not None
        authorizer = SubjectAccessReviewer(cluster.kube)
    else:
        authorizer = AlwaysAllow()
    if args.authn_mode == "none" or args.authz_mode == "always-allow":
        log.warning(
            "running with --authn-mode=%s --authz-mode=%s: not for production",
            args.authn_mode,
            args.authz_mode,
        )
    return authenticator, authorizer


async def start_server(
    stack: AsyncExitStack, args: argparse.Namespace, app: web.Application, tls: TLSReloader
) -> AdapterServer:
    """Listen on ``--bind-address:--secure-port`` (and ``--metrics-bind-address``)."""
    settings = ServerSettings(
        tls_cert_file=args.tls_cert_file,
        tls_key_file=args.tls_private_key_file,
        bind_address=args.bind_address,
        secure_port=args.secure_port,
        metrics_bind_address=args.metrics_bind_address,
        cert_check_interval=args.cert_reload_interval,
        limits=ConnectionLimits(
            max_connections=args.max_connections,
            max_per_source=args.max_connections_per_source,
            tls_handshake_timeout=args.tls_handshake_timeout,
            request_header_timeout=args.request_header_timeout,
            idle_timeout=args.idle_timeout,
            max_header_bytes=args.max_request_header_bytes,
            max_body_bytes=args.max_request_body_bytes,
        ),
    )
    server = AdapterServer(settings, app, tls)
    try:
        await server.start()
    except OSError as err:
        await server.stop()
        raise UsageError(f"cannot listen on {args.bind_address}:{args.secure_port}: {err.strerror}") from None
    on_exit(stack, server.stop)
    return server


# --------------------------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------------------------


async def serve(checked: Checked) -> int:
    """Start the parts in order and run until SIGTERM/SIGINT; 1 when start-up fails."""
    args = checked.args
    tls = load_tls(args)
    async with AsyncExitStack() as stack:
        try:
            cluster = await connect_cluster(stack, args, required=checked.needs_cluster)
            provider = make_provider(args, cluster)
            authenticator, authorizer = await make_auth(stack, args, cluster, tls)
            app = build_app(
                provider,
                authenticator=authenticator,
                authorizer=authorizer,
                mapper=cluster.mapper,
                resource_provider=make_resource_provider(provider),
                metrics_public=args.metrics_insecure,
            )
            await provider.start()
            on_exit(stack, provider.stop)
            await start_server(stack, args, app, tls)
        except AdapterError as err:
            log.error("start-up failed: %s", err.message)
            return 1
        await wait_for_shutdown_signal()
    return 0


# --------------------------------------------------------------------------------------------
# explain / lint
# --------------------------------------------------------------------------------------------


class _NoLister:
    """The ObjectLister without cluster access: ``*`` requests cannot be answered."""

    async def list_objects(
        self, resource: ResourceInfo, namespace: str | None, selector: LabelSelector
    ) -> list[ObjectMeta]:
        raise BackendUnavailable(
            "no cluster access to list objects for '*': pass --kubeconfig or name an object"
        )


async def cluster_or_builtin(
    stack: AsyncExitStack, kubeconfig: str | None
) -> tuple[ResourceMapper, ObjectLister]:
    """(mapper, lister) of the cluster when reachable, else built-in kinds and no lister.

    An explicit ``kubeconfig`` that does not work is a :class:`UsageError`.
    """
    try:
        kube: KubeClient | None = KubeClient.from_kubeconfig_or_cluster(kubeconfig)
    except ConfigError as err:
        if kubeconfig:
            raise UsageError(str(err)) from None
        kube = None
    if kube is not None:
        mapper = ApiDiscoveryMapper(kube)
        try:
            await mapper.refresh()
        except Exception as err:
            await kube.aclose()
            if kubeconfig:
                raise UsageError(f"cannot reach the cluster in {kubeconfig}: {err}") from None
        else:
            on_exit(stack, kube.aclose)
            lister = WatchCache(kube)
            on_exit(stack, lister.stop)
            return mapper, lister
    print("note: no cluster access; using built-in resource kinds", file=sys.stderr)
    return StaticResourceMapper(), _NoLister()


async def _wait_ready(provider: Provider, seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not provider.status().ready and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    if not provider.status().ready:
        print(f"warning: provider not ready: {provider.status().message}", file=sys.stderr)


async def run_explain(args: argparse.Namespace) -> int:
    """``explain``: one request traced through the Prometheus provider, printed as text or JSON."""
    if args.resource_metrics:
        if args.resource not in ("pods", "pod", "nodes", "node"):
            raise UsageError("--resource-metrics needs --resource pods or --resource nodes")
    elif not args.metric:
        raise UsageError("--metric is required (or pass --resource-metrics for metrics.k8s.io)")
    elif not args.external and not args.resource:
        raise UsageError("--resource is required for custom metrics (or pass --external)")
    async with AsyncExitStack() as stack:
        mapper, lister = await cluster_or_builtin(stack, args.kubeconfig)
        try:
            provider = prometheus_provider(args, mapper, lister)
        except ConfigError as err:
            raise UsageError(str(err)) from None
        if args.resource_metrics:
            provider.keep_raw = True
            on_exit(stack, provider.stop)
            rp = PrometheusResourceProvider(
                lambda: provider.config.resource_rules, provider.run_query, mapper, lister
            )
            doc = await explain_resource(
                rp,
                provider.status(),
                resource=args.resource,
                namespace=args.namespace,
                name=args.name,
                label_selector=args.selector,
                field_selector=args.field_selector,
            )
            print(json.dumps(doc, indent=2, default=str) if args.json else format_explain(doc))
            return 1 if "error" in doc else 0
        await provider.start()
        on_exit(stack, provider.stop)
        try:
            await _wait_ready(provider, args.wait)
            doc = await explain(
                provider,
                api="external" if args.external else "custom",
                namespace=args.namespace,
                resource=args.resource,
                name_or_star=args.name,
                metric=args.metric,
                label_selector=args.selector,
                metric_label_selector=args.metric_selector,
            )
        except AdapterError as err:
            print(f"error: {err.message}", file=sys.stderr)
            return 1
    print(json.dumps(doc, indent=2, default=str) if args.json else format_explain(doc))
    return 0


async def _auth_configmap(kubeconfig: str) -> dict[str, str] | None:
    """The ``extension-apiserver-authentication`` ConfigMap's data, or None (with a note) if unreadable."""
    path = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
    try:
        kube = KubeClient.from_kubeconfig_or_cluster(kubeconfig)
    except ConfigError as err:
        print(f"note: cannot read the authentication configmap: {err}", file=sys.stderr)
        return None
    try:
        return dict((await kube.get(path)).get("data") or {})
    except Exception as err:
        print(f"note: cannot read the authentication configmap: {err}", file=sys.stderr)
        return None
    finally:
        await kube.aclose()


async def run_lint(args: argparse.Namespace) -> int:
    """``lint``: the config checked against a live Prometheus; 1 on errors (``--strict``: warnings)."""
    try:
        config = load_config(args.config)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    async with AsyncExitStack() as stack:
        mapper = (await cluster_or_builtin(stack, args.kubeconfig))[0] if args.kubeconfig else None
        prom = PrometheusClient(
            args.prometheus_url,
            timeout=args.prometheus_timeout,
            ca_file=args.prometheus_ca_file,
            token_file=args.prometheus_token_file,
            max_response_bytes=args.prometheus_max_response_bytes,
        )
        on_exit(stack, prom.aclose)
        auth_configmap = await _auth_configmap(args.kubeconfig) if args.kubeconfig else None
        names = args.requestheader_allowed_names
        try:
            report = await lint(
                config,
                prom,
                mapper,
                auth_configmap=auth_configmap,
                requestheader_allowed_names=tuple(names) if names is not None else None,
                requestheader_ca_flag=bool(args.requestheader_client_ca_file),
            )
        except AdapterError as err:
            print(f"error: {err.message}", file=sys.stderr)
            return 1
    print(format_lint(report))
    return 1 if not report.ok or (args.strict and report.warnings) else 0
