"""A minimal mTLS client for the few API calls the provider itself makes (health, node status).

Kept dependency-free on purpose: bringing a cluster up must not depend on the kubernetes client's
version or on a kubeconfig loader; scenarios use the real clients against the kubeconfig.
"""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.errors import HarnessError

__all__ = ["ApiClient", "ApiError"]


class ApiError(HarnessError):
    def __init__(self, status: int, body: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status}: {body[:300]}")


class ApiClient:
    def __init__(
        self,
        server: str,
        *,
        ca: Path | None,
        cert: Path | None = None,
        key: Path | None = None,
        timeout: float = 5.0,
    ) -> None:
        u = urlsplit(server)
        self.scheme = u.scheme
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.timeout = timeout
        self.ctx: ssl.SSLContext | None = None
        if u.scheme == "https":
            if ca is None:
                self.ctx = ssl._create_unverified_context()  # self-signed component endpoints (healthz)
            else:
                self.ctx = ssl.create_default_context(cafile=str(ca))
            if cert is not None:
                self.ctx.load_cert_chain(str(cert), str(key) if key else None)

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, str]:
        if self.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.ctx
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
            headers = {"Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    def get_text(self, path: str) -> tuple[int, str]:
        return self.request("GET", path)

    def get(self, path: str) -> Any:
        status, text = self.request("GET", path)
        if status != 200:
            raise ApiError(status, text)
        return json.loads(text)

    def ok(self, path: str) -> tuple[bool, str]:
        """A probe (:mod:`harness.waits`): done on HTTP 200, else a short description."""
        status, text = self.request("GET", path)
        if status == 200:
            return True, f"{path}: HTTP 200"
        return False, f"{path}: HTTP {status} {text.strip()[-200:]}"
