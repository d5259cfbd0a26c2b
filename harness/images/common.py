"""What every part of the image build shares: the repository root, the base image's name and
packages, labels, timeouts, the host packages the build needs, and ``ImageError``."""

from __future__ import annotations

from collections.abc import Callable

from harness import paths
from harness.errors import HarnessError

#: The kit's files (Dockerfiles, build contexts, scripts): harness.paths decides where they are.
REPO_ROOT = paths.kit_root()

#: The Debian base every Python image (and Prometheus) is built on; never pushed anywhere.
BASE_IMAGE = "localhost/kit-base:bookworm"
BASE_SUITE = "bookworm"
#: python-is-python3 gives ``python`` like the python:3.x-slim images the Dockerfiles default to.
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
#: The host's trust store; pip inside ``buildah bud`` only reaches PyPI with it (DESIGN §3).
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
#: Label carrying the input hash on images we build, so a reused image can be checked.
INPUTS_LABEL = "io.hpa-kit.inputs"
#: Fixed creation time of the FROM-scratch images: same inputs, same digest.
SCRATCH_TIMESTAMP = 0
#: Bumped when the way images are assembled changes, to invalidate every cached archive.
RECIPE_VERSION = "1"

#: Subprocess timeouts (seconds). Debootstrap measured 42-100 s; pip-heavy builds a few minutes.
DEBOOTSTRAP_TIMEOUT_S = 1800
BUILD_TIMEOUT_S = 1800
SHORT_TIMEOUT_S = 120

Progress = Callable[[str], None]

#: Every host input an image build reads (``host:`` file sources and the tools run), and the Debian
#: package that provides it. ``scripts/bootstrap.sh`` must install each of these packages; a unit test
#: holds it to that, so a fresh machine never meets "missing input host:..." halfway through a run.
HOST_PACKAGES: dict[str, str] = {
    "/bin/busybox": "busybox-static",
    "buildah": "buildah",
    "debootstrap": "debootstrap",
    "ctr": "containerd",
    "skopeo": "skopeo",  # images push: archives to a registry
    "tar": "tar",
}


class ImageError(HarnessError):
    """An image could not be built or imported; the message says what to do next."""
