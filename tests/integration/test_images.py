"""Integration tests for harness.images: real buildah builds into OCI archives, checked byte-wise.

Needs root and buildah (the FROM-scratch images), Go (to build the pause program), optionally
containerd (a private, throwaway daemon on its own socket proves ``ctr images import`` keeps the
exact name) and the kit's Dockerfiles (the Python images, slow on a cold cache).
Test images get their own names (``localhost/hpa-kit-it/...``) so the shared buildah store's real
tags are never touched; archives go to a temporary cache.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import images
from harness.images import FileEntry, ImageSpec, Layout
from harness.procs import terminate

pytestmark = pytest.mark.integration

ROOT = os.geteuid() == 0
needs_buildah = pytest.mark.skipif(
    not ROOT or shutil.which("buildah") is None,
    reason="needs root and buildah (apt-get install buildah; run as root)",
)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    if shutil.which("go") is None:
        pytest.skip("needs Go to build images/pause (install Go >= 1.22)")
    lay = Layout(cache=tmp_path_factory.mktemp("cache"))
    lay.addons_dir.mkdir(parents=True)
    out = str(lay.addons_dir / "pause")
    subprocess.run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "."],
                   cwd=images.REPO_ROOT / "images" / "pause", check=True,
                   env={**os.environ, "CGO_ENABLED": "0"}, timeout=300)
    yield lay
    for name in IT_NAMES:  # keep the shared buildah store free of test tags
        subprocess.run(["buildah", "rmi", name], capture_output=True)


IT_NAMES = ("localhost/hpa-kit-it/pause:3.10", "localhost/hpa-kit-it/busybox:1",
            "docker.io/hpa-kit-it/pause:3.10")


def read_archive(path: Path) -> tuple[dict, dict, dict, dict[str, tarfile.TarInfo], bytes]:
    """index, manifest, config, layer members and the bytes of ``/pause`` (if any), with tarfile+json."""
    with tarfile.open(path) as tar:

        def blob(digest: str) -> bytes:
            f = tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
            assert f is not None
            return f.read()

        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        assert json.load(tar.extractfile("oci-layout"))["imageLayoutVersion"] == "1.0.0"  # type: ignore[arg-type]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        members: dict[str, tarfile.TarInfo] = {}
        payload = b""
        for layer in manifest["layers"]:
            data = blob(layer["digest"])
            if layer["mediaType"].endswith("+gzip"):
                data = gzip.decompress(data)
            with tarfile.open(fileobj=io.BytesIO(data)) as ltar:
                for ti in ltar.getmembers():
                    members[ti.name.lstrip("./")] = ti
                    if ti.name.lstrip("./") == "pause":
                        payload = ltar.extractfile(ti).read()  # type: ignore[union-attr]
    return index, manifest, config, members, payload


@needs_buildah
def test_pause_image_archive(layout: Layout) -> None:
    spec = ImageSpec(alias="pause", name="localhost/hpa-kit-it/pause:3.10", build="files",
                     files=(FileEntry("/pause", source="addon:pause"),), entrypoint=("/pause",),
                     user="65535:65535")
    t0 = time.monotonic()
    archive = images.build_image(spec, layout, progress=print)
    first = time.monotonic() - t0
    index, manifest, config, members, payload = read_archive(archive)

    desc = index["manifests"][0]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "localhost/hpa-kit-it/pause:3.10"
    assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert images.archive_info(archive).digest == desc["digest"]
    assert len(manifest["layers"]) == 1  # FROM scratch: our one layer
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert config["config"]["User"] == "65535:65535"
    assert (config["os"], config["architecture"]) == ("linux", images.go_arch())
    assert config["created"].startswith("1970-01-01")  # fixed timestamp: same inputs, same digest
    stamp = json.loads(layout.stamp(spec).read_text())
    assert config["config"]["Labels"][images.INPUTS_LABEL] == stamp["inputs"]
    assert members["pause"].mode & 0o777 == 0o755 and payload == (layout.addons_dir / "pause").read_bytes()

    # Unchanged inputs: no rebuild, same archive.
    mtime = archive.stat().st_mtime_ns
    t0 = time.monotonic()
    images.build_image(spec, layout, progress=print)
    assert archive.stat().st_mtime_ns == mtime
    print(f"pause: first build {first:.1f}s, cached {time.monotonic() - t0:.2f}s, {archive.stat().st_size} B")

    if shutil.which("skopeo"):
        out = subprocess.run(["skopeo", "inspect", "--config", f"oci-archive:{archive}"], check=True,
                             capture_output=True, text=True).stdout
        assert json.loads(out)["config"]["Entrypoint"] == ["/pause"]


@needs_buildah
@pytest.mark.skipif(not Path("/bin/busybox").exists(),
                    reason="needs busybox-static (apt-get install busybox-static)")
def test_binary_image_with_owners_links_and_dirs(layout: Layout) -> None:
    """A busybox-based image like the operator's: symlinks, a 1777 /tmp, a nobody-owned data dir."""
    spec = ImageSpec(
        alias="bb", name="localhost/hpa-kit-it/busybox:1", build="files",
        files=(*images.busybox_entries(), FileEntry("/data", kind="dir", uid=65534, gid=65534),
               FileEntry("/etc/app.yml", content=b"a: 1\n", mode=0o644)),
        entrypoint=("/bin/sh", "-c"), cmd=("echo hi",), user="65534", workdir="/data", ports=("8080/tcp",),
    )
    archive = images.build_image(spec, layout, progress=print)
    _, _, config, members, _ = read_archive(archive)
    cfg = config["config"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["echo hi"]
    assert cfg["User"] == "65534" and cfg["WorkingDir"] == "/data"
    assert "8080/tcp" in cfg["ExposedPorts"]
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert members["tmp"].mode & 0o7777 == 0o1777
    assert (members["data"].uid, members["data"].gid) == (65534, 65534)
    assert members["etc/app.yml"].mode & 0o777 == 0o644


@contextlib.contextmanager
def private_containerd(tmp: Path) -> Iterator[str]:
    """A throwaway containerd (no CRI) on its own socket/root/state: never the cluster's daemon."""
    sock = tmp / "c.sock"
    cfg = tmp / "config.toml"
    cfg.write_text(
        "version = 2\n"
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'root = "{tmp / "root"}"\nstate = "{tmp / "state"}"\n'
        f'[grpc]\n  address = "{sock}"\n'
        f'[ttrpc]\n  address = "{sock}.ttrpc"\n'
        f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{tmp / "opt"}"\n'
    )
    log = (tmp / "containerd.log").open("w")
    proc = subprocess.Popen(["containerd", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"private containerd did not start; see {tmp / 'containerd.log'}")
            time.sleep(0.1)
        yield str(sock)
    finally:
        terminate(proc)
        log.close()
        subprocess.run(["umount", "-R", str(tmp / "root")], capture_output=True)


@needs_buildah
@pytest.mark.skipif(shutil.which("containerd") is None or shutil.which("ctr") is None,
                    reason="needs containerd + ctr (apt-get install containerd)")
def test_import_keeps_the_exact_name(layout: Layout, tmp_path_factory: pytest.TempPathFactory) -> None:
    spec = ImageSpec(alias="pause", name="hpa-kit-it/pause:3.10", build="files",
                     files=(FileEntry("/pause", source="addon:pause"),), entrypoint=("/pause",))
    archive = images.build_image(spec, layout, progress=print)
    with private_containerd(tmp_path_factory.mktemp("containerd")) as address:
        got = images.import_images([archive], address=address, namespace="k8s.io", progress=print)
        assert got == {"docker.io/hpa-kit-it/pause:3.10": "imported"}  # short name, normalized
        have = images.containerd_images(address=address, namespace="k8s.io")
        assert have["docker.io/hpa-kit-it/pause:3.10"] == images.archive_info(archive).digest
        assert images.images_present([archive], address=address) == {archive}
        again = images.import_images([archive], address=address, namespace="k8s.io", progress=print)
        assert again == {"docker.io/hpa-kit-it/pause:3.10": "present"}


@needs_buildah
@pytest.mark.slow
@pytest.mark.skipif(not (images.REPO_ROOT / "mockmetrics" / "Dockerfile").is_file(),
                    reason="mockmetrics/Dockerfile not written yet")
@pytest.mark.skipif(shutil.which("debootstrap") is None,
                    reason="needs debootstrap (apt-get install debootstrap)")
def test_mockmetrics_image_from_its_dockerfile() -> None:
    """The real thing, in the shared cache (cheap when warm; debootstrap + pip when cold)."""
    built = images.ensure_all(["mockmetrics"], progress=print)
    archive = built["hpa-kit/mockmetrics:0.1.0"]
    info = images.archive_info(archive)
    assert info.name == "docker.io/hpa-kit/mockmetrics:0.1.0"
    cfg = info.config["config"]
    assert cfg.get("Entrypoint") or cfg.get("Cmd")
    env = dict(e.split("=", 1) for e in cfg.get("Env", []))
    assert env.get("PIP_BREAK_SYSTEM_PACKAGES") == "1"  # inherited from kit-base
    if shutil.which("skopeo"):
        out = subprocess.run(["skopeo", "inspect", "--config", f"oci-archive:{archive}"], check=True,
                             capture_output=True, text=True).stdout
        assert json.loads(out)["config"] == cfg
