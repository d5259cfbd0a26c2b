"""No private key material lands under a report folder (what the e2e plugin and CI upload).

The install is real up to the apply (cfssl certificates, render of the ``test`` overlay with the
serving Secret, diagnostics); kubectl, image loading and the waits are faked.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Any

import pytest

from harness.stack import Stack

MARKER = "PRIVATE KEY"


class _Cluster:
    provider = "fake"
    context = None
    pulls_images = True


class _Kubectl:
    """Records kubectl calls; answers every one with an empty result."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def run(self, *args: str, **_: Any) -> str:
        self.calls.append(args)
        return ""

    def json(self, *args: str) -> Any:
        self.calls.append(args)
        if "endpointslices" in args:  # the API server's address, for the NetworkPolicies
            return {"items": [{"endpoints": [{"addresses": ["10.0.0.1"]}]}]}
        return {"items": []}


_BASE64 = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")


def _has_key(text: str) -> bool:
    """PEM ``PRIVATE KEY`` in clear or base64-encoded (a Secret's ``data``, a kubeconfig's ``*-data``)."""
    if MARKER in text:
        return True
    for token in _BASE64.findall(text):
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=False)
        except (binascii.Error, ValueError):
            continue
        if MARKER.encode() in decoded:
            return True
    return False


def files_with_private_keys(root: Path) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if p.is_file() and _has_key(p.read_text(errors="replace"))]


def test_install_and_diagnostics_leave_no_private_key_in_the_report_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = tmp_path / "reports" / "e2e-20260101-000000"
    state_certs = tmp_path / "state" / "stacks" / "0123456789ab" / "certs"
    # What the pytest plugin's ``stack`` fixture builds: work_dir under the session's report folder.
    st = Stack(kubeconfig=tmp_path / "kubeconfig", work_dir=reports / "stack", overlay="test",
               progress=lambda _: None, certs_override=state_certs, cluster=_Cluster())  # type: ignore[arg-type]  # fmt: skip
    fake = _Kubectl()
    st.kubectl = fake  # type: ignore[assignment]
    for name in ("install_crds", "wait_ready", "warn_insecure"):
        monkeypatch.setattr(st, name, lambda *a, **k: None)
    st.install(timeout=1)
    st.diagnostics(reports / "stack" / "diagnostics")

    assert any(c[:1] == ("apply",) and str(st.build_dir) in c for c in fake.calls), fake.calls
    secret = st.build_dir / "serving-secret.yaml"
    assert files_with_private_keys(secret.parent), "the scan below would not see a key: the fixture is wrong"
    assert not st.build_dir.resolve().is_relative_to(reports.resolve()), st.build_dir
    assert files_with_private_keys(reports) == []


def test_the_scan_finds_a_key(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "s.yaml").write_text("-----BEGIN EC PRIVATE KEY-----\n")
    (tmp_path / "a" / "ok.txt").write_text("nothing\n")
    encoded = base64.b64encode(b"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n")
    (tmp_path / "a" / "secret.yaml").write_text(f"data:\n  tls.key: {encoded.decode()}\n")
    assert files_with_private_keys(tmp_path) == [tmp_path / "a/b/s.yaml", tmp_path / "a/secret.yaml"]
