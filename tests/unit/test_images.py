"""Unit tests for harness.images: names, input hashing, rebuild decisions, command lines.

The subprocess edge (buildah, ctr) is faked: ``run`` is replaced, in every module of the package
that calls it, by a recorder that answers like the real tools (``buildah push`` writes a small but
valid OCI archive), so the build/import logic runs end to end without root or a container store.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness import images
from harness.images import (
    BASE_IMAGE,
    FileEntry,
    ImageError,
    ImageSpec,
    Layout,
    normalize_ref,
    safe_name,
)

# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "versions.env").write_text(
        "# pins\nK8S_VERSION=v1.35.4\nCOREDNS_VERSION=v1.12.4\nPROM_OPERATOR_VERSION=v0.85.0\n"
        "PROMETHEUS_VERSION=v3.5.0\nCERT_MANAGER_VERSION=v1.21.2\n"
    )
    (repo / "pyproject.toml").write_text('[project]\nname = "hpa-kit"\nversion = "0.1.0"\n')
    (repo / "mockmetrics").mkdir()
    (repo / "mockmetrics" / "app.py").write_text("print('hi')\n")
    (repo / "mockmetrics" / "Dockerfile").write_text(
        "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\nWORKDIR /src\n"
        "COPY pyproject.toml ./\nCOPY mockmetrics/ mockmetrics/\n"
        'RUN pip install --no-cache-dir ".[mockmetrics]"\nENTRYPOINT ["mockmetrics"]\n'
    )
    (repo / "unrelated.txt").write_text("not copied\n")
    cache = tmp_path / "cache"
    addons = cache / "bin" / "addons"
    addons.mkdir(parents=True)
    (addons / "pause").write_bytes(b"\x7fELF pause")
    return Layout(cache=cache, repo=repo)


def files_spec(**kw: object) -> ImageSpec:
    base: dict[str, object] = dict(
        alias="pause", name="registry.k8s.io/pause:3.10", build="files",
        files=(FileEntry("/pause", source="addon:pause"),), entrypoint=("/pause",), user="65535:65535",
    )
    base.update(kw)
    return ImageSpec(**base)  # type: ignore[arg-type]


def docker_spec() -> ImageSpec:
    return ImageSpec(alias="mockmetrics", name="hpa-kit/mockmetrics:0.1.0", build="dockerfile",
                     dockerfile="mockmetrics/Dockerfile")


def write_oci_archive(path: Path, ref: str, config: dict[str, object] | None = None) -> str:
    """A minimal OCI archive (index -> manifest -> config); returns the manifest digest."""
    blobs: dict[str, bytes] = {}

    def put(obj: object) -> tuple[str, int]:
        data = json.dumps(obj).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest, len(data)

    cfg_digest, cfg_size = put(config or {"architecture": "amd64", "os": "linux", "config": {}})
    man_digest, man_size = put({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest,
                   "size": cfg_size},
        "layers": [],
    })
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_digest, "size": man_size,
        "annotations": {"org.opencontainers.image.ref.name": ref},
    }]}
    with tarfile.open(path, "w") as tar:
        for name, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                           ("index.json", json.dumps(index).encode()),
                           *((f"blobs/sha256/{d.split(':')[1]}", b) for d, b in blobs.items())]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return man_digest


#: Every module of the package that holds ``images.tools.run`` (``__init__`` imported them all): each
#: ``from harness.images.tools import run`` is a name of its own, so a fake must replace all of them.
RUN_HOLDERS = [mod for name, mod in sorted(sys.modules.items())
               if (name == "harness.images" or name.startswith("harness.images."))
               and getattr(mod, "run", None) is images.tools.run]


def patch_run(monkeypatch: pytest.MonkeyPatch, fake: object) -> None:
    """Replace ``run`` wherever the package looks it up."""
    assert images.tools in RUN_HOLDERS
    for mod in RUN_HOLDERS:
        monkeypatch.setattr(mod, "run", fake)


class FakeTools:
    """Stands in for ``images.tools.run``: records argv, answers buildah/ctr like the real ones."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.ctr_images: dict[str, str] = {}
        self.base_present = True

    def __call__(self, argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        out, rc = "", 0
        if argv[0] == "buildah":
            verb = argv[1]
            if verb == "from":
                out = "working-container\n"
            elif verb == "inspect":
                if argv[-1] == BASE_IMAGE and self.base_present:
                    out = json.dumps({"FromImageID": "base-id-1", "OCIv1": {"config": {"Labels": {}}}})
                else:
                    rc = 1
            elif verb == "push":
                _, path, ref = argv[-1].split(":", 2)
                write_oci_archive(Path(path), ref)
        elif argv[0] == "ctr":
            if argv[5:7] == ["images", "ls"]:
                out = "REF TYPE DIGEST SIZE PLATFORMS LABELS\n" + "".join(
                    f"{r} application/vnd.oci.image.manifest.v1+json {d} 1.0 MiB linux/amd64 -\n"
                    for r, d in self.ctr_images.items())
            elif argv[5:7] == ["images", "import"]:
                info = images.archive_info(Path(argv[-1]))
                self.ctr_images[info.name] = info.digest
        if kw.get("log"):
            Path(str(kw["log"])).write_text(out)
        if rc and kw.get("check", True):
            raise ImageError(f"{argv} failed")
        return subprocess.CompletedProcess(argv, rc, out, "")

    def verbs(self, tool: str = "buildah") -> list[str]:
        return [c[1] for c in self.calls if c[0] == tool]


@pytest.fixture
def tools(monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    fake = FakeTools()
    patch_run(monkeypatch, fake)
    monkeypatch.delenv("HPA_KIT_BUILDAH_DRIVER", raising=False)
    return fake


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "want"), [
    ("pause:3.10", "docker.io/library/pause:3.10"),
    ("busybox", "docker.io/library/busybox:latest"),
    ("hpa-kit/mockmetrics:0.1.0", "docker.io/hpa-kit/mockmetrics:0.1.0"),
    ("docker.io/hpa-kit/adapter:0.1.0", "docker.io/hpa-kit/adapter:0.1.0"),
    ("docker.io/nginx", "docker.io/library/nginx:latest"),
    ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
    ("registry.k8s.io/coredns/coredns:v1.12.4", "registry.k8s.io/coredns/coredns:v1.12.4"),
    ("quay.io/prometheus/prometheus", "quay.io/prometheus/prometheus:latest"),
    ("localhost/kit-base:bookworm", "localhost/kit-base:bookworm"),
    ("localhost:5000/a/b:1", "localhost:5000/a/b:1"),
    ("example.com:5000/team/app:v1.2_3", "example.com:5000/team/app:v1.2_3"),
    ("a/b/c:tag", "docker.io/a/b/c:tag"),
    ("app@sha256:" + "a" * 64, "docker.io/library/app@sha256:" + "a" * 64),
])
def test_normalize_ref_matches_containerd(name: str, want: str) -> None:
    assert normalize_ref(name) == want


@pytest.mark.parametrize("bad", ["", " pause", "Hpa-Kit/app:1", "app:", "app:tag with space", "a//b"])
def test_normalize_ref_rejects_invalid(bad: str) -> None:
    with pytest.raises(ImageError):
        normalize_ref(bad)


def test_safe_name_is_flat_and_distinct() -> None:
    assert safe_name("quay.io/prometheus/prometheus:v3.5.0") == "quay.io_prometheus_prometheus_v3.5.0"
    assert safe_name("hpa-kit/adapter:0.1.0") == "docker.io_hpa-kit_adapter_0.1.0"
    names = [s.name for s in images.default_specs()]
    assert len({safe_name(n) for n in names}) == len(names)


def test_default_specs_use_pins_and_manifest_names() -> None:
    specs = {s.alias: s for s in images.default_specs()}
    v = images.read_versions()
    assert specs["coredns"].name == f"registry.k8s.io/coredns/coredns:{v['COREDNS_VERSION']}"
    po = v["PROM_OPERATOR_VERSION"]
    assert specs["prometheus-operator"].name == f"quay.io/prometheus-operator/prometheus-operator:{po}"
    # The operator defaults its sidecar to .../prometheus-config-reloader:v<version> and runs it by path.
    reloader = specs["config-reloader"]
    assert reloader.name == f"quay.io/prometheus-operator/prometheus-config-reloader:{po}"
    assert "/bin/prometheus-config-reloader" in {f.dest for f in reloader.files}
    assert specs["pause"].name == "registry.k8s.io/pause:3.10"
    assert specs["prometheus"].entrypoint == ("/bin/prometheus",)
    assert specs["prometheus"].base is None  # static binary from the Go module: FROM scratch
    assert "/bin/prometheus" in {f.dest for f in specs["prometheus"].files}
    assert specs["mockmetrics"].ref == "docker.io/hpa-kit/mockmetrics:0.1.0"
    assert specs["locust"].lazy


def test_select_specs_by_alias_name_or_normalized_name() -> None:
    specs = images.default_specs()
    assert "locust" not in {s.alias for s in images.select_specs(specs, None)}
    got = images.select_specs(specs, ["pause", "docker.io/hpa-kit/adapter:0.1.0", "hpa-kit/locust:0.1.0",
                                      "pause"])
    assert [s.alias for s in got] == ["pause", "adapter", "locust"]
    with pytest.raises(ImageError, match=r"unknown image 'nginx'.*known: pause"):
        images.select_specs(specs, ["nginx"])


# --------------------------------------------------------------------------------------------
# Dockerfile sources and input hashing
# --------------------------------------------------------------------------------------------


def test_dockerfile_sources_handles_forms(tmp_path: Path) -> None:
    df = tmp_path / "Dockerfile"
    df.write_text(
        "FROM x AS build\n"
        "COPY --chown=1:1 a.txt b/ /dst/\n"
        'COPY ["c d.txt", "/dst/"]\n'
        "copy --from=build /out /out\n"
        "ADD e.tar \\\n   /opt/\n"
        "RUN echo COPY nothing\n"
    )
    assert images.dockerfile_sources(df) == ["a.txt", "b/", "c d.txt", "e.tar"]


def test_context_hash_covers_copied_files_only(layout: Layout) -> None:
    spec = docker_spec()
    h0 = images.input_hash(spec, layout, base_id="b1")
    assert h0 == images.input_hash(spec, layout, base_id="b1")  # stable
    (layout.repo / "unrelated.txt").write_text("changed\n")
    (layout.repo / "mockmetrics" / "__pycache__").mkdir()
    (layout.repo / "mockmetrics" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    assert images.input_hash(spec, layout, base_id="b1") == h0
    assert images.input_hash(spec, layout, base_id="b2") != h0  # rebuilt base -> rebuild
    (layout.repo / "mockmetrics" / "app.py").write_text("print('changed')\n")
    h1 = images.input_hash(spec, layout, base_id="b1")
    assert h1 != h0
    (layout.repo / "mockmetrics" / "Dockerfile").write_text(
        (layout.repo / "mockmetrics" / "Dockerfile").read_text() + "EXPOSE 8080\n")
    assert images.input_hash(spec, layout, base_id="b1") != h1


def test_context_hash_honours_dockerignore(layout: Layout) -> None:
    spec = docker_spec()
    (layout.repo / "mockmetrics" / "notes.md").write_text("a")
    h0 = images.input_hash(spec, layout)
    (layout.repo / ".dockerignore").write_text("**/*.md\nmockmetrics/*.md\n")
    h1 = images.input_hash(spec, layout)
    (layout.repo / "mockmetrics" / "notes.md").write_text("b")
    assert images.input_hash(spec, layout) == h1 != h0


def test_missing_copy_source_is_reported(layout: Layout) -> None:
    (layout.repo / "mockmetrics" / "Dockerfile").write_text("FROM x\nCOPY nothere/ /x/\n")
    with pytest.raises(ImageError, match="COPY source 'nothere/' does not exist"):
        images.input_hash(docker_spec(), layout)


def test_files_hash_tracks_binary_and_config(layout: Layout) -> None:
    spec = files_spec()
    h0 = images.input_hash(spec, layout)
    assert images.input_hash(files_spec(user="0"), layout) != h0
    assert images.input_hash(files_spec(entrypoint=("/pause", "-v")), layout) != h0
    (layout.addons_dir / "pause").write_bytes(b"\x7fELF pause v2")
    assert images.input_hash(spec, layout) != h0


def test_missing_binary_says_which_script_to_run(layout: Layout) -> None:
    spec = files_spec(files=(FileEntry("/coredns", source="k8s:coredns"),))
    with pytest.raises(ImageError, match=r"k8s:coredns .*scripts/build-binaries\.sh"):
        images.input_hash(spec, layout)
    assert layout.remedy("host:/bin/busybox").startswith("apt-get install busybox-static")
    assert layout.remedy("addon:pause") == "run scripts/build-addons.sh"
    with pytest.raises(ImageError, match=r"missing input host:/nonexistent/bin .*provide /nonexistent/bin"):
        images.input_hash(files_spec(files=(FileEntry("/p", source="host:/nonexistent/bin"),)), layout)


# --------------------------------------------------------------------------------------------
# layer tarball and command lines
# --------------------------------------------------------------------------------------------


def test_layer_tar_has_exact_owners_modes_and_links(layout: Layout, tmp_path: Path) -> None:
    web = tmp_path / "web" / "static"
    web.mkdir(parents=True)
    (web / "a.css").write_text("x")
    spec = files_spec(files=(
        FileEntry("/bin/operator", source="addon:pause"),
        FileEntry("/bin/sh", kind="symlink", source="busybox"),
        FileEntry("/prometheus", kind="dir", uid=65534, gid=65534),
        FileEntry("/tmp", kind="dir", mode=0o1777),
        FileEntry("/etc/prometheus/prometheus.yml", content=b"global: {}\n", mode=0o644, uid=65534),
        FileEntry("/usr/share/prometheus/web", kind="tree", source=f"host:{tmp_path / 'web'}"),
    ))
    out = tmp_path / "layer.tar"
    images.layer_tar(spec, layout, out)
    with tarfile.open(out) as tar:
        m = {ti.name: ti for ti in tar.getmembers()}
        assert tar.extractfile("bin/operator").read() == b"\x7fELF pause"  # type: ignore[union-attr]
    assert m["bin"].isdir() and m["bin"].mode == 0o755 and m["bin"].uid == 0
    assert m["bin/operator"].mode == 0o755 and m["bin/operator"].mtime == 0
    assert m["bin/sh"].issym() and m["bin/sh"].linkname == "busybox"
    assert m["prometheus"].isdir() and (m["prometheus"].uid, m["prometheus"].gid) == (65534, 65534)
    assert m["tmp"].mode == 0o1777
    yml = m["etc/prometheus/prometheus.yml"]
    assert (yml.uid, yml.mode) == (65534, 0o644)
    assert m["usr/share/prometheus/web/static/a.css"].isfile()
    assert m["usr/share/prometheus/web/static"].isdir()
    assert list(m).index("etc") < list(m).index("etc/prometheus/prometheus.yml")


def test_files_config_args() -> None:
    args = images.files_config_args(files_spec())
    assert args[args.index("--entrypoint") + 1] == '["/pause"]'
    assert args[args.index("--user") + 1] == "65535:65535"
    assert "--cmd" not in args  # scratch: nothing to override
    on_base = images.files_config_args(files_spec(base=BASE_IMAGE, cmd=("--config.file=/x",), workdir="/p",
                                                  ports=("9090/tcp",)))
    assert on_base[on_base.index("--cmd") + 1] == '["--config.file=/x"]'
    assert on_base[on_base.index("--workingdir") + 1] == "/p"
    assert on_base[on_base.index("--port") + 1] == "9090/tcp"
    no_cmd = images.files_config_args(files_spec(base=BASE_IMAGE))
    assert no_cmd[no_cmd.index("--cmd") + 1] == "[]"  # drop the base's python3


def test_bud_args(layout: Layout) -> None:
    args = images.bud_args(docker_spec(), layout, "h1")
    assert args[:2] == ["bud", "--network"] and args[2] == "host"
    assert "--pull=never" in args
    assert args[args.index("--build-arg") + 1] == f"BASE_IMAGE={BASE_IMAGE}"
    assert args[args.index("-t") + 1] == "docker.io/hpa-kit/mockmetrics:0.1.0"
    assert args[args.index("-f") + 1] == str(layout.repo / "mockmetrics/Dockerfile")
    assert args[-1] == str(layout.repo / ".")
    assert f"{images.INPUTS_LABEL}=h1" in args
    if Path(images.HOST_CA_BUNDLE).is_file():
        ca = images.HOST_CA_BUNDLE
        assert args[args.index("-v") + 1] == f"{ca}:{ca}:ro"


def test_push_args_name_the_archive_with_the_normalized_ref(tmp_path: Path) -> None:
    args = images.push_args(docker_spec(), tmp_path / "a.tar")
    assert args[-1] == f"oci-archive:{tmp_path / 'a.tar'}:docker.io/hpa-kit/mockmetrics:0.1.0"
    assert args[:3] == ["push", "--format", "oci"]


def test_buildah_driver_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPA_KIT_BUILDAH_DRIVER", raising=False)
    assert images.buildah_global_args() == []
    monkeypatch.setenv("HPA_KIT_BUILDAH_DRIVER", "vfs")
    assert images.buildah_global_args() == ["--storage-driver", "vfs"]


def test_missing_tool_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no buildah there
    with pytest.raises(ImageError, match=r"^buildah not found: apt-get install buildah "):
        images.run(["buildah", "version"])


def test_failed_command_points_at_log(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    with pytest.raises(ImageError) as info:
        images.run(["sh", "-c", "echo boom; exit 3"], log=log)
    assert str(info.value) == f"sh -c 'echo boom; exit 3' failed (exit 3); see {log}: boom"
    assert "boom" in log.read_text()


# --------------------------------------------------------------------------------------------
# rebuild decisions (faked buildah)
# --------------------------------------------------------------------------------------------


def test_build_files_image_then_reuse_then_rebuild(layout: Layout, tools: FakeTools) -> None:
    spec = files_spec()
    msgs: list[str] = []
    archive = images.build_image(spec, layout, progress=msgs.append)
    assert archive == layout.images_dir / "registry.k8s.io_pause_3.10.tar"
    assert tools.verbs() == ["from", "add", "config", "commit", "push"]
    commit = next(c for c in tools.calls if c[1] == "commit")
    assert commit[-1] == "registry.k8s.io/pause:3.10" and "--timestamp" in commit
    stamp = json.loads(layout.stamp(spec).read_text())
    assert stamp["digest"] == images.archive_info(archive).digest
    assert images.archive_info(archive).name == "registry.k8s.io/pause:3.10"

    tools.calls.clear()
    images.build_image(spec, layout, progress=msgs.append)
    assert tools.calls == [] and msgs[-1].endswith("up to date (registry.k8s.io_pause_3.10.tar)")

    (layout.addons_dir / "pause").write_bytes(b"\x7fELF new pause")
    images.build_image(spec, layout, progress=msgs.append)
    assert tools.verbs() == ["from", "add", "config", "commit", "push"]

    tools.calls.clear()
    layout.archive(spec).unlink()  # archive lost -> rebuild even though the stamp matches
    images.build_image(spec, layout, progress=msgs.append)
    assert "push" in tools.verbs()


def test_scratch_image_ignores_the_base_id(layout: Layout, tools: FakeTools) -> None:
    images.build_image(files_spec(), layout, progress=lambda _: None)
    tools.calls.clear()
    images.build_image(files_spec(), layout, base_id="base-id-9", progress=lambda _: None)
    assert tools.calls == []


def test_build_dockerfile_image_uses_base_and_bud(layout: Layout, tools: FakeTools) -> None:
    spec = docker_spec()
    images.build_image(spec, layout, base_id="base-id-1", progress=lambda _: None)
    bud = next(c for c in tools.calls if c[1] == "bud")
    assert "--build-arg" in bud and bud[-1] == str(layout.repo / ".")
    tools.calls.clear()
    images.build_image(spec, layout, base_id="base-id-1", progress=lambda _: None)
    assert tools.calls == []
    images.build_image(spec, layout, base_id="base-id-2", progress=lambda _: None)  # new base
    assert "bud" in tools.verbs()


def test_missing_dockerfile_is_a_clear_error(layout: Layout, tools: FakeTools) -> None:
    spec = ImageSpec(alias="adapter", name="hpa-kit/adapter:0.1.0", build="dockerfile",
                     dockerfile="adapter/Dockerfile")
    with pytest.raises(ImageError, match="adapter/Dockerfile does not exist yet"):
        images.build_image(spec, layout, base_id="b", progress=lambda _: None)


def test_ensure_all_builds_what_it_can_and_lists_the_rest(
        layout: Layout, tools: FakeTools, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images.build, "ensure_base_image", lambda *a, **k: "base-id-1")
    monkeypatch.setattr(images.build, "ensure_addons", lambda *a, **k: None)
    msgs: list[str] = []
    with pytest.raises(ImageError) as e:
        images.ensure_all(["pause", "coredns", "mockmetrics", "adapter"], layout=layout, progress=msgs.append)
    text = str(e.value)
    assert "2 of 4 image(s) not built" in text
    assert "coredns:" in text and "build-binaries.sh" in text
    assert "adapter/Dockerfile does not exist yet" in text
    assert layout.archive(files_spec()).is_file() and layout.archive(docker_spec()).is_file()
    assert images.ensure_all(["pause", "mockmetrics"], layout=layout, progress=msgs.append) == {
        "registry.k8s.io/pause:3.10": layout.archive(files_spec()),
        "hpa-kit/mockmetrics:0.1.0": layout.archive(docker_spec()),
    }


# --------------------------------------------------------------------------------------------
# containerd import (faked ctr)
# --------------------------------------------------------------------------------------------


def test_import_skips_present_digests_and_verifies(tmp_path: Path, tools: FakeTools) -> None:
    sock = tmp_path / "containerd.sock"
    sock.touch()
    a = tmp_path / "a.tar"
    b = tmp_path / "b.tar"
    da = write_oci_archive(a, "registry.k8s.io/pause:3.10")
    write_oci_archive(b, "docker.io/hpa-kit/adapter:0.1.0")
    tools.ctr_images = {"registry.k8s.io/pause:3.10": da,
                        "docker.io/hpa-kit/adapter:0.1.0": "sha256:" + "0" * 64}  # stale digest
    assert images.images_present([a, b], address=str(sock)) == {a}
    got = images.import_images([a, b], address=str(sock), progress=lambda _: None)
    assert got == {"registry.k8s.io/pause:3.10": "present", "docker.io/hpa-kit/adapter:0.1.0": "imported"}
    imports = [c for c in tools.calls if c[5:7] == ["images", "import"]]
    assert imports == [["ctr", "-a", str(sock), "-n", "k8s.io", "images", "import", str(b)]]


def test_import_detects_wrong_name(tmp_path: Path, tools: FakeTools, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = tmp_path / "s.sock"
    sock.touch()
    a = tmp_path / "a.tar"
    write_oci_archive(a, "docker.io/hpa-kit/adapter:0.1.0")
    real = tools.__call__

    def misnaming(argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
        if list(argv)[5:7] == ["images", "import"]:
            tools.ctr_images["import-2025-01-01:0.1.0"] = "sha256:x"
            return subprocess.CompletedProcess(list(argv), 0, "", "")
        return real(argv, **kw)

    patch_run(monkeypatch, misnaming)
    with pytest.raises(ImageError, match="expected sha256"):
        images.import_images([a], address=str(sock), progress=lambda _: None)


def test_import_without_socket_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="start containerd"):
        images.import_images([], address=str(tmp_path / "nope.sock"))


def test_import_argv_snapshotter() -> None:
    argv = images.import_argv(Path("/x.tar"), address="/s", namespace="k8s.io", snapshotter="overlayfs")
    assert argv == ["ctr", "-a", "/s", "-n", "k8s.io", "images", "import", "--snapshotter", "overlayfs",
                    "/x.tar"]


def test_layout_dirs_match_the_build_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """harness.images mirrors the scripts' --print-dir instead of running them on every call."""
    monkeypatch.setenv("HPA_KIT_CACHE", str(tmp_path))
    lay = Layout()
    scripts = images.REPO_ROOT / "scripts"
    for script, want in (("build-binaries.sh", lay.k8s_bin_dir), ("build-addons.sh", lay.addons_dir)):
        out = subprocess.run(["bash", str(scripts / script), "--print-dir"], capture_output=True, text=True,
                             check=True).stdout.strip()
        assert Path(out) == want


# --------------------------------------------------------------------------------------------
# host inputs: what a fresh machine must have before any image builds
# --------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def _bootstrap_packages() -> set[str]:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "bootstrap.sh"), "--print-packages"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return set(out.stdout.split())


def _tools_run_by_images() -> set[str]:
    """The literal program names harness/images/ hands to its subprocess runner."""
    import ast

    trees = [ast.parse(p.read_text()) for p in sorted((REPO / "harness" / "images").glob("*.py"))]
    assert len(trees) > 5
    tools: set[str] = set()
    for node in (n for tree in trees for n in ast.walk(tree)):
        if isinstance(node, ast.List) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value in (
                "buildah", "debootstrap", "ctr", "tar", "umoci", "skopeo", "busybox",
            ):
                tools.add(first.value)
    return tools


def test_every_host_input_maps_to_a_package_bootstrap_installs() -> None:
    # A fresh machine once failed halfway through `make e2e` with "missing input host:/bin/busybox":
    # bootstrap.sh did not install busybox-static. Every host file an image spec reads and every tool
    # the build runs must come from a package that bootstrap.sh installs.
    host_inputs = {s.partition(":")[2] for spec in images.default_specs() for s in spec.sources
                   if s.startswith("host:")}
    assert host_inputs, "expected at least the busybox input"
    unmapped = (host_inputs | _tools_run_by_images()) - set(images.HOST_PACKAGES)
    assert not unmapped, f"add these to harness.images.HOST_PACKAGES: {sorted(unmapped)}"
    missing = set(images.HOST_PACKAGES.values()) - _bootstrap_packages()
    assert not missing, f"scripts/bootstrap.sh APT_PACKAGES lacks {sorted(missing)}"


def test_missing_host_input_names_the_bootstrap_package(layout: Layout) -> None:
    assert "apt-get install busybox-static" in layout.remedy("host:/bin/busybox")
