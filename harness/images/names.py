"""Image names: normalize a reference as containerd and the kubelet do; a file-safe stem for it."""

from __future__ import annotations

import re

from harness.images.common import ImageError

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
