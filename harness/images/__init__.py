"""Offline container images for the local cluster: specs, cached builds, containerd import.

Why this exists: the local provider runs real containers but this machine cannot pull images, so
every image a manifest names is built here, under *exactly* the name the manifest uses (the same
manifests then serve kind and the local cluster, with ``imagePullPolicy: IfNotPresent``):

* static Go programs (pause, CoreDNS, prometheus-operator, config-reloader, Prometheus built from its
  Go module) go into ``FROM scratch`` images assembled from a layer tarball written here (so
  ownership and modes are exact);
* the kit's own Python components are built from their Dockerfiles with
  ``--build-arg BASE_IMAGE=localhost/kit-base:bookworm``; that base comes from ``debootstrap``
  (cached as a tarball) and sets ``PIP_BREAK_SYSTEM_PACKAGES=1`` so a standard ``pip install``
  in those Dockerfiles passes PEP 668 on Debian's Python.

Every image ends as an OCI archive ``$CACHE/images/<safe-name>.tar`` whose index carries the fully
normalized name (``docker.io/hpa-kit/mockmetrics:0.1.0``): ``ctr images import`` uses a full
``org.opencontainers.image.ref.name`` verbatim, and the CRI plugin looks images up by the normalized
name. Beside each archive, ``<safe-name>.json`` records the hash of everything that went in; an
image is rebuilt only when that hash changes, and imported only when containerd lacks its digest.

For a cluster that pulls (``existing``), ``push_images`` copies the archives to a registry as
``REGISTRY/<path>:<tag>`` (``registry_ref``, the mapping ``harness.manifests.render(registry=)`` rewrites
the install to) and ``export_images`` writes them out for an air-gapped one.

Also a CLI: ``python -m harness.images build|list|import|push|export`` (``hpa-kit images ...``,
``scripts/build-images.sh``).
"""

from __future__ import annotations

from harness.images.base import (
    base_config_args,
    ensure_base_image,
    ensure_base_rootfs,
    remove_tree,
    trim_rootfs,
)
from harness.images.build import (
    ArchiveInfo,
    archive_info,
    bud_args,
    build_image,
    ensure_addons,
    ensure_all,
    files_config_args,
    go_arch,
    image_status,
    layer_tar,
    prune,
    push_args,
)
from harness.images.cli import main, timed_progress
from harness.images.common import (
    BASE_IMAGE,
    BASE_PACKAGES,
    BASE_SUITE,
    BUILD_TIMEOUT_S,
    DEBOOTSTRAP_TIMEOUT_S,
    HOST_CA_BUNDLE,
    HOST_PACKAGES,
    INPUTS_LABEL,
    RECIPE_VERSION,
    REPO_ROOT,
    SCRATCH_TIMESTAMP,
    SHORT_TIMEOUT_S,
    ImageError,
    Progress,
)
from harness.images.containerd import (
    DEFAULT_ADDRESS,
    containerd_images,
    images_present,
    import_argv,
    import_images,
)
from harness.images.hashing import context_files, dockerfile_sources, file_digest, input_hash
from harness.images.names import check_registry, normalize_ref, registry_ref, safe_name
from harness.images.push import (
    PUSH_TIMEOUT_S,
    Pushed,
    explain_push_failure,
    export_images,
    push_images,
    skopeo_copy_argv,
    stack_specs,
)
from harness.images.specs import (
    FileEntry,
    ImageSpec,
    Layout,
    busybox_entries,
    default_cache_dir,
    default_specs,
    kit_version,
    read_versions,
    select_specs,
    unbuildable,
)
from harness.images.tools import Runner, buildah_global_args, buildah_image_info, check_buildah, locked, run

__all__ = [
    "BASE_IMAGE",
    "BASE_PACKAGES",
    "BASE_SUITE",
    "BUILD_TIMEOUT_S",
    "DEBOOTSTRAP_TIMEOUT_S",
    "DEFAULT_ADDRESS",
    "HOST_CA_BUNDLE",
    "HOST_PACKAGES",
    "INPUTS_LABEL",
    "PUSH_TIMEOUT_S",
    "RECIPE_VERSION",
    "REPO_ROOT",
    "SCRATCH_TIMESTAMP",
    "SHORT_TIMEOUT_S",
    "ArchiveInfo",
    "FileEntry",
    "ImageError",
    "ImageSpec",
    "Layout",
    "Progress",
    "Pushed",
    "Runner",
    "archive_info",
    "base_config_args",
    "bud_args",
    "build_image",
    "buildah_global_args",
    "buildah_image_info",
    "busybox_entries",
    "check_buildah",
    "check_registry",
    "containerd_images",
    "context_files",
    "default_cache_dir",
    "default_specs",
    "dockerfile_sources",
    "ensure_addons",
    "ensure_all",
    "ensure_base_image",
    "ensure_base_rootfs",
    "explain_push_failure",
    "export_images",
    "file_digest",
    "files_config_args",
    "go_arch",
    "image_status",
    "images_present",
    "import_argv",
    "import_images",
    "input_hash",
    "kit_version",
    "layer_tar",
    "locked",
    "main",
    "normalize_ref",
    "prune",
    "push_args",
    "push_images",
    "read_versions",
    "registry_ref",
    "remove_tree",
    "run",
    "safe_name",
    "select_specs",
    "skopeo_copy_argv",
    "stack_specs",
    "timed_progress",
    "trim_rootfs",
    "unbuildable",
]
