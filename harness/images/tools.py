"""The subprocess edge: run a host tool (buildah, ctr, debootstrap, tar) through
:func:`harness.procs.run`, with a timeout and an ``ImageError`` that quotes its output; buildah's
store; the cross-process build lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from harness import procs
from harness.images.common import HOST_PACKAGES, INPUTS_LABEL, SHORT_TIMEOUT_S, ImageError

Runner = Callable[..., subprocess.CompletedProcess[str]]


def run(argv: Sequence[str], *, timeout: float = SHORT_TIMEOUT_S, check: bool = True,
        log: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """:func:`harness.procs.run` for the image tools: failures raise ``ImageError`` quoting the
    command and its stderr (or ``log``, which receives the output when given)."""
    tool = argv[0]
    missing = f"apt-get install {HOST_PACKAGES.get(tool, tool)} (scripts/bootstrap.sh installs it)"
    if log is None:
        return procs.run(argv, timeout=timeout, check=check, env=env, error=ImageError, missing=missing)
    with log.open("w") as fh:
        return procs.run(argv, timeout=timeout, check=check, env=env, stdout=fh, lines=15,
                         error=ImageError, missing=missing)  # fmt: skip


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
    return run(["buildah", *buildah_global_args(), *args], **kw)  # type: ignore[arg-type]


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
def locked(path: Path) -> Iterator[None]:
    """Serialize builds across processes (two pytest sessions warming the same cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
