"""The kind node image ``hpa-kit/kind-node:<K8S_VERSION>``, assembled offline, cached by input hash.

Why not ``kind build node-image``: it pulls kindnetd, local-path-provisioner, etcd, CoreDNS and pause
from registries (kind's ``pkg/build/nodeimage/buildcontext.go``, ``prePullImagesAndWriteManifests``),
and nothing can be pulled here. So this module assembles what that command and kind's base image
(``images/base/Dockerfile``) produce, from parts built on this machine:

1. a Debian bookworm root-fs (``debootstrap``) with systemd, Debian's containerd 1.6 / runc / CNI
   plugins and the packages kind's base Dockerfile lists (jq: kind's createContainer hook needs it),
   cached as a tarball like ``harness.images``' base;
2. kind's ``images/base/files`` taken from the kind Go module at build time (never committed), changed
   as kind's Dockerfile changes them (systemd wants trimmed, kubelet/containerd enabled, /sbin/init),
   plus what Debian's containerd 1.6 needs: no fuse-overlayfs proxy plugin, ``restrict_oom_score_adj``
   (this VM lacks CAP_SYS_RESOURCE), binaries where kind's units expect them;
3. kubelet, kubeadm, kubectl (scripts/build-binaries.sh) in /usr/bin, crictl (scripts/build-kind.sh);
4. the images kubeadm runs, built by ``harness.images`` under the names the kind config asks for:
   kube-apiserver, -controller-manager, -scheduler and etcd ``FROM scratch``; kube-proxy on Debian with
   iptables; CoreDNS and pause are the local provider's images. They are imported ``--no-unpack`` (as
   kind does) into the root-fs' own containerd content store by a throwaway containerd on the host;
5. a bridge CNI conflist (the kind config sets ``disableDefaultCNI``) and a host-path StorageClass;
6. ``docker import`` of the tree with kind's entrypoint, stop signal and ``container=docker``.

etcd and CoreDNS are our builds (``ETCD_VERSION``, ``COREDNS_VERSION``), not the versions kubeadm
v1.35 defaults to, so the images carry their true versions and the kind config sets ``imageTag`` for
both (:func:`kubeadm_image_patch`); the pause image is the one kind's containerd config names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import images as img
from harness import procs
from harness.images import FileEntry, ImageError, ImageSpec, Layout, Progress
from harness.images import docker as dockerimg

__all__ = [
    "NODE_PACKAGES",
    "POD_SUBNET",
    "SERVICE_SUBNET",
    "NodeImage",
    "ensure_node_image",
    "kind_module_dir",
    "kubeadm_image_patch",
    "node_image_name",
]

#: Bumped when the assembly below changes, to rebuild the node image.
NODE_RECIPE = "2"
#: kind's base Dockerfile package list, minus fuse-overlayfs/nfs/iscsi (rootless and storage extras),
#: plus Debian's containerd, runc and CNI plugins in place of kind's own builds.
NODE_PACKAGES = (
    "systemd", "dbus", "containerd", "runc", "containernetworking-plugins",
    "conntrack", "iptables", "nftables", "iproute2", "ethtool", "socat", "util-linux", "mount", "kmod",
    "libseccomp2", "pigz", "e2fsprogs", "bash", "ca-certificates", "curl", "jq", "procps",
)
#: Distinct from the local provider's 10.244.0.0/16 and 10.96.0.0/16: both can run on one machine.
POD_SUBNET = "10.245.0.0/16"
SERVICE_SUBNET = "10.97.0.0/16"
#: Binaries from scripts/build-binaries.sh the node image needs.
K8S_BINARIES = ("kubelet", "kubeadm", "kubectl", "kube-apiserver", "kube-controller-manager",
                "kube-scheduler", "kube-proxy", "etcd", "coredns")

_SCRATCH_PATH = (("PATH", "/usr/local/bin:/usr/bin:/bin"),)

_CNI_CONFLIST = {
    "cniVersion": "0.4.0",
    "name": "hpa-kit-kind",
    "plugins": [
        {
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": True,
            "ipMasq": True,
            "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]],
                     "routes": [{"dst": "0.0.0.0/0"}]},
        },
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}

# kind applies /kind/manifests/default-storage.yaml at create; upstream's names local-path-provisioner,
# an image we do not have. The in-tree host-path provisioner (kind enables it) needs none.
_DEFAULT_STORAGE = """\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
"""


def _versions(layout: Layout) -> dict[str, str]:
    return img.read_versions(layout.repo)


def node_image_name(layout: Layout | None = None) -> str:
    """``hpa-kit/kind-node:<K8S_VERSION>`` (a Docker name; never pushed)."""
    return f"hpa-kit/kind-node:{_versions(layout or Layout())['K8S_VERSION']}"


def etcd_image_tag(layout: Layout | None = None) -> str:
    """``3.6.5-0`` for ETCD_VERSION v3.6.5: upstream's tag scheme for the same etcd release."""
    return _versions(layout or Layout())["ETCD_VERSION"].lstrip("v") + "-0"


def kubeadm_image_patch(layout: Layout | None = None) -> dict[str, object]:
    """The ClusterConfiguration fields that make kubeadm ask for the etcd/CoreDNS images we built.

    kubeadm v1.35 defaults to etcd 3.6.6-0 and CoreDNS v1.13.1; ours are ETCD_VERSION and
    COREDNS_VERSION, named truthfully, so the config names the tags instead of the images lying.
    """
    v = _versions(layout or Layout())
    return {"etcd": {"local": {"imageTag": etcd_image_tag(layout)}},
            "dns": {"imageTag": v["COREDNS_VERSION"]}}


# --------------------------------------------------------------------------------------------
# Images preloaded into the node
# --------------------------------------------------------------------------------------------

KUBE_PROXY_BASE = "localhost/hpa-kit/kube-proxy-base:bookworm"


def _scratch(alias: str, name: str, binary: str, layout: Layout) -> ImageSpec:
    return ImageSpec(
        alias=alias, name=name, build="files",
        files=(FileEntry(f"/usr/local/bin/{binary}", source=f"k8s:{binary}"),
               FileEntry("/tmp", kind="dir", mode=0o1777)),
        entrypoint=(f"/usr/local/bin/{binary}",), env=_SCRATCH_PATH,
    )


def kube_proxy_base_spec() -> ImageSpec:
    return ImageSpec(alias="kube-proxy-base", name=KUBE_PROXY_BASE, build="dockerfile",
                     dockerfile="images/kube-proxy-base/Dockerfile", lazy=True)


def control_plane_specs(layout: Layout, kube_proxy_base_inputs: str = "") -> list[ImageSpec]:
    """kube-apiserver, -controller-manager, -scheduler, etcd (FROM scratch) and kube-proxy (Debian +
    iptables), named as kubeadm ``config images list`` names them with the kind config's imageTags."""
    k8s = _versions(layout)["K8S_VERSION"]
    reg = "registry.k8s.io"
    specs = [_scratch(c, f"{reg}/{c}:{k8s}", c, layout)
             for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")]
    specs.append(_scratch("etcd", f"{reg}/etcd:{etcd_image_tag(layout)}", "etcd", layout))
    specs.append(ImageSpec(
        alias="kube-proxy", name=f"{reg}/kube-proxy:{k8s}", build="files", base=KUBE_PROXY_BASE,
        files=(FileEntry("/usr/local/bin/kube-proxy", source="k8s:kube-proxy"),),
        entrypoint=("/usr/local/bin/kube-proxy",),
        # The base is not harness.images' BASE_IMAGE, so its inputs ride along as a label (hashed).
        labels=(("io.hpa-kit.base-inputs", kube_proxy_base_inputs),),
    ))
    return specs


def preload_archives(layout: Layout, progress: Progress) -> list[Path]:
    """Build (or reuse) every image the node preloads; returns their OCI archives."""
    archives = list(img.ensure_all(["pause", "coredns"], layout=layout, progress=progress).values())
    with img.locked(layout.images_dir / ".lock"):
        img.check_buildah()
        base_id = img.ensure_base_image(layout, progress=progress)
        proxy_base = kube_proxy_base_spec()
        img.build_image(proxy_base, layout, base_id=base_id, progress=progress)
        proxy_inputs = json.loads(layout.stamp(proxy_base).read_text())["inputs"]
        for spec in control_plane_specs(layout, proxy_inputs):
            archives.append(img.build_image(spec, layout, progress=progress))
    return archives


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def kind_module_dir(layout: Layout | None = None) -> Path:
    """The kind Go module's directory in the module cache (``go mod download -json``)."""
    version = _versions(layout or Layout())["KIND_VERSION"]
    go = shutil.which("go") or "/usr/local/go/bin/go"
    proc = img.run([go, "mod", "download", "-json", f"sigs.k8s.io/kind@{version}"], timeout=600)
    d = Path(json.loads(proc.stdout)["Dir"])
    if not (d / "images" / "base" / "files").is_dir():
        raise ImageError(f"{d} has no images/base/files: is sigs.k8s.io/kind@{version} complete?")
    return d


def _built_by_build_kind(layout: Layout, which: str) -> Path:
    """``scripts/build-kind.sh --print-<which>``, building it first when it is not there yet."""
    script = layout.repo / "scripts" / "build-kind.sh"
    path = Path(img.run(["bash", str(script), f"--print-{which}"]).stdout.strip())
    if not os.access(path, os.X_OK):
        img.run(["bash", str(script)], timeout=1800)
    return path


def kind_binary(layout: Layout | None = None) -> Path:
    """The kind to use (scripts/build-kind.sh: a new-enough one on PATH, else ours, built if missing)."""
    return _built_by_build_kind(layout or Layout(), "kind")


def crictl_binary(layout: Layout) -> Path:
    return _built_by_build_kind(layout, "crictl")


def _node_rootfs_dir(layout: Layout) -> Path:
    return layout.cache / "base" / "kind-node-bookworm"


def ensure_node_rootfs(layout: Layout, progress: Progress) -> tuple[Path, str]:
    """The debootstrapped node root-fs as a cached tarball, and its sha256.

    Same recipe as ``harness.images.ensure_base_rootfs`` with the node's package list.
    """
    d = _node_rootfs_dir(layout)
    tar_path, stamp_path, log = d / "rootfs.tar", d / "rootfs.json", d / "debootstrap.log"
    want = {"suite": img.BASE_SUITE, "variant": "minbase", "packages": sorted(NODE_PACKAGES)}
    try:
        stamp = json.loads(stamp_path.read_text())
        if tar_path.is_file() and all(stamp.get(k) == v for k, v in want.items()):
            return tar_path, str(stamp["sha256"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        pass
    if os.geteuid() != 0:
        raise ImageError("debootstrap needs root: build the kind node image as root")
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "rootfs.tmp"
    if tmp.exists():
        img.remove_tree(tmp)
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(NODE_PACKAGES)}", img.BASE_SUITE,
            str(tmp)]
    if mirror := os.environ.get("HPA_KIT_DEBIAN_MIRROR"):
        argv.append(mirror)
    progress(f"kind-node: debootstrap {img.BASE_SUITE} with systemd, containerd, ... (~2 min; log {log})")
    t0 = time.monotonic()
    try:
        img.run(argv, timeout=img.DEBOOTSTRAP_TIMEOUT_S, log=log)
    except ImageError as e:
        raise ImageError(f"debootstrap of the kind node failed; see {log} "
                         f"(Debian mirror reachable?)\n{e}") from e
    boot_s = time.monotonic() - t0
    img.trim_rootfs(tmp)
    part = tar_path.with_suffix(".tar.part")
    img.run(["tar", "--numeric-owner", "--xattrs", "-C", str(tmp), "--exclude=./dev/*", "--exclude=./proc/*",
             "--exclude=./sys/*", "-cf", str(part), "."], timeout=600)
    part.replace(tar_path)
    img.remove_tree(tmp)
    digest = img.file_digest(tar_path)
    stamp_path.write_text(json.dumps({**want, "seconds": round(boot_s, 1), "sha256": digest,
                                      "size": tar_path.stat().st_size, "built_at": time.time()}, indent=2))
    progress(f"kind-node: root-fs {tar_path} ({tar_path.stat().st_size / 1e6:.0f} MB) in {boot_s:.0f}s")
    return tar_path, digest


@dataclass(frozen=True)
class NodeInputs:
    """Everything the node image is made of; ``digest`` decides whether it is rebuilt."""

    rootfs: Path
    kind_files: Path
    binaries: dict[str, Path]
    archives: list[Path]
    oci_spec: dict[str, object]
    digest: str


def _walk_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(filenames):
            yield Path(dirpath) / n


def _host_oci_spec() -> dict[str, object]:
    # Debian's ctr on the host is the same containerd 1.6 as the node's: same default spec.
    return json.loads(img.run(["ctr", "oci", "spec"]).stdout)


def collect_inputs(layout: Layout, progress: Progress) -> NodeInputs:
    from harness.cluster import binaries

    v = _versions(layout)
    rootfs, rootfs_sha = ensure_node_rootfs(layout, progress)
    kind_files = kind_module_dir(layout) / "images" / "base" / "files"
    bin_dir = binaries.ensure_binaries(list(K8S_BINARIES), build=os.environ.get("HPA_KIT_BUILD", "1") != "0",
                                       progress=progress)
    bins = {name: bin_dir / name for name in ("kubelet", "kubeadm", "kubectl")}
    bins["crictl"] = crictl_binary(layout)
    archives = preload_archives(layout, progress)
    oci_spec = _host_oci_spec()
    h = hashlib.sha256()
    for part in (NODE_RECIPE, v["K8S_VERSION"], v["KIND_VERSION"], rootfs_sha, json.dumps(_CNI_CONFLIST),
                 _DEFAULT_STORAGE, json.dumps(oci_spec, sort_keys=True)):
        h.update(part.encode() + b"\0")
    for p in _walk_files(kind_files):
        h.update(f"{p.relative_to(kind_files)}:{img.file_digest(p)}\0".encode())
    for name, p in sorted(bins.items()):
        h.update(f"{name}:{img.file_digest(p)}\0".encode())
    for a in archives:
        info = img.archive_info(a)
        h.update(f"{info.name}:{info.digest}\0".encode())
    return NodeInputs(rootfs, kind_files, bins, archives, oci_spec, h.hexdigest())


# --------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------


def _inside(root: Path, rel: str) -> Path:
    """``root/rel`` after resolving symlinks *within* root: an absolute link in the root-fs must never
    make us write to the host."""
    p = root
    for part in Path(rel.strip("/")).parts:
        p = p / part
        hops = 0
        while p.is_symlink():
            target = Path(os.readlink(p))
            p = (root / target.relative_to("/")) if target.is_absolute() else (p.parent / target)
            hops += 1
            if hops > 20:
                raise ImageError(f"symlink loop at {rel} in {root}")
    p = Path(os.path.normpath(p))
    if not str(p).startswith(str(root)):
        raise ImageError(f"{rel} escapes the root-fs {root}")
    return p


def _write(root: Path, rel: str, data: str | bytes, mode: int = 0o644) -> None:
    p = _inside(root, rel)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    p.chmod(mode)


def _symlink(root: Path, rel: str, target: str) -> None:
    p = _inside(root, rel)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_symlink() or p.exists():
        p.unlink()
    p.symlink_to(target)


def containerd_config(kind_toml: str) -> str:
    """kind's containerd ``config.toml`` made fit for Debian's containerd 1.6 on this VM.

    Drops the ``[proxy_plugins]`` tables (fuse-overlayfs, rootless only: its socket never exists) and
    sets ``restrict_oom_score_adj = true`` (no CAP_SYS_RESOURCE, as on the local provider).
    """
    out: list[str] = []
    skipping = False
    for line in kind_toml.splitlines():
        s = line.strip()
        if s.startswith("["):
            skipping = s.startswith("[proxy_plugins")
        if not skipping:
            out.append(line)
    text = "\n".join(out) + "\n"
    text, n = re.subn(r"(?m)^(\s*restrict_oom_score_adj\s*=\s*)false\s*$", r"\1true", text)
    if n != 1:
        raise ImageError("kind's containerd config.toml has no 'restrict_oom_score_adj = false' line "
                         "(kind changed?): update harness/kindnode.containerd_config")
    return text


def cri_base_spec(oci_spec: dict[str, object]) -> dict[str, object]:
    """``/etc/containerd/cri-base.json`` as kind's Dockerfile makes it: ``ctr oci spec`` plus kind's
    createContainer hook (mounts product_uuid per container), without rlimits."""
    spec = json.loads(json.dumps(oci_spec))
    hooks = spec.setdefault("hooks", {})
    hooks.setdefault("createContainer", []).append({"path": "/kind/bin/mount-product-files.sh"})
    spec.get("process", {}).pop("rlimits", None)
    return spec


def _copy_kind_files(src: Path, root: Path) -> None:
    """kind's images/base/files with the modes its Dockerfile's COPY --chmod gives them."""
    for p in _walk_files(src):
        rel = p.relative_to(src).as_posix()
        mode = 0o755 if rel.startswith(("usr/local/bin/", "kind/bin/")) else 0o644
        _write(root, rel, p.read_bytes(), mode)
    for d in ("kind", "kind/bin"):
        _inside(root, d).chmod(0o755)


def _systemd_like_kind(root: Path) -> None:
    """The systemd changes of kind's base Dockerfile: no units from the packages' install, kind's
    kubelet/containerd/undo-mount-hacks enabled, binfmt masked, /sbin/init."""
    tmpfiles = _inside(root, "lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service")
    if tmpfiles.is_symlink() or tmpfiles.exists():
        tmpfiles.unlink()
    for d_rel, pattern in (("lib/systemd/system/multi-user.target.wants", "*"),
                           ("lib/systemd/system/local-fs.target.wants", "*"),
                           ("lib/systemd/system/sockets.target.wants", "*udev*"),
                           ("lib/systemd/system/sockets.target.wants", "*initctl*"),
                           ("lib/systemd/system/basic.target.wants", "*")):
        d = _inside(root, d_rel)
        for p in d.glob(pattern) if d.is_dir() else ():
            p.unlink()
    for wants in _inside(root, "etc/systemd/system").glob("*.wants"):
        for p in wants.iterdir():
            if p.is_symlink() or p.is_file():
                p.unlink()
    journald = _inside(root, "etc/systemd/journald.conf")
    with journald.open("a") as fh:
        fh.write("ReadKMsg=no\n")
    init = _inside(root, "sbin/init")
    if not (init.is_symlink() or init.exists()):
        _symlink(root, "sbin/init", "/usr/lib/systemd/systemd")
    for unit in ("kubelet.service", "containerd.service", "undo-mount-hacks.service"):
        _enable_unit(root, unit)
    _symlink(root, "etc/systemd/system/systemd-binfmt.service", "/dev/null")  # systemctl mask


def _enable_unit(root: Path, unit: str) -> None:
    """``systemctl enable`` done by hand (the host may have no systemctl): a link in the
    ``.wants`` directory of every ``WantedBy=`` target of the unit's ``[Install]`` section."""
    text = _inside(root, f"etc/systemd/system/{unit}").read_text()
    install = text.partition("[Install]")[2]
    targets = [t for line in install.splitlines() if line.strip().startswith("WantedBy=")
               for t in line.split("=", 1)[1].split()]
    if not targets:
        raise ImageError(f"{unit} from kind's base files has no WantedBy= to enable it with")
    for target in targets:
        _symlink(root, f"etc/systemd/system/{target}.wants/{unit}", f"/etc/systemd/system/{unit}")


def assemble_rootfs(inputs: NodeInputs, root: Path, layout: Layout) -> None:
    """Unpack the root-fs into ``root`` and lay kind's contract over it (steps 2, 3 and 5)."""
    v = _versions(layout)
    img.run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-xf", str(inputs.rootfs)], timeout=600)
    _copy_kind_files(inputs.kind_files, root)
    _systemd_like_kind(root)
    _inside(root, "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)
    _write(root, "kind/version", v["K8S_VERSION"])
    _write(root, "kind/manifests/default-storage.yaml", _DEFAULT_STORAGE)
    toml = (inputs.kind_files / "etc/containerd/config.toml").read_text()
    _write(root, "etc/containerd/config.toml", containerd_config(toml))
    _write(root, "etc/containerd/cri-base.json", json.dumps(cri_base_spec(inputs.oci_spec), indent=2))
    _write(root, "etc/cni/net.d/10-hpa-kit.conflist", json.dumps(_CNI_CONFLIST, indent=2))
    # kind's units and scripts expect its own builds in /usr/local/bin and /opt/cni/bin.
    for b in ("containerd", "ctr", "containerd-shim-runc-v2"):
        _symlink(root, f"usr/local/bin/{b}", f"/usr/bin/{b}")
    for plugin in sorted(_inside(root, "usr/lib/cni").iterdir()):
        _symlink(root, f"opt/cni/bin/{plugin.name}", f"/usr/lib/cni/{plugin.name}")
    for name in ("kubelet", "kubeadm", "kubectl"):
        _write(root, f"usr/bin/{name}", inputs.binaries[name].read_bytes(), 0o755)
    _write(root, "usr/local/bin/crictl", inputs.binaries["crictl"].read_bytes(), 0o755)


def preload_images(root: Path, archives: list[Path], work: Path, progress: Progress) -> None:
    """Import the archives into ``root``'s containerd content store (``--no-unpack``, as kind does:
    the CRI plugin unpacks on first use, into the node's /var volume).

    A throwaway containerd on the host (Debian's, the node's version) with its own root, state and
    socket, no CRI plugin, stopped by its pid; nothing touches another containerd.
    """
    sock = work / "containerd.sock"
    cfg = work / "config.toml"
    cfg.write_text(
        "version = 2\n"
        f'root = "{_inside(root, "var/lib/containerd")}"\n'
        f'state = "{work / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", '
        '"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", '
        '"io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]\n'
        f'[grpc]\n  address = "{sock}"\n'
        f'[ttrpc]\n  address = "{work / "containerd.ttrpc.sock"}"\n'
    )
    record = procs.start("containerd-preload", ["containerd", "--config", str(cfg)],
                         log=work / "containerd.log", pid_dir=work)
    try:
        def answers() -> tuple[bool, str]:
            up = sock.exists() and img.run(["ctr", "-a", str(sock), "version"], check=False).returncode == 0
            return up, "ctr version answers" if up else f"{sock} does not answer yet"

        procs.wait_until(answers, component="containerd (node image preload)", timeout=30, record=record)
        for a in archives:
            t0 = time.monotonic()
            img.run(["ctr", "-a", str(sock), "-n", "k8s.io", "images", "import", "--no-unpack", str(a)],
                    timeout=600)
            progress(f"kind-node: preloaded {img.archive_info(a).name} ({time.monotonic() - t0:.1f}s)")
        have = img.containerd_images(address=str(sock))
        for a in archives:
            info = img.archive_info(a)
            if have.get(info.name) != info.digest:
                raise ImageError(f"preload: {info.name} missing from the node's containerd after import")
    finally:
        procs.stop(record)


@dataclass(frozen=True)
class NodeImage:
    name: str
    inputs: str
    built: bool
    seconds: float


def ensure_node_image(layout: Layout | None = None, *, progress: Progress = print,
                      force: bool = False) -> NodeImage:
    """Build ``hpa-kit/kind-node:<k8s>`` into Docker unless Docker has it with the same inputs."""
    layout = layout or Layout()
    name = node_image_name(layout)
    t0 = time.monotonic()
    lock = layout.images_dir / ".kind-node.lock"
    with img.locked(lock):
        inputs = collect_inputs(layout, progress)
        if not force and dockerimg.image_inputs(name) == inputs.digest:
            progress(f"kind-node: {name} up to date")
            return NodeImage(name, inputs.digest, False, time.monotonic() - t0)
        previous = dockerimg.image_id(name)
        progress(f"kind-node: assembling {name}")
        layout.images_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="kind-node-", dir=layout.images_dir) as tmp:
            root, work = Path(tmp) / "rootfs", Path(tmp) / "work"
            root.mkdir()
            work.mkdir()
            try:
                assemble_rootfs(inputs, root, layout)
                preload_images(root, inputs.archives, work, progress)
                progress(f"kind-node: docker import {name}")
                config = [*NODE_IMAGE_CONFIG, f"LABEL {img.INPUTS_LABEL}={inputs.digest}"]
                dockerimg.import_tree(root, name, config)
            finally:
                img.remove_tree(root)
        if previous and previous != dockerimg.image_id(name):
            # The superseded build (~750 MB); kept only while a container still uses it.
            dockerimg.docker("rmi", previous, check=False, timeout=300)
    seconds = time.monotonic() - t0
    size = dockerimg.docker("image", "inspect", "--format", "{{.Size}}", name, check=False).stdout.strip()
    progress(f"kind-node: built {name} in {seconds:.0f}s ({int(size or 0) / 1e6:.0f} MB)")
    return NodeImage(name, inputs.digest, True, seconds)


#: kind's node image config (dockerd 20.10's ``import --change`` refuses STOPSIGNAL, hence a build).
NODE_IMAGE_CONFIG = (
    "ENV container=docker",
    "STOPSIGNAL SIGRTMIN+3",
    'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m harness.kindnode", description=__doc__.split("\n\n")[0])
    p.add_argument("--force", action="store_true", help="rebuild even if the inputs are unchanged")
    args = p.parse_args(argv)
    try:
        ensure_node_image(progress=img.timed_progress(), force=args.force)
    except (ImageError, procs.ComponentError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
