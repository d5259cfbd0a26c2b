"""Where the kit's files are: one answer for every module that needs manifests, scripts or Dockerfiles.

The harness needs files that are not Python modules: ``manifests/`` (the install), ``scripts/``
(cfssl, Go builds, the operator's CRDs), the Dockerfiles and build contexts of its images, and
``pyproject.toml`` (the image tag). They are found, in this order:

1. ``$HPA_KIT_HOME``: an explicit kit directory (a checkout, or a copy of one);
2. the checkout this package runs from (``pip install -e .`` or ``PYTHONPATH``);
3. ``harness/kit/``: the same tree shipped as package data, so ``pip install hpa-kit`` works from
   any directory. In the repository ``harness/kit/`` holds symlinks to the top-level folders; a wheel
   holds copies.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from harness.errors import HarnessError

__all__ = ["KitError", "kit_root", "manifests_dir", "scripts_dir"]

_PACKAGE = Path(__file__).resolve().parent
#: What a directory needs to hold to serve as the kit's root.
_MARKERS = ("manifests/base/kustomization.yaml", "scripts/versions.env", "pyproject.toml")


class KitError(HarnessError):
    """The kit's files cannot be found; the message says which setting to fix."""


def _is_kit(path: Path) -> bool:
    return all((path / marker).is_file() for marker in _MARKERS)


@cache
def kit_root() -> Path:
    """The directory holding ``manifests/``, ``scripts/``, the Dockerfiles and ``pyproject.toml``."""
    home = os.environ.get("HPA_KIT_HOME")
    if home:
        path = Path(home).expanduser().resolve()
        if not _is_kit(path):
            raise KitError(
                f"HPA_KIT_HOME={home} is not an hpa-kit directory (it needs {', '.join(_MARKERS)}): "
                "point it at a checkout of the kit, or unset it to use the installed package's copy"
            )
        return path
    for candidate in (_PACKAGE.parent, _PACKAGE / "kit"):
        if _is_kit(candidate):
            return candidate.resolve() if candidate == _PACKAGE.parent else candidate
    raise KitError(
        f"the kit's manifests and scripts are neither beside {_PACKAGE} nor in {_PACKAGE / 'kit'}: "
        "reinstall hpa-kit (pip install 'hpa-kit[harness]') or set HPA_KIT_HOME to a checkout"
    )


def manifests_dir() -> Path:
    return kit_root() / "manifests"


def scripts_dir() -> Path:
    return kit_root() / "scripts"
