"""The kind node image's assembly rules and the Docker runtime wrapper, without Docker."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness import kindnode
from harness.images import ImageError

REPO = Path(__file__).resolve().parents[2]

# The shape of kind's images/base/files/etc/containerd/config.toml (abridged, written here).
KIND_TOML = """\
version = 2

[proxy_plugins]
# fuse-overlayfs is used for rootless
[proxy_plugins."fuse-overlayfs"]
  type = "snapshot"
  address = "/run/containerd-fuse-overlayfs.sock"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = false
"""


def test_containerd_config_drops_fuse_proxy_and_restricts_oom_score_adj() -> None:
    out = kindnode.containerd_config(KIND_TOML)
    assert "proxy_plugins" not in out and "fuse-overlayfs.sock" not in out
    assert "restrict_oom_score_adj = true" in out
    assert 'snapshotter = "overlayfs"' in out and "sandbox_image" in out


def test_containerd_config_fails_loudly_when_kind_changes_its_file() -> None:
    with pytest.raises(ImageError, match="restrict_oom_score_adj"):
        kindnode.containerd_config("version = 2\n")


def test_cri_base_spec_adds_kind_hook_and_drops_rlimits() -> None:
    spec = {"process": {"rlimits": [{"type": "RLIMIT_NOFILE"}], "args": ["sh"]}, "hooks": {}}
    out = kindnode.cri_base_spec(spec)
    assert out["hooks"]["createContainer"] == [{"path": "/kind/bin/mount-product-files.sh"}]
    assert "rlimits" not in out["process"]
    assert spec["process"]["rlimits"]  # the input is not modified


def test_inside_never_follows_absolute_links_out_of_the_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/sbin").mkdir(parents=True)
    (root / "sbin").symlink_to("usr/sbin")
    (root / "etc").mkdir()
    (root / "etc/abs").symlink_to("/usr/sbin")  # absolute: must resolve inside root
    assert kindnode._inside(root, "sbin/init") == root / "usr/sbin/init"
    assert kindnode._inside(root, "etc/abs/x") == root / "usr/sbin/x"
    with pytest.raises(ImageError, match="escapes"):
        kindnode._inside(root, "../outside")


def test_preloaded_images_are_named_as_kubeadm_asks(tmp_path: Path) -> None:
    from harness.images import Layout

    names = {s.alias: s.name for s in kindnode.control_plane_specs(Layout())}
    assert names["kube-apiserver"] == "registry.k8s.io/kube-apiserver:v1.35.4"
    assert names["etcd"] == f"registry.k8s.io/etcd:{kindnode.etcd_image_tag()}"
    assert names["kube-proxy"] == "registry.k8s.io/kube-proxy:v1.35.4"


def _fake_runc(tmp_path: Path) -> Path:
    fake = tmp_path / "runc"
    fake.write_text('#!/bin/sh\necho "real: $*"\n')
    fake.chmod(0o755)
    return fake


@pytest.mark.skipif(not Path("/usr/bin/jq").exists(), reason="jq not installed (apt-get install jq)")
def test_runc_wrapper_drops_sys_resource_on_create_and_exec(tmp_path: Path) -> None:
    caps = ["CAP_CHOWN", "CAP_SYS_RESOURCE"]
    (tmp_path / "config.json").write_text(json.dumps(
        {"process": {"capabilities": {"bounding": caps, "effective": caps}}, "root": {"path": "rootfs"}}))
    (tmp_path / "proc.json").write_text(json.dumps({"capabilities": {"permitted": caps}, "args": ["sh"]}))
    env = {**os.environ, "HPA_KIT_REAL_RUNC": str(_fake_runc(tmp_path)),
           "HPA_KIT_RUNC_WRAPPER_LOG": str(tmp_path / "log")}
    wrapper = str(REPO / "scripts" / "runc-nosysresource")
    create = ["--root", "/r", "--log", "/l", "--log-format", "json",
              "create", "--bundle", str(tmp_path), "c1"]
    out = subprocess.run([wrapper, *create], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "real: " + " ".join(create)  # arguments passed through unchanged
    spec = json.loads((tmp_path / "config.json").read_text())
    assert spec["process"]["capabilities"] == {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"]}
    assert spec["root"] == {"path": "rootfs"}
    subprocess.run([wrapper, "--root", "/r", "exec", "--process", str(tmp_path / "proc.json"), "c1"],
                   env=env, check=True, capture_output=True)
    assert json.loads((tmp_path / "proc.json").read_text())["capabilities"] == {"permitted": ["CAP_CHOWN"]}
    assert (tmp_path / "log").read_text().count("dropped CAP_SYS_RESOURCE") == 2
    # other commands (and a container named "create") are left alone
    (tmp_path / "config.json").write_text(json.dumps({"process": {"capabilities": {"bounding": caps}}}))
    subprocess.run([wrapper, "--root", "/r", "delete", "create"], env=env, check=True, capture_output=True)
    assert "CAP_SYS_RESOURCE" in (tmp_path / "config.json").read_text()


def test_enable_unit_links_it_into_its_wanted_by_targets(tmp_path: Path) -> None:
    root = tmp_path / "root"
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / "kubelet.service").write_text("[Service]\nExecStart=/usr/bin/kubelet\n\n[Install]\n"
                                           "WantedBy=multi-user.target\n")
    kindnode._enable_unit(root, "kubelet.service")
    link = units / "multi-user.target.wants/kubelet.service"
    assert link.is_symlink() and str(link.readlink()) == "/etc/systemd/system/kubelet.service"
    (units / "static.service").write_text("[Service]\nExecStart=/bin/true\n")
    with pytest.raises(ImageError, match="WantedBy"):
        kindnode._enable_unit(root, "static.service")
