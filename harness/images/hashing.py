"""Input hashing: everything that decides an image's content (spec, source files, the Dockerfile
and the context files it copies, the base image's ID); an unchanged hash means no rebuild."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Iterator, Sequence
from fnmatch import fnmatch
from pathlib import Path

from harness.images.common import RECIPE_VERSION, ImageError
from harness.images.specs import ImageSpec, Layout

#: Never part of a build context's hash (nor, with a sane .dockerignore, of the context).
_ALWAYS_EXCLUDED = (".git", ".venv", "venv", "__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache",
                    ".ruff_cache", ".tox", "node_modules", "*.egg-info")


def file_digest(path: Path) -> str:
    """The sha256 hex digest of a file's bytes (read in 1 MiB chunks)."""
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
        if not _excluded(root.relative_to(context).as_posix(), patterns):  # as the builder: ignored files too
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
            rel = m.relative_to(context).as_posix()
            if m.is_file() and _excluded(rel, patterns):
                raise ImageError(
                    f"{spec.dockerfile}: COPY source {src!r} is excluded from the build context by "
                    f"{context}/.dockerignore, so the build would fail with 'no such file': add a line "
                    f"'!{rel}' (or its folder) there"
                )
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
                add("file", file_digest(_require(layout, f.source)))
            elif f.kind == "tree":
                root = _require(layout, f.source)
                for p in _walk(root, root, ()):
                    add("tree", f"{p.relative_to(root).as_posix()}:{file_digest(p)}")
    else:
        root = layout.repo
        for p in context_files(spec, layout):
            rel = p.resolve().relative_to(root.resolve()).as_posix()
            add("ctx", f"{rel}:{file_digest(p)}")
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
