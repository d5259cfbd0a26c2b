"""Where the local cluster's upstream binaries are, and building them when they are missing.

The build itself is ``scripts/build-binaries.sh`` (a Go tools module per pinned version, cached
outside the repo); this module only finds its output directory and runs it with progress.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from harness import paths, procs
from harness.cluster.base import ClusterError
from harness.progress import ProgressFn
from harness.waits import WaitTimeout, wait_for

__all__ = [
    "CONTROL_PLANE",
    "NODE",
    "bin_dir",
    "ensure_binaries",
    "ensure_kube_router",
    "kube_router_path",
    "missing",
    "repo_root",
    "versions",
]

CONTROL_PLANE = ("etcd", "kube-apiserver")
NODE = ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "coredns")


def repo_root() -> Path:
    return paths.kit_root()


def _script() -> Path:
    return repo_root() / "scripts" / "build-binaries.sh"


def versions() -> dict[str, str]:
    """The pinned versions from ``scripts/versions.env``."""
    out: dict[str, str] = {}
    try:
        for line in (repo_root() / "scripts" / "versions.env").read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip().strip('"')
    except OSError:
        pass
    return out


def bin_dir() -> Path:
    """``$HPA_KIT_BIN_DIR`` or the directory the build script reports (keyed by version)."""
    env = os.environ.get("HPA_KIT_BIN_DIR")
    if env:
        return Path(env)
    v = versions().get("K8S_VERSION", "v1.35.4")
    cache = os.environ.get("HPA_KIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"), "hpa-kit"
    )
    return Path(cache) / "bin" / f"k8s-{v}"


def _cache() -> Path:
    return Path(
        os.environ.get("HPA_KIT_CACHE")
        or os.path.join(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"), "hpa-kit")
    )


def kube_router_path() -> Path:
    """The NetworkPolicy enforcer ``scripts/build-kube-router.sh`` builds (keyed by version)."""
    v = versions().get("KUBE_ROUTER_VERSION", "v2.1.0")
    return _cache() / "bin" / f"kube-router-{v}" / "kube-router"


def ensure_kube_router(*, build: bool, progress: ProgressFn) -> Path:
    """kube-router's path, built with ``scripts/build-kube-router.sh`` first when missing and allowed."""
    path = kube_router_path()
    if os.access(path, os.X_OK):
        return path
    script = repo_root() / "scripts" / "build-kube-router.sh"
    if not build:
        raise ClusterError(
            f"missing {path}: run {script} (or unset HPA_KIT_BUILD=0 to let the harness build it)"
        )
    progress(f"building kube-router with {script} (cold: ~6 min)")
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":/usr/local/go/bin"
    procs.run(["bash", str(script)], env=env, timeout=3600, what=str(script), lines=40, error=ClusterError)
    if not os.access(path, os.X_OK):
        raise ClusterError(f"{script} succeeded but left no executable {path}: check the script")
    return path


def missing(names: tuple[str, ...] | list[str]) -> list[str]:
    d = bin_dir()
    return [n for n in names if not os.access(d / n, os.X_OK)]


def _build_running() -> bool:
    """True if another build of the same directory is running (its ``.tmp`` output is growing)."""
    d = bin_dir()
    return any(d.glob("*.tmp")) if d.is_dir() else False


def ensure_binaries(names: tuple[str, ...] | list[str], *, build: bool, progress: ProgressFn) -> Path:
    """Return the binaries directory, building what is missing when ``build`` is true."""
    need = missing(names)
    if not need:
        return bin_dir()
    if not build:
        raise ClusterError(
            f"missing binaries {', '.join(need)} in {bin_dir()}: run scripts/build-binaries.sh "
            "(or unset HPA_KIT_BUILD=0 to let the harness build them)"
        )
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        raise ClusterError("missing binaries and no Go toolchain to build them: install Go >= 1.25")
    if _build_running():
        progress(f"another build-binaries.sh is writing {bin_dir()}; waiting for {', '.join(need)}")
        def other_build_done() -> tuple[bool, str]:
            left = missing(names)
            return not (_build_running() and left), f"still missing {', '.join(left)}"

        with contextlib.suppress(WaitTimeout):  # it stalled: build them ourselves below
            wait_for("the other build", other_build_done, timeout=3600, interval=5, progress=None)
        if not missing(names):
            return bin_dir()
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":/usr/local/go/bin"
    progress(f"building {', '.join(need)} with scripts/build-binaries.sh (cold: ~10 min; log below)")
    t0 = time.monotonic()
    # Its progress lines are passed on as they come (procs.run only returns at the end): a Popen.
    proc = subprocess.Popen(
        ["bash", str(_script())], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        lines.append(line)
        if line.startswith("[build-binaries"):
            progress(line)
    rc = proc.wait()
    still = missing(names)
    if rc != 0 or still:
        tail = "\n".join(lines[-20:])
        raise ClusterError(
            f"scripts/build-binaries.sh failed (exit {rc}), still missing {', '.join(still) or '-'}:\n{tail}"
        )
    progress(f"binaries built in {time.monotonic() - t0:.0f}s")
    return bin_dir()
