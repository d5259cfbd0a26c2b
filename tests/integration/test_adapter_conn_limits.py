"""Connection limits of the REAL adapter process over TLS on loopback (issue 12, finding 1).

Slow and idle clients are cut off (TLS handshake and request-header deadlines); a full connection cap
evicts the flooding source's oldest idle connection for a newcomer from elsewhere while pooled ones
keep working; the per-source cap refuses one source's excess only; oversized request heads or
bodies are answered 431/413. Small timeouts by flag keep every test short. Distinct loopback
addresses (127.0.0.2, .3, ...) stand for distinct clients.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

if not (shutil.which("cfssl") and shutil.which("cfssljson")):  # pragma: no cover
    pytest.skip("cfssl/cfssljson not installed", allow_module_level=True)

from tests.integration.test_adapter_server import Adapter, Pki, pki, served_user, tls  # noqa: E402, F401


@pytest.fixture(scope="module")
def certs(pki: Pki) -> Pki:  # noqa: F811 - the shared module-scoped PKI of the server tests
    return pki


BASE = ["--provider", "static", "--authn-mode", "none", "--authz-mode", "always-allow"]


def _start(certs: Pki, d: Path, extra: list[str]) -> Adapter:
    adapter = Adapter(
        [
            "--tls-cert-file",
            str(certs.serving.cert),
            "--tls-private-key-file",
            str(certs.serving.key),
            *BASE,
            *extra,
        ],
        d / "adapter.log",
    )
    adapter.wait_ready(certs.serving_ca.cert)
    return adapter


@pytest.fixture(scope="module")
def strict(certs: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Adapter]:
    """Short deadlines, small heads."""
    adapter = _start(
        certs,
        tmp_path_factory.mktemp("strict"),
        [
            "--tls-handshake-timeout",
            "1s",
            "--request-header-timeout",
            "1s",
            "--idle-timeout",
            "2s",
            "--max-request-header-bytes",
            "4096",
            "--max-request-body-bytes",
            "1024",
            "--requestheader-client-ca-file",
            str(certs.front_ca.cert),
            "--requestheader-allowed-names",
            "front-proxy-client",
        ],
    )
    try:
        yield adapter
    finally:
        adapter.stop()


def _closed_within(sock: socket.socket | ssl.SSLSocket, seconds: float) -> float | None:
    """Seconds until the peer closed ``sock`` (EOF or reset), None if still open after ``seconds``."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            return time.monotonic() - start
    return None


def _tls_socket(adapter: Adapter, certs: Pki) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", adapter.port), timeout=5)
    return tls(certs).wrap_socket(raw, server_hostname="localhost")


def test_client_certificates_still_seen_behind_the_gate(strict: Adapter, certs: Pki) -> None:
    path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/p1/static_metric"
    r = httpx.get(strict.url + path, verify=tls(certs, certs.aggregator), headers={"X-Remote-User": "hpa"})
    assert r.status_code == 200, r.text
    assert served_user(strict, path) == "hpa"


def test_slowloris_headers_cut_at_deadline(strict: Adapter, certs: Pki) -> None:
    s = _tls_socket(strict, certs)
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 200
    start = time.monotonic()
    closed = False
    try:
        for byte in request:
            s.sendall(bytes([byte]))
            time.sleep(0.05)
            if time.monotonic() - start > 5:
                break
    except (ConnectionError, ssl.SSLError, OSError):
        closed = True
    took = time.monotonic() - start
    if not closed:
        rest = _closed_within(s, 2)
        assert rest is not None, "a client still sending its headers after 5 s was not cut off"
        took += rest
    s.close()
    assert took < 4, took
    assert httpx.get(strict.url + "/healthz", verify=tls(certs)).text == "ok"


def test_connection_without_handshake_closed(strict: Adapter, certs: Pki) -> None:
    raw = socket.create_connection(("127.0.0.1", strict.port), timeout=5)
    took = _closed_within(raw, 5)
    raw.close()
    assert took is not None and took < 3, took


def test_idle_after_handshake_closed(strict: Adapter, certs: Pki) -> None:
    s = _tls_socket(strict, certs)
    took = _closed_within(s, 5)
    s.close()
    assert took is not None and took < 3, took


def test_keepalive_idle_connection_closed(strict: Adapter, certs: Pki) -> None:
    s = _tls_socket(strict, certs)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert b"200 OK" in s.recv(4096)
    took = _closed_within(s, 6)
    s.close()
    assert took is not None and took < 4, took


def _status_of(adapter: Adapter, certs: Pki, request: bytes) -> bytes:
    s = _tls_socket(adapter, certs)
    try:
        s.sendall(request)
        return s.recv(4096).split(b"\r\n", 1)[0]
    finally:
        s.close()


def test_oversized_head_and_body_refused(strict: Adapter, certs: Pki) -> None:
    big = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n"
    assert _status_of(strict, certs, big) == b"HTTP/1.1 431 Request Header Fields Too Large"
    many = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + b"X-A: bbbbbbbbbbbbbbbbb\r\n" * 300 + b"\r\n"
    assert _status_of(strict, certs, many) == b"HTTP/1.1 431 Request Header Fields Too Large"
    body = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n"
    assert _status_of(strict, certs, body) == b"HTTP/1.1 413 Request Entity Too Large"
    chunked = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert _status_of(strict, certs, chunked) == b"HTTP/1.1 411 Length Required"
    m = httpx.get(f"http://127.0.0.1:{strict.metrics_port}/metrics").text
    for reason in ("status_431", "status_413", "status_411"):
        assert f'hpakit_adapter_connections_closed_total{{reason="{reason}"}}' in m, m
    # Pipelined requests within the limits are all answered.
    two = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nGET /livez HTTP/1.1\r\nHost: localhost\r\n\r\n"
    s = _tls_socket(strict, certs)
    s.sendall(two)
    got = b""
    deadline = time.monotonic() + 5
    while got.count(b"200 OK") < 2 and time.monotonic() < deadline:
        got += s.recv(4096)
    s.close()
    assert got.count(b"200 OK") == 2, got


def _from(source: str, port: int) -> socket.socket:
    """A TCP connection to the adapter from ``source`` (any 127.0.0.0/8 address is loopback)."""
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def _metrics(adapter: Adapter) -> str:
    return httpx.get(f"http://127.0.0.1:{adapter.metrics_port}/metrics").text


def _wait_open(adapter: Adapter, n: int) -> None:
    """Until the adapter's own gauge counts ``n`` open connections (the accepts are asynchronous)."""
    deadline = time.monotonic() + 10
    while f"hpakit_adapter_open_connections {n}.0" not in (m := _metrics(adapter)):
        assert time.monotonic() < deadline, m
        time.sleep(0.1)


def _get_from(source: str, adapter: Adapter, certs: Pki, path: str = "/healthz") -> httpx.Response:
    transport = httpx.HTTPTransport(verify=tls(certs), local_address=source)
    with httpx.Client(transport=transport, timeout=5) as c:
        return c.get(adapter.url + path)


def _still_open(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        s.recv(1)
    except (BlockingIOError, ssl.SSLWantReadError):  # nothing to read: still open
        return True
    except OSError:
        return False
    return False  # EOF


def test_full_cap_evicts_the_flooding_sources_oldest_for_a_new_source(certs: Pki, tmp_path: Path) -> None:
    """One source fills the whole cap with idle connections (half never start TLS, half finish it
    and send nothing); a client from another source still gets a real answer, and the attacker's
    oldest connection is the one closed for it. A pooled keep-alive connection from a third source,
    opened first, is not touched."""
    cap = 40
    adapter = _start(
        certs,
        tmp_path,
        ["--max-connections", str(cap), "--max-connections-per-source", "0",
         "--tls-handshake-timeout", "60s", "--request-header-timeout", "60s"],
    )  # fmt: skip
    held: list[socket.socket] = []
    path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/p1/static_metric"
    try:
        pooled = httpx.Client(
            transport=httpx.HTTPTransport(verify=tls(certs), local_address="127.0.0.5"), timeout=5
        )
        with pooled:
            assert pooled.get(adapter.url + "/healthz").text == "ok"
            for i in range(cap - 1):
                raw = _from("127.0.0.2", adapter.port)
                held.append(raw if i % 2 == 0 else tls(certs).wrap_socket(raw, server_hostname="localhost"))
            _wait_open(adapter, cap)
            r = _get_from("127.0.0.3", adapter, certs, path)
            assert r.status_code == 200, r.text
            assert [i["metric"]["name"] for i in r.json()["items"]] == ["static_metric"]
            assert not _still_open(held[0]), "the flooding source's oldest connection was not the one evicted"
            assert all(_still_open(s) for s in held[1:])
            assert pooled.get(adapter.url + "/healthz").text == "ok"  # the pooled connection kept working
            m = _metrics(adapter)
            assert 'hpakit_adapter_connections_evicted_total{state="handshake"} 1.0' in m, m
            assert 'hpakit_adapter_connections_closed_total{reason="over_limit"} 0.0' in m, m
            # The attacker refills the slot the newcomer left; then the next oldest (TLS done, no
            # request yet) goes for the next newcomer.
            _wait_open(adapter, cap - 1)
            held.append(_from("127.0.0.2", adapter.port))
            _wait_open(adapter, cap)
            assert _get_from("127.0.0.4", adapter, certs).text == "ok"
            assert not _still_open(held[1]) and all(_still_open(s) for s in held[2:])
            m = _metrics(adapter)
            assert 'hpakit_adapter_connections_evicted_total{state="no_request"} 1.0' in m, m
        log = adapter.log_text()
        assert "connection pressure" in log and "127.0.0.2" in log, log
    finally:
        for s in held:
            s.close()
        adapter.stop()


def test_per_source_cap_refuses_that_source_only(certs: Pki, tmp_path: Path) -> None:
    per_source = 10
    adapter = _start(
        certs,
        tmp_path,
        ["--max-connections", "40", "--max-connections-per-source", str(per_source),
         "--tls-handshake-timeout", "60s", "--request-header-timeout", "60s"],
    )  # fmt: skip
    held: list[socket.socket] = []
    try:
        for _ in range(per_source):
            held.append(_from("127.0.0.2", adapter.port))
        _wait_open(adapter, per_source)
        extra = _from("127.0.0.2", adapter.port)
        took = _closed_within(extra, 3)
        extra.close()
        assert took is not None and took < 1, "the source's 11th connection was not refused promptly"
        assert all(_still_open(s) for s in held)
        assert _get_from("127.0.0.3", adapter, certs).text == "ok"  # another source still connects
        m = _metrics(adapter)
        assert 'hpakit_adapter_connections_closed_total{reason="per_source_limit"} 1.0' in m, m
        assert 'hpakit_adapter_connections_evicted_total{state="handshake"} 0.0' in m, m
        held.pop().close()
        _wait_open(adapter, per_source - 1)
        again = _from("127.0.0.2", adapter.port)  # a freed slot is the source's again
        held.append(again)
        assert _closed_within(again, 1) is None
    finally:
        for s in held:
            s.close()
        adapter.stop()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_memory_per_open_tls_connection(certs: Pki, tmp_path: Path) -> None:
    """Each open TLS connection costs well under the 256 KiB read buffer asyncio gives it by default."""
    adapter = _start(
        certs, tmp_path, ["--request-header-timeout", "60s", "--max-connections-per-source", "0"]
    )
    n = 300
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(20):  # warm-up: the first connections allocate one-off state
            _tls_socket(adapter, certs).close()
        time.sleep(0.5)
        before = _rss_kib(adapter.proc.pid)
        for _ in range(n):
            held.append(_tls_socket(adapter, certs))
        time.sleep(1.0)
        per_connection = (_rss_kib(adapter.proc.pid) - before) / n
        assert per_connection < 120, f"{per_connection:.0f} KiB per open TLS connection"
        assert httpx.get(adapter.url + "/healthz", verify=tls(certs)).text == "ok"
    finally:
        for s in held:
            s.close()
        adapter.stop()
