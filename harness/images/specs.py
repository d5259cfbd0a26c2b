"""Where inputs come from and outputs go (``Layout``), and what each image is made of
(``ImageSpec``, ``default_specs``): every image the local cluster can use, named as the
manifests name them."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.images.common import BASE_IMAGE, BASE_SUITE, HOST_PACKAGES, REPO_ROOT, ImageError
from harness.images.names import normalize_ref, safe_name


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
        if scheme == "addon" and rest.startswith("cert-manager-"):
            return "run scripts/build-cert-manager.sh"
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
    #: The cluster's own image (the local provider's pause and CoreDNS), not one the reference install
    #: runs: ``images push``/``export`` leave it out unless named. Not an input of the image.
    cluster: bool = False

    @property
    def ref(self) -> str:
        return normalize_ref(self.name)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(f.source for f in self.files if f.kind in ("file", "tree") and f.content is None)

    @property
    def needs_base(self) -> bool:
        return self.build == "dockerfile" or self.base == BASE_IMAGE


def busybox_entries() -> tuple[FileEntry, ...]:
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
    cm = v["CERT_MANAGER_VERSION"]
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
            cluster=True,
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
            cluster=True,
        ),
        ImageSpec(
            alias="prometheus-operator",
            name=f"quay.io/prometheus-operator/prometheus-operator:{po}",
            build="files",
            files=(FileEntry("/bin/operator", source=f"addon:{po_dir}/operator"), *busybox_entries()),
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
                *busybox_entries(),
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
                *busybox_entries(),
            ),
            # As upstream's image: the operator passes only args and mounts /etc/prometheus/*, /prometheus.
            entrypoint=("/bin/prometheus",),
            cmd=("--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"),
            user=str(nobody),
            workdir="/prometheus",
            ports=("9090/tcp",),
        ),
        # cert-manager for overlays/cert-manager (scripts/build-cert-manager.sh: the kit's own mains
        # against the pinned module, so named hpa-kit/..., not upstream's image names).
        *(
            ImageSpec(
                alias=f"cert-manager-{part}",
                name=f"hpa-kit/cert-manager-{part}:{cm}",
                build="files",
                files=(FileEntry(f"/bin/{part}", source=f"addon:cert-manager-{cm}/{part}"),),
                entrypoint=(f"/bin/{part}",),
                user=str(nobody),
                lazy=True,
            )
            for part in ("controller", "cainjector")
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
