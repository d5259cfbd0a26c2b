"""Delegated authentication and authorization, as every aggregated API server does it.

The kube-apiserver's aggregator proxies requests to us with a *front-proxy* client certificate
(signed by the requestheader CA) and the real caller's identity in ``X-Remote-*`` headers. Those
headers are only as trustworthy as the certificate that carried them, so they are read **only**
when the peer certificate was issued by a requestheader CA and its CN is allowed; otherwise they
are ignored, never trusted. Other callers authenticate with a certificate from the cluster client
CA (user = CN, groups = O) or a bearer token checked with a ``TokenReview``. Authorization is a
``SubjectAccessReview`` with the same attributes the generic API server would compute from the
path (``resource=pods, subresource=<metric>`` for custom metrics, ``resource=<metric>`` with verb
``list`` for external metrics, ``nonResourceAttributes`` for discovery and ``/metrics``).

The CAs, allowed names and header names come from the ``kube-system/extension-apiserver-
authentication`` ConfigMap (refreshed periodically), or from flags that override it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapter.apiserver.paths import RouteTarget
from adapter.errors import AdapterError, BackendUnavailable, Forbidden, TooManyRequests, Unauthorized

log = logging.getLogger(__name__)

AUTH_CONFIGMAP_NAMESPACE = "kube-system"
AUTH_CONFIGMAP_NAME = "extension-apiserver-authentication"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS_USER = "system:anonymous"
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz"})

_RBAC_HINT = (
    "bind the adapter's ServiceAccount to the Role extension-apiserver-authentication-reader in kube-system "
    "and to the ClusterRole system:auth-delegator"
)


# --------------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def with_authenticated_group(self) -> UserInfo:
        """Add ``system:authenticated`` like upstream's group adder (not for anonymous users)."""
        if self.name == ANONYMOUS_USER or AUTHENTICATED in self.groups or UNAUTHENTICATED in self.groups:
            return self
        return UserInfo(self.name, self.uid, (*self.groups, AUTHENTICATED), self.extra)


ANONYMOUS = UserInfo(ANONYMOUS_USER, groups=(UNAUTHENTICATED,))

#: Where the middleware leaves the authenticated user for handlers and the access log.
USER_KEY = web.RequestKey("user", UserInfo)


# --------------------------------------------------------------------------------------------
# Authentication configuration
# --------------------------------------------------------------------------------------------


def load_pem_certs(data: bytes | str, *, source: str) -> list[x509.Certificate]:
    """All certificates of a PEM bundle; a bundle without any is a configuration error."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        certs = x509.load_pem_x509_certificates(raw)
    except ValueError as err:
        raise ValueError(f"{source}: not a PEM certificate bundle ({err})") from err
    return certs


@dataclass(frozen=True)
class RequestHeaderConfig:
    """Who may assert identities in headers, and which headers carry them."""

    ca_certs: tuple[x509.Certificate, ...]
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    uid_headers: tuple[str, ...] = ()
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)


@dataclass(frozen=True)
class AuthnConfig:
    requestheader: RequestHeaderConfig | None = None
    client_ca_certs: tuple[x509.Certificate, ...] = ()

    def ca_pems(self) -> list[bytes]:
        """Every CA a client certificate may chain to (for the TLS handshake's verify store)."""
        from cryptography.hazmat.primitives.serialization import Encoding

        certs = list(self.client_ca_certs)
        if self.requestheader is not None:
            certs.extend(self.requestheader.ca_certs)
        return [c.public_bytes(Encoding.PEM) for c in certs]


def _json_list(data: Mapping[str, str], key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    raw = data.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"configmap key {key!r} is not a JSON list: {err}") from err
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"configmap key {key!r} must be a JSON list of strings")
    return tuple(value)


def config_from_configmap(data: Mapping[str, str]) -> AuthnConfig:
    """Parse the ``extension-apiserver-authentication`` ConfigMap's ``data``."""
    client: tuple[x509.Certificate, ...] = ()
    if data.get("client-ca-file"):
        client = tuple(load_pem_certs(data["client-ca-file"], source="configmap key client-ca-file"))
    rh = None
    if data.get("requestheader-client-ca-file"):
        rh = RequestHeaderConfig(
            ca_certs=tuple(
                load_pem_certs(
                    data["requestheader-client-ca-file"], source="configmap key requestheader-client-ca-file"
                )
            ),
            allowed_names=_json_list(data, "requestheader-allowed-names"),
            username_headers=_json_list(data, "requestheader-username-headers", ("X-Remote-User",)),
            uid_headers=_json_list(data, "requestheader-uid-headers"),
            group_headers=_json_list(data, "requestheader-group-headers", ("X-Remote-Group",)),
            extra_prefixes=_json_list(data, "requestheader-extra-headers-prefix", ("X-Remote-Extra-",)),
        )
    return AuthnConfig(requestheader=rh, client_ca_certs=client)


@dataclass(frozen=True)
class AuthnOverrides:
    """Flag values that replace the ConfigMap's (each ``None`` = take the ConfigMap's).

    Each flag replaces exactly its own key: ``--requestheader-client-ca-file`` replaces only the
    CA bundle, so the ConfigMap's ``requestheader-allowed-names`` (and header names) still apply
    to it; only ``--requestheader-allowed-names`` replaces the allowed names. A CA given by flag
    with no allowed names anywhere accepts any CN, which :func:`requestheader_warnings` reports.
    """

    requestheader_client_ca_file: str | None = None
    requestheader_allowed_names: tuple[str, ...] | None = None
    client_ca_file: str | None = None

    def apply(self, base: AuthnConfig) -> AuthnConfig:
        rh = base.requestheader
        if self.requestheader_client_ca_file:
            with open(self.requestheader_client_ca_file, "rb") as f:
                certs = tuple(load_pem_certs(f.read(), source=self.requestheader_client_ca_file))
            rh = replace(rh, ca_certs=certs) if rh is not None else RequestHeaderConfig(ca_certs=certs)
        if rh is not None and self.requestheader_allowed_names is not None:
            rh = replace(rh, allowed_names=self.requestheader_allowed_names)
        client = base.client_ca_certs
        if self.client_ca_file:
            with open(self.client_ca_file, "rb") as f:
                client = tuple(load_pem_certs(f.read(), source=self.client_ca_file))
        return AuthnConfig(requestheader=rh, client_ca_certs=client)


def requestheader_warnings(config: AuthnConfig) -> list[str]:
    """What is unsafe about the front-proxy settings (logged at start-up and when they change)."""
    rh = config.requestheader
    if rh is None or rh.allowed_names:
        return []
    return [
        "requestheader-allowed-names is empty: ANY client certificate signed by the front-proxy CA "
        "(requestheader-client-ca-file) can assert any user and group in X-Remote-* headers; set "
        "--requestheader-allowed-names (usually front-proxy-client) or the configmap key "
        f"{AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP_NAME} requestheader-allowed-names"
    ]


def log_requestheader_warnings(config: AuthnConfig) -> None:
    for warning in requestheader_warnings(config):
        log.warning("%s", warning)


class KubeAPI(Protocol):
    """The slice of :class:`adapter.kube.client.KubeClient` auth needs (fakes implement it in tests)."""

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]: ...

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...


class ConfigMapAuthnSource:
    """Keeps :class:`AuthnConfig` current from the ConfigMap, with flag overrides applied.

    ``on_change`` receives the new config (the server uses it to trust new client CAs).
    A failed refresh keeps the last good configuration.
    """

    def __init__(
        self,
        kube: KubeAPI,
        overrides: AuthnOverrides | None = None,
        *,
        refresh_interval: float = 60.0,
        on_change: Callable[[AuthnConfig], None] | None = None,
    ) -> None:
        self.kube = kube
        self.overrides = overrides or AuthnOverrides()
        self.refresh_interval = refresh_interval
        self.on_change = on_change
        self.config = AuthnConfig()
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> AuthnConfig:
        path = f"/api/v1/namespaces/{AUTH_CONFIGMAP_NAMESPACE}/configmaps/{AUTH_CONFIGMAP_NAME}"
        try:
            cm = await self.kube.get(path)
        except Exception as err:
            where = f"{AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP_NAME}"
            raise BackendUnavailable(f"cannot read configmap {where} ({err}); {_RBAC_HINT}") from err
        config = self.overrides.apply(config_from_configmap(cm.get("data") or {}))
        if config != self.config:
            if config.requestheader != self.config.requestheader:
                log_requestheader_warnings(config)
            self.config = config
            if self.on_change is not None:
                self.on_change(config)
        return config

    def current(self) -> AuthnConfig:
        return self.config

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.load()
            except Exception as err:
                log.warning("refreshing the authentication configmap failed, keeping the last one: %s", err)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="authn-configmap")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


# --------------------------------------------------------------------------------------------
# Authenticators
# --------------------------------------------------------------------------------------------


class TTLCache:
    """A small expiring map (token reviews, access reviews); bounded so it cannot grow forever."""

    def __init__(self, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._data: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[0] < self.clock():
            self._data.pop(key, None)
            return None
        return hit[1]

    def put(self, key: Any, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(self._data) >= self.max_entries:
            now = self.clock()
            for k in [k for k, (exp, _) in self._data.items() if exp < now]:
                del self._data[k]
            while len(self._data) >= self.max_entries:
                self._data.pop(next(iter(self._data)))
        self._data[key] = (self.clock() + ttl, value)

    def pop(self, key: Any) -> None:
        self._data.pop(key, None)


class TokenBucket:
    """``rate`` events per second on average, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.updated = clock()

    def take(self) -> float:
        """0.0 when an event may happen now (and count it), else the seconds until one may."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate if self.rate > 0 else 60.0


#: Bearer tokens are visible ASCII (RFC 6750 b64token, JWTs, legacy tokens): no whitespace or controls.
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")
MAX_TOKEN_BYTES = 8192


def token_problem(token: str, max_bytes: int = MAX_TOKEN_BYTES) -> str | None:
    """Why ``token`` cannot be a bearer token (checked before any TokenReview), or None."""
    if len(token) > max_bytes:
        return f"bearer token longer than {max_bytes} bytes"
    if not _TOKEN_RE.fullmatch(token):
        return "bearer token contains whitespace, control or non-ASCII characters"
    return None


class TokenReviewer:
    """Bearer tokens checked with ``TokenReview``; answers cached (hashed token as key).

    Each distinct token costs a TokenReview, so whoever can reach the adapter could make it flood
    the kube-apiserver. Hence: malformed or oversized tokens are refused without asking; failures
    are cached apart from successes (a small, short-lived cache: junk cannot evict the identities
    of real clients); and reviews of tokens in neither cache are rate-limited by a token bucket
    (``review_rate`` per second, bursts of ``review_burst``), beyond which the request is answered
    429 with Retry-After. A token that passed a review within ``known_ttl`` is re-checked (a real
    TokenReview: a revoked token fails it) on a budget of its own, so a flood of unknown tokens
    cannot turn a real client's routine re-check into a 429.
    """

    def __init__(self, kube: KubeAPI, *, ttl: float = 10.0, failure_ttl: float = 5.0,
                 audiences: tuple[str, ...] = (), max_token_bytes: int = MAX_TOKEN_BYTES,
                 review_rate: float = 20.0, review_burst: float = 100.0,
                 cache_entries: int = 4096, failure_cache_entries: int = 1024,
                 known_ttl: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self.audiences = audiences
        self.max_token_bytes = max_token_bytes
        self.cache = TTLCache(cache_entries, clock)
        self.failures = TTLCache(failure_cache_entries, clock)
        self.bucket = TokenBucket(review_rate, review_burst, clock)
        self.known_ttl = known_ttl
        self.known = TTLCache(cache_entries, clock)  # hashes of tokens that passed a review lately
        self.known_bucket = TokenBucket(review_rate, review_burst, clock)

    async def review(self, token: str) -> UserInfo | None:
        problem = token_problem(token, self.max_token_bytes)
        if problem is not None:
            log.debug("refusing a bearer token without review: %s", problem)
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        if self.failures.get(key) is not None:
            return None
        known = self.known.get(key) is not None
        wait = (self.known_bucket if known else self.bucket).take()
        if wait > 0:
            raise TooManyRequests(
                "too many requests with bearer tokens to review: the adapter limits the TokenReviews it "
                "sends to the kube-apiserver; retry later",
                retry_after=wait,
            )
        spec: dict[str, Any] = {"token": token}
        if self.audiences:
            spec["audiences"] = list(self.audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        try:
            result = await self.kube.create("/apis/authentication.k8s.io/v1/tokenreviews", body)
        except Exception as err:
            raise BackendUnavailable(
                f"could not verify the bearer token: TokenReview failed ({err}); "
                "check that the adapter can reach the kube-apiserver and is bound to system:auth-delegator"
            ) from err
        status = result.get("status") or {}
        if not status.get("authenticated"):
            self.failures.put(key, True, self.failure_ttl)
            self.known.pop(key)
            return None
        user = status.get("user") or {}
        info = UserInfo(
            name=user.get("username", ""),
            uid=user.get("uid", ""),
            groups=tuple(user.get("groups") or ()),
            extra={k: tuple(v or ()) for k, v in (user.get("extra") or {}).items()},
        )
        self.cache.put(key, info, self.ttl)
        self.known.put(key, True, self.known_ttl)
        return info


def _issued_by(cert: x509.Certificate, cas: Iterable[x509.Certificate], now: datetime) -> bool:
    """True when one of ``cas`` (valid now) directly signed ``cert`` (valid now)."""
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        return False
    for ca in cas:
        if not (ca.not_valid_before_utc <= now <= ca.not_valid_after_utc):
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except Exception:  # InvalidSignature, issuer name mismatch, unsupported key type
            continue
        return True
    return False


def _client_usage_ok(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.CLIENT_AUTH in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku


def _common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _header_values(headers: Mapping[str, str], names: Iterable[str]) -> list[str]:
    getall = getattr(headers, "getall", None)
    out: list[str] = []
    for name in names:
        if getall is not None:
            out.extend(v for v in getall(name, []) if v)
        elif headers.get(name):
            out.append(headers[name])
    return out


class Authenticator:
    """Resolves a request to a user: front-proxy headers, client certificate, token, anonymous.

    Mirrors the upstream union: the first method that succeeds wins; a credential that was
    presented but is invalid makes the request fail with 401 even when anonymous access is on.
    """

    def __init__(
        self,
        config: Callable[[], AuthnConfig],
        *,
        tokens: TokenReviewer | None = None,
        allow_anonymous: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.allow_anonymous = allow_anonymous
        self.clock = clock

    async def authenticate(self, headers: Mapping[str, str], peer_cert_der: bytes | None) -> UserInfo:
        cfg = self.config()
        errors: list[str] = []
        cert = None
        if peer_cert_der:
            try:
                cert = x509.load_der_x509_certificate(peer_cert_der)
            except ValueError:
                errors.append("unparseable client certificate")
        if cert is not None and _client_usage_ok(cert):
            now = self.clock()
            rh = cfg.requestheader
            if rh is not None and _issued_by(cert, rh.ca_certs, now):
                cn = _common_name(cert)
                if rh.allowed_names and cn not in rh.allowed_names:
                    errors.append(
                        f"front-proxy client certificate CN {cn!r} is not in requestheader-allowed-names"
                    )
                else:
                    user = self._from_headers(rh, headers)
                    if user is not None:
                        return user.with_authenticated_group()
            if cfg.client_ca_certs and _issued_by(cert, cfg.client_ca_certs, now):
                orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
                user = UserInfo(_common_name(cert), groups=tuple(str(o.value) for o in orgs))
                return user.with_authenticated_group()
        auth = headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if self.tokens is not None and scheme.lower() == "bearer" and token.strip():
            user = await self.tokens.review(token.strip())
            if user is not None:
                return user.with_authenticated_group()
            errors.append("invalid bearer token")
        if errors:
            raise Unauthorized("Unauthorized: " + "; ".join(errors))
        if self.allow_anonymous:
            return ANONYMOUS
        raise Unauthorized(
            "Unauthorized: no credentials (front-proxy client certificate, client certificate or bearer "
            "token) and anonymous requests are disabled; call through the kube-apiserver "
            "(kubectl get --raw /apis/custom.metrics.k8s.io/v1beta2)"
        )

    @staticmethod
    def _from_headers(rh: RequestHeaderConfig, headers: Mapping[str, str]) -> UserInfo | None:
        names = _header_values(headers, rh.username_headers)
        if not names:
            return None
        uids = _header_values(headers, rh.uid_headers)
        groups = tuple(_header_values(headers, rh.group_headers))
        extra: dict[str, list[str]] = {}
        prefixes = [p.lower() for p in rh.extra_prefixes]
        items = headers.items()
        for key, value in items:
            lower = key.lower()
            for prefix in prefixes:
                if lower.startswith(prefix) and len(lower) > len(prefix):
                    extra_key = urllib.parse.unquote(lower[len(prefix):])
                    extra.setdefault(extra_key, []).append(value)
                    break
        return UserInfo(names[0], uids[0] if uids else "", groups, {k: tuple(v) for k, v in extra.items()})


# --------------------------------------------------------------------------------------------
# Authorization
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attributes:
    """What is being asked, computed from the request like the generic API server does."""

    user: UserInfo
    verb: str
    path: str
    resource_request: bool = False
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


_VERBS = {
    "GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"
}
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


def request_attributes(
    user: UserInfo, method: str, path: str, query: Mapping[str, str] | None = None
) -> Attributes:
    """Derive authorizer attributes from a request path (the generic apiserver's layout rules).

    ``/apis/<group>/<version>/...`` with at least one more segment is a resource request:
    ``namespaces/<ns>/`` sets the namespace; then ``resource/name/subresource``. A GET without a
    name is a ``list``. Everything else (discovery, ``/metrics``, ``/openapi``) is non-resource.
    """
    verb = _VERBS.get(method.upper(), method.lower())
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    if len(parts) < 4 or parts[0] != "apis":
        return Attributes(user=user, verb=verb, path=path)
    group, version, rest = parts[1], parts[2], parts[3:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if len(rest) >= 1 else ""
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 else ""
    if not name and verb == "get":
        watch = (query or {}).get("watch")
        verb = "list" if watch is None or watch.lower() in ("false", "0") else "watch"
    return Attributes(
        user=user, verb=verb, path=path, resource_request=True, namespace=namespace, api_group=group,
        api_version=version, resource=resource, subresource=subresource, name=name,
    )


def target_attributes(user: UserInfo, method: str, path: str, target: RouteTarget) -> Attributes:
    """Attributes for a matched resource route, from its parameters (never re-parsed from the path).

    The same shape :func:`request_attributes` gives a well-formed path: a GET without a name (the
    external metrics' ``namespaces/{ns}/{metric}``) is a ``list``.
    """
    verb = _VERBS.get(method.upper(), method.lower())
    if not target.name and verb == "get":
        verb = "list"
    return Attributes(
        user=user, verb=verb, path=path, resource_request=True, namespace=target.namespace,
        api_group=target.group, api_version=target.version, resource=target.resource,
        subresource=target.subresource, name=target.name,
    )


def forbidden_message(attrs: Attributes, reason: str = "") -> str:
    who = attrs.user.name
    if not attrs.resource_request:
        msg = f'forbidden: User "{who}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
        target = f'{attrs.resource}.{attrs.api_group} "{attrs.name}" is forbidden' if attrs.name else (
            f"{attrs.resource}.{attrs.api_group} is forbidden"
        )
        where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
        msg = (f'{target}: User "{who}" cannot {attrs.verb} resource "{resource}" in API group '
               f'"{attrs.api_group}" {where}')
    if reason:
        msg += f": {reason}"
    return msg


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class Authorizer(Protocol):
    async def authorize(self, attrs: Attributes) -> Decision: ...


class AlwaysAllow:
    """``--authz-mode=always-allow``: for tests and the constant-value quickstart only."""

    async def authorize(self, attrs: Attributes) -> Decision:
        return Decision(True)


def subject_access_review(attrs: Attributes) -> dict[str, Any]:
    """The ``SubjectAccessReview`` body for ``attrs`` (exact attributes matter for RBAC)."""
    spec: dict[str, Any] = {"user": attrs.user.name, "groups": list(attrs.user.groups)}
    if attrs.user.uid:
        spec["uid"] = attrs.user.uid
    if attrs.user.extra:
        spec["extra"] = {k: list(v) for k, v in attrs.user.extra.items()}
    if attrs.resource_request:
        ra = {
            "namespace": attrs.namespace, "verb": attrs.verb, "group": attrs.api_group,
            "version": attrs.api_version, "resource": attrs.resource, "subresource": attrs.subresource,
            "name": attrs.name,
        }
        spec["resourceAttributes"] = {k: v for k, v in ra.items() if v}
    else:
        spec["nonResourceAttributes"] = {"path": attrs.path, "verb": attrs.verb}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


class SubjectAccessReviewer:
    """Asks the kube-apiserver; allowed answers cached ``allow_ttl``, denials ``deny_ttl``."""

    def __init__(self, kube: KubeAPI, *, allow_ttl: float = 10.0, deny_ttl: float = 5.0) -> None:
        self.kube = kube
        self.allow_ttl = allow_ttl
        self.deny_ttl = deny_ttl
        self.cache = TTLCache()

    async def authorize(self, attrs: Attributes) -> Decision:
        body = subject_access_review(attrs)
        key = json.dumps(body["spec"], sort_keys=True)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        try:
            result = await self.kube.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
        except Exception as err:
            raise BackendUnavailable(
                f"could not authorize the request: SubjectAccessReview failed ({err}); check that the "
                "adapter can reach the kube-apiserver and is bound to system:auth-delegator"
            ) from err
        status = result.get("status") or {}
        reason = status.get("reason") or status.get("evaluationError") or ""
        decision = Decision(bool(status.get("allowed")) and not status.get("denied"), reason)
        self.cache.put(key, decision, self.allow_ttl if decision.allowed else self.deny_ttl)
        return decision


# --------------------------------------------------------------------------------------------
# aiohttp glue
# --------------------------------------------------------------------------------------------


def peer_certificate(request: web.Request) -> bytes | None:
    """DER of the verified client certificate of this connection (None without TLS or cert)."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    try:
        return ssl_object.getpeercert(binary_form=True)
    except ValueError:  # handshake not complete (cannot happen once a request was read)
        return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(
    authenticator: Authenticator,
    authorizer: Authorizer,
    *,
    public_paths: Iterable[str] = PUBLIC_PATHS,
    peer_cert: Callable[[web.Request], bytes | None] = peer_certificate,
    target: Callable[[web.Request], RouteTarget | None] = lambda request: None,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Authenticate then authorize every request except the health probes.

    ``target`` names the resource a matched route addresses; when it does, the authorizer's
    attributes are computed from it (what routing saw), not re-parsed from the decoded path.
    """
    public = frozenset(public_paths)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in public:
            return await handler(request)
        user = await authenticator.authenticate(request.headers, peer_cert(request))
        request[USER_KEY] = user
        routed = target(request)
        if routed is not None:
            attrs = target_attributes(user, request.method, request.path, routed)
        else:
            attrs = request_attributes(user, request.method, request.path, request.query)
        decision = await authorizer.authorize(attrs)
        if not decision.allowed:
            details = {}
            if attrs.resource_request:
                details = {"name": attrs.name, "group": attrs.api_group, "kind": attrs.resource}
            details = {k: v for k, v in details.items() if v}
            raise Forbidden(forbidden_message(attrs, decision.reason), details=details)
        return await handler(request)

    return middleware


__all__ = [
    "ANONYMOUS",
    "USER_KEY",
    "AdapterError",
    "AlwaysAllow",
    "Attributes",
    "Authenticator",
    "AuthnConfig",
    "AuthnOverrides",
    "ConfigMapAuthnSource",
    "Decision",
    "RequestHeaderConfig",
    "SubjectAccessReviewer",
    "TokenBucket",
    "TokenReviewer",
    "UserInfo",
    "auth_middleware",
    "config_from_configmap",
    "forbidden_message",
    "log_requestheader_warnings",
    "request_attributes",
    "requestheader_warnings",
    "subject_access_review",
    "target_attributes",
    "token_problem",
]
