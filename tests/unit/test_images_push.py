"""harness.images push/export without a registry: the reference mapping, registry checks, skopeo's
command line and its failures as one line each. The real push is tests/integration/test_images_push.py."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import images
from harness.images import push as push_mod


@pytest.mark.parametrize(("name", "want"), [
    ("hpa-kit/adapter:0.1.0", "reg.example.com:5000/kit/hpa-kit/adapter:0.1.0"),
    ("quay.io/prometheus/prometheus:v3.5.0", "reg.example.com:5000/kit/prometheus/prometheus:v3.5.0"),
    ("registry.k8s.io/pause:3.10", "reg.example.com:5000/kit/pause:3.10"),
    ("busybox", "reg.example.com:5000/kit/busybox:latest"),
])  # fmt: skip
def test_registry_ref_keeps_path_and_tag(name: str, want: str) -> None:
    assert images.registry_ref(name, "reg.example.com:5000/kit/") == want


@pytest.mark.parametrize(("registry", "why"), [
    ("", "empty --registry"),
    ("https://reg.example.com", "drop the scheme"),
    ("myteam", "Docker Hub namespace"),
    ("reg.example.com/Team", "not HOST[:PORT][/PATH]"),
    ("reg.example.com:70000", "not HOST[:PORT][/PATH]"),
    ("reg.example.com/kit:1.0", "not HOST[:PORT][/PATH]"),
])  # fmt: skip
def test_a_bad_registry_is_one_line_saying_what_to_fix(registry: str, why: str) -> None:
    with pytest.raises(images.ImageError) as exc:
        images.check_registry(registry)
    assert why in str(exc.value) and "\n" not in str(exc.value)


def test_registry_ref_refuses_a_digest_pinned_name() -> None:
    with pytest.raises(images.ImageError, match="pinned by digest"):
        images.registry_ref("x/y@sha256:" + "0" * 64, "localhost:5000")


def test_skopeo_argv_preserves_digests_and_picks_the_archive_image(tmp_path: Path) -> None:
    argv = images.skopeo_copy_argv(tmp_path / "a.tar", "docker.io/hpa-kit/adapter:0.1.0",
                                   "localhost:5000/hpa-kit/adapter:0.1.0", tls_verify=False,
                                   digestfile=tmp_path / "d", authfile=tmp_path / "auth.json")
    assert argv[:3] == ["skopeo", "copy", "--preserve-digests"]
    assert "--dest-tls-verify=false" in argv
    assert argv[argv.index("--dest-authfile") + 1] == str(tmp_path / "auth.json")
    assert argv[-2:] == [f"oci-archive:{tmp_path / 'a.tar'}:docker.io/hpa-kit/adapter:0.1.0",
                         "docker://localhost:5000/hpa-kit/adapter:0.1.0"]


# skopeo 1.9's messages, as it prints them (one `level=fatal` line).
_FATAL = 'time="2026-12-02T10:43:11Z" level=fatal msg="{}"'


@pytest.mark.parametrize(("stderr", "want"), [
    (_FATAL.format('pinging container registry 127.0.0.1:1: Get \\"http://127.0.0.1:1/v2/\\": dial tcp '
                   '127.0.0.1:1: connect: connection refused'), "registry 127.0.0.1:1 unreachable"),
    (_FATAL.format('pinging container registry nope.invalid: Get \\"https://nope.invalid/v2/\\": dial tcp: '
                   "lookup nope.invalid: no such host"), "unreachable"),
    (_FATAL.format('pinging container registry 127.0.0.1:1: Get \\"https://127.0.0.1:1/v2/\\": http: '
                   "server gave HTTP response to HTTPS client"), "pass --insecure"),
    (_FATAL.format('pinging container registry r.example.com: Get \\"https://r.example.com/v2/\\": x509: '
                   "certificate signed by unknown authority"), "trust its CA"),
    (_FATAL.format("trying to reuse blob sha256:88 at destination: checking whether a blob exists in "
                   "r.example.com/k/pause: authentication required"), "authentication failed"),
    (_FATAL.format("writing manifest: uploading manifest 3.10 to r.example.com/k/pause: unauthorized: "
                   "access to the requested resource is not authorized"), "skopeo login"),
    (_FATAL.format("writing manifest: manifest invalid"), "push of r.example.com/k/pause:3.10 failed: "
                                                           "writing manifest: manifest invalid"),
])  # fmt: skip
def test_push_failures_are_one_line_each(stderr: str, want: str) -> None:
    line = images.explain_push_failure("Getting image source signatures\n" + stderr, "127.0.0.1:1"
                                       if "127.0.0.1:1" in stderr else "r.example.com/k",
                                       "r.example.com/k/pause:3.10")
    assert want in line and "\n" not in line and "level=fatal" not in line


class _Fakes:
    """``ensure_all`` answering a real archive written here; ``run`` recording skopeo and writing a digest."""

    def __init__(self, archive: Path, digest: str, rc: int = 0, stderr: str = "") -> None:
        self.archive, self.digest, self.rc, self.stderr = archive, digest, rc, stderr
        self.ensured: list[Any] = []
        self.argvs: list[list[str]] = []

    def ensure_all(self, names: Any, **kw: Any) -> dict[str, Path]:
        self.ensured.append(list(names))
        return {"registry.k8s.io/pause:3.10": self.archive}

    def run(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        self.argvs.append(argv)
        if argv[1] == "list-tags":  # the reachability check: answers like the copy would
            return subprocess.CompletedProcess(argv, self.rc, "", self.stderr)
        if self.rc == 0:
            Path(argv[argv.index("--digestfile") + 1]).write_text(self.digest)
        return subprocess.CompletedProcess(argv, self.rc, "", self.stderr)


def _archive(tmp_path: Path) -> tuple[Path, str]:
    import io
    import json
    import tarfile

    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:" + "c" * 64}, "layers": []})
    import hashlib

    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    path = tmp_path / "pause.tar"
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        add("index.json", json.dumps({"manifests": [{"digest": digest, "annotations": {
            "org.opencontainers.image.ref.name": "registry.k8s.io/pause:3.10"}}]}).encode())
        add(f"blobs/sha256/{digest.split(':')[1]}", manifest.encode())
        add(f"blobs/sha256/{'c' * 64}", b"{}")
    return path, digest


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _Fakes:
    archive, digest = _archive(tmp_path)
    f = _Fakes(archive, digest)
    monkeypatch.setattr(push_mod, "ensure_all", f.ensure_all)
    monkeypatch.setattr(push_mod, "run", f.run)
    monkeypatch.setattr(push_mod.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    return f


def test_push_builds_then_copies_and_returns_reference_and_digest(fakes: _Fakes) -> None:
    [pushed] = images.push_images(["pause"], registry="127.0.0.1:5000", tls_verify=False,
                                  progress=lambda _: None)
    assert fakes.ensured == [["pause"]]
    assert str(pushed) == f"127.0.0.1:5000/pause:3.10@{fakes.digest}"
    assert fakes.argvs[0] == ["skopeo", "list-tags", "--tls-verify=false", "docker://127.0.0.1:5000/pause"]
    assert fakes.argvs[1][-1] == "docker://127.0.0.1:5000/pause:3.10"


def test_push_fails_when_the_registry_answers_another_digest(fakes: _Fakes) -> None:
    fakes.digest = "sha256:" + "e" * 64  # what the fake skopeo reports; the archive says otherwise
    with pytest.raises(images.ImageError, match="the registry changed the manifest"):
        images.push_images(["pause"], registry="127.0.0.1:5000", progress=lambda _: None)


def test_an_unreachable_registry_fails_before_anything_is_built(fakes: _Fakes) -> None:
    fakes.rc = 1
    fakes.stderr = _FATAL.format("pinging container registry 127.0.0.1:5000: dial tcp: connection refused")
    with pytest.raises(images.ImageError) as exc:
        images.push_images(["pause"], registry="127.0.0.1:5000", progress=lambda _: None)
    assert str(exc.value).startswith("registry 127.0.0.1:5000 unreachable") and "\n" not in str(exc.value)
    assert fakes.ensured == []


def test_a_registry_refusing_to_list_still_gets_the_push_and_its_answer(fakes: _Fakes) -> None:
    fakes.rc = 1
    fakes.stderr = _FATAL.format("Error listing repository tags: unauthorized: authentication required")
    with pytest.raises(images.ImageError, match="authentication failed"):
        images.push_images(["pause"], registry="127.0.0.1:5000", progress=lambda _: None)
    assert fakes.ensured == [["pause"]]
    assert [a[1] for a in fakes.argvs] == ["list-tags", "copy"]


def test_a_bad_registry_fails_before_anything_is_built(fakes: _Fakes) -> None:
    with pytest.raises(images.ImageError, match="drop the scheme"):
        images.push_images(None, registry="http://127.0.0.1:5000", progress=lambda _: None)
    assert fakes.ensured == []


def test_default_push_set_is_the_install_images_not_the_cluster_ones() -> None:
    aliases = {s.alias for s in images.stack_specs()}
    assert aliases == {"prometheus-operator", "config-reloader", "prometheus", "mockmetrics", "adapter",
                       "locust"}


def test_export_copies_the_archives_and_lists_them(fakes: _Fakes, tmp_path: Path) -> None:
    out = tmp_path / "out"
    got = images.export_images(["pause"], out, progress=lambda _: None)
    dest = got["registry.k8s.io/pause:3.10"]
    assert dest.read_bytes() == fakes.archive.read_bytes()
    assert (out / "images.txt").read_text() == f"pause.tar\tregistry.k8s.io/pause:3.10\t{fakes.digest}\n"


def test_hpa_kit_images_hands_over_to_the_images_cli(fakes: _Fakes,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from harness import cli

    argv = ["images", "push", "--registry", "127.0.0.1:5000/k", "--insecure", "--images", "pause"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"registry.k8s.io/pause:3.10\t127.0.0.1:5000/k/pause:3.10@{fakes.digest}" in out
    assert "--dest-tls-verify=false" in fakes.argvs[1]
    assert cli.main(["images", "push", "--registry", "http://127.0.0.1:5000"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --registry 'http://127.0.0.1:5000': drop the scheme")
    assert err.count("\n") == 1


def test_install_takes_a_registry() -> None:
    from harness import cli

    args = cli._parser().parse_args(["install", "--registry", "reg.example.com:5000/kit"])
    assert args.registry == "reg.example.com:5000/kit"
