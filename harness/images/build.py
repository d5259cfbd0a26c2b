"""Building: the layer tarball of ``files`` images, ``buildah bud`` for Dockerfile images, the OCI
archive each image ends as (with a stamp of its inputs), and ``ensure_all`` over the specs."""

from __future__ import annotations

import io
import json
import os
import shlex
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import procs
from harness.images.base import ensure_base_image
from harness.images.common import (
    BASE_IMAGE,
    BUILD_TIMEOUT_S,
    HOST_CA_BUNDLE,
    INPUTS_LABEL,
    SCRATCH_TIMESTAMP,
    ImageError,
    Progress,
)
from harness.images.hashing import _require, _walk, input_hash
from harness.images.names import safe_name
from harness.images.specs import ImageSpec, Layout, default_specs, select_specs
from harness.images.tools import (
    _buildah,
    _image_id_and_label,
    buildah_global_args,
    check_buildah,
    locked,
    run,
)


def layer_tar(spec: ImageSpec, layout: Layout, out: Path) -> None:
    """Write the layer of a ``files`` image: parents as root 0755, exact modes/owners, mtime 0."""
    seen: set[str] = set()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:

        def add_dirs(path: str) -> None:
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    tar.addfile(_tarinfo(d, tarfile.DIRTYPE, 0o755, 0, 0))

        for f in spec.files:
            name = f.dest.strip("/")
            add_dirs(f.dest)
            if f.kind == "dir":
                seen.add(name)
                tar.addfile(_tarinfo(name, tarfile.DIRTYPE, f.mode, f.uid, f.gid))
            elif f.kind == "symlink":
                ti = _tarinfo(name, tarfile.SYMTYPE, 0o777, f.uid, f.gid)
                ti.linkname = f.source
                tar.addfile(ti)
            elif f.kind == "file":
                data = f.content if f.content is not None else _require(layout, f.source).read_bytes()
                ti = _tarinfo(name, tarfile.REGTYPE, f.mode, f.uid, f.gid)
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            else:  # tree: copy a host directory, files 0644 / dirs 0755, owned by the entry's owner
                root = _require(layout, f.source)
                seen.add(name)
                tar.addfile(_tarinfo(name, tarfile.DIRTYPE, 0o755, f.uid, f.gid))
                for p in _walk(root, root, ()):
                    rel = p.relative_to(root).as_posix()
                    add_dirs(f"{name}/{rel}")
                    ti = _tarinfo(f"{name}/{rel}", tarfile.REGTYPE, 0o644, f.uid, f.gid)
                    ti.size = p.stat().st_size
                    with p.open("rb") as fh:
                        tar.addfile(ti, fh)


def _tarinfo(name: str, kind: bytes, mode: int, uid: int, gid: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = kind, mode, uid, gid, 0
    ti.uname = ti.gname = ""
    return ti


def files_config_args(spec: ImageSpec) -> list[str]:
    """``buildah config`` flags for a ``files`` image (JSON forms, so no shell is implied)."""
    args: list[str] = []
    if spec.entrypoint:
        args += ["--entrypoint", json.dumps(list(spec.entrypoint))]
    if spec.cmd or spec.base:  # an image on the base must not inherit the base's "python3" command
        args += ["--cmd", json.dumps(list(spec.cmd))]
    if spec.user:
        args += ["--user", spec.user]
    if spec.workdir:
        args += ["--workingdir", spec.workdir]
    for k, v in spec.env:
        args += ["--env", f"{k}={v}"]
    for p in spec.ports:
        args += ["--port", p]
    for k, v in spec.labels:
        args += ["--label", f"{k}={v}"]
    return [*args, "--os", "linux", "--arch", go_arch()]


def bud_args(spec: ImageSpec, layout: Layout, inputs: str) -> list[str]:
    """The ``buildah bud`` argv for a ``dockerfile`` image (without the global flags).

    ``--network host`` and the host's CA bundle bind-mounted read-only: pip in the build reaches PyPI
    only with both (DESIGN §3). ``--pull=never``: nothing can be pulled here, and the base is local.
    ``--layers`` keeps the dependency layer cached when only the kit's sources change.
    """
    args = ["bud", "--network", "host", "--pull=never", "--layers", "--format", "oci"]
    if Path(HOST_CA_BUNDLE).is_file():
        args += ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    args += ["--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--label", f"{INPUTS_LABEL}={inputs}",
             "-f", str(layout.repo / spec.dockerfile), "-t", spec.ref, str(layout.repo / spec.context)]
    return args


def push_args(spec: ImageSpec, archive: Path) -> list[str]:
    """``buildah push`` to an OCI archive whose ref-name annotation is the *normalized* name."""
    return ["push", "--format", "oci", "--remove-signatures", spec.ref, f"oci-archive:{archive}:{spec.ref}"]


def go_arch() -> str:
    """This machine's architecture as Go and OCI name it (``amd64``, ``arm64``)."""
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


@dataclass(frozen=True)
class ArchiveInfo:
    """What an OCI archive declares: the ref name and manifest digest ctr will import."""

    path: Path
    name: str
    digest: str
    config: dict[str, Any]
    manifest: dict[str, Any]


def archive_info(path: Path) -> ArchiveInfo:
    """Read ``index.json``, the manifest and the image config from an OCI archive (tar)."""
    with tarfile.open(path) as tar:

        def blob(digest: str) -> dict[str, Any]:
            algo, _, hexd = digest.partition(":")
            f = tar.extractfile(f"blobs/{algo}/{hexd}")
            assert f is not None
            return json.load(f)

        index_f = tar.extractfile("index.json")
        if index_f is None:
            raise ImageError(f"{path} is not an OCI archive (no index.json)")
        index = json.load(index_f)
        manifests = index.get("manifests") or []
        if len(manifests) != 1:
            raise ImageError(f"{path}: expected one manifest in index.json, found {len(manifests)}")
        desc = manifests[0]
        manifest = blob(desc["digest"])
        config = blob(manifest["config"]["digest"])
    annotations = desc.get("annotations") or {}
    name = (annotations.get("io.containerd.image.name")
            or annotations.get("org.opencontainers.image.ref.name", ""))
    return ArchiveInfo(path=path, name=name, digest=desc["digest"], config=config, manifest=manifest)


def build_image(spec: ImageSpec, layout: Layout | None = None, *, base_id: str = "",
                progress: Progress = print, force: bool = False) -> Path:
    """Build ``spec`` into its OCI archive unless the archive's recorded inputs are unchanged.

    Returns the archive path. ``base_id`` is the base image's ID for images that need it (``ensure_all``
    passes it; when empty it is looked up / built here).
    """
    layout = layout or Layout()
    if not spec.needs_base:
        base_id = ""  # a FROM-scratch image does not change when the base does
    elif not base_id:
        base_id = ensure_base_image(layout, progress=progress)
    if spec.build == "dockerfile" and not (layout.repo / spec.dockerfile).is_file():
        raise ImageError(f"{spec.alias}: {spec.dockerfile} does not exist yet in {layout.repo}")
    inputs = input_hash(spec, layout, base_id=base_id)
    archive, stamp_path = layout.archive(spec), layout.stamp(spec)
    if not force and _stamp_matches(stamp_path, archive, inputs):
        progress(f"{spec.alias}: up to date ({archive.name})")
        return archive
    layout.images_dir.mkdir(parents=True, exist_ok=True)
    progress(f"{spec.alias}: building {spec.name}")
    t0 = time.monotonic()
    log = layout.images_dir / f"{safe_name(spec.name)}.build.log"
    if spec.build == "dockerfile":
        argv = ["buildah", *buildah_global_args(), *bud_args(spec, layout, inputs)]
        progress(f"{spec.alias}: {shlex.join(argv)} (log {log})")
        run(argv, timeout=BUILD_TIMEOUT_S, log=log)
    else:
        _build_files_image(spec, layout, inputs)
    built_s = time.monotonic() - t0
    part = archive.with_name(archive.name + ".part")
    part.unlink(missing_ok=True)
    _buildah(*push_args(spec, part), timeout=BUILD_TIMEOUT_S)
    info = archive_info(part)
    if info.name != spec.ref:
        raise ImageError(f"{part}: archive names {info.name!r}, expected {spec.ref!r} (buildah changed?)")
    part.replace(archive)
    total_s = time.monotonic() - t0
    stamp_path.write_text(json.dumps({
        "name": spec.name, "ref": spec.ref, "inputs": inputs, "digest": info.digest,
        "size": archive.stat().st_size, "build_seconds": round(built_s, 1),
        "total_seconds": round(total_s, 1), "built_at": time.time(),
    }, indent=2))
    progress(f"{spec.alias}: built in {total_s:.1f}s -> {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
    return archive


def _build_files_image(spec: ImageSpec, layout: Layout, inputs: str) -> None:
    with tempfile.TemporaryDirectory(prefix="hpa-kit-layer-", dir=layout.images_dir) as tmp:
        layer = Path(tmp) / "layer.tar"
        layer_tar(spec, layout, layer)
        ctr = _buildah("from", "--pull=never", spec.base or "scratch").stdout.strip()
        try:
            _buildah("add", ctr, str(layer), "/", timeout=BUILD_TIMEOUT_S)
            _buildah("config", *files_config_args(spec), "--label", f"{INPUTS_LABEL}={inputs}", ctr)
            ts = ["--timestamp", str(SCRATCH_TIMESTAMP)] if spec.base is None else []
            _buildah("commit", "--rm", *ts, ctr, spec.ref, timeout=BUILD_TIMEOUT_S)
            ctr = ""
        finally:
            if ctr:
                _buildah("rm", ctr, check=False)


def _stamp_matches(stamp_path: Path, archive: Path, inputs: str) -> bool:
    try:
        stamp = json.loads(stamp_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return archive.is_file() and stamp.get("inputs") == inputs and stamp.get("size") == archive.stat().st_size


def image_status(spec: ImageSpec, layout: Layout | None = None) -> str:
    """``built`` / ``stale`` / ``missing`` / ``no-input: ...`` without building anything."""
    layout = layout or Layout()
    archive = layout.archive(spec)
    if not archive.is_file():
        return "missing"
    try:
        base_id = _image_id_and_label(BASE_IMAGE)[0] if spec.needs_base else ""
        inputs = input_hash(spec, layout, base_id=base_id)
    except ImageError as e:
        return f"no-input: {e}"
    return "built" if _stamp_matches(layout.stamp(spec), archive, inputs) else "stale"


def ensure_addons(layout: Layout, specs: Sequence[ImageSpec], *, progress: Progress = print) -> None:
    """Run scripts/build-addons.sh when an ``addon:`` input is missing (it is idempotent)."""
    missing = [s for spec in specs for s in spec.sources
               if s.startswith("addon:") and not layout.resolve(s).exists()]
    if not missing:
        return
    progress(f"addons missing ({', '.join(missing)}): running scripts/build-addons.sh")
    env = {**os.environ, "HPA_KIT_CACHE": str(layout.cache)}
    procs.run([str(layout.repo / "scripts" / "build-addons.sh")], env=env, timeout=3600, stdout=procs.INHERIT,
              what="scripts/build-addons.sh", error=ImageError)


def ensure_all(names: Iterable[str] | None = None, *, layout: Layout | None = None,
               progress: Progress = print, force: bool = False) -> dict[str, Path]:
    """Build (or reuse) the images and return ``{name: archive}`` for the ones that are ready.

    ``names`` are aliases or image names; ``None`` is every non-lazy image. Images whose inputs are
    missing (e.g. CoreDNS before scripts/build-binaries.sh finished, a Dockerfile not written yet) do
    not stop the others; one ``ImageError`` at the end lists them with what to do.
    """
    layout = layout or Layout()
    specs = select_specs(default_specs(layout), names)
    out: dict[str, Path] = {}
    errors: list[str] = []
    with locked(layout.images_dir / ".lock"):
        check_buildah()
        ensure_addons(layout, specs, progress=progress)
        base_id = ""
        if any(s.needs_base for s in specs):
            base_id = ensure_base_image(layout, progress=progress)
        for spec in specs:
            try:
                out[spec.name] = build_image(spec, layout, base_id=base_id, progress=progress, force=force)
            except ImageError as e:
                progress(f"{spec.alias}: FAILED: {e}")
                errors.append(f"{spec.alias}: {e}")
    if errors:
        raise ImageError(f"{len(errors)} of {len(specs)} image(s) not built:\n  " + "\n  ".join(errors))
    return out


def prune(layout: Layout | None = None, *, progress: Progress = print) -> None:
    """Free buildah's store of untagged images: superseded builds and the ``--layers`` cache (the next
    Dockerfile build then re-runs its pip step). Tagged images and the cached archives stay. Holds the
    build lock, so it never races a build of ours."""
    layout = layout or Layout()
    with locked(layout.images_dir / ".lock"):
        proc = _buildah("rmi", "--prune", check=False, timeout=600)
    progress(f"prune: removed {len(proc.stdout.split())} untagged image(s) from buildah's store")
