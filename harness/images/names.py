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


_REGISTRY_RE = re.compile(
    r"^(?P<host>[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?)(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)$"
)


def check_registry(registry: str) -> str:
    """``registry`` (``HOST[:PORT][/PATH]``, no scheme, no tag) as given, or ``ImageError`` saying why not.

    The host needs a dot, a port or to be ``localhost``: anything else is how an image reference spells
    a Docker Hub namespace, and the images would silently go there.
    """
    reg = registry.strip().rstrip("/")
    if not reg:
        raise ImageError("empty --registry: pass HOST[:PORT][/PATH], e.g. registry.example.com:5000/hpa-kit")
    if "://" in reg:
        raise ImageError(f"--registry {registry!r}: drop the scheme ({reg.split('://')[0]}://); plain "
                         "HTTP is --insecure, e.g. --registry 127.0.0.1:5000 --insecure")
    m = _REGISTRY_RE.match(reg)
    if not m or (m["port"] and not 0 < int(m["port"]) < 65536):
        raise ImageError(f"--registry {registry!r} is not HOST[:PORT][/PATH] (path lowercase "
                         "[a-z0-9._-], no tag or digest), e.g. registry.example.com:5000/hpa-kit")
    if not ("." in m["host"] or m["port"] or m["host"] == "localhost"):
        raise ImageError(f"--registry {registry!r}: {m['host']!r} would mean a Docker Hub namespace; give "
                         f"the registry host with a dot or a port ({m['host']}:5000) or localhost")
    return reg


def registry_ref(name: str, registry: str) -> str:
    """Where image ``name`` goes in ``registry``: the registry, then the name's path without its
    own registry domain (``library/`` of Docker Hub dropped), then its tag.

    ``hpa-kit/adapter:0.1.0`` -> ``REG/hpa-kit/adapter:0.1.0``; ``quay.io/prometheus/prometheus:v3.5.0``
    -> ``REG/prometheus/prometheus:v3.5.0``; ``registry.k8s.io/pause:3.10`` -> ``REG/pause:3.10``. The
    one mapping both ``images push`` and the install's image override use.
    """
    reg = check_registry(registry)
    full = normalize_ref(name)
    if "@" in full:
        raise ImageError(f"{name!r} is pinned by digest; only tagged images can be pushed to a registry")
    rest = full.split("/", 1)[1]
    if full.startswith("docker.io/library/"):
        rest = rest.removeprefix("library/")
    out = f"{reg}/{rest}"
    normalize_ref(out)  # the result must be a valid reference too (e.g. a path component too long)
    return out
