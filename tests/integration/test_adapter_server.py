"""The REAL adapter process over real TLS: certificates from cfssl (harness.certs), the static provider.

Two set-ups:

* ``--authn-mode=none --authz-mode=always-allow`` with a front-proxy CA and a client CA given by
  flag: verified HTTPS, which identity a request is served as (read from the access log), the
  ``X-Remote-*`` headers honoured only with a front-proxy certificate, certificate hot reload,
  ``/readyz`` and ``/metrics``.
* ``--authn-mode=delegated --authz-mode=delegated`` against a small fake kube-apiserver on loopback
  (configmap, discovery, pods LIST/WATCH, TokenReview, SubjectAccessReview): 401 for anonymous,
  403 from a denied SubjectAccessReview with the exact attributes, tokens, and ``*`` from the watch
  cache. (A real kube-apiserver fixture replaces the fake in the e2e layer.)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
C = "/apis/custom.metrics.k8s.io/v1beta2"

if not (shutil.which("cfssl") and shutil.which("cfssljson")):  # pragma: no cover
    pytest.skip("cfssl/cfssljson not installed", allow_module_level=True)

from harness.certs import CertPair, ensure_ca, issue_cert  # noqa: E402
from harness.procs import terminate  # noqa: E402
from harness.waits import Unresolvable, wait_for  # noqa: E402


@dataclass
class Pki:
    dir: Path
    serving_ca: CertPair
    serving: CertPair
    front_ca: CertPair
    aggregator: CertPair
    wrong_cn: CertPair
    client_ca: CertPair
    alice: CertPair
    stranger: CertPair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    serving_ca = ensure_ca(d, "serving-ca", "adapter-serving-ca")
    front_ca = ensure_ca(d, "front-proxy-ca", "front-proxy-ca")
    client_ca = ensure_ca(d, "client-ca", "cluster-client-ca")
    other_ca = ensure_ca(d, "other-ca", "someone-else")
    return Pki(
        dir=d,
        serving_ca=serving_ca,
        serving=issue_cert(
            d, "serving", serving_ca, "adapter", hosts=["127.0.0.1", "localhost"], usage="server"
        ),
        front_ca=front_ca,
        aggregator=issue_cert(d, "aggregator", front_ca, "front-proxy-client", usage="client"),
        wrong_cn=issue_cert(d, "wrong-cn", front_ca, "not-the-aggregator", usage="client"),
        client_ca=client_ca,
        alice=issue_cert(d, "alice", client_ca, "alice", organizations=["devs"], usage="client"),
        stranger=issue_cert(d, "stranger", other_ca, "front-proxy-client", usage="client"),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Adapter:
    """One ``python -m adapter serve`` process; stderr (the access log) goes to a file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.log = log
        self._log_file = log.open("wb")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "adapter",
                "serve",
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(self.port),
                "--metrics-bind-address",
                f"127.0.0.1:{self.metrics_port}",
                "--cert-reload-interval",
                "200ms",
                *args,
            ],
            cwd=REPO,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, ca: Path, timeout: float = 30) -> None:
        ctx = ssl.create_default_context(cafile=str(ca))

        def ready() -> tuple[bool, str]:
            if self.proc.poll() is not None:
                raise Unresolvable(f"adapter exited with {self.proc.returncode}")
            status = httpx.get(f"{self.url}/readyz", verify=ctx, timeout=2).status_code
            return status == 200, f"/readyz: HTTP {status}"

        wait_for("adapter ready", ready, timeout=timeout, interval=0.2, progress=None,
                 error=lambda _k, msg: AssertionError(f"{msg}:\n{self.log_text()}"))  # fmt: skip

    def stop(self) -> None:
        terminate(self.proc, timeout=10)
        self._log_file.close()


def tls(pki: Pki, client: CertPair | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.serving_ca.cert))
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    return ctx


def served_user(adapter: Adapter, path: str) -> str:
    """The ``user="..."`` of the last access-log line for ``path``."""
    for _ in range(50):
        lines = [ln for ln in adapter.log_text().splitlines() if f" {path} " in ln and 'user="' in ln]
        if lines:
            return lines[-1].split('user="', 1)[1].split('"', 1)[0]
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {path}:\n{adapter.log_text()}")


# --------------------------------------------------------------------------------------------
# authn none / authz always-allow
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_adapter(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Adapter]:
    d = tmp_path_factory.mktemp("open")
    cert, key = d / "tls.crt", d / "tls.key"
    shutil.copy(pki.serving.cert, cert)
    shutil.copy(pki.serving.key, key)
    adapter = Adapter(
        [
            "--tls-cert-file",
            str(cert),
            "--tls-private-key-file",
            str(key),
            "--provider",
            "static",
            "--static-value",
            "2.5",
            "--static-metrics",
            "hits,queue",
            "--authn-mode",
            "none",
            "--authz-mode",
            "always-allow",
            "--requestheader-client-ca-file",
            str(pki.front_ca.cert),
            "--requestheader-allowed-names",
            "front-proxy-client",
            "--client-ca-file",
            str(pki.client_ca.cert),
        ],
        d / "adapter.log",
    )
    try:
        adapter.wait_ready(pki.serving_ca.cert)
        yield adapter
    finally:
        adapter.stop()


def test_serves_verified_https_and_shapes(open_adapter: Adapter, pki: Pki) -> None:
    r = httpx.get(f"{open_adapter.url}{C}/namespaces/default/services/web/hits", verify=tls(pki))
    assert r.status_code == 200, r.text
    item = r.json()["items"][0]
    assert item["value"] == "2500m" and item["describedObject"]["kind"] == "Service"
    discovery = httpx.get(f"{open_adapter.url}{C}", verify=tls(pki)).json()
    assert {"pods/hits", "services/queue", "namespaces/hits"} <= {x["name"] for x in discovery["resources"]}
    # An unverifiable server certificate is refused by a verifying client.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{open_adapter.url}/healthz", verify=ssl.create_default_context())


def test_front_proxy_cert_headers_used(open_adapter: Adapter, pki: Pki) -> None:
    path = f"{C}/namespaces/default/pods/p1/hits"
    r = httpx.get(
        open_adapter.url + path,
        verify=tls(pki, pki.aggregator),
        headers={"X-Remote-User": "system:kube-aggregator-user", "X-Remote-Group": "g1"},
    )
    assert r.status_code == 200
    assert served_user(open_adapter, path) == "system:kube-aggregator-user"


def test_headers_without_front_proxy_cert_ignored(open_adapter: Adapter, pki: Pki) -> None:
    path = f"{C}/namespaces/default/pods/p2/hits"
    r = httpx.get(open_adapter.url + path, verify=tls(pki), headers={"X-Remote-User": "admin"})
    assert r.status_code == 200
    assert served_user(open_adapter, path) == "system:anonymous"


def test_cluster_ca_cert_is_its_cn_not_the_headers(open_adapter: Adapter, pki: Pki) -> None:
    path = f"{C}/namespaces/default/pods/p3/hits"
    r = httpx.get(open_adapter.url + path, verify=tls(pki, pki.alice), headers={"X-Remote-User": "admin"})
    assert r.status_code == 200
    assert served_user(open_adapter, path) == "alice"


def test_untrusted_client_cert_headers_ignored(open_adapter: Adapter, pki: Pki) -> None:
    path = f"{C}/namespaces/default/pods/p4/hits"
    try:
        r = httpx.get(
            open_adapter.url + path, verify=tls(pki, pki.stranger), headers={"X-Remote-User": "admin"}
        )
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
        return  # refused during the handshake: the headers were never even read
    assert r.status_code in (200, 401)
    assert served_user(open_adapter, path) != "admin"


def test_front_proxy_cert_with_disallowed_cn_refused(open_adapter: Adapter, pki: Pki) -> None:
    r = httpx.get(f"{open_adapter.url}{C}", verify=tls(pki, pki.wrong_cn), headers={"X-Remote-User": "admin"})
    assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"


def test_probes_and_metrics(open_adapter: Adapter, pki: Pki) -> None:
    for probe in ("/healthz", "/livez", "/readyz"):
        assert httpx.get(open_adapter.url + probe, verify=tls(pki)).text == "ok"
    m = httpx.get(f"http://127.0.0.1:{open_adapter.metrics_port}/metrics")
    assert m.status_code == 200 and "hpakit_adapter_request_duration_seconds_count" in m.text
    assert httpx.get(open_adapter.url + "/metrics", verify=tls(pki)).status_code == 200  # always-allow


def _served_serial(adapter: Adapter, pki: Pki) -> int:
    ctx = tls(pki)
    with (
        socket.create_connection(("127.0.0.1", adapter.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as s,
    ):
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_certificate_hot_reload(open_adapter: Adapter, pki: Pki, tmp_path: Path) -> None:
    before = _served_serial(open_adapter, pki)
    new = issue_cert(
        tmp_path,
        "rotated",
        pki.serving_ca,
        "adapter-rotated",
        hosts=["127.0.0.1", "localhost"],
        usage="server",
    )
    cert_dst = Path(open_adapter.proc.args[open_adapter.proc.args.index("--tls-cert-file") + 1])
    key_dst = Path(open_adapter.proc.args[open_adapter.proc.args.index("--tls-private-key-file") + 1])
    # Write the way a Secret volume update lands: new files renamed into place.
    shutil.copy(new.key, key_dst.with_suffix(".tmp"))
    os.replace(key_dst.with_suffix(".tmp"), key_dst)
    shutil.copy(new.cert, cert_dst.with_suffix(".tmp"))
    os.replace(cert_dst.with_suffix(".tmp"), cert_dst)
    want = new.certificate().serial_number
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _served_serial(open_adapter, pki) != want:
        time.sleep(0.1)
    assert before != want and _served_serial(open_adapter, pki) == want
    m = httpx.get(f"http://127.0.0.1:{open_adapter.metrics_port}/metrics").text
    assert 'hpakit_adapter_config_reloads_total{kind="certs",outcome="success"}' in m
    # Still serving requests after the swap.
    assert httpx.get(f"{open_adapter.url}/readyz", verify=tls(pki)).status_code == 200


def test_bad_flags_exit_2_nothing_started(tmp_path: Path, pki: Pki) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cases = [
        ["--provider", "static"],  # no TLS files
        [
            "--tls-cert-file",
            str(pki.serving.cert),
            "--tls-private-key-file",
            str(pki.alice.key),
            "--provider",
            "static",
            "--authn-mode",
            "none",
            "--authz-mode",
            "always-allow",
        ],  # mismatched key
        [
            "--tls-cert-file",
            str(pki.serving.cert),
            "--tls-private-key-file",
            str(pki.serving.key),
            "--metrics-relist-interval",
            "soon",
        ],
    ]
    for args in cases:
        p = subprocess.run(
            [sys.executable, "-m", "adapter", "serve", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 2, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr


# --------------------------------------------------------------------------------------------
# delegated authn/authz against a fake kube-apiserver
# --------------------------------------------------------------------------------------------


class FakeKubeApiserver:
    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.sars: list[dict[str, Any]] = []
        self.token_reviews = 0
        app = web.Application()
        app.router.add_get(
            "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication", self.configmap
        )
        app.router.add_get("/apis", self.apis)
        app.router.add_get("/api/v1", self.core)
        app.router.add_get("/api/v1/pods", self.pods)
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self.tokenreview)
        app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", self.sar)
        self.server = TestServer(app, host="127.0.0.1")

    async def configmap(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "data": {
                    "client-ca-file": self.pki.client_ca.cert.read_text(),
                    "requestheader-client-ca-file": self.pki.front_ca.cert.read_text(),
                    "requestheader-allowed-names": '["front-proxy-client"]',
                    "requestheader-username-headers": '["X-Remote-User"]',
                    "requestheader-group-headers": '["X-Remote-Group"]',
                    "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
                }
            }
        )

    async def apis(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "groups": []})

    async def core(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "resources": [
                    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod"},
                    {"name": "services", "singularName": "service", "namespaced": True, "kind": "Service"},
                    {
                        "name": "namespaces",
                        "singularName": "namespace",
                        "namespaced": False,
                        "kind": "Namespace",
                    },
                ]
            }
        )

    async def pods(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") == "true":
            resp = web.StreamResponse()
            await resp.prepare(request)
            await asyncio.sleep(3600)
            return resp
        items = [
            {"metadata": {"namespace": "default", "name": n, "labels": {"app": "web"}}} for n in ("a", "b")
        ]
        return web.json_response({"metadata": {"resourceVersion": "5"}, "items": items})

    async def tokenreview(self, request: web.Request) -> web.Response:
        self.token_reviews += 1
        body = await request.json()
        ok = body["spec"]["token"] == "good-token"
        status = {
            "authenticated": True,
            "user": {"username": "token-user", "groups": ["system:serviceaccounts"]},
        }
        return web.json_response({**body, "status": status if ok else {"authenticated": False}}, status=201)

    async def sar(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.sars.append(body["spec"])
        allowed = body["spec"]["user"] != "eve"
        return web.json_response(
            {**body, "status": {"allowed": allowed, "reason": "" if allowed else "RBAC says no"}}, status=201
        )


@pytest.fixture
async def delegated(pki: Pki, tmp_path: Path) -> AsyncIterator[tuple[Adapter, FakeKubeApiserver]]:
    fake = FakeKubeApiserver(pki)
    await fake.server.start_server()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "fake",
                "clusters": [
                    {"name": "fake", "cluster": {"server": str(fake.server.make_url("")).rstrip("/")}}
                ],
                "users": [{"name": "adapter", "user": {"token": "adapter-sa-token"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "adapter"}}],
            }
        )
    )
    adapter = Adapter(
        [
            "--tls-cert-file",
            str(pki.serving.cert),
            "--tls-private-key-file",
            str(pki.serving.key),
            "--provider",
            "static",
            "--static-metrics",
            "hits",
            "--kubeconfig",
            str(kubeconfig),
        ],
        tmp_path / "adapter.log",
    )
    try:
        await asyncio.to_thread(adapter.wait_ready, pki.serving_ca.cert)
        yield adapter, fake
    finally:
        await asyncio.to_thread(adapter.stop)
        await fake.server.close()


async def test_delegated_auth_end_to_end(delegated: tuple[Adapter, FakeKubeApiserver], pki: Pki) -> None:
    adapter, fake = delegated
    star = f"{C}/namespaces/default/pods/*/hits"
    async with httpx.AsyncClient(verify=tls(pki)) as anon:
        r = await anon.get(adapter.url + star, headers={"X-Remote-User": "admin"})
        assert r.status_code == 401 and r.json()["kind"] == "Status"
        r = await anon.get(adapter.url + star, headers={"Authorization": "Bearer bad-token"})
        assert r.status_code == 401
        r = await anon.get(
            adapter.url + star + "?labelSelector=app%3Dweb", headers={"Authorization": "Bearer good-token"}
        )
        assert r.status_code == 200, r.text
        assert sorted(i["describedObject"]["name"] for i in r.json()["items"]) == ["a", "b"]
        assert fake.sars[-1] == {
            "user": "token-user",
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": {
                "namespace": "default",
                "verb": "get",
                "group": "custom.metrics.k8s.io",
                "version": "v1beta2",
                "resource": "pods",
                "subresource": "hits",
                "name": "*",
            },
        }
    async with httpx.AsyncClient(verify=tls(pki, pki.aggregator)) as proxy:
        r = await proxy.get(adapter.url + star, headers={"X-Remote-User": "eve", "X-Remote-Group": "devs"})
        assert r.status_code == 403
        body = r.json()
        assert body["reason"] == "Forbidden"
        assert (
            'User "eve" cannot get resource "pods/hits" in API group "custom.metrics.k8s.io"'
            in body["message"]
        )
        assert "RBAC says no" in body["message"]
        r = await proxy.get(adapter.url + C, headers={"X-Remote-User": "hpa"})
        assert r.status_code == 200
        assert fake.sars[-1]["nonResourceAttributes"] == {"path": C, "verb": "get"}
