"""The base image ``localhost/kit-base:bookworm``: a debootstrapped Debian root-fs (cached as a
tarball) committed into buildah's store with the PEP 668 opt-out for ``pip install``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from harness import procs
from harness.images.common import (
    BASE_IMAGE,
    BASE_PACKAGES,
    BASE_SUITE,
    BUILD_TIMEOUT_S,
    DEBOOTSTRAP_TIMEOUT_S,
    INPUTS_LABEL,
    RECIPE_VERSION,
    ImageError,
    Progress,
)
from harness.images.hashing import file_digest
from harness.images.specs import Layout
from harness.images.tools import _buildah, _image_id_and_label, run

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
        remove_tree(tmp)
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", BASE_SUITE, str(tmp)]
    if mirror := os.environ.get("HPA_KIT_DEBIAN_MIRROR"):
        argv.append(mirror)
    progress(f"base: debootstrap {BASE_SUITE} (+{','.join(BASE_PACKAGES)}); ~1-2 min, log {log}")
    t0 = time.monotonic()
    try:
        run(argv, timeout=DEBOOTSTRAP_TIMEOUT_S, log=log)
    except ImageError as e:
        raise ImageError(f"debootstrap failed; see {log} (Debian mirror reachable? apt-get update works?)\n"
                         f"{e}") from e
    boot_s = time.monotonic() - t0
    trim_rootfs(tmp)
    progress(f"base: debootstrap done in {boot_s:.0f}s; packing {tar_path.name}")
    part = tar_path.with_suffix(".tar.part")
    run(["tar", "--numeric-owner", "--xattrs", "-C", str(tmp), "--exclude=./dev/*", "--exclude=./proc/*",
         "--exclude=./sys/*", "-cf", str(part), "."], timeout=600)
    part.replace(tar_path)
    remove_tree(tmp)
    stamp_path.write_text(json.dumps({**want, "seconds": round(boot_s, 1), "sha256": file_digest(tar_path),
                                      "size": tar_path.stat().st_size, "built_at": time.time()}, indent=2))
    progress(f"base: root-fs {tar_path} ({tar_path.stat().st_size / 1e6:.0f} MB)")
    return tar_path


def remove_tree(path: Path) -> None:
    """``rm -rf --one-file-system`` a root-fs: debootstrap leaves read-only dirs and device nodes;
    plain rm copes with both."""
    procs.run(["rm", "-rf", "--one-file-system", str(path)], timeout=600, error=ImageError)


def trim_rootfs(root: Path) -> None:
    """Drop apt caches and lists, docs (but copyrights), man pages and locales; keep them out of later
    ``apt-get install``s too (as Debian's slim images)."""
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
