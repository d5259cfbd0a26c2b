"""``hpa-kit`` / ``python -m harness``: bring test clusters up and down, look at them.

    hpa-kit up [--provider local|kind|existing] [--name N] [--hpa-sync-period 5s ...]
    hpa-kit status | down | delete | kubeconfig
    hpa-kit logs COMPONENT [-f] [-n 100]
    hpa-kit install [--overlay default] [--adapter-rules FILE] [--registry REG] [--kubeconfig K --context C]
    hpa-kit images build|list|import|push|export ...   (python -m harness.images; `hpa-kit images -h`)
    hpa-kit uninstall [--overlay default]

Errors are one line on stderr with a non-zero exit code (2: bad usage or unavailable provider,
1: the operation failed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.progress import Progress

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--provider",
        choices=["local", "kind", "existing", "auto"],
        default=os.environ.get("HPA_KIT_PROVIDER") or None,
        help="cluster provider (env HPA_KIT_PROVIDER; default: kind if Docker works, else local)",
    )
    common.add_argument(
        "--name", default=os.environ.get("HPA_KIT_CLUSTER", "hpa-kit"), help="cluster name (default hpa-kit)"
    )
    common.add_argument("--kubeconfig", default=None, help="kubeconfig for --provider existing")
    common.add_argument("--context", default=None, help="kubeconfig context for --provider existing")

    p = argparse.ArgumentParser(prog="hpa-kit", description="Kubernetes HPA-on-Prometheus test kit")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", parents=[common], help="create/start the cluster (warm when state exists)")
    up.add_argument("--hpa-sync-period", help="--horizontal-pod-autoscaler-sync-period (default 5s)")
    up.add_argument("--hpa-downscale-stabilization", help="default 30s")
    up.add_argument("--hpa-cpu-initialization-period", help="default 30s")
    up.add_argument("--hpa-initial-readiness-delay", help="default 10s")
    up.add_argument("--hpa-tolerance", type=float, help="default 0.1")
    up.add_argument(
        "--image",
        action="append",
        default=[],
        dest="images",
        help="extra image (harness.images name or alias) to import on up; repeatable",
    )
    up.add_argument("--no-build", action="store_true", help="fail instead of building missing binaries")
    up.add_argument("--json", action="store_true", help="print the cluster info as JSON")

    sub.add_parser("down", parents=[common], help="stop everything, keep state (next up is warm)")
    sub.add_parser("delete", parents=[common], help="stop and remove all state")
    st = sub.add_parser("status", parents=[common], help="show components and their state")
    st.add_argument("--json", action="store_true")
    sub.add_parser("kubeconfig", parents=[common], help="print the admin kubeconfig path")

    lg = sub.add_parser("logs", parents=[common], help="show a component's log")
    lg.add_argument(
        "component",
        help="etcd, kube-apiserver, kube-controller-manager, kube-scheduler, "
        "containerd, kubelet, kube-proxy, coredns",
    )
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("-n", "--lines", type=int, default=50)

    im = sub.add_parser(
        "load-images", parents=[common], help="build (if needed) and load images into the cluster"
    )
    im.add_argument("images", nargs="*", help="image names or aliases (default: every non-lazy kit image)")

    for name, what in (("install", "install the reference stack and wait until it serves metrics"),
                       ("uninstall", "remove the reference stack (APIServices first)")):  # fmt: skip
        st = sub.add_parser(name, parents=[common], help=what)
        st.add_argument("--overlay", default="default",
                        help="manifests/overlays name or a kustomization path (default: default)")
        st.add_argument("--work-dir", type=Path, default=None,
                        help="where the rendered install and its certificates go (default: per cluster, "
                        "under ~/.local/state/hpa-kit/stacks)")  # fmt: skip
        if name == "install":
            st.add_argument("--adapter-rules", type=Path, default=None,
                            help="YAML with your own rules:/externalRules:, added to the overlay's")
            st.add_argument("--timeout", type=float, default=600, help="seconds to wait for readiness")
            st.add_argument("--preloaded", action="append", default=[],
                            help="an image you loaded into the cluster yourself; repeatable")  # fmt: skip
            st.add_argument("--registry", default=None,
                            help="run the kit's images from REG/<path>:<tag> (push them first: "
                            "`hpa-kit images push --registry REG`); for clusters that pull")  # fmt: skip

    # Only for `hpa-kit -h`: main() hands `images ...` to harness.images.cli before parsing.
    sub.add_parser("images",
                   help="the kit's images: build, list, import, push --registry REG, export --out DIR")

    mem = sub.add_parser("measure", parents=[common], help="RSS of the cluster's processes")
    mem.add_argument("--json", action="store_true")
    return p


def _hpa(args: argparse.Namespace):  # -> HPASettings | None
    from harness.cluster.settings import HPASettings

    given = {
        "sync_period": args.hpa_sync_period,
        "downscale_stabilization": args.hpa_downscale_stabilization,
        "cpu_initialization_period": args.hpa_cpu_initialization_period,
        "initial_readiness_delay": args.hpa_initial_readiness_delay,
        "tolerance": args.hpa_tolerance,
    }
    if all(v is None for v in given.values()):
        return None
    return HPASettings(**{k: v for k, v in given.items() if v is not None})


def _cluster(args: argparse.Namespace):  # -> Cluster
    from harness.cluster import best_available, get_provider

    provider = args.provider if args.provider not in (None, "auto") else None
    if provider is None:
        # A local cluster that already exists wins over auto-detection for status/down/logs.
        from harness.cluster.local import LocalCluster

        if args.command != "up" and LocalCluster.open(args.name).exists():
            provider = "local"
        else:
            provider = best_available()
    kwargs: dict[str, object] = {}
    if provider == "existing" and args.kubeconfig:
        kwargs["kubeconfig"] = args.kubeconfig
    if provider == "existing":
        kwargs["context"] = args.context
    if args.command == "up" and provider in ("local", "kind"):
        hpa = _hpa(args)
        if hpa is not None:
            kwargs["hpa"] = hpa
        if provider == "local":
            kwargs["images"] = args.images or None
            if args.no_build:
                kwargs["build"] = False
    return get_provider(provider, cluster_name=args.name, **kwargs)


def _logs(cluster, args: argparse.Namespace) -> int:
    if args.component == "coredns":
        argv = [
            "kubectl",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "logs",
            "-n",
            "kube-system",
            "deploy/coredns",
            f"--tail={args.lines}",
        ]
        if args.follow:
            argv.append("-f")
        # Passthrough: kubectl writes to the user's terminal (``-f`` until Ctrl-C), so not procs.run.
        return subprocess.call(argv)
    path = cluster.logs(args.component)
    if not path.exists():
        print(f"hpa-kit: no log yet at {path}", file=sys.stderr)
        return 1
    argv = ["tail", "-n", str(args.lines)] + (["-F"] if args.follow else []) + [str(path)]
    try:
        return subprocess.call(argv)  # passthrough to the terminal, like kubectl logs above
    except KeyboardInterrupt:
        return 0


def _stack(cluster, args: argparse.Namespace, progress: Progress):  # -> Stack
    from harness.cluster import ClusterError
    from harness.stack import Stack, default_certs_dir

    if not cluster.running():
        if cluster.provider == "existing":
            ctx = f" --context {cluster.context}" if cluster.context else ""
            raise ClusterError(f"the cluster in {cluster.kubeconfig}{ctx} does not answer: check "
                               f"`kubectl --kubeconfig {cluster.kubeconfig}{ctx} get --raw /readyz`")
        raise ClusterError(f"cluster {cluster.name} ({cluster.provider}) is not running: start it with "
                           f"`hpa-kit up --provider {cluster.provider}`")
    work = args.work_dir or default_certs_dir(cluster.kubectl()).parent
    # An explicit --work-dir keeps its build there (the user chose it); else the per-cluster state dir.
    build_root = args.work_dir / "build" if args.work_dir else None
    return Stack(kubeconfig=cluster.kubeconfig, work_dir=work, overlay=args.overlay, cluster=cluster,
                 build_root=build_root, progress=progress, adapter_rules=getattr(args, "adapter_rules", None),
                 preloaded=tuple(getattr(args, "preloaded", ())),
                 registry=getattr(args, "registry", None))  # fmt: skip


def _install(cluster, args: argparse.Namespace, progress: Progress) -> int:
    st = _stack(cluster, args, progress)
    t0 = time.monotonic()
    try:
        st.install(timeout=args.timeout)
    except HarnessError:
        out = st.diagnostics(st.work_dir / "diagnostics")
        progress(f"install failed: pods, events, APIServices and logs are in {out}")
        raise
    progress(f"stack installed and serving metrics in {time.monotonic() - t0:.0f}s "
             f"(rendered install: {st.build_dir}; remove with `hpa-kit uninstall --overlay {args.overlay}`)")
    return 0


def _uninstall(cluster, args: argparse.Namespace, progress: Progress) -> int:
    st = _stack(cluster, args, progress)
    if not st.build_dir.exists():
        print(f"hpa-kit: nothing to uninstall: no rendered install of overlay {args.overlay!r} in "
              f"{st.build_dir} (pass the --overlay and --work-dir it was installed with)", file=sys.stderr)
        return 1
    st.uninstall()
    return 0


def _measure(cluster, args: argparse.Namespace) -> int:
    from harness.cluster.local import LocalCluster

    if not isinstance(cluster, LocalCluster):
        print("hpa-kit: measure is only implemented for the local provider", file=sys.stderr)
        return 2
    mem = cluster.memory_kib()
    total = sum(mem.values())
    if args.json:
        print(json.dumps({"rss_kib": mem, "total_kib": total}))
    else:
        for k, v in mem.items():
            print(f"{k:<24} {v / 1024:8.1f} MiB")
        print(f"{'total':<24} {total / 1024:8.1f} MiB")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["images"]:
        from harness.images.cli import main as images_main

        return images_main(argv[1:], prog="hpa-kit images")
    args = _parser().parse_args(argv)
    from harness.cluster import ProviderUnavailable

    progress = Progress(stream=sys.stderr)
    try:
        cluster = _cluster(args)
        if args.command == "up":
            t0 = time.monotonic()
            info = cluster.create(progress)
            if args.json:
                print(json.dumps(info.as_dict(), indent=1, default=str))
            else:
                print(info.render())
                progress(f"up took {time.monotonic() - t0:.1f}s; export KUBECONFIG={cluster.kubeconfig}")
        elif args.command == "down":
            cluster.stop(progress)
        elif args.command == "delete":
            cluster.delete(progress)
        elif args.command == "status":
            info = cluster.info()
            print(json.dumps(info.as_dict(), indent=1, default=str) if args.json else info.render())
            return 0 if info.running else 3
        elif args.command == "kubeconfig":
            print(cluster.kubeconfig)
        elif args.command == "logs":
            return _logs(cluster, args)
        elif args.command == "load-images":
            names = args.images
            if not names:
                from harness import images as img

                names = [spec.alias for spec in img.default_specs() if not spec.lazy]
            cluster.load_images(names, progress)
        elif args.command == "measure":
            return _measure(cluster, args)
        elif args.command == "install":
            return _install(cluster, args, progress)
        elif args.command == "uninstall":
            return _uninstall(cluster, args, progress)
    except ProviderUnavailable as exc:
        print(f"hpa-kit: {exc}", file=sys.stderr)
        return 2
    except (ValueError, HarnessError) as exc:
        text = str(exc)
        print(f"hpa-kit: {args.command} failed: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hpa-kit: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
