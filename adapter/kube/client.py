"""A small async Kubernetes API client (the resource mappers are in :mod:`adapter.kube.mapper`).

The adapter needs only a handful of calls (read a ConfigMap, create TokenReviews and
SubjectAccessReviews, list+watch object metadata, read discovery), so it talks to the API with one
pooled ``httpx.AsyncClient`` instead of the blocking official client. Credentials come from the
pod's service account (token re-read when the projected token rotates) or from a kubeconfig, which
is parsed with the official client's loader so every kubeconfig shape (inline data, exec plugins,
contexts) behaves exactly as with kubectl.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from adapter.errors import BackendUnavailable, ConfigError, KubeError
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
        from kubernetes import config as k8s_config
    except ImportError as err:  # pragma: no cover - dependency of the adapter extra
        raise ConfigError(f"the kubernetes package is needed to read kubeconfigs: {err}") from err
    cfg = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config(
            config_file=path, context=context, client_configuration=cfg, persist_config=False
        )
    except Exception as err:
        where = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
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
        if conn.insecure_skip_verify:
            verify = False
        elif conn.server.startswith("https"):
            ctx = (
                ssl.create_default_context(cafile=conn.ca_file)
                if conn.ca_file
                else ssl.create_default_context()
            )
            if conn.client_cert_file:
                ctx.load_cert_chain(conn.client_cert_file, conn.client_key_file)
            verify = ctx
        self._client = httpx.AsyncClient(
            base_url=conn.server.rstrip("/"),
            verify=verify,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"User-Agent": "hpa-kit-adapter", "Accept": "application/json"},
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )
        self._token_cache: tuple[float, str] | None = None

    @classmethod
    def from_kubeconfig_or_cluster(cls, kubeconfig: str | None = None, **kw: Any) -> KubeClient:
        return cls(default_connection(kubeconfig), **kw)

    async def aclose(self) -> None:
        await self._client.aclose()

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
        headers = self._headers({"Accept": accept} if accept else None)
        try:
            response = await self._client.request(
                method, path, params=params, json=json_body, headers=headers
            )
        except httpx.HTTPError as err:
            raise BackendUnavailable(f"Kubernetes API {self.conn.server} unreachable: {err!r}") from err
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
        headers = self._headers({"Accept": METADATA_WATCH_ACCEPT if metadata_only else "application/json"})
        timeout = httpx.Timeout(self.timeout, read=timeout_seconds + 30)
        try:
            async with self._client.stream(
                "GET", path, params=query, headers=headers, timeout=timeout
            ) as response:
                if response.status_code >= 300:
                    await response.aread()
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
        except httpx.HTTPError as err:
            raise BackendUnavailable(f"watch {path} failed: {err!r}") from err


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
