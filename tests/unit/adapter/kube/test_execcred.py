"""kubeconfig exec plugins: run as kubectl runs them, again before expiry and once after a 401.

The plugin is a small Python script written into tmp_path that counts its runs in a file and answers
an ExecCredential whose token names the run (``tok-1``, ``tok-2``, ...).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapter.errors import BackendUnavailable, ConfigError, KubeError
from adapter.kube.client import KubeClient, kubeconfig_connection
from adapter.kube.execcred import EXEC_API_VERSIONS, ExecConfig, parse_exec_credential
from tests.support.adapter_pki import make_ca, make_leaf

PLUGIN = r"""
import datetime, json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
count_file = os.path.join(here, "runs")
n = int(open(count_file).read()) + 1 if os.path.exists(count_file) else 1
open(count_file, "w").write(str(n))
open(os.path.join(here, f"exec-info-{n}.json"), "w").write(os.environ.get("KUBERNETES_EXEC_INFO", ""))
if os.environ.get("PLUGIN_FAIL"):
    sys.stderr.write("error: the SSO session has expired; run aws sso login\n")
    sys.exit(3)
status = {"token": f"tok-{n}"}
if os.environ.get("CERT_FILE"):
    status = {"clientCertificateData": open(os.environ["CERT_FILE"]).read(),
              "clientKeyData": open(os.environ["KEY_FILE"]).read()}
if os.environ.get("EXPIRES_IN"):
    life = datetime.timedelta(seconds=float(os.environ["EXPIRES_IN"]))
    at = datetime.datetime.now(datetime.timezone.utc) + life
    status["expirationTimestamp"] = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
print(json.dumps({"apiVersion": os.environ["API_VERSION"], "kind": "ExecCredential", "status": status}))
"""


class TokenApi:
    """An API server that accepts the tokens in ``valid`` (all ``tok-*`` when None)."""

    def __init__(self) -> None:
        self.valid: set[str] | None = None
        self.seen: list[str] = []
        app = web.Application()
        app.router.add_get("/api/v1/pods", self.pods)
        self.server = TestServer(app)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def pods(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.seen.append(token)
        ok = token.startswith("tok-") if self.valid is None else token in self.valid
        if not ok:
            return web.json_response(
                {"kind": "Status", "code": 401, "reason": "Unauthorized", "message": "Unauthorized"},
                status=401,
            )
        if request.query.get("watch") == "true":
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(b'{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "5"}}}\n')
            return resp
        return web.json_response({"kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": []})


@pytest.fixture
async def api() -> AsyncIterator[TokenApi]:
    fake = TokenApi()
    await fake.server.start_server()
    try:
        yield fake
    finally:
        await fake.server.close()


def kubeconfig(
    tmp_path: Path,
    server: str,
    *,
    env: dict[str, str] | None = None,
    ca_data: str = "Q0E=",
    **exec_extra: Any,
) -> Path:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    api_version = exec_extra.pop("apiVersion", "client.authentication.k8s.io/v1")
    section: dict[str, Any] = {
        "apiVersion": api_version,
        "command": sys.executable,
        "args": [str(plugin)],
        "env": [{"name": k, "value": v} for k, v in {"API_VERSION": api_version, **(env or {})}.items()],
        "interactiveMode": "IfAvailable",
        **exec_extra,
    }
    section = {k: v for k, v in section.items() if v is not None}
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "eks",
                "clusters": [
                    {
                        "name": "k",
                        "cluster": {"server": server, "certificate-authority-data": ca_data},
                    }
                ],
                "users": [{"name": "u", "user": {"exec": section}}],
                "contexts": [{"name": "eks", "context": {"cluster": "k", "user": "u"}}],
            }
        )
    )
    return cfg


def runs(tmp_path: Path) -> int:
    count = tmp_path / "runs"
    return int(count.read_text()) if count.exists() else 0


async def test_token_refreshed_after_expiry(api: TokenApi, tmp_path: Path) -> None:
    conn = kubeconfig_connection(str(kubeconfig(tmp_path, api.url, env={"EXPIRES_IN": "1.5"})))
    assert conn.token is None and conn.exec_config is not None
    assert runs(tmp_path) == 0  # not at load: the client runs it when it needs a credential
    client = KubeClient(conn)
    try:
        await client.list("/api/v1/pods")
        await client.list("/api/v1/pods")
        assert runs(tmp_path) == 1 and api.seen == ["tok-1", "tok-1"]  # cached while valid
        await asyncio.sleep(1.6)
        await client.list("/api/v1/pods")
        assert runs(tmp_path) == 2 and api.seen[-1] == "tok-2"  # expired: the plugin ran again
    finally:
        await client.aclose()


async def test_refreshes_a_little_before_expiry(api: TokenApi, tmp_path: Path) -> None:
    # 8 s of life: replaced a quarter of it (2 s) before the timestamp, not after.
    client = KubeClient(kubeconfig_connection(str(kubeconfig(tmp_path, api.url, env={"EXPIRES_IN": "8"}))))
    try:
        await client.list("/api/v1/pods")
        assert client._exec is not None
        client._exec.now = lambda: client._exec._refresh_at  # type: ignore[assignment,union-attr,return-value]
        await client.list("/api/v1/pods")
        assert runs(tmp_path) == 2 and api.seen == ["tok-1", "tok-2"]
    finally:
        await client.aclose()


async def test_401_runs_the_plugin_again_once(api: TokenApi, tmp_path: Path) -> None:
    client = KubeClient(kubeconfig_connection(str(kubeconfig(tmp_path, api.url))))  # no expiry
    try:
        await client.list("/api/v1/pods")
        api.valid = {"tok-2"}  # tok-1 revoked early
        await client.list("/api/v1/pods")
        assert runs(tmp_path) == 2 and api.seen == ["tok-1", "tok-1", "tok-2"]
        api.valid = {"tok-3"}  # watch too: 401, plugin, retry
        events = [e async for e in client.watch("/api/v1/pods", resource_version="1")]
        assert events[0]["type"] == "BOOKMARK" and api.seen[-2:] == ["tok-2", "tok-3"]
        api.valid = set()  # refused whatever the plugin says: one retry, then the 401
        with pytest.raises(KubeError) as exc:
            await client.list("/api/v1/pods")
        assert exc.value.status == 401 and runs(tmp_path) == 4
    finally:
        await client.aclose()


async def test_failing_plugin_names_command_and_stderr(api: TokenApi, tmp_path: Path) -> None:
    client = KubeClient(kubeconfig_connection(str(kubeconfig(tmp_path, api.url, env={"PLUGIN_FAIL": "1"}))))
    try:
        with pytest.raises(BackendUnavailable) as exc:
            await client.list("/api/v1/pods")
    finally:
        await client.aclose()
    text = str(exc.value)
    assert sys.executable in text and "plugin.py" in text and "exit code 3" in text
    assert "the SSO session has expired; run aws sso login" in text
    assert api.seen == []


async def test_missing_command_is_a_clear_error(api: TokenApi, tmp_path: Path) -> None:
    cfg = kubeconfig(tmp_path, api.url, command="./bin/no-such-plugin")
    conn = kubeconfig_connection(str(cfg))
    assert conn.exec_config is not None
    assert conn.exec_config.command == str(tmp_path / "bin" / "no-such-plugin")  # relative to the file
    client = KubeClient(conn)
    try:
        with pytest.raises(BackendUnavailable, match=r"no-such-plugin.*cannot be started"):
            await client.list("/api/v1/pods")
    finally:
        await client.aclose()


@pytest.mark.parametrize("api_version", EXEC_API_VERSIONS)
async def test_exec_info_like_kubectl(api: TokenApi, tmp_path: Path, api_version: str) -> None:
    cfg = kubeconfig(tmp_path, api.url, apiVersion=api_version, provideClusterInfo=True)
    client = KubeClient(kubeconfig_connection(str(cfg)))
    try:
        await client.list("/api/v1/pods")
    finally:
        await client.aclose()
    info = json.loads((tmp_path / "exec-info-1.json").read_text())
    assert info["apiVersion"] == api_version and info["kind"] == "ExecCredential"
    assert info["spec"] == {
        "interactive": False,
        "cluster": {"server": api.url, "certificate-authority-data": "Q0E="},
    }


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"apiVersion": "client.authentication.k8s.io/v1alpha1"}, "not supported"),
        ({"interactiveMode": None}, "interactiveMode is required"),
        ({"interactiveMode": "Always"}, "needs a terminal"),
        ({"command": ""}, "exec.command is missing"),
    ],
)
def test_bad_exec_sections_fail_at_load(tmp_path: Path, extra: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as exc:
        kubeconfig_connection(str(kubeconfig(tmp_path, "http://127.0.0.1:1", **extra)))
    assert "kubeconfig" in str(exc.value) and "'eks'" in str(exc.value)


@pytest.mark.parametrize(
    ("status", "fragment"),
    [
        ({}, "neither a token nor a client certificate"),
        ({"clientCertificateData": "CERT"}, "only one of"),
        ({"token": "t", "expirationTimestamp": "soon"}, "expirationTimestamp"),
    ],
)
def test_bad_credentials_are_refused(status: dict[str, Any], fragment: str) -> None:
    config = ExecConfig(command="plug")
    body = json.dumps({"apiVersion": config.api_version, "kind": "ExecCredential", "status": status})
    with pytest.raises(BackendUnavailable, match=fragment):
        parse_exec_credential(config, body.encode())
    wrong = json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                        "status": {"token": "t"}})
    with pytest.raises(BackendUnavailable, match=r"asks for client\.authentication\.k8s\.io/v1$"):
        parse_exec_credential(config, wrong.encode())


def test_certificate_credential_parsed() -> None:
    config = ExecConfig(command="plug", api_version="client.authentication.k8s.io/v1beta1")
    status = {"clientCertificateData": "CERT", "clientKeyData": "KEY"}
    status["expirationTimestamp"] = "2030-01-01T00:00:00Z"
    body = {"apiVersion": config.api_version, "kind": "ExecCredential", "status": status}
    cred = parse_exec_credential(config, json.dumps(body).encode())
    assert (cred.token, cred.client_certificate_data, cred.client_key_data) == (None, "CERT", "KEY")
    assert cred.expires is not None and cred.expires.year == 2030 and cred.expires.tzinfo is not None


async def test_client_certificate_from_the_plugin(tmp_path: Path) -> None:
    """A plugin answering clientCertificateData/clientKeyData: the TLS handshake presents that cert."""
    ca = make_ca("exec-ca")
    server_cert, server_key = make_leaf(ca, "apiserver", usage="server", hosts=("127.0.0.1",)).write(
        tmp_path, "server"
    )
    client_cert, client_key = make_leaf(ca, "exec-user").write(tmp_path, "client")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca.pem"))
    server_ctx.load_cert_chain(server_cert, server_key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED

    async def pods(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        cn = dict(x[0] for x in (peer or {}).get("subject", ()))["commonName"]
        return web.json_response({"kind": "PodList", "metadata": {"user": cn}, "items": []})

    app = web.Application()
    app.router.add_get("/api/v1/pods", pods)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=server_ctx)
    url = str(server.make_url("")).rstrip("/")
    cfg = kubeconfig(
        tmp_path,
        url,
        ca_data=base64.b64encode(ca.cert_pem).decode(),
        env={"CERT_FILE": str(client_cert), "KEY_FILE": str(client_key)},
    )
    client = KubeClient(kubeconfig_connection(str(cfg)))
    try:
        page = await client.list("/api/v1/pods")
        assert page["metadata"]["user"] == "exec-user" and runs(tmp_path) == 1
    finally:
        await client.aclose()
        await server.close()
