"""The HTTPS server: TLS with hot-reloaded certificates, probes, ``/metrics``, auth, the metrics API.

TLS is not optional: the aggregator only talks HTTPS, and the front-proxy identity headers are
only meaningful on a connection whose client certificate we verified. Certificates rotate
(cert-manager, a re-run of ``make certs``) without a restart: the cert/key pair is re-read into a
fresh ``SSLContext`` when the files change and new connections are switched to it, so the next
handshake presents the new certificate only; a half-written pair is retried on the next check and
the old one stays in use meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapter import telemetry
from adapter.apiserver.auth import (
    PUBLIC_PATHS,
    USER_KEY,
    Authenticator,
    Authorizer,
    auth_middleware,
    peer_certificate,
    request_attributes,
)
from adapter.apiserver.connections import AnsweredCounter, ConnectionGate, ConnectionLimits
from adapter.apiserver.paths import path_middleware
from adapter.apiserver.routes import MetricsAPI, resource_target, status_middleware
from adapter.provider.base import Provider, ResourceMapper, ResourceMetricsProvider

log = logging.getLogger(__name__)
access_log = logging.getLogger("adapter.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------------


def _file_signature(*paths: str) -> tuple[tuple[int, int, int], ...]:
    """What changes when a file is rewritten or a Secret volume swaps its ``..data`` symlink."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


@contextlib.contextmanager
def _in_memory_files(*blobs: bytes) -> Iterator[list[str]]:
    """Paths to private in-memory copies of ``blobs`` (memfd: works on a read-only root fs)."""
    fds = []
    try:
        for blob in blobs:
            fd = os.memfd_create("hpa-kit-tls", 0)
            fds.append(fd)
            os.write(fd, blob)
        yield [f"/proc/self/fd/{fd}" for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)


def _read_pair(cert_file: str, key_file: str) -> tuple[bytes, bytes]:
    with open(cert_file, "rb") as f:
        cert = f.read()
    with open(key_file, "rb") as f:
        key = f.read()
    return cert, key


def _load_pair_bytes(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """Load exact bytes (from private in-memory copies: a concurrent rewrite cannot slip in)."""
    if not hasattr(os, "memfd_create"):  # pragma: no cover - non-Linux development machines
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            cp, kp = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
            with open(cp, "wb") as f:
                f.write(cert)
            with open(kp, "wb") as f:
                f.write(key)
            context.load_cert_chain(cp, kp)
        return
    with _in_memory_files(cert, key) as (cert_path, key_path):
        context.load_cert_chain(cert_path, key_path)


class TLSReloader:
    """Owns the server's TLS configuration and keeps its certificate in step with the files on disk.

    Every reload builds a **fresh** ``SSLContext`` holding only the new pair (loading into the live
    context would add an ECDSA certificate next to an old RSA one, and clients offering only RSA
    would keep getting the replaced certificate). ``context`` is the listener's fixed context: its
    SNI callback (run for every ClientHello, with or without SNI) switches each new connection to
    the current context, so a swap is one reference assignment and connections already
    established keep theirs.
    """

    def __init__(self, cert_file: str, key_file: str, *, client_ca_pems: Iterable[bytes] = ()) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self._client_cas: list[bytes] = []
        self._signature = _file_signature(cert_file, key_file)
        self._pair = _read_pair(cert_file, key_file)
        self._current = self._build(*self._pair)  # fail fast at start-up: bad files, no server
        self.context = self._build(*self._pair)
        self.context.sni_callback = self._select
        self.add_client_cas(client_ca_pems)

    def _build(self, cert: bytes, key: bytes) -> ssl.SSLContext:
        """A complete server context for this pair and the trusted client CAs (raises if invalid)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        _load_pair_bytes(context, cert, key)
        for pem in self._client_cas:
            context.load_verify_locations(cadata=pem.decode())
        # OPTIONAL: ask for a certificate, verify it when given, but let token/anonymous through.
        context.verify_mode = ssl.CERT_OPTIONAL if self._client_cas else ssl.CERT_NONE
        return context

    def _select(self, ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        ssl_object.context = self._current

    @property
    def current(self) -> ssl.SSLContext:
        """The context new connections are switched to (the last pair that loaded)."""
        return self._current

    def add_client_cas(self, pems: Iterable[bytes]) -> None:
        """Trust these CAs for client certificates during the handshake.

        The handshake store can only grow; *which* CA may assert what is decided per request by
        :class:`adapter.apiserver.auth.Authenticator` against the current configuration, so a CA removed
        from the configmap stops being honoured immediately even though the handshake still
        accepts it.
        """
        new = [pem for pem in pems if pem not in self._client_cas]
        if not new and self._client_cas:
            return
        self._client_cas.extend(new)
        # The listener's context too: the verify mode of a connection is fixed from it.
        for pem in new:
            self.context.load_verify_locations(cadata=pem.decode())
        self.context.verify_mode = ssl.CERT_OPTIONAL if self._client_cas else ssl.CERT_NONE
        self._current = self._build(*self._pair)

    def reload_if_changed(self) -> bool:
        """Re-read the pair when either file changed; True when a new certificate is now served."""
        try:
            signature = _file_signature(self.cert_file, self.key_file)
        except OSError as err:
            log.warning("cannot stat serving certificate files (keeping the current ones): %s", err)
            return False
        if signature == self._signature:
            return False
        try:
            pair = _read_pair(self.cert_file, self.key_file)
            fresh = self._build(*pair)
        except (OSError, ssl.SSLError, ValueError) as err:
            # Often the cert was written before the key: retry on the next check.
            telemetry.CONFIG_RELOADS.labels(kind="certs", outcome="error").inc()
            log.warning("serving certificate changed but could not be loaded (keeping the old one): %s", err)
            return False
        self._pair, self._current, self._signature = pair, fresh, signature
        telemetry.CONFIG_RELOADS.labels(kind="certs", outcome="success").inc()
        log.info("reloaded serving certificate from %s", self.cert_file)
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()


# --------------------------------------------------------------------------------------------
# Application
# --------------------------------------------------------------------------------------------


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One line per request with the identity it was served as (auth debugging starts here)."""
    start = time.perf_counter()
    response = await handler(request)
    user = request.get(USER_KEY)
    level = logging.DEBUG if request.path in PUBLIC_PATHS else logging.INFO  # probes every few seconds
    access_log.log(
        level,
        '%s %s %d %.1fms user="%s" groups=%s',
        request.method,
        request.path_qs,
        response.status,
        (time.perf_counter() - start) * 1000,
        user.name if user is not None else "-",
        list(user.groups) if user is not None else [],
    )
    return response


def build_app(
    provider: Provider,
    *,
    authenticator: Authenticator | None = None,
    authorizer: Authorizer | None = None,
    mapper: ResourceMapper | None = None,
    resource_provider: ResourceMetricsProvider | None = None,
    serve_metrics: bool = True,
    metrics_public: bool = False,
    peer_cert: Callable[[web.Request], bytes | None] = peer_certificate,
) -> web.Application:
    """The adapter's application. Without an authenticator every request is served (tests only)."""
    # bad paths are refused (400) before authentication asks the kube-apiserver anything
    middlewares: list[object] = [access_log_middleware, status_middleware, path_middleware]
    if authenticator is not None:
        if authorizer is None:
            raise ValueError("an authenticator needs an authorizer")
        public = set(PUBLIC_PATHS) | ({"/metrics"} if metrics_public else set())
        middlewares.append(
            auth_middleware(
                authenticator, authorizer, public_paths=public, peer_cert=peer_cert, target=resource_target
            )
        )
    app = web.Application(middlewares=middlewares)  # type: ignore[arg-type]
    MetricsAPI(provider, mapper=mapper, resource_provider=resource_provider).add_routes(app)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    logged: dict[str, str | None] = {"message": None}

    async def may_see_details(request: web.Request) -> bool:
        """Why we are not ready is for the log and for authorized ``?verbose`` callers only.

        /readyz is public (probes carry no credentials): an anonymous caller learns ok / not ok,
        never internal URLs or errors. Credentials are only checked when ``verbose`` is asked
        for and some are presented, so probes never cause a TokenReview.
        """
        if authenticator is None:
            return True  # no authentication configured (tests): everything is served to everyone
        assert authorizer is not None
        if "verbose" not in request.query:
            return False
        if not request.headers.get("Authorization") and peer_cert(request) is None:
            return False
        try:
            user = await authenticator.authenticate(request.headers, peer_cert(request))
            decision = await authorizer.authorize(request_attributes(user, "GET", request.path))
        except Exception:  # unauthenticated, forbidden or the kube-apiserver is down: terse answer
            return False
        return decision.allowed

    async def readyz(request: web.Request) -> web.Response:
        status = provider.status()
        if status.ready:
            logged["message"] = None
            return web.Response(text="ok")
        message = status.message or "waiting for the first metrics discovery"
        if message != logged["message"]:  # once per reason, not on every probe
            log.warning("readyz: provider not ready: %s", message)
            logged["message"] = message
        if await may_see_details(request):
            return web.Response(status=503, text=f"[-]provider not ready: {message}\nreadyz check failed\n")
        return web.Response(status=503, text="[-]provider not ready\nreadyz check failed\n")

    app.router.add_get("/healthz", ok)
    app.router.add_get("/livez", ok)
    app.router.add_get("/readyz", readyz)
    if serve_metrics:
        app.router.add_get("/metrics", metrics_handler)
    return app


async def metrics_handler(request: web.Request) -> web.Response:
    telemetry.ASYNCIO_TASKS.set(len(asyncio.all_tasks()))
    body = generate_latest(telemetry.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_only_app() -> web.Application:
    """The plain-HTTP ``--metrics-bind-address`` listener: ``/metrics`` and nothing else."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    return app


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


#: ``--metrics-bind-address :PORT``: plain HTTP, so loopback unless a host is named.
METRICS_DEFAULT_HOST = "127.0.0.1"


def split_host_port(text: str, *, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """``host:port``, ``:port`` or ``[v6]:port`` -> (host, port); ValueError with the bad text."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not host:port")
    host = host.strip("[]") or default_host
    return host, int(port)


@dataclass
class ServerSettings:
    tls_cert_file: str
    tls_key_file: str
    bind_address: str = "0.0.0.0"
    secure_port: int = 6443
    metrics_bind_address: str | None = None
    cert_check_interval: float = 5.0
    shutdown_timeout: float = 5.0
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)


class GatedTCPSite(web.BaseSite):
    """A TCP listener whose connections pass a :class:`ConnectionGate` (cap, deadlines, sizes)
    before TLS is started on them and aiohttp's handler sees them."""

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, *, ssl_context: ssl.SSLContext,
        limits: ConnectionLimits,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=1024)
        self._host, self._port, self._limits = host, port, limits
        self.gate: ConnectionGate | None = None

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        handler_factory = self._runner.server
        assert handler_factory is not None and self._ssl_context is not None
        self.gate = ConnectionGate(self._limits, self._ssl_context, handler_factory)
        self._server = await asyncio.get_running_loop().create_server(
            self.gate, self._host, self._port, backlog=self._backlog, reuse_address=True
        )

    async def stop(self) -> None:
        if self.gate is not None:
            self.gate.close_pending()
        await super().stop()


class AdapterServer:
    """Binds the HTTPS listener (and optional plain metrics listener) and watches the certs."""

    def __init__(self, settings: ServerSettings, app: web.Application, tls: TLSReloader) -> None:
        self.settings = settings
        self.app = app
        self.tls = tls
        self._runners: list[web.AppRunner] = []
        self._watch: asyncio.Task[None] | None = None
        self.bound: list[tuple[str, int]] = []

    async def start(self) -> None:
        limits = self.settings.limits
        runner = web.AppRunner(
            self.app,
            # Not a log: aiohttp calls this hook once each response is written, which tells the
            # gate which connections have a request in flight (never evicted) and which are idle.
            access_log=access_log,
            access_log_class=AnsweredCounter,
            handle_signals=False,
            shutdown_timeout=self.settings.shutdown_timeout,
            keepalive_timeout=limits.idle_timeout,  # idle keep-alive connections are closed
            max_line_size=limits.max_header_bytes,
            max_field_size=limits.max_header_bytes,
        )
        await runner.setup()
        self._runners.append(runner)
        site = GatedTCPSite(
            runner,
            self.settings.bind_address,
            self.settings.secure_port,
            ssl_context=self.tls.context,
            limits=limits,
        )
        await site.start()
        self.bound.extend(_bound(site))
        if self.settings.metrics_bind_address:
            host, port = split_host_port(
                self.settings.metrics_bind_address, default_host=METRICS_DEFAULT_HOST
            )
            mrunner = web.AppRunner(metrics_only_app(), access_log=None, handle_signals=False)
            await mrunner.setup()
            self._runners.append(mrunner)
            msite = web.TCPSite(mrunner, host, port)
            await msite.start()
            log.info("serving plain-HTTP /metrics on %s:%d", host, port)
        self._watch = asyncio.get_running_loop().create_task(
            self.tls.watch(self.settings.cert_check_interval), name="tls-reload"
        )
        log.info("serving HTTPS on %s", ", ".join(f"{h}:{p}" for h, p in self.bound))

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()


def _bound(site: web.BaseSite) -> list[tuple[str, int]]:
    server = getattr(site, "_server", None)
    out = []
    for sock in getattr(server, "sockets", None) or ():
        addr = sock.getsockname()
        out.append((str(addr[0]), int(addr[1])))
    return out


async def wait_for_shutdown_signal() -> None:
    """Return on SIGTERM/SIGINT (the kubelet's stop, or Ctrl-C)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")


__all__ = [
    "METRICS_DEFAULT_HOST",
    "AdapterServer",
    "ConnectionLimits",
    "GatedTCPSite",
    "ServerSettings",
    "TLSReloader",
    "build_app",
    "metrics_handler",
    "split_host_port",
    "wait_for_shutdown_signal",
]
