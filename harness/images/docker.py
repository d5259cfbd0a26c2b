"""The Docker edge of the image build: what users build with on their own machines.

``buildah`` builds the archives the local provider imports into containerd. Where a Docker engine
runs (the kind provider), the kit's own Dockerfile images (adapter, mockmetrics, locust) can be built
with ``docker build`` instead, as users do, and loaded with ``kind load docker-image``:

* the base ``localhost/kit-base:bookworm`` is the same cached debootstrap root-fs,
  ``docker import``-ed, with the same environment as the buildah base (PEP 668 opt-out) set by a
  metadata-only Dockerfile; where the host's CA bundle differs from the root-fs's, the host's is
  copied in, because ``docker build`` (unlike ``buildah bud -v``) cannot bind-mount it and pip in the
  build reaches PyPI only with the machine's trust store (DESIGN §3);
* each Dockerfile is built with ``docker build --network host --build-arg BASE_IMAGE=...`` and
  labelled with the same input hash as the buildah path (over the Docker base's ID), so an image is
  rebuilt only when its inputs change.

Also the Docker helpers the kind node image uses (``image_id``, ``image_inputs``, ``import_tree``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness import procs
from harness.images.base import base_config_args, ensure_base_rootfs
from harness.images.common import (
    BASE_IMAGE,
    BUILD_TIMEOUT_S,
    HOST_CA_BUNDLE,
    INPUTS_LABEL,
    RECIPE_VERSION,
    ImageError,
    Progress,
)
from harness.images.hashing import file_digest, input_hash
from harness.images.names import safe_name
from harness.images.specs import ImageSpec, Layout, default_specs, select_specs
from harness.images.tools import locked, run

#: ``docker import`` / ``build`` of a root-fs of several hundred MB.
DOCKER_TIMEOUT_S = 1800
#: Which builder the kind provider uses for Dockerfile images: ``docker`` (default there) or ``buildah``.
BUILDER_ENV = "HPA_KIT_IMAGE_BUILDER"
BUILDERS = ("docker", "buildah")


def builder(default: str = "docker") -> str:
    """``$HPA_KIT_IMAGE_BUILDER`` or ``default``; anything else is an error that names the choices."""
    value = os.environ.get(BUILDER_ENV, "").strip() or default
    if value not in BUILDERS:
        raise ImageError(f"{BUILDER_ENV}={value!r}: choose one of {', '.join(BUILDERS)}")
    return value


def docker(*args: str, timeout: float = 120, check: bool = True, log: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; failures raise ``ImageError`` with the command and its output."""
    return run(["docker", *args], timeout=timeout, check=check, log=log)


def _inspect(name: str, template: str) -> str | None:
    proc = docker("image", "inspect", "--format", template, name, check=False, timeout=60)
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_id(name: str) -> str | None:
    """The Docker image ID of ``name``, or None when Docker lacks it."""
    return _inspect(name, "{{.Id}}")


def image_inputs(name: str) -> str | None:
    """The ``io.hpa-kit.inputs`` label of a Docker image, or None when Docker lacks the image."""
    return _inspect(name, '{{index .Config.Labels "' + INPUTS_LABEL + '"}}')


def import_tree(source: Path, name: str, config: Sequence[str], *,
                files: dict[str, Path] | None = None) -> None:
    """``docker import`` a root-fs (a directory or a tarball), then give it ``config`` (Dockerfile
    instructions after ``FROM``; ``COPY``/``LABEL``/``ENV``...) with a small build whose context holds
    ``files`` (context name -> host path). dockerd 20.10's ``import --change`` refuses some
    instructions (``STOPSIGNAL``), and a ``FROM <local image>`` build pulls nothing."""
    staging = f"{name}-rootfs"
    if source.is_dir():
        # A pipeline (tar's stdout is docker's stdin), which procs.run does not do: both stay Popen/run
        # here, and a failure of either is reported below with docker's stderr.
        tar = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "-C", str(source), "-c", "."],
                               stdout=subprocess.PIPE)
        try:
            proc = subprocess.run(["docker", "import", "-", staging], stdin=tar.stdout,
                                  capture_output=True, text=True, timeout=DOCKER_TIMEOUT_S)
        finally:
            if tar.stdout:
                tar.stdout.close()
            tar.wait()
        failed = proc.returncode != 0 or tar.returncode != 0
    else:
        proc = docker("import", str(source), staging, timeout=DOCKER_TIMEOUT_S, check=False)
        failed = proc.returncode != 0
    if failed:
        raise ImageError(f"docker import of {source} as {staging} failed: {proc.stderr.strip()[-1000:]}")
    try:
        with tempfile.TemporaryDirectory(prefix="hpa-kit-docker-ctx-") as ctx:
            for rel, src in (files or {}).items():
                (Path(ctx) / rel).write_bytes(src.read_bytes())
            (Path(ctx) / "Dockerfile").write_text("\n".join([f"FROM {staging}", *config]) + "\n")
            docker("build", "-q", "-t", name, ctx, timeout=DOCKER_TIMEOUT_S)
    finally:
        docker("rmi", staging, check=False, timeout=120)  # only the tag; the layers stay under `name`


def _ca_bundle_differs(rootfs_tar: Path) -> bool:
    """Whether the host's CA bundle differs from the one debootstrap put in the root-fs."""
    host = Path(HOST_CA_BUNDLE)
    if not host.is_file():
        return False
    member = "." + HOST_CA_BUNDLE
    proc = procs.run(["tar", "-xOf", str(rootfs_tar), member], text=False, check=False, timeout=120,
                     error=ImageError)
    if proc.returncode != 0:  # a symlink or missing in the root-fs: use the host's
        return True
    return hashlib.sha256(proc.stdout).hexdigest() != file_digest(host)


def base_dockerfile_lines(inputs: str, *, with_ca: bool) -> list[str]:
    """The base's config as Dockerfile instructions: the same env and command as the buildah base."""
    it = iter(base_config_args())
    lines = []
    for flag, value in zip(it, it, strict=False):
        if flag == "--env":
            k, _, v = value.partition("=")
            lines.append(f"ENV {k}={json.dumps(v)}")
        elif flag == "--cmd":
            lines.append(f"CMD {value}")
    if with_ca:
        lines.append(f"COPY host-ca-certificates.crt {HOST_CA_BUNDLE}")
    lines.append(f"LABEL {INPUTS_LABEL}={inputs}")
    return lines


def ensure_docker_base(layout: Layout | None = None, *, progress: Progress = print) -> str:
    """``localhost/kit-base:bookworm`` in Docker, from the cached root-fs; returns its image ID."""
    layout = layout or Layout()
    tar_path = ensure_base_rootfs(layout, progress=progress)
    stamp = json.loads((layout.base_dir / "rootfs.json").read_text())
    with_ca = _ca_bundle_differs(tar_path)
    ca = file_digest(Path(HOST_CA_BUNDLE)) if with_ca else ""
    recipe = json.dumps([stamp["sha256"], base_config_args(), RECIPE_VERSION, "docker", ca])
    want = hashlib.sha256(recipe.encode()).hexdigest()
    if image_inputs(BASE_IMAGE) == want:
        return image_id(BASE_IMAGE) or ""
    why = " (with this host's CA bundle: pip in docker build needs it)" if with_ca else ""
    progress(f"base: docker import {BASE_IMAGE} from {tar_path.name}{why}")
    t0 = time.monotonic()
    files = {"host-ca-certificates.crt": Path(HOST_CA_BUNDLE)} if with_ca else None
    import_tree(tar_path, BASE_IMAGE, base_dockerfile_lines(want, with_ca=with_ca), files=files)
    progress(f"base: {BASE_IMAGE} in Docker in {time.monotonic() - t0:.0f}s")
    return image_id(BASE_IMAGE) or ""


def docker_build_args(spec: ImageSpec, layout: Layout, inputs: str) -> list[str]:
    """The ``docker build`` argv (after ``docker``) of a Dockerfile image.

    ``--network host``: the engine here runs without a bridge or masquerading, and pip in the build
    must reach PyPI. ``--pull=false``: the base is local; nothing can be pulled here.
    """
    return ["build", "--network", "host", "--pull=false", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
            "--label", f"{INPUTS_LABEL}={inputs}", "-f", str(layout.repo / spec.dockerfile),
            "-t", spec.ref, str(layout.repo / spec.context)]


def docker_build(spec: ImageSpec, layout: Layout, *, base_id: str, progress: Progress = print,
                 force: bool = False) -> str:
    """Build one Dockerfile image into Docker unless Docker has it with the same inputs; returns
    its reference (``docker.io/hpa-kit/adapter:0.1.0``)."""
    if spec.build != "dockerfile":
        raise ImageError(f"{spec.alias} is not built from a Dockerfile; only Dockerfile images build "
                         "with Docker (the others are OCI archives: kind load image-archive)")
    if not (layout.repo / spec.dockerfile).is_file():
        raise ImageError(f"{spec.alias}: {spec.dockerfile} does not exist in {layout.repo}")
    inputs = input_hash(spec, layout, base_id=base_id)
    if not force and image_inputs(spec.ref) == inputs:
        progress(f"{spec.alias}: up to date in Docker ({spec.ref})")
        return spec.ref
    layout.images_dir.mkdir(parents=True, exist_ok=True)
    log = layout.images_dir / f"{safe_name(spec.name)}.docker-build.log"
    argv = ["docker", *docker_build_args(spec, layout, inputs)]
    progress(f"{spec.alias}: {shlex.join(argv)} (log {log})")
    t0 = time.monotonic()
    run(argv, timeout=BUILD_TIMEOUT_S, log=log)
    progress(f"{spec.alias}: docker build done in {time.monotonic() - t0:.1f}s")
    return spec.ref


def dockerfile_specs(names: Iterable[str] | None, layout: Layout) -> list[ImageSpec]:
    """The Dockerfile images among ``names`` (aliases or image names; None: all of them)."""
    return [s for s in select_specs(default_specs(layout), names) if s.build == "dockerfile"]


def ensure_docker_images(names: Iterable[str] | None = None, *, layout: Layout | None = None,
                         progress: Progress = print, force: bool = False) -> dict[str, str]:
    """Build (or reuse) Dockerfile images with Docker; ``{name: ref}``. Non-Dockerfile names are an
    error: they are the OCI archives of :func:`harness.images.ensure_all`."""
    layout = layout or Layout()
    specs = select_specs(default_specs(layout), names)
    others = [s.alias for s in specs if s.build != "dockerfile"]
    if others:
        raise ImageError(f"not Dockerfile images (build them with ensure_all): {', '.join(others)}")
    out: dict[str, str] = {}
    with locked(layout.images_dir / ".docker.lock"):
        base_id = ensure_docker_base(layout, progress=progress) if specs else ""
        for spec in specs:
            out[spec.name] = docker_build(spec, layout, base_id=base_id, progress=progress, force=force)
    return out
