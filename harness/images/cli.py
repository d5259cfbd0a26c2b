"""The kit's container images: specs, cached offline builds, containerd import, registry push, export.

``python -m harness.images build|list|prune|import|docker-build|push|export`` (also ``hpa-kit images
...``; ``scripts/build-images.sh``); the first paragraph above is the ``--help`` description."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.images.build import ensure_all, image_status, prune
from harness.images.common import ImageError, Progress
from harness.images.containerd import DEFAULT_ADDRESS, import_images
from harness.images.push import export_images, push_images
from harness.images.specs import Layout, default_specs


def timed_progress() -> Progress:
    """A progress callback printing each message with the seconds since it was made."""
    t0 = time.monotonic()

    def progress(msg: str) -> None:
        print(f"[images +{time.monotonic() - t0:6.1f}s] {msg}", flush=True)

    return progress


def main(argv: Sequence[str] | None = None, prog: str = "python -m harness.images") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build images (default: all non-lazy) into the cache")
    b.add_argument("names", nargs="*", help="aliases or image names (see `list`)")
    b.add_argument("--force", action="store_true", help="rebuild even if the inputs are unchanged")
    d = sub.add_parser("docker-build", help="build the Dockerfile images with `docker build` into Docker "
                       "(what users do; the kind provider loads them with `kind load docker-image`)")
    d.add_argument("names", nargs="*", help="Dockerfile images (default: adapter, mockmetrics, locust)")
    d.add_argument("--force", action="store_true", help="rebuild even if the inputs are unchanged")
    sub.add_parser("list", help="show every image, its archive and whether it is up to date")
    sub.add_parser("prune", help="drop untagged images (old builds, layer cache) from buildah's store")
    i = sub.add_parser("import", help="build if needed, then import into containerd")
    i.add_argument("names", nargs="*")
    i.add_argument("--address", default=DEFAULT_ADDRESS)
    i.add_argument("--namespace", default="k8s.io")
    i.add_argument("--snapshotter", default=None)
    p = sub.add_parser("push", help="build if needed, then push to a registry as REGISTRY/<path>:<tag> "
                       "(default: the images the reference install runs); prints reference@digest")
    p.add_argument("--registry", required=True,
                   help="HOST[:PORT][/PATH], e.g. registry.example.com:5000/hpa-kit")
    p.add_argument("--images", nargs="+", default=None, metavar="NAME",
                   help="aliases or image names (default: every image of the install, see `list`)")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--tls-verify", dest="tls_verify", action="store_true", default=True,
                     help="verify the registry's TLS certificate (default)")
    tls.add_argument("--insecure", dest="tls_verify", action="store_false",
                     help="plain HTTP or an unverified certificate (a registry on loopback)")
    p.add_argument("--authfile", type=Path, default=None,
                   help="credentials file of `skopeo login` (default: skopeo's own)")
    e = sub.add_parser("export", help="build if needed, then copy the OCI archives to DIR (air-gapped "
                       "clusters: `ctr -n k8s.io images import`, `skopeo copy oci-archive:...`)")
    e.add_argument("--out", type=Path, required=True, help="directory for the archives and images.txt")
    e.add_argument("--images", nargs="+", default=None, metavar="NAME",
                   help="aliases or image names (default: every image of the install)")
    args = parser.parse_args(argv)
    layout = Layout()
    progress = timed_progress()
    try:
        if args.cmd == "list":
            for spec in default_specs(layout):
                status = image_status(spec, layout)
                archive = layout.archive(spec)
                size = f"{archive.stat().st_size / 1e6:7.1f} MB" if archive.is_file() else ""
                lazy = " (lazy)" if spec.lazy else ""
                print(f"{spec.alias:<20} {spec.name:<62} {status}{lazy} {size}")
                print(f"{'':<20} {layout.archive(spec)}")
            return 0
        if args.cmd == "prune":
            prune(layout, progress=progress)
            return 0
        if args.cmd == "push":
            for pushed in push_images(args.images, registry=args.registry, tls_verify=args.tls_verify,
                                      authfile=args.authfile, layout=layout, progress=progress):
                print(f"{pushed.name}\t{pushed}")
            return 0
        if args.cmd == "export":
            for name, path in export_images(args.images, args.out, layout=layout, progress=progress).items():
                print(f"{name}\t{path}")
            return 0
        force = getattr(args, "force", False)
        if args.cmd == "docker-build":
            from harness.images.docker import ensure_docker_images

            names = args.names or [s.alias for s in default_specs(layout) if s.build == "dockerfile"]
            refs = ensure_docker_images(names, layout=layout, progress=progress, force=force)
            for name, ref in refs.items():
                print(f"{name}\t{ref}")
            return 0
        built = ensure_all(args.names or None, layout=layout, progress=progress, force=force)
        if args.cmd == "import":
            import_images(built.values(), address=args.address, namespace=args.namespace,
                          snapshotter=args.snapshotter, progress=progress)
        for name, path in built.items():
            print(f"{name}\t{path}")
        return 0
    except ImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
