"""Getting the kit's images to a cluster that pulls: ``push`` them to a registry, or ``export`` the
archives for an air-gapped one.

``push`` builds what is missing (``ensure_all``: the same input-hash cache), then ``skopeo copy``-s
each cached OCI archive to ``REGISTRY/<path>:<tag>`` (:func:`harness.images.registry_ref`, the same
mapping the install's image override uses). skopeo is what ``scripts/bootstrap.sh`` installs, and it
copies the archive's blobs and manifest as they are, so the pushed manifest digest is the archive's;
a copy that would change it fails instead (``--preserve-digests``). Each failure of the registry is
one line: unreachable, TLS, authentication, refused.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.images.build import archive_info, ensure_all
from harness.images.common import ImageError, Progress
from harness.images.names import check_registry, registry_ref
from harness.images.specs import ImageSpec, Layout, default_specs, select_specs
from harness.images.tools import run

#: A push of a few hundred MB to a registry on a slow link.
PUSH_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Pushed:
    """One image in the registry: the kit's name, where it went and its manifest digest."""

    name: str
    target: str
    digest: str

    def __str__(self) -> str:
        return f"{self.target}@{self.digest}"


def stack_specs(layout: Layout | None = None) -> list[ImageSpec]:
    """The images the reference install runs that the kit builds: every spec but the cluster's own
    (pause, CoreDNS: a cluster that pulls has its own). The default of ``push`` and ``export``."""
    return [s for s in default_specs(layout) if not s.cluster]


def _names(names: Iterable[str] | None, layout: Layout) -> list[str]:
    if names:
        return [s.alias for s in select_specs(default_specs(layout), names)]
    return [s.alias for s in stack_specs(layout)]


def skopeo_copy_argv(archive: Path, ref_name: str, target: str, *, tls_verify: bool,
                     digestfile: Path, authfile: Path | None = None) -> list[str]:
    """``skopeo copy`` of one OCI archive (picked by its ref name) to ``docker://target``."""
    argv = ["skopeo", "copy", "--preserve-digests", f"--dest-tls-verify={'true' if tls_verify else 'false'}",
            "--digestfile", str(digestfile)]
    if authfile is not None:
        argv += ["--dest-authfile", str(authfile)]
    return [*argv, f"oci-archive:{archive}:{ref_name}", f"docker://{target}"]


_UNREACHABLE = re.compile(r"connection refused|no such host|i/o timeout|network is unreachable|"
                          r"no route to host|connection reset|server misbehaving|dial tcp", re.I)
_AUTH = re.compile(r"unauthorized|authentication required|\b401\b|invalid username/password|"
                   r"requested access to the resource is denied|denied:|\b403\b|forbidden", re.I)


def _clip(text: str, n: int) -> str:
    """The last ``n`` characters of ``text``, starting at a word, with ``...`` when cut."""
    if len(text) <= n:
        return text
    tail = text[-n:]
    return "..." + tail[tail.find(" ") + 1:] if " " in tail else "..." + tail


def explain_push_failure(stderr: str, registry: str, target: str) -> str:
    """One line saying what went wrong with a push and what to do, from skopeo's stderr."""
    detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
    detail = re.sub(r'^time="[^"]*" level=\w+ msg="(.*)"$', r"\1", detail).replace('\\"', '"')
    host = registry.split("/", 1)[0]
    if "server gave HTTP response to HTTPS client" in stderr:
        return (f"registry {host} speaks plain HTTP: pass --insecure (and configure the cluster's "
                f"runtime to pull from it over HTTP)")
    if re.search(r"x509|certificate|tls:", stderr, re.I):
        return (f"TLS to registry {host} failed ({_clip(detail, 200)}): trust its CA on this host, or pass "
                "--insecure to skip verification")
    if _UNREACHABLE.search(stderr):
        return f"registry {host} unreachable ({_clip(detail, 200)}): check the address and that it runs"
    if _AUTH.search(stderr):
        return (f"registry {host} refused {target}: authentication failed or not allowed to push "
                f"({_clip(detail, 160)}); log in with `skopeo login {host}` (or pass --authfile)")
    return f"push of {target} failed: {_clip(detail, 300)}"


def _preflight(registry: str, target: str, *, tls_verify: bool, authfile: Path | None) -> None:
    """Fail before any build when the registry cannot be reached at all (address, plain HTTP, TLS):
    ``skopeo list-tags`` of the first target's repository. A refusal to list (credentials, a
    repository that does not exist yet) is left to the push itself."""
    argv = ["skopeo", "list-tags", f"--tls-verify={'true' if tls_verify else 'false'}"]
    if authfile is not None:
        argv += ["--authfile", str(authfile)]
    proc = run([*argv, f"docker://{target.rpartition(':')[0]}"], check=False)
    err = proc.stderr or ""
    if proc.returncode != 0 and (_UNREACHABLE.search(err) or re.search(r"x509|certificate|tls:|HTTP response "
                                                                       r"to HTTPS client", err, re.I)):
        raise ImageError(explain_push_failure(err, registry, target))


def push_images(names: Iterable[str] | None, *, registry: str, tls_verify: bool = True,
                authfile: Path | None = None, layout: Layout | None = None,
                progress: Progress = print, force_build: bool = False) -> list[Pushed]:
    """Build what is missing, then push each image to ``registry``; the pushed references and digests.

    ``names``: aliases or image names (None: :func:`stack_specs`). The reference is checked, and the
    registry reached, before anything is built (a cold build takes many minutes); the first registry
    failure stops the run with one line (:class:`ImageError`).
    """
    layout = layout or Layout()
    registry = check_registry(registry)
    wanted = _names(names, layout)
    targets = {s.name: registry_ref(s.name, registry) for s in select_specs(default_specs(layout), wanted)}
    if shutil.which("skopeo") is None:
        raise ImageError("'skopeo' not found: apt-get install skopeo (scripts/bootstrap.sh installs it)")
    if authfile is not None and not Path(authfile).is_file():
        raise ImageError(f"--authfile {authfile} does not exist "
                         f"(skopeo login --authfile {authfile} {registry})")
    _preflight(registry, next(iter(targets.values())), tls_verify=tls_verify, authfile=authfile)
    built = ensure_all(wanted, layout=layout, progress=progress, force=force_build)
    out: list[Pushed] = []
    with tempfile.TemporaryDirectory(prefix="hpa-kit-push-") as tmp:
        for name, archive in built.items():
            target = targets[name]
            info = archive_info(archive)
            digestfile = Path(tmp) / "digest"
            digestfile.unlink(missing_ok=True)
            t0 = time.monotonic()
            proc = run(skopeo_copy_argv(archive, info.name, target, tls_verify=tls_verify,
                                        digestfile=digestfile, authfile=authfile),
                       timeout=PUSH_TIMEOUT_S, check=False)
            if proc.returncode != 0:
                raise ImageError(explain_push_failure(proc.stderr or proc.stdout, registry, target))
            digest = digestfile.read_text().strip() if digestfile.is_file() else ""
            if digest != info.digest:
                raise ImageError(f"pushed {target} but skopeo reports digest {digest or 'none'}, the archive "
                                 f"{archive} has {info.digest}: the registry changed the manifest")
            progress(f"push: {target}@{digest} in {time.monotonic() - t0:.1f}s")
            out.append(Pushed(name=name, target=target, digest=digest))
    return out


def export_images(names: Iterable[str] | None, out_dir: Path, *, layout: Layout | None = None,
                  progress: Progress = print) -> dict[str, Path]:
    """Build what is missing and copy the OCI archives to ``out_dir`` (for an air-gapped cluster);
    ``{name: copied archive}``. ``out_dir/images.txt`` lists ``archive<TAB>name<TAB>digest``."""
    layout = layout or Layout()
    built = ensure_all(_names(names, layout), layout=layout, progress=progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    copied: dict[str, Path] = {}
    lines = []
    for name, archive in built.items():
        dest = out_dir / archive.name
        if not (dest.is_file() and dest.stat().st_size == archive.stat().st_size
                and archive_info(dest).digest == archive_info(archive).digest):
            part = dest.with_name(dest.name + ".part")
            shutil.copyfile(archive, part)
            part.replace(dest)
        info = archive_info(dest)
        lines.append(f"{dest.name}\t{info.name}\t{info.digest}")
        progress(f"export: {dest} ({info.name}, {info.digest[:19]})")
        copied[name] = dest
    (out_dir / "images.txt").write_text("\n".join(lines) + "\n")
    return copied

