"""A small async Kubernetes API client (the resource mappers are in :mod:`adapter.kube.mapper`).

The adapter needs only a handful of calls (read a ConfigMap, create TokenReviews and
SubjectAccessReviews, list+watch object metadata, read discovery), so it talks to the API with one
pooled ``httpx.AsyncClient`` instead of the blocking official client. Credentials come from the
pod's service account (token re-read when the projected token rotates) or from a kubeconfig, which
is parsed with the official client's loader so every kubeconfig shape (inline data, contexts,
merged KUBECONFIG lists) behaves as with kubectl. An ``exec`` plugin user is run by
:mod:`adapter.kube.execcred` instead, again before its credential expires and once more after a 401,
since the official loader runs it only once.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from adapter.errors import BackendUnavailable, ConfigError, KubeError
from adapter.kube.execcred import (
    ExecConfig,
    ExecCredential,
    ExecCredentialSource,
    exec_config_from_kubeconfig,
)
from adapter.provider.base import ResourceInfo

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
METADATA_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
METADATA_WATCH_ACCEPT = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io,application/json"


class WatchExpired(KubeError):
    """410 Gone: the resourceVersion is too old; the caller must relist."""


@dataclass(frozen=True)
class KubeConnection:
    """Where the API server is and how to authenticate to it."""

    server: str
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    token: str | None = None
    token_file: str | None = None
    insecure_skip_verify: bool = False
    exec_config: ExecConfig | None = None


def in_cluster_connection(sa_dir: Path = SERVICE_ACCOUNT_DIR) -> KubeConnection:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ConfigError("not running in a cluster (KUBERNETES_SERVICE_HOST is unset); pass --kubeconfig")
    if ":" in host:
        host = f"[{host}]"
    token_file = sa_dir / "token"
    if not token_file.exists():
        raise ConfigError(
            f"service account token {token_file} is missing; is automountServiceAccountToken off?"
        )
    return KubeConnection(
        server=f"https://{host}:{port}", ca_file=str(sa_dir / "ca.crt"), token_file=str(token_file)
    )


def kubeconfig_connection(path: str | None = None, context: str | None = None) -> KubeConnection:
    """Parse a kubeconfig with the official client's loader (``path`` None = KUBECONFIG/default)."""
    try:
        from kubernetes import client as k8s_client
        from kubernetes.config import kube_config
    except ImportError as err:  # pragma: no cover - dependency of the adapter extra
        raise ConfigError(f"the kubernetes package is needed to read kubeconfigs: {err}") from err
    cfg = k8s_client.Configuration()
    where = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
    exec_config: ExecConfig | None = None
    try:
        loader = kube_config._get_kube_config_loader(
            filename=path or kube_config.KUBE_CONFIG_DEFAULT_LOCATION,
            active_context=context,
            persist_config=False,
        )
        exec_config = _exec_config(loader, where)
        if exec_config is not None:
            # Ours runs it (again before expiry); the loader would run it once, at load.
            loader._load_from_exec_plugin = lambda: None
        loader.load_and_set(cfg)
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"cannot load kubeconfig {where}: {err}; pass a working --kubeconfig") from err
    auth = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    token = None
    if auth:
        prefix = (cfg.api_key_prefix or {}).get("authorization")
        token = auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else auth
        if prefix and prefix.lower() != "bearer":
            token = auth
    return KubeConnection(
        server=cfg.host,
        ca_file=cfg.ssl_ca_cert or None,
        client_cert_file=cfg.cert_file or None,
        client_key_file=cfg.key_file or None,
        token=token,
        insecure_skip_verify=not cfg.verify_ssl,
        exec_config=exec_config,
    )


def _exec_config(loader: Any, where: str) -> ExecConfig | None:
    """The current user's ``exec`` section, when the loader would use it (after auth-provider and token)."""
    user = loader._user
    if user is None or "exec" not in user:
        return None
    if any(key in user for key in ("auth-provider", "token", "tokenFile")):
        return None
    cluster = loader._cluster
    return exec_config_from_kubeconfig(
        user["exec"].value,
        base_dir=loader._get_base_path(user.path),
        cluster=cluster.value if cluster is not None else {},
        where=f"{where} (user of context {loader.current_context.get('name', '?')!r})",
    )


def default_connection(kubeconfig: str | None = None) -> KubeConnection:
    """``--kubeconfig`` if given, else the pod's service account, else KUBECONFIG/~/.kube/config."""
    if kubeconfig:
        return kubeconfig_connection(kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster_connection()
    return kubeconfig_connection(None)


def _status_error(response: httpx.Response) -> KubeError:
    reason, message = response.reason_phrase, response.text[:500]
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("kind") == "Status":
            reason = body.get("reason") or reason
            message = body.get("message") or message
    except ValueError:
        pass
    cls = WatchExpired if response.status_code == 410 else KubeError
    return cls(response.status_code, reason, message)


class KubeClient:
    """get / list / watch / create against one API server over one connection pool."""

    def __init__(
        self,
        conn: KubeConnection,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.conn = conn
        self.timeout = timeout
        verify: ssl.SSLContext | bool = True
        self._ssl: ssl.SSLContext | None = None
        if conn.server.startswith("https"):
            if conn.insecure_skip_verify:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx = (
                    ssl.create_default_context(cafile=conn.ca_file)
                    if conn.ca_file
                    else ssl.create_default_context()
                )
            if conn.client_cert_file:
                ctx.load_cert_chain(conn.client_cert_file, conn.client_key_file)
            verify = self._ssl = ctx
        elif conn.insecure_skip_verify:
            verify = False
        self._client = httpx.AsyncClient(
            base_url=conn.server.rstrip("/"),
            verify=verify,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"User-Agent": "hpa-kit-adapter", "Accept": "application/json"},
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )
        self._token_cache: tuple[float, str] | None = None
        self._exec = ExecCredentialSource(conn.exec_config) if conn.exec_config else None
        self._exec_cert: tuple[str, str] | None = None  # the client certificate loaded into _ssl

    @classmethod
    def from_kubeconfig_or_cluster(cls, kubeconfig: str | None = None, **kw: Any) -> KubeClient:
        return cls(default_connection(kubeconfig), **kw)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _credential(self) -> ExecCredential | None:
        """The exec plugin's current credential; a new client certificate goes into the TLS context."""
        if self._exec is None:
            return None
        cred = await self._exec.get()
        if cred.client_certificate_data and cred.client_key_data:
            pair = (cred.client_certificate_data, cred.client_key_data)
            if pair != self._exec_cert and self._ssl is not None:
                _load_cert_data(self._ssl, *pair)
                self._exec_cert = pair
        return cred

    async def _auth_headers(
        self, extra: Mapping[str, str] | None = None
    ) -> tuple[dict[str, str], ExecCredential | None]:
        cred = await self._credential()
        headers = self._headers(extra)
        if cred is not None and cred.token:
            headers["Authorization"] = f"Bearer {cred.token}"
        return headers, cred

    def _retry_unauthorized(self, status: int, cred: ExecCredential | None) -> bool:
        """After a 401 with an exec credential, forget it so the retry runs the plugin again."""
        if status != 401 or self._exec is None:
            return False
        log.info("Kubernetes API answered 401; running the kubeconfig exec plugin again")
        self._exec.invalidate(cred)
        return True

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        token = self.conn.token
        if self.conn.token_file:
            # Projected service account tokens are rotated on disk; re-read when the file changes.
            try:
                mtime = os.stat(self.conn.token_file).st_mtime
                if self._token_cache is None or self._token_cache[0] != mtime:
                    self._token_cache = (mtime, Path(self.conn.token_file).read_text().strip())
                token = self._token_cache[1]
            except OSError as err:
                raise BackendUnavailable(f"cannot read the service account token: {err}") from err
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        accept: str | None = None,
    ) -> dict[str, Any]:
        for attempt in range(2):
            headers, cred = await self._auth_headers({"Accept": accept} if accept else None)
            try:
                response = await self._client.request(
                    method, path, params=params, json=json_body, headers=headers
                )
            except httpx.HTTPError as err:
                raise BackendUnavailable(f"Kubernetes API {self.conn.server} unreachable: {err!r}") from err
            if attempt == 0 and self._retry_unauthorized(response.status_code, cred):
                continue
            break
        if response.status_code >= 300:
            raise _status_error(response)
        try:
            return response.json()
        except ValueError as err:
            raise KubeError(response.status_code, "BadResponse", f"not JSON: {response.text[:200]}") from err

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self._request("GET", path, params=params)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", path, json_body=body)

    async def list(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        page_size: int = 500,
        metadata_only: bool = False,
    ) -> dict[str, Any]:
        """LIST with pagination; returns one list object with every item and the final resourceVersion."""
        query = dict(params or {})
        query["limit"] = page_size
        items: list[Any] = []
        while True:
            page = await self._request(
                "GET", path, params=query, accept=METADATA_LIST_ACCEPT if metadata_only else None
            )
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                page["items"] = items
                return page
            query["continue"] = cont

    async def watch(
        self,
        path: str,
        *,
        resource_version: str,
        params: Mapping[str, Any] | None = None,
        timeout_seconds: int = 300,
        metadata_only: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:
        """Stream watch events (``{"type", "object"}``) from ``resource_version``.

        Raises :class:`WatchExpired` when the server says the version is gone (410), either as the
        HTTP status or as an ``ERROR`` event; the caller relists. Returns when the server closes
        the stream (``timeoutSeconds``); the caller re-watches from the last version it saw.
        """
        query = dict(params or {})
        query.update(
            watch="true",
            resourceVersion=resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=timeout_seconds,
        )
        timeout = httpx.Timeout(self.timeout, read=timeout_seconds + 30)
        for attempt in range(2):
            headers, cred = await self._auth_headers(
                {"Accept": METADATA_WATCH_ACCEPT if metadata_only else "application/json"}
            )
            try:
                async with self._client.stream(
                    "GET", path, params=query, headers=headers, timeout=timeout
                ) as response:
                    if response.status_code >= 300:
                        await response.aread()
                        if attempt == 0 and self._retry_unauthorized(response.status_code, cred):
                            continue
                        raise _status_error(response)
                    async for line in response.aiter_lines():
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            status = event.get("object") or {}
                            code = int(status.get("code") or 500)
                            cls = WatchExpired if code == 410 else KubeError
                            raise cls(code, status.get("reason", ""), status.get("message", ""))
                        yield event
                    return
            except httpx.HTTPError as err:
                raise BackendUnavailable(f"watch {path} failed: {err!r}") from err


def _load_cert_data(ctx: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """Load PEM data into ``ctx`` (ssl reads only files: private ones, removed right after)."""
    with tempfile.TemporaryDirectory(prefix="hpakit-exec-") as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        for target, data in ((cert, cert_pem), (key, key_pem)):
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(data)
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError) as err:
            raise BackendUnavailable(f"the exec plugin's client certificate cannot be loaded: {err}") from err


# --------------------------------------------------------------------------------------------
# Discovery-backed resource mapper
# --------------------------------------------------------------------------------------------


def resource_path(info: ResourceInfo, namespace: str | None = None) -> str:
    """Collection path of a resource (``/api/v1/pods``, ``/apis/apps/v1/namespaces/x/deployments``)."""
    group = info.group_resource.group
    base = f"/apis/{group}/{info.version}" if group else f"/api/{info.version}"
    if namespace and info.namespaced:
        base += f"/namespaces/{namespace}"
    return f"{base}/{info.group_resource.resource}"


__all__ = [
    "KubeClient",
    "KubeConnection",
    "KubeError",
    "WatchExpired",
    "default_connection",
    "in_cluster_connection",
    "kubeconfig_connection",
    "resource_path",
]
