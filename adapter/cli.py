"""``hpa-kit-adapter``: ``serve`` the metrics APIs, ``explain`` one request, ``lint`` a config.

This module holds the flags and their checks only; :mod:`adapter.app` builds and runs the parts.
Start-up is all-or-nothing: every flag, file and the rules config is checked before anything is
started, and a problem is reported as one line naming the flag and the fix (exit code 2). Flag
names follow prometheus-adapter / the generic API server where that is cheap, so existing
Deployments mostly keep their arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NoReturn, TypeAlias

from adapter import app
from adapter.apiserver.auth import load_pem_certs
from adapter.apiserver.connections import default_per_source
from adapter.apiserver.server import split_host_port
from adapter.app import Checked, UsageError
from adapter.errors import ConfigError
from adapter.rules.config import load_config

log = logging.getLogger("adapter")

EXIT_USAGE = 2


# --------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go-style durations (``500ms``, ``30s``, ``1m``, ``1h30m``) or bare seconds -> seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 500ms, 30s, 1m, 1h30m)")
    return total


def _duration(text: str) -> float:
    return parse_duration(text)


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} out of range 0-65535")
    return port


class _Parser(argparse.ArgumentParser):
    """Errors as one line (``hpa-kit-adapter: error: ...``) and exit 2, without the usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _add_prometheus(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--config", help="adapter rules file (prometheus-adapter format)", required=required)
    p.add_argument(
        "--prometheus-url", help="Prometheus base URL, e.g. http://prometheus:9090", required=required
    )
    p.add_argument(
        "--prometheus-timeout",
        type=_duration,
        default=10.0,
        metavar="DURATION",
        help="timeout of one Prometheus request (default 10s)",
    )
    p.add_argument(
        "--prometheus-max-response-bytes",
        type=int,
        default=16 * 1024 * 1024,
        metavar="BYTES",
        help="refuse (503) Prometheus query answers larger than this (default 16 MiB); series answers "
        "(discovery) are streamed and reduced as they arrive, so they are not capped",
    )
    p.add_argument("--prometheus-ca-file", help="CA bundle to verify an HTTPS Prometheus")
    p.add_argument("--prometheus-token-file", help="bearer token file for Prometheus (re-read on change)")


_Commands: TypeAlias = "argparse._SubParsersAction[_Parser]"  # what add_subparsers() returns


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hpa-kit-adapter", description="Custom and external metrics API server for the HPA."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_serve(sub)
    _add_explain(sub)
    _add_lint(sub)
    return parser


def _add_serve(sub: _Commands) -> None:
    s = sub.add_parser("serve", help="serve custom.metrics.k8s.io and external.metrics.k8s.io over HTTPS")
    _add_listener(s)
    _add_provider(s)
    _add_cluster_auth(s)
    s.add_argument(
        "--metrics-insecure",
        action="store_true",
        help="serve /metrics on the secure port without authentication",
    )
    s.add_argument(
        "--metrics-bind-address",
        default=None,
        metavar="HOST:PORT",
        help="also serve /metrics over plain HTTP (no TLS, no auth) here (default off); "
        "':PORT' binds loopback 127.0.0.1 only, name a host (e.g. 0.0.0.0:PORT) to expose it",
    )
    s.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def _add_listener(s: argparse.ArgumentParser) -> None:
    s.add_argument("--secure-port", type=_port, default=6443)
    s.add_argument("--bind-address", default="0.0.0.0")
    s.add_argument("--tls-cert-file", help="serving certificate (PEM); reloaded when the file changes")
    s.add_argument("--tls-private-key-file", help="serving key (PEM); reloaded when the file changes")
    s.add_argument(
        "--cert-reload-interval",
        type=_duration,
        default=5.0,
        metavar="DURATION",
        help="how often the certificate files are checked for changes (default 5s)",
    )
    s.add_argument(
        "--max-connections",
        type=int,
        default=500,
        metavar="N",
        help="open connections on the secure port (default 500; 0 = no cap); "
        "at the cap a new connection evicts the oldest one not busy with a request (TLS handshake, no "
        "request yet, or idle keep-alive) of the source holding the most, or is closed at once, "
        "before TLS, when every connection is busy",
    )
    s.add_argument(
        "--max-connections-per-source",
        type=int,
        default=None,
        metavar="N",
        help="open connections one client address (IPv6: its /64) may hold; its next ones are closed "
        "at once (default: half of --max-connections; 0 = no per-source cap). No address is exempt",
    )
    s.add_argument(
        "--tls-handshake-timeout",
        type=_duration,
        default=10.0,
        metavar="DURATION",
        help="close connections whose TLS handshake takes longer (default 10s)",
    )
    s.add_argument(
        "--request-header-timeout",
        type=_duration,
        default=10.0,
        metavar="DURATION",
        help="close connections whose request line and headers take longer to arrive (default 10s)",
    )
    s.add_argument(
        "--idle-timeout",
        type=_duration,
        default=90.0,
        metavar="DURATION",
        help="close keep-alive connections idle this long (default 90s, as the kube-apiserver)",
    )
    s.add_argument(
        "--max-request-header-bytes",
        type=int,
        default=32 * 1024,
        metavar="BYTES",
        help="request line + headers larger than this get 431 (default 32 KiB)",
    )
    s.add_argument(
        "--max-request-body-bytes",
        type=int,
        default=64 * 1024,
        metavar="BYTES",
        help="declared request bodies larger than this get 413 (default 64 KiB; every endpoint is GET)",
    )


def _add_provider(s: argparse.ArgumentParser) -> None:
    s.add_argument("--provider", choices=("prometheus", "static"), default="prometheus")
    _add_prometheus(s, required=False)
    s.add_argument(
        "--metrics-relist-interval",
        type=_duration,
        default=60.0,
        metavar="DURATION",
        help="how often the series are re-discovered (default 1m)",
    )
    s.add_argument(
        "--cache-ttl",
        type=_duration,
        default=5.0,
        metavar="DURATION",
        help="how long identical query results are reused (default 5s)",
    )
    s.add_argument(
        "--cache-max-bytes",
        type=int,
        default=64 * 1024 * 1024,
        metavar="BYTES",
        help="approximate memory budget of reused query results (default 64 MiB)",
    )
    s.add_argument(
        "--static-value", type=_decimal, default=Decimal(1), help="value the static provider serves"
    )
    s.add_argument(
        "--static-metrics",
        type=_csv,
        default=["static_metric"],
        metavar="NAMES",
        help="comma-separated custom metric names the static provider serves",
    )
    s.add_argument(
        "--static-external-metrics",
        type=_csv,
        default=None,
        metavar="NAMES",
        help="comma-separated external metric names (default: the --static-metrics names)",
    )
    s.add_argument(
        "--static-resources",
        type=_csv,
        default=["pods", "services", "namespaces"],
        metavar="NAMES",
        help="resources listed in discovery for the static metrics (default pods,services,namespaces)",
    )


def _add_cluster_auth(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--kubeconfig",
        "--lister-kubeconfig",
        dest="kubeconfig",
        help="kubeconfig for the cluster (default: in-cluster service account)",
    )
    s.add_argument(
        "--authn-mode",
        choices=("delegated", "none"),
        default="delegated",
        help="delegated: front-proxy certs + TokenReview (default); none: no cluster lookups, "
        "anonymous accepted (tests, static quickstart)",
    )
    s.add_argument(
        "--authz-mode",
        choices=("delegated", "always-allow"),
        default="delegated",
        help="delegated: SubjectAccessReview (default); always-allow: tests and quickstart only",
    )
    s.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="serve requests without credentials as system:anonymous (still authorized)",
    )
    s.add_argument(
        "--requestheader-client-ca-file",
        help="front-proxy CA (overrides the extension-apiserver-authentication configmap)",
    )
    s.add_argument(
        "--requestheader-allowed-names",
        type=_csv,
        default=None,
        metavar="NAMES",
        help="front-proxy certificate CNs allowed to assert identities (default: the configmap's "
        "requestheader-allowed-names, also when --requestheader-client-ca-file is given; an empty "
        "value or list means ANY CN, which is logged as a warning)",
    )
    s.add_argument("--client-ca-file", help="client CA (overrides the configmap's client-ca-file)")
    s.add_argument(
        "--token-review-rate",
        type=float,
        default=20.0,
        metavar="PER_SECOND",
        help="TokenReviews per second for bearer tokens not in the cache (default 20; beyond the "
        "burst, requests with unknown tokens get 429 with Retry-After)",
    )
    s.add_argument(
        "--token-review-burst",
        type=int,
        default=100,
        help="TokenReviews of unknown bearer tokens allowed in a burst (default 100)",
    )


def _add_explain(sub: _Commands) -> None:
    e = sub.add_parser("explain", help="trace one metrics request: rule, PromQL, Prometheus answer, response")
    _add_prometheus(e, required=True)
    e.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then KUBECONFIG/~/.kube/config)")
    e.add_argument("--external", action="store_true", help="an external.metrics.k8s.io request")
    e.add_argument(
        "--resource-metrics",
        action="store_true",
        help="a metrics.k8s.io request (resourceRules): --resource pods or nodes, no --metric",
    )
    e.add_argument("--namespace", "-n", default=None)
    e.add_argument("--resource", default=None, help="e.g. pods, services, deployments.apps")
    e.add_argument("--name", default="*", help="object name, or * for all matching --selector (default *)")
    e.add_argument("--metric", default=None, help="the metric (custom and external requests)")
    e.add_argument("--selector", "-l", default=None, help="labelSelector")
    e.add_argument("--metric-selector", default=None, help="metricLabelSelector")
    e.add_argument("--field-selector", default=None, help="fieldSelector (metrics.k8s.io requests)")
    e.add_argument(
        "--wait",
        type=_duration,
        default=30.0,
        metavar="DURATION",
        help="how long to wait for the first discovery (default 30s)",
    )
    e.add_argument("--json", action="store_true", help="print the trace as JSON")
    e.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))


def _add_lint(sub: _Commands) -> None:
    li = sub.add_parser(
        "lint", help="check a config against a live Prometheus and list the metrics it exposes"
    )
    _add_prometheus(li, required=True)
    li.add_argument("--kubeconfig", help="resolve resources against this cluster (default: built-in kinds)")
    li.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    li.add_argument(
        "--requestheader-allowed-names",
        type=_csv,
        default=None,
        metavar="NAMES",
        help="the serve flag of the same name, checked with the cluster's authentication configmap",
    )
    li.add_argument(
        "--requestheader-client-ca-file",
        default=None,
        help="the serve flag of the same name (only whether it is set matters here)",
    )
    li.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level != "debug":
        # One line per Kubernetes/Prometheus call drowns the access log; keep them for --log-level=debug.
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


# --------------------------------------------------------------------------------------------
# serve: flag checks (the parts are built and run by adapter.app)
# --------------------------------------------------------------------------------------------


def _check_readable(path: str | None, flag: str) -> None:
    if path is None:
        return
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{flag} {path}: file not found")
    try:
        p.read_bytes()
    except OSError as err:
        raise UsageError(f"{flag} {path}: cannot read: {err.strerror}") from None


def validate_serve(args: argparse.Namespace) -> Checked:
    """All cheap checks of ``serve`` flags; raises :class:`UsageError`."""
    if not args.tls_cert_file or not args.tls_private_key_file:
        raise UsageError(
            "--tls-cert-file and --tls-private-key-file are required (the adapter only serves HTTPS); "
            "create a serving certificate with `make certs`"
        )
    for path, flag in (
        (args.tls_cert_file, "--tls-cert-file"),
        (args.tls_private_key_file, "--tls-private-key-file"),
        (args.requestheader_client_ca_file, "--requestheader-client-ca-file"),
        (args.client_ca_file, "--client-ca-file"),
        (args.prometheus_ca_file, "--prometheus-ca-file"),
        (args.prometheus_token_file, "--prometheus-token-file"),
    ):
        _check_readable(path, flag)
    if args.cache_max_bytes < 0 or args.prometheus_max_response_bytes < 1024:
        raise UsageError("--cache-max-bytes must be >= 0 and --prometheus-max-response-bytes >= 1024")
    if args.max_connections < 0:
        raise UsageError("--max-connections must be >= 0 (0: no cap)")
    if args.max_connections_per_source is None:
        args.max_connections_per_source = default_per_source(args.max_connections)
    elif args.max_connections_per_source < 0:
        raise UsageError("--max-connections-per-source must be >= 0 (0: no per-source cap)")
    elif args.max_connections and args.max_connections_per_source > args.max_connections:
        raise UsageError(
            f"--max-connections-per-source {args.max_connections_per_source} is above --max-connections "
            f"{args.max_connections}: lower it (or 0 for no per-source cap)"
        )
    for value, flag in (
        (args.tls_handshake_timeout, "--tls-handshake-timeout"),
        (args.request_header_timeout, "--request-header-timeout"),
        (args.idle_timeout, "--idle-timeout"),
    ):
        if not value > 0:
            raise UsageError(f"{flag} must be > 0")
    if args.max_request_header_bytes < 1024 or args.max_request_body_bytes < 0:
        raise UsageError("--max-request-header-bytes must be >= 1024 and --max-request-body-bytes >= 0")
    if not args.token_review_rate > 0 or args.token_review_burst < 1:
        raise UsageError("--token-review-rate must be > 0 and --token-review-burst >= 1")
    if args.metrics_bind_address:
        try:
            split_host_port(args.metrics_bind_address)
        except ValueError as err:
            raise UsageError(f"--metrics-bind-address: {err}") from None
    if args.provider == "prometheus":
        if not args.prometheus_url:
            raise UsageError(
                "--prometheus-url is required with --provider prometheus (or use --provider static)"
            )
        if not args.config:
            raise UsageError("--config is required with --provider prometheus: the adapter rules file")
        if not re.match(r"^https?://", args.prometheus_url):
            raise UsageError(f"--prometheus-url {args.prometheus_url!r} must start with http:// or https://")
        try:
            load_config(args.config)
        except ConfigError as err:
            raise UsageError(str(err)) from None
    else:
        if not args.static_metrics:
            raise UsageError("--static-metrics needs at least one metric name")
    for path in (args.requestheader_client_ca_file, args.client_ca_file):
        if path:
            try:
                load_pem_certs(Path(path).read_bytes(), source=path)
            except ValueError as err:
                raise UsageError(str(err)) from None
    needs_cluster = (
        args.provider == "prometheus" or args.authn_mode == "delegated" or args.authz_mode == "delegated"
    )
    return Checked(args, needs_cluster)


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        if args.command == "serve":
            return asyncio.run(app.serve(validate_serve(args)))
        if args.command == "explain":
            return asyncio.run(app.run_explain(args))
        if args.command == "lint":
            return asyncio.run(app.run_lint(args))
    except UsageError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
