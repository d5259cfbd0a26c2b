"""containerd import: ``ctr images import`` of the OCI archives, skipping the ones containerd
already has by digest, and checking the name and digest it ends up with."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from harness.images.build import archive_info
from harness.images.common import ImageError, Progress
from harness.images.tools import run

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"


def _ctr(address: str, namespace: str, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return run(["ctr", "-a", address, "-n", namespace, *args], **kw)  # type: ignore[arg-type]


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
        run(import_argv(a, address=address, namespace=namespace, snapshotter=snapshotter), timeout=600)
        have = containerd_images(address=address, namespace=namespace)
        if have.get(info.name) != info.digest:
            raise ImageError(f"imported {a} but containerd has {info.name!r} -> {have.get(info.name)!r}, "
                             f"expected {info.digest}; check `ctr -n {namespace} images ls`")
        progress(f"import: {info.name} in {time.monotonic() - t0:.1f}s")
        result[info.name] = "imported"
    return result
