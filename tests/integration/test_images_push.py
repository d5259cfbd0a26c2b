"""`hpa-kit images push` against a real registry on loopback (go-containerregistry's in-memory
registry, built from its Go module by scripts/build-registry.sh), checked independently: the
registry's own HTTP API and `skopeo inspect` must show the manifest digest of the cached archive.

The registry is fresh per test (it keeps everything in memory), so a push that silently did nothing
leaves it without the manifest and the test fails. Needs root and buildah (the pause image is a
FROM-scratch build), skopeo and Go (scripts/bootstrap.sh installs them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import images
from harness.procs import free_port, terminate

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("buildah") is None or shutil.which("skopeo") is None,
                       reason="needs root, buildah and skopeo (scripts/bootstrap.sh installs them)"),
]

REPO = Path(__file__).resolve().parents[2]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _registry_binary() -> Path:
    script = REPO / "scripts" / "build-registry.sh"
    path = Path(subprocess.run([str(script), "--print-path"], capture_output=True, text=True,
                               check=True).stdout.strip())
    if not path.is_file():
        if shutil.which("go") is None:
            pytest.skip("needs Go to build the test registry (scripts/build-registry.sh)")
        subprocess.run([str(script)], check=True, timeout=900)  # idempotent; bootstrap runs it too
    return path


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a fresh, empty registry this test started (it binds localhost only)."""
    log = tmp_path / "registry.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(_registry_binary()), "-port", "0"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        port = 0
        while not port:
            m = re.search(r"serving on port (\d+)", log.read_text())
            port = int(m.group(1)) if m else 0
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"registry did not start: {log.read_text()[-500:]}")
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=5) as resp:
            assert resp.status == 200
        yield f"127.0.0.1:{port}"
    finally:
        terminate(proc, timeout=5)


def _hpa_kit(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          env=env, timeout=900)


def _archive_manifest(archive: Path) -> tuple[str, bytes, dict]:
    """The archive's manifest digest (sha256 of its bytes, not what index.json claims), bytes, JSON."""
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        [desc] = index["manifests"]
        data = tar.extractfile("blobs/sha256/" + desc["digest"].split(":", 1)[1]).read()  # type: ignore[union-attr]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert digest == desc["digest"]
    return digest, data, json.loads(data)


def test_push_puts_the_archive_manifest_in_the_registry(registry: str) -> None:
    reg = f"{registry}/it"
    t0 = time.monotonic()
    proc = _hpa_kit("images", "push", "--registry", reg, "--insecure", "--images", "pause")
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr + proc.stdout
    target = f"{reg}/pause:3.10"
    [line] = [ln for ln in proc.stdout.splitlines() if not ln.startswith("[images")]
    name, _, pushed = line.partition("\t")
    assert name == "registry.k8s.io/pause:3.10"
    ref, _, digest = pushed.partition("@")
    assert ref == target

    spec = images.select_specs(images.default_specs(), ["pause"])[0]
    archive = images.Layout().archive(spec)
    want, manifest_bytes, manifest = _archive_manifest(archive)
    assert digest == want

    # Independent 1: the registry's HTTP API serves that manifest under that tag, byte for byte.
    req = urllib.request.Request(f"http://{registry}/v2/it/pause/manifests/3.10",
                                 headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
        assert resp.headers["Docker-Content-Digest"] == want
    assert body == manifest_bytes
    # ... and every blob it names.
    for desc in [manifest["config"], *manifest["layers"]]:
        with urllib.request.urlopen(f"http://{registry}/v2/it/pause/blobs/{desc['digest']}", timeout=10) as r:
            assert "sha256:" + hashlib.sha256(r.read()).hexdigest() == desc["digest"]
    # Independent 2: skopeo inspect of the registry's copy.
    inspect = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{target}"],
                             capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(inspect.stdout)["Digest"] == want
    print(f"push of pause to {registry}: {took:.1f}s including `hpa-kit` start-up and the cache check")


def test_push_to_a_dead_or_tls_mismatched_registry_is_one_clear_line(registry: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    proc = _hpa_kit("images", "push", "--registry", dead, "--insecure", "--images", "pause")
    assert proc.returncode == 1
    [err] = proc.stderr.strip().splitlines()
    assert err.startswith(f"error: registry {dead} unreachable"), err
    # The live registry speaks plain HTTP: without --insecure, the line says so.
    proc = _hpa_kit("images", "push", "--registry", registry, "--images", "pause")
    assert proc.returncode == 1
    [err] = proc.stderr.strip().splitlines()
    assert "speaks plain HTTP: pass --insecure" in err, err


def test_push_refused_for_credentials_is_one_line_naming_login(tmp_path: Path) -> None:
    """What real skopeo prints when a registry wants credentials, as our one line. The server is a
    stand-in on loopback that answers every request 401 with a Basic challenge, as registries do."""
    import http.server
    import threading

    class Auth(http.server.BaseHTTPRequestHandler):
        def _deny(self) -> None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="hpa-kit-test"')
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Type", "application/json")
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _deny

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Auth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        reg = f"127.0.0.1:{server.server_address[1]}"
        proc = _hpa_kit("images", "push", "--registry", reg, "--insecure", "--images", "pause")
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 1
    [err] = proc.stderr.strip().splitlines()
    assert err.startswith(f"error: registry {reg} refused {reg}/pause:3.10: authentication failed"), err
    assert f"skopeo login {reg}" in err
