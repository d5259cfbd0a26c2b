"""Offline container images for the local cluster: specs, cached builds, containerd import.

Why this exists: the local provider runs real containers but this machine cannot pull images, so
every image a manifest names is built here, under *exactly* the name the manifest uses (the same
manifests then serve kind and the local cluster, with ``imagePullPolicy: IfNotPresent``):

* static Go programs (pause, CoreDNS, prometheus-operator, config-reloader, Prometheus built from its
  Go module) go into ``FROM scratch`` images assembled from a layer tarball written here (so
  ownership and modes are exact);
* the kit's own Python components are built from their Dockerfiles with
  ``--build-arg BASE_IMAGE=localhost/kit-base:bookworm``; that base comes from ``debootstrap``
  (cached as a tarball) and sets ``PIP_BREAK_SYSTEM_PACKAGES=1`` so a standard ``pip install``
  in those Dockerfiles passes PEP 668 on Debian's Python.

Every image ends as an OCI archive ``$CACHE/images/<safe-name>.tar`` whose index carries the fully
normalized name (``docker.io/hpa-kit/mockmetrics:0.1.0``): ``ctr images import`` uses a full
``org.opencontainers.image.ref.name`` verbatim, and the CRI plugin looks images up by the normalized
name. Beside each archive, ``<safe-name>.json`` records the hash of everything that went in; an
image is rebuilt only when that hash changes, and imported only when containerd lacks its digest.

Also a CLI: ``python -m harness.images build|list|import`` (``scripts/build-images.sh``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "BASE_IMAGE",
    "BASE_PACKAGES",
    "HOST_PACKAGES",
    "ArchiveInfo",
    "FileEntry",
    "ImageError",
    "ImageSpec",
    "Layout",
    "archive_info",
    "build_image",
    "default_specs",
    "ensure_all",
    "ensure_base_image",
    "ensure_base_rootfs",
    "images_present",
    "import_images",
    "input_hash",
    "main",
    "normalize_ref",
    "prune",
    "safe_name",
    "select_specs",
    "unbuildable",
]

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The Debian base every Python image (and Prometheus) is built on; never pushed anywhere.
BASE_IMAGE = "localhost/kit-base:bookworm"
BASE_SUITE = "bookworm"
#: python-is-python3 gives ``python`` like the python:3.x-slim images the Dockerfiles default to.
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
#: The host's trust store; pip inside ``buildah bud`` only reaches PyPI with it (DESIGN §3).
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
#: Label carrying the input hash on images we build, so a reused image can be checked.
INPUTS_LABEL = "io.hpa-kit.inputs"
#: Fixed creation time of the FROM-scratch images: same inputs, same digest.
SCRATCH_TIMESTAMP = 0
#: Bumped when the way images are assembled changes, to invalidate every cached archive.
RECIPE_VERSION = "1"

#: Subprocess timeouts (seconds). Debootstrap measured 42-100 s; pip-heavy builds a few minutes.
DEBOOTSTRAP_TIMEOUT_S = 1800
BUILD_TIMEOUT_S = 1800
SHORT_TIMEOUT_S = 120

Progress = Callable[[str], None]

#: Every host input an image build reads (``host:`` file sources and the tools run), and the Debian
#: package that provides it. ``scripts/bootstrap.sh`` must install each of these packages; a unit test
#: holds it to that, so a fresh machine never meets "missing input host:..." halfway through a run.
HOST_PACKAGES: dict[str, str] = {
    "/bin/busybox": "busybox-static",
    "buildah": "buildah",
    "debootstrap": "debootstrap",
    "ctr": "containerd",
    "tar": "tar",
}


class ImageError(RuntimeError):
    """An image could not be built or imported; the message says what to do next."""


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

_DOMAIN_RE = re.compile(r"^[a-zA-Z0-9.-]+(:[0-9]+)?$")
_REF_RE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+|__)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def normalize_ref(name: str) -> str:
    """Return the fully qualified reference, as containerd and the kubelet normalize it.

    ``pause:3.10`` -> ``docker.io/library/pause:3.10``; ``hpa-kit/adapter:0.1.0`` ->
    ``docker.io/hpa-kit/adapter:0.1.0``; a missing tag becomes ``:latest``. The first component is a
    registry domain only if it contains ``.`` or ``:`` or is ``localhost`` (the docker/distribution
    rule). Raises ``ImageError`` on a name the kubelet would also reject.
    """
    if not name or name != name.strip():
        raise ImageError(f"invalid image name {name!r}")
    domain, sep, rest = name.partition("/")
    if sep and (("." in domain or ":" in domain) or domain == "localhost"):
        if not _DOMAIN_RE.match(domain):
            raise ImageError(f"invalid registry domain in image name {name!r}")
    else:
        domain, rest = "docker.io", name
    m = _REF_RE.match(rest)
    if not m:
        raise ImageError(
            f"invalid image name {name!r}: repository must be lowercase [a-z0-9._-/], tag [A-Za-z0-9_.-]"
        )
    repo, tag, digest = m["repo"], m["tag"], m["digest"]
    if domain == "docker.io" and "/" not in repo:
        repo = "library/" + repo
    if not tag and not digest:
        tag = "latest"
    return f"{domain}/{repo}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def safe_name(name: str) -> str:
    """File-system-safe stem for an image's archive: ``quay.io/prometheus/prometheus:v3.5.0`` ->
    ``quay.io_prometheus_prometheus_v3.5.0``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", normalize_ref(name))


# --------------------------------------------------------------------------------------------
# Layout and specs
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$HPA_KIT_CACHE``, else ``$XDG_CACHE_HOME/hpa-kit``, else ``~/.cache/hpa-kit`` (as the scripts)."""
    if env := os.environ.get("HPA_KIT_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hpa-kit"


def read_versions(repo: Path = REPO_ROOT) -> dict[str, str]:
    """The pinned upstream versions from ``scripts/versions.env`` (simple ``KEY=VALUE`` lines)."""
    out: dict[str, str] = {}
    for line in (repo / "scripts" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip("\"'")
    return out


def kit_version(repo: Path = REPO_ROOT) -> str:
    """The kit's own version (``pyproject.toml``), which tags the kit's images."""
    with (repo / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


@dataclass(frozen=True)
class Layout:
    """Where inputs come from and where outputs go."""

    cache: Path = field(default_factory=default_cache_dir)
    repo: Path = REPO_ROOT

    @property
    def images_dir(self) -> Path:
        return self.cache / "images"

    @property
    def base_dir(self) -> Path:
        return self.cache / "base" / f"kit-base-{BASE_SUITE}"

    @property
    def addons_dir(self) -> Path:
        return self.cache / "bin" / "addons"

    @property
    def k8s_bin_dir(self) -> Path:
        """``scripts/build-binaries.sh --print-dir`` computes this; mirrored to avoid a subprocess."""
        return self.cache / "bin" / f"k8s-{read_versions(self.repo)['K8S_VERSION']}"

    def archive(self, spec: ImageSpec) -> Path:
        return self.images_dir / f"{safe_name(spec.name)}.tar"

    def stamp(self, spec: ImageSpec) -> Path:
        return self.images_dir / f"{safe_name(spec.name)}.json"

    def resolve(self, source: str) -> Path:
        """Map a spec's ``source`` to a host path.

        ``addon:NAME`` -> ``$CACHE/bin/addons/NAME`` (scripts/build-addons.sh),
        ``k8s:NAME`` -> the build-binaries.sh directory, ``host:/ABS`` -> that host path,
        ``repo:REL`` -> a file in this repository.
        """
        scheme, _, rest = source.partition(":")
        if scheme == "addon":
            return self.addons_dir / rest
        if scheme == "k8s":
            return self.k8s_bin_dir / rest
        if scheme == "host":
            return Path(rest)
        if scheme == "repo":
            return self.repo / rest
        raise ImageError(f"unknown source scheme in {source!r} (addon:, k8s:, host:, repo:)")

    def remedy(self, source: str) -> str:
        """What to run when a source is missing."""
        scheme, _, rest = source.partition(":")
        if scheme == "addon":
            return "run scripts/build-addons.sh"
        if scheme == "k8s":
            return "run scripts/build-binaries.sh (it builds CoreDNS after the Kubernetes binaries)"
        if scheme == "host":
            pkg = HOST_PACKAGES.get(rest)
            return f"apt-get install {pkg} (scripts/bootstrap.sh installs it)" if pkg else f"provide {rest}"
        return "check the repository checkout"


@dataclass(frozen=True)
class FileEntry:
    """One path in a binary image's layer."""

    dest: str
    kind: Literal["file", "dir", "symlink", "tree"] = "file"
    #: ``file``/``tree``: where it comes from (see ``Layout.resolve``); ``symlink``: the link target.
    source: str = ""
    #: ``file`` only: literal content instead of a source.
    content: bytes | None = None
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class ImageSpec:
    """How to produce one image. ``name`` is what the manifests say; ``alias`` is for the CLI."""

    alias: str
    name: str
    build: Literal["files", "dockerfile"]
    #: ``files`` images: ``None`` for FROM scratch, else a base image (``BASE_IMAGE``).
    base: str | None = None
    files: tuple[FileEntry, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    workdir: str = ""
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    #: ``dockerfile`` images: repo-relative Dockerfile and build context.
    dockerfile: str = ""
    context: str = "."
    #: Built only when asked for by name (``ensure_all(names=[...])``).
    lazy: bool = False

    @property
    def ref(self) -> str:
        return normalize_ref(self.name)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(f.source for f in self.files if f.kind in ("file", "tree") and f.content is None)

    @property
    def needs_base(self) -> bool:
        return self.build == "dockerfile" or self.base == BASE_IMAGE


def _busybox_entries() -> tuple[FileEntry, ...]:
    """A shell and wget, as in upstream's busybox-based images: the operator's exec probes (used with
    ``listenLocal``) run ``sh -c 'command -v curl || wget ...'``, and ``kubectl exec`` needs a shell."""
    return (
        FileEntry("/bin/busybox", source="host:/bin/busybox"),
        FileEntry("/bin/sh", kind="symlink", source="busybox"),
        FileEntry("/bin/wget", kind="symlink", source="busybox"),
        FileEntry("/tmp", kind="dir", mode=0o1777),
    )


_PROMETHEUS_YML = b"""\
# Default configuration (the operator mounts its own under /etc/prometheus/config_out).
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]
"""


def default_specs(layout: Layout | None = None) -> list[ImageSpec]:
    """Every image the local cluster can use, named as the manifests name them."""
    layout = layout or Layout()
    v = read_versions(layout.repo)
    po, coredns, prom = v["PROM_OPERATOR_VERSION"], v["COREDNS_VERSION"], v["PROMETHEUS_VERSION"]
    kit = kit_version(layout.repo)
    po_dir = f"prometheus-operator-{po}"
    nobody = 65534
    return [
        ImageSpec(
            alias="pause",
            name="registry.k8s.io/pause:3.10",
            build="files",
            files=(FileEntry("/pause", source="addon:pause"),),
            entrypoint=("/pause",),
            user="65535:65535",  # as upstream's pause image
        ),
        ImageSpec(
            alias="coredns",
            name=f"registry.k8s.io/coredns/coredns:{coredns}",
            build="files",
            files=(FileEntry("/coredns", source="k8s:coredns"),),
            entrypoint=("/coredns",),
            # Runs as root: upstream's nonroot image relies on a file capability (setcap) to bind :53,
            # which a plain layer tarball does not carry. The Deployment drops all but NET_BIND_SERVICE.
            ports=("53/tcp", "53/udp"),
        ),
        ImageSpec(
            alias="prometheus-operator",
            name=f"quay.io/prometheus-operator/prometheus-operator:{po}",
            build="files",
            files=(FileEntry("/bin/operator", source=f"addon:{po_dir}/operator"), *_busybox_entries()),
            entrypoint=("/bin/operator",),
            user=str(nobody),
            ports=("8080/tcp",),
        ),
        ImageSpec(
            alias="config-reloader",
            name=f"quay.io/prometheus-operator/prometheus-config-reloader:{po}",
            build="files",
            # The operator sets command: [/bin/prometheus-config-reloader] on its sidecar/init container.
            files=(
                FileEntry("/bin/prometheus-config-reloader",
                          source=f"addon:{po_dir}/prometheus-config-reloader"),
                *_busybox_entries(),
            ),
            entrypoint=("/bin/prometheus-config-reloader",),
            user=str(nobody),
        ),
        ImageSpec(
            alias="prometheus",
            name=f"quay.io/prometheus/prometheus:{prom}",
            build="files",
            # Built from Prometheus' Go module (static): Debian's package lacks Kubernetes SD.
            files=(
                FileEntry("/bin/prometheus", source=f"addon:prometheus-{prom}/prometheus"),
                FileEntry("/etc/prometheus", kind="dir", uid=nobody, gid=nobody),
                FileEntry("/etc/prometheus/prometheus.yml", content=_PROMETHEUS_YML, mode=0o644,
                          uid=nobody, gid=nobody),
                FileEntry("/prometheus", kind="dir", uid=nobody, gid=nobody),
                *_busybox_entries(),
            ),
            # As upstream's image: the operator passes only args and mounts /etc/prometheus/*, /prometheus.
            entrypoint=("/bin/prometheus",),
            cmd=("--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"),
            user=str(nobody),
            workdir="/prometheus",
            ports=("9090/tcp",),
        ),
        ImageSpec(
            alias="mockmetrics",
            name=f"hpa-kit/mockmetrics:{kit}",
            build="dockerfile",
            dockerfile="mockmetrics/Dockerfile",
        ),
        ImageSpec(
            alias="adapter",
            name=f"hpa-kit/adapter:{kit}",
            build="dockerfile",
            dockerfile="adapter/Dockerfile",
        ),
        ImageSpec(
            alias="locust",
            name=f"hpa-kit/locust:{kit}",
            build="dockerfile",
            dockerfile="images/locust/Dockerfile",
            lazy=True,
        ),
    ]


def select_specs(specs: Sequence[ImageSpec], names: Iterable[str] | None) -> list[ImageSpec]:
    """Pick specs by alias, name or normalized name; ``None`` means every non-lazy spec."""
    if names is None:
        return [s for s in specs if not s.lazy]
    out: list[ImageSpec] = []
    for n in names:
        try:
            ref = normalize_ref(n)
        except ImageError:
            ref = ""
        match = [s for s in specs if n in (s.alias, s.name) or s.ref == ref]
        if not match:
            known = ", ".join(s.alias for s in specs)
            raise ImageError(f"unknown image {n!r}; known: {known} (or their full names)")
        out.extend(s for s in match if s not in out)
    return out


def unbuildable(names: Iterable[str], layout: Layout | None = None) -> list[str]:
    """The ``names`` no spec here produces (an install referencing them cannot run offline)."""
    specs = default_specs(layout)
    out = []
    for n in names:
        try:
            select_specs(specs, [n])
        except ImageError:
            out.append(n)
    return out


# --------------------------------------------------------------------------------------------
# Input hashing
# --------------------------------------------------------------------------------------------

#: Never part of a build context's hash (nor, with a sane .dockerignore, of the context).
_ALWAYS_EXCLUDED = (".git", ".venv", "venv", "__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache",
                    ".ruff_cache", ".tox", "node_modules", "*.egg-info")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dockerignore(context: Path) -> list[str]:
    for name in (".containerignore", ".dockerignore"):
        p = context / name
        if p.is_file():
            return [ln.strip().rstrip("/") for ln in p.read_text().splitlines()
                    if ln.strip() and not ln.startswith("#")]
    return []


def _excluded(rel: str, patterns: Sequence[str]) -> bool:
    parts = rel.split("/")
    if any(fnmatch(p, pat) for p in parts for pat in _ALWAYS_EXCLUDED):
        return True
    ignored = False
    for pat in patterns:  # last match wins; "!" re-includes, as in .dockerignore
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        pat = pat.lstrip("/")
        if fnmatch(rel, pat) or any(fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts))):
            ignored = not neg
    return ignored


def _walk(root: Path, context: Path, patterns: Sequence[str]) -> Iterator[Path]:
    if root.is_file() or root.is_symlink():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames
                             if not _excluded((d / n).relative_to(context).as_posix(), patterns))
        for n in sorted(filenames):
            p = d / n
            if not _excluded(p.relative_to(context).as_posix(), patterns):
                yield p


def dockerfile_sources(dockerfile: Path) -> list[str]:
    """Context-relative sources of the ``COPY``/``ADD`` instructions (``--from=`` stages skipped)."""
    text = re.sub(r"\\\r?\n", " ", dockerfile.read_text())
    out: list[str] = []
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if len(words) < 2 or words[0].upper() not in ("COPY", "ADD"):
            continue
        rest = words[1].strip()
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        if any(a.startswith("--from") for a in args):
            continue
        args = [a for a in args if not a.startswith("--")]
        out.extend(args[:-1])
    return out


def context_files(spec: ImageSpec, layout: Layout) -> list[Path]:
    """The files a Dockerfile build reads from its context: the Dockerfile and its COPY/ADD sources."""
    context = (layout.repo / spec.context).resolve()
    dockerfile = layout.repo / spec.dockerfile
    patterns = _dockerignore(context)
    files: dict[Path, None] = {dockerfile: None}
    for src in dockerfile_sources(dockerfile):
        if src.startswith(("http://", "https://")):
            continue
        matches = sorted(context.glob(src.lstrip("/"))) if any(c in src for c in "*?[") else [context / src]
        for m in matches:
            if not m.exists():
                raise ImageError(f"{spec.dockerfile}: COPY source {src!r} does not exist in {context}")
            for p in _walk(m, context, patterns):
                files[p] = None
    return list(files)


def input_hash(spec: ImageSpec, layout: Layout, *, base_id: str = "") -> str:
    """Hash of everything that decides the image's content; unchanged hash = no rebuild.

    ``files`` images: the spec (paths, modes, config) and each source file's bytes; ``dockerfile``
    images: the Dockerfile and the context files it copies. Both include the base image's ID, so a
    rebuilt base rebuilds everything on it.
    """
    h = hashlib.sha256()

    def add(tag: str, value: str | bytes) -> None:
        data = value.encode() if isinstance(value, str) else value
        h.update(f"{tag}:{len(data)}:".encode())
        h.update(data)

    add("recipe", RECIPE_VERSION)
    add("spec", json.dumps(_spec_config(spec), sort_keys=True))
    add("base", base_id)
    if spec.build == "files":
        for f in spec.files:
            add("entry", json.dumps([f.dest, f.kind, f.source, f.mode, f.uid, f.gid]))
            if f.content is not None:
                add("content", f.content)
            elif f.kind == "file":
                add("file", _file_digest(_require(layout, f.source)))
            elif f.kind == "tree":
                root = _require(layout, f.source)
                for p in _walk(root, root, ()):
                    add("tree", f"{p.relative_to(root).as_posix()}:{_file_digest(p)}")
    else:
        root = layout.repo
        for p in context_files(spec, layout):
            rel = p.resolve().relative_to(root.resolve()).as_posix()
            add("ctx", f"{rel}:{_file_digest(p)}")
    return h.hexdigest()


def _spec_config(spec: ImageSpec) -> dict[str, object]:
    return {"name": spec.ref, "build": spec.build, "base": spec.base, "entrypoint": spec.entrypoint,
            "cmd": spec.cmd, "user": spec.user, "workdir": spec.workdir, "env": spec.env,
            "ports": spec.ports, "labels": spec.labels, "dockerfile": spec.dockerfile,
            "context": spec.context}


def _require(layout: Layout, source: str) -> Path:
    p = layout.resolve(source)
    if not p.exists():
        raise ImageError(f"missing input {source} (expected at {p}): {layout.remedy(source)}")
    return p


# --------------------------------------------------------------------------------------------
# Subprocess edge
# --------------------------------------------------------------------------------------------

Runner = Callable[..., subprocess.CompletedProcess[str]]


def _run(argv: Sequence[str], *, timeout: float = SHORT_TIMEOUT_S, check: bool = True,
         log: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise ``ImageError`` quoting the command and its output (or log)."""
    tool = argv[0]
    if shutil.which(tool) is None:
        raise ImageError(f"'{tool}' not found: apt-get install {HOST_PACKAGES.get(tool, tool)} "
                         "(scripts/bootstrap.sh installs it)")
    try:
        if log is not None:
            with log.open("w") as fh:
                proc = subprocess.run(list(argv), stdout=fh, stderr=subprocess.STDOUT, text=True,
                                      timeout=timeout, env=env)
            proc.stdout = proc.stderr = ""
        else:
            proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        where = f"; see {log}" if log else ""
        raise ImageError(f"timed out after {timeout:.0f}s: {shlex.join(argv)}{where}") from e
    if check and proc.returncode != 0:
        if log is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise ImageError(f"{shlex.join(argv)} failed (exit {proc.returncode}); full log: {log}\n{tail}")
        out = (proc.stderr or proc.stdout).strip()
        raise ImageError(f"{shlex.join(argv)} failed (exit {proc.returncode}): {out[-2000:]}")
    return proc


def buildah_global_args() -> list[str]:
    """Extra global buildah flags: ``--storage-driver vfs`` when ``HPA_KIT_BUILDAH_DRIVER=vfs``.

    Overlay works as root on these VMs (measured); vfs is the escape hatch for kernels without
    overlayfs, at the cost of full copies per layer. Switching drivers starts from an empty store.
    """
    driver = os.environ.get("HPA_KIT_BUILDAH_DRIVER", "")
    return ["--storage-driver", driver] if driver else []


def check_buildah() -> None:
    """Fail early, with the fix, when buildah's store is unusable (e.g. no overlayfs in the kernel)."""
    proc = _buildah("info", check=False)
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip()[-1000:]
        hint = ("; overlay is unusable here: set HPA_KIT_BUILDAH_DRIVER=vfs (slower, more disk)"
                if "overlay" in err.lower() else "")
        raise ImageError(f"buildah cannot open its store{hint}: {err}")


def _buildah(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return _run(["buildah", *buildah_global_args(), *args], **kw)  # type: ignore[arg-type]


def buildah_image_info(name: str) -> dict[str, Any] | None:
    """``buildah inspect --type image`` as JSON, or ``None`` when the image is not in the store."""
    proc = _buildah("inspect", "--type", "image", name, check=False)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)


def _image_id_and_label(name: str) -> tuple[str, str]:
    info = buildah_image_info(name)
    if not info:
        return "", ""
    labels = ((info.get("OCIv1") or {}).get("config") or {}).get("Labels") or {}
    return str(info.get("FromImageID", "")), str(labels.get(INPUTS_LABEL, ""))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize builds across processes (two pytest sessions warming the same cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Base image
# --------------------------------------------------------------------------------------------

#: Trimmed after debootstrap, and excluded from later ``apt-get install``s (as Debian's slim images).
_DPKG_EXCLUDES = """\
# hpa-kit base: keep images small, like the -slim images
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""


def ensure_base_rootfs(layout: Layout | None = None, *, progress: Progress = print) -> Path:
    """The debootstrapped Debian root-fs as a tarball (ownership kept), built once and cached.

    ``debootstrap --variant=minbase --include=<BASE_PACKAGES> bookworm`` into a temporary directory,
    trimmed (apt caches and lists, docs, man pages, locales), then tarred with numeric owners and an
    empty ``/dev`` (the runtime provides it). A stamp records the package list, so changing
    ``BASE_PACKAGES`` rebuilds it. Set ``HPA_KIT_DEBIAN_MIRROR`` to use another mirror.
    """
    layout = layout or Layout()
    d = layout.base_dir
    tar_path, stamp_path, log = d / "rootfs.tar", d / "rootfs.json", d / "debootstrap.log"
    want = {"suite": BASE_SUITE, "variant": "minbase", "packages": sorted(BASE_PACKAGES),
            "recipe": RECIPE_VERSION}
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        stamp = json.loads(stamp_path.read_text())
        if tar_path.is_file() and all(stamp.get(k) == v for k, v in want.items()):
            return tar_path
    if os.geteuid() != 0:
        raise ImageError("debootstrap needs root: run the image build as root (sudo scripts/build-images.sh)")
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "rootfs.tmp"
    if tmp.exists():
        _rmtree(tmp)
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", BASE_SUITE, str(tmp)]
    if mirror := os.environ.get("HPA_KIT_DEBIAN_MIRROR"):
        argv.append(mirror)
    progress(f"base: debootstrap {BASE_SUITE} (+{','.join(BASE_PACKAGES)}); ~1-2 min, log {log}")
    t0 = time.monotonic()
    try:
        _run(argv, timeout=DEBOOTSTRAP_TIMEOUT_S, log=log)
    except ImageError as e:
        raise ImageError(f"debootstrap failed; see {log} (Debian mirror reachable? apt-get update works?)\n"
                         f"{e}") from e
    boot_s = time.monotonic() - t0
    _trim_rootfs(tmp)
    progress(f"base: debootstrap done in {boot_s:.0f}s; packing {tar_path.name}")
    part = tar_path.with_suffix(".tar.part")
    _run(["tar", "--numeric-owner", "--xattrs", "-C", str(tmp), "--exclude=./dev/*", "--exclude=./proc/*",
          "--exclude=./sys/*", "-cf", str(part), "."], timeout=600)
    part.replace(tar_path)
    _rmtree(tmp)
    stamp_path.write_text(json.dumps({**want, "seconds": round(boot_s, 1), "sha256": _file_digest(tar_path),
                                      "size": tar_path.stat().st_size, "built_at": time.time()}, indent=2))
    progress(f"base: root-fs {tar_path} ({tar_path.stat().st_size / 1e6:.0f} MB)")
    return tar_path


def _rmtree(path: Path) -> None:
    # debootstrap leaves read-only dirs and device nodes; plain rm copes with both.
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def _trim_rootfs(root: Path) -> None:
    for sub in ("var/cache/apt", "var/lib/apt/lists", "usr/share/man", "usr/share/info", "usr/share/locale"):
        p = root / sub
        if p.is_dir():
            for child in p.iterdir():
                if child.is_dir() and not child.is_symlink():
                    if sub == "var/lib/apt/lists" and child.name == "partial":
                        continue
                    shutil.rmtree(child)
                elif child.name != "locale.alias":
                    child.unlink()
    docs = root / "usr/share/doc"
    if docs.is_dir():
        for pkg in docs.iterdir():
            if pkg.is_dir() and not pkg.is_symlink():
                for item in pkg.iterdir():
                    if item.name != "copyright":
                        if item.is_dir() and not item.is_symlink():
                            shutil.rmtree(item)
                        else:
                            item.unlink()
    cfg = root / "etc/dpkg/dpkg.cfg.d"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "hpa-kit-slim").write_text(_DPKG_EXCLUDES)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def base_config_args() -> list[str]:
    """``buildah config`` flags of the base: PEP 668 opt-out so standard ``pip install`` works."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "PIP_BREAK_SYSTEM_PACKAGES": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_ROOT_USER_ACTION": "ignore",
    }
    args = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
    return [*args, "--cmd", '["python3"]', "--os", "linux"]


def ensure_base_image(layout: Layout | None = None, *, progress: Progress = print) -> str:
    """``localhost/kit-base:bookworm`` in buildah's store (built from the cached root-fs if missing or
    stale); returns its image ID, which is part of every dependent image's input hash."""
    layout = layout or Layout()
    tar_path = ensure_base_rootfs(layout, progress=progress)
    stamp = json.loads((layout.base_dir / "rootfs.json").read_text())
    recipe = json.dumps([stamp["sha256"], base_config_args(), RECIPE_VERSION])
    want = hashlib.sha256(recipe.encode()).hexdigest()
    image_id, label = _image_id_and_label(BASE_IMAGE)
    if image_id and label == want:
        return image_id
    progress(f"base: committing {BASE_IMAGE} from {tar_path.name}")
    t0 = time.monotonic()
    ctr = _buildah("from", "--pull=never", "scratch").stdout.strip()
    try:
        _buildah("add", ctr, str(tar_path), "/", timeout=BUILD_TIMEOUT_S)
        _buildah("config", *base_config_args(), "--label", f"{INPUTS_LABEL}={want}", ctr)
        _buildah("commit", "--rm", ctr, BASE_IMAGE, timeout=BUILD_TIMEOUT_S)
        ctr = ""
    finally:
        if ctr:
            _buildah("rm", ctr, check=False)
    image_id, _ = _image_id_and_label(BASE_IMAGE)
    progress(f"base: {BASE_IMAGE} ready in {time.monotonic() - t0:.0f}s")
    return image_id


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


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
    return [*args, "--os", "linux", "--arch", _go_arch()]


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


def _go_arch() -> str:
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
        _run(argv, timeout=BUILD_TIMEOUT_S, log=log)
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
    proc = subprocess.run([str(layout.repo / "scripts" / "build-addons.sh")], env=env, timeout=3600)
    if proc.returncode != 0:
        raise ImageError("scripts/build-addons.sh failed (output above); fix it and retry")


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
    with _locked(layout.images_dir / ".lock"):
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
    with _locked(layout.images_dir / ".lock"):
        proc = _buildah("rmi", "--prune", check=False, timeout=600)
    progress(f"prune: removed {len(proc.stdout.split())} untagged image(s) from buildah's store")


# --------------------------------------------------------------------------------------------
# containerd import
# --------------------------------------------------------------------------------------------

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"


def _ctr(address: str, namespace: str, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return _run(["ctr", "-a", address, "-n", namespace, *args], **kw)  # type: ignore[arg-type]


def containerd_images(*, address: str = DEFAULT_ADDRESS, namespace: str = "k8s.io") -> dict[str, str]:
    """``{ref: manifest digest}`` of the images containerd has in ``namespace``."""
    proc = _ctr(address, namespace, "images", "ls")
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3 and cols[2].startswith("sha256:"):
            out[cols[0]] = cols[2]
    return out


def images_present(archives: Iterable[Path], *, address: str = DEFAULT_ADDRESS,
                   namespace: str = "k8s.io") -> set[Path]:
    """The archives whose name is already in containerd *with the same digest*."""
    have = containerd_images(address=address, namespace=namespace)
    present: set[Path] = set()
    for a in archives:
        info = archive_info(a)
        if have.get(info.name) == info.digest:
            present.add(a)
    return present


def import_argv(archive: Path, *, address: str, namespace: str, snapshotter: str | None = None) -> list[str]:
    """``ctr images import`` for one archive. No ``--base-name``: the archive's ref name is a full
    reference, which ctr (1.6) keeps verbatim; no ``--all-platforms``: one single-platform manifest."""
    argv = ["ctr", "-a", address, "-n", namespace, "images", "import"]
    if snapshotter:
        argv += ["--snapshotter", snapshotter]
    return [*argv, str(archive)]


def import_images(archives: Iterable[Path], *, address: str = DEFAULT_ADDRESS, namespace: str = "k8s.io",
                  snapshotter: str | None = None, progress: Progress = print) -> dict[str, str]:
    """Import OCI archives into containerd, skipping the ones already present by digest.

    Returns ``{name: "present" | "imported"}``. After importing, checks that containerd holds the
    archive's exact name and digest, so a wrongly named image fails here and not as ErrImagePull.
    """
    archives = list(archives)
    if not Path(address).exists():
        raise ImageError(f"containerd socket {address} not found: start containerd (the local provider "
                         "does) or pass --address")
    present = images_present(archives, address=address, namespace=namespace)
    result: dict[str, str] = {}
    for a in archives:
        info = archive_info(a)
        if a in present:
            progress(f"import: {info.name} already present ({info.digest[:19]})")
            result[info.name] = "present"
            continue
        t0 = time.monotonic()
        _run(import_argv(a, address=address, namespace=namespace, snapshotter=snapshotter), timeout=600)
        have = containerd_images(address=address, namespace=namespace)
        if have.get(info.name) != info.digest:
            raise ImageError(f"imported {a} but containerd has {info.name!r} -> {have.get(info.name)!r}, "
                             f"expected {info.digest}; check `ctr -n {namespace} images ls`")
        progress(f"import: {info.name} in {time.monotonic() - t0:.1f}s")
        result[info.name] = "imported"
    return result


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _timed_progress() -> Progress:
    t0 = time.monotonic()

    def progress(msg: str) -> None:
        print(f"[images +{time.monotonic() - t0:6.1f}s] {msg}", flush=True)

    return progress


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.images", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build images (default: all non-lazy) into the cache")
    b.add_argument("names", nargs="*", help="aliases or image names (see `list`)")
    b.add_argument("--force", action="store_true", help="rebuild even if the inputs are unchanged")
    sub.add_parser("list", help="show every image, its archive and whether it is up to date")
    sub.add_parser("prune", help="drop untagged images (old builds, layer cache) from buildah's store")
    i = sub.add_parser("import", help="build if needed, then import into containerd")
    i.add_argument("names", nargs="*")
    i.add_argument("--address", default=DEFAULT_ADDRESS)
    i.add_argument("--namespace", default="k8s.io")
    i.add_argument("--snapshotter", default=None)
    args = parser.parse_args(argv)
    layout = Layout()
    progress = _timed_progress()
    try:
        if args.cmd == "list":
            for spec in default_specs(layout):
                status = image_status(spec, layout)
                archive = layout.archive(spec)
                size = f"{archive.stat().st_size / 1e6:7.1f} MB" if archive.is_file() else ""
                lazy = " (lazy)" if spec.lazy else ""
                print(f"{spec.alias:<20} {spec.name:<62} {status}{lazy} {size}")
                print(f"{'':<20} {layout.archive(spec)}")
            return 0
        if args.cmd == "prune":
            prune(layout, progress=progress)
            return 0
        force = getattr(args, "force", False)
        built = ensure_all(args.names or None, layout=layout, progress=progress, force=force)
        if args.cmd == "import":
            import_images(built.values(), address=args.address, namespace=args.namespace,
                          snapshotter=args.snapshotter, progress=progress)
        for name, path in built.items():
            print(f"{name}\t{path}")
        return 0
    except ImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
