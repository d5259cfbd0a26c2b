"""Unit tests of the cluster providers' pure parts: settings, generated configs, process helpers, CLI."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import procs
from harness.cluster import configs, flags, hostnet
from harness.cluster.addons import coredns_manifests, corefile
from harness.cluster.base import ClusterError
from harness.cluster.existing import ExistingCluster
from harness.cluster.kind import kind_config
from harness.cluster.local import LocalCluster
from harness.cluster.settings import HPASettings, LocalSettings, parse_duration
from harness.progress import Progress

# ------------------------------------------------------------------------------------------ settings


def test_hpa_defaults_are_tuned_for_tests() -> None:
    flags = HPASettings().flags()
    assert "--horizontal-pod-autoscaler-sync-period=5s" in flags
    assert "--horizontal-pod-autoscaler-downscale-stabilization=30s" in flags
    assert any(f.startswith("--horizontal-pod-autoscaler-cpu-initialization-period=") for f in flags)
    assert any(f.startswith("--horizontal-pod-autoscaler-initial-readiness-delay=") for f in flags)


@pytest.mark.parametrize("bad", ["5", "5x", "", "-1s", "s5"])
def test_bad_durations_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="Go duration"):
        parse_duration(bad)
    with pytest.raises(ValueError):
        HPASettings(sync_period=bad)


def test_good_durations() -> None:
    assert parse_duration("1m30s") == "1m30s"
    assert HPASettings(sync_period="2s").flags()[0].endswith("=2s")


@pytest.mark.parametrize("name", ["Upper", "a_b", "-x", "x" * 60])
def test_bad_cluster_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cluster name"):
        LocalSettings(name=name, state_root=tmp_path)


def test_settings_round_trip_and_state_dir(tmp_path: Path) -> None:
    s = LocalSettings(name="c1", state_root=tmp_path, hpa=HPASettings(sync_period="7s"))
    s.etcd_client_port = 1234
    back = LocalSettings.from_json(s.to_json())
    assert back.hpa.sync_period == "7s" and back.etcd_client_port == 1234
    assert back.state_dir == tmp_path / "clusters" / "c1"
    assert back.node_name == "c1" and back.apiserver_address == back.node_ip


def test_control_plane_settings_listen_on_loopback(tmp_path: Path) -> None:
    s = LocalSettings(name="cp", state_root=tmp_path, with_node=False)
    assert s.apiserver_address == "127.0.0.1"


def test_open_keeps_stored_topology_but_takes_new_hpa(tmp_path: Path) -> None:
    c = LocalCluster.open("c2", state_root=tmp_path)
    c.settings.apiserver_port = 7443
    c._persist()
    again = LocalCluster.open("c2", state_root=tmp_path, hpa=HPASettings(sync_period="9s"))
    assert again.settings.apiserver_port == 7443
    assert again.settings.hpa.sync_period == "9s"


def test_env_state_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HPA_KIT_STATE", str(tmp_path / "st"))
    assert LocalSettings().state_dir == tmp_path / "st" / "clusters" / "hpa-kit"


# ------------------------------------------------------------------------------------------- configs


@pytest.fixture()
def node(tmp_path: Path) -> tuple[LocalSettings, configs.NodePaths]:
    s = LocalSettings(name="n1", state_root=tmp_path)
    return s, configs.NodePaths(s.state_dir, s.state_dir / "run")


def test_containerd_config_is_private_and_cgroupfs(node) -> None:  # type: ignore[no-untyped-def]
    import tomllib

    s, p = node
    cfg = tomllib.loads(configs.containerd_config(p))
    assert cfg["grpc"]["address"] == str(p.containerd_sock)
    assert cfg["root"].startswith(str(s.state_dir)) and cfg["state"].startswith(str(s.state_dir))
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10"
    assert cri["cni"]["bin_dir"] == "/usr/lib/cni"
    assert cri["cni"]["conf_dir"] == str(p.cni_conf_dir)
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE in these VMs
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert runc["SystemdCgroup"] is False and runc["Root"].startswith(str(s.state_dir))
    assert cfg["plugins"]["io.containerd.internal.v1.opt"]["path"].startswith(str(s.state_dir))


def test_cni_conflist_uses_the_bridge_and_pod_cidr(node) -> None:  # type: ignore[no-untyped-def]
    s, p = node
    doc = json.loads(configs.cni_conflist(s, p))
    bridge = doc["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["bridge"] == "hpakit0" and bridge["isGateway"]
    rng = bridge["ipam"]["ranges"][0][0]
    assert rng["subnet"] == "10.244.0.0/16" and rng["gateway"] == "10.244.0.1"
    assert bridge["ipam"]["dataDir"].startswith(str(s.state_dir))
    assert [pl["type"] for pl in doc["plugins"]] == ["bridge", "portmap"]


def test_kubelet_config(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s, p = node
    doc = yaml.safe_load(
        configs.kubelet_config(
            s, p, ca=tmp_path / "ca.pem", serving_cert=tmp_path / "k.pem", serving_key=tmp_path / "k-key.pem"
        )
    )
    assert doc["failCgroupV1"] is False
    assert doc["cgroupDriver"] == "cgroupfs"
    assert doc["containerRuntimeEndpoint"] == f"unix://{p.containerd_sock}"
    assert doc["clusterDNS"] == ["10.96.0.10"] and doc["clusterDomain"] == "cluster.local"
    assert doc["authentication"]["webhook"]["enabled"] and doc["authentication"]["x509"]["clientCAFile"]
    assert doc["authentication"]["anonymous"]["enabled"] is False
    assert doc["authorization"]["mode"] == "Webhook"
    assert doc["failSwapOn"] is False
    assert doc["resolvConf"] == str(p.resolv_conf)
    assert doc["imageGCHighThresholdPercent"] == 100
    assert doc["podLogsDir"].startswith(str(s.state_dir))


def test_kube_proxy_config_writes_no_conntrack_sysctls(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s, _ = node
    doc = yaml.safe_load(configs.kube_proxy_config(s, kubeconfig=tmp_path / "kp"))
    assert doc["mode"] == "iptables" and doc["clusterCIDR"] == "10.244.0.0/16"
    assert doc["conntrack"]["maxPerCore"] == 0 and doc["conntrack"]["min"] == 0
    assert doc["iptables"]["localhostNodePorts"] is False
    assert doc["nodePortAddresses"] == ["10.244.0.1/32"]


def test_resolv_conf_skips_loopback_upstreams() -> None:
    text = "nameserver 127.0.0.53\nnameserver 10.255.255.53\nsearch x\nnameserver ::1\n"
    assert configs.host_nameservers(text) == ["10.255.255.53"]
    assert "nameserver 10.255.255.53" in configs.resolv_conf(["10.255.255.53"])
    only_loop = configs.resolv_conf(configs.host_nameservers("nameserver 127.0.0.1\n"), fallback="10.244.0.1")
    assert "127." not in only_loop and "nameserver 10.244.0.1" in only_loop


def test_coredns_manifests(tmp_path: Path) -> None:
    s = LocalSettings(state_root=tmp_path)
    docs = coredns_manifests(s)
    kinds = [d["kind"] for d in docs]
    assert kinds == [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
    ]
    svc = docs[-1]
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    cf = corefile(s)
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in cf and "forward . /etc/resolv.conf" in cf
    assert "loop" not in cf.split()  # no startup probe of the upstream


def test_kind_config_sets_hpa_flags_through_kubeadm() -> None:
    cfg = kind_config("k1", HPASettings(sync_period="3s"))
    patch = yaml.safe_load(cfg["kubeadmConfigPatches"][0])
    assert patch["kind"] == "ClusterConfiguration"
    assert patch["controllerManager"]["extraArgs"]["horizontal-pod-autoscaler-sync-period"] == "3s"
    assert cfg["name"] == "k1" and cfg["nodes"][0]["role"] == "control-plane"


def test_kind_config_fits_debian_containerd_and_cgroup_v1() -> None:
    from harness import kindnode

    cfg = kind_config("k1", HPASettings(), node_image="hpa-kit/kind-node:v1.35.4", k8s_version="v1.35.4")
    net = cfg["networking"]
    assert net["disableDefaultCNI"] is True
    # distinct from the local provider's ranges, so both can run on one machine
    assert net["podSubnet"] == kindnode.POD_SUBNET != "10.244.0.0/16"
    assert net["serviceSubnet"] == kindnode.SERVICE_SUBNET != "10.96.0.0/16"
    cluster, kubelet = (yaml.safe_load(p) for p in cfg["kubeadmConfigPatches"])
    assert kubelet == {"kind": "KubeletConfiguration", "failCgroupV1": False, "serverTLSBootstrap": True}
    # the etcd and CoreDNS we build carry their own versions; kubeadm is told the tags
    assert cluster["etcd"]["local"]["imageTag"] == kindnode.etcd_image_tag()
    assert cluster["dns"]["imageTag"].startswith("v1.")
    assert cfg["nodes"][0]["image"] == "hpa-kit/kind-node:v1.35.4"


def test_kind_extra_args_follow_kubeadm_api_version() -> None:
    from harness.cluster.kind import extra_args

    # kind v0.33 renders kubeadm v1beta3 (a map) below 1.36 and v1beta4 (a name/value list) from 1.36
    assert extra_args({"a": "1"}, "v1.35.4") == {"a": "1"}
    assert extra_args({"a": "1"}, "v1.36.0") == [{"name": "a", "value": "1"}]
    cfg = kind_config("k1", HPASettings(sync_period="3s"), k8s_version="v1.36.1")
    args = yaml.safe_load(cfg["kubeadmConfigPatches"][0])["controllerManager"]["extraArgs"]
    assert {"name": "horizontal-pod-autoscaler-sync-period", "value": "3s"} in args


def test_kind_reports_docker_unavailable_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.cluster import kind

    monkeypatch.setattr(kind.shutil, "which", lambda _name: None)
    ok, why = kind.KindCluster.available()
    assert not ok
    assert why.startswith("Docker engine not reachable")
    assert "scripts/docker-engine.sh start" in why  # names the command that sets Docker up


def test_existing_provider_refuses_to_load_images(tmp_path: Path) -> None:
    c = ExistingCluster("x", kubeconfig=tmp_path / "kc")
    with pytest.raises(ClusterError, match="registry"):
        c.load_images(["hpa-kit/mockmetrics:0.1.0"])
    with pytest.raises(ClusterError, match="not found"):
        c.create(lambda _m: None)


# ------------------------------------------------------------------------------------------ iptables


SAVE = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
:HPAKIT-EGRESS - [0:0]
:OTHER - [0:0]
-A FORWARD -j HPAKIT-EGRESS
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -j OTHER
-A KUBE-FORWARD -j ACCEPT
COMMIT
"""


def test_iptables_parse_and_owned_chains() -> None:
    tables = hostnet._parse(SAVE)
    chains, rules = tables["filter"]
    assert {c for c in chains if hostnet.OWNED_CHAIN.match(c)} == {"KUBE-FORWARD", "HPAKIT-EGRESS"}
    assert len(rules) == 4


def test_iptables_cleanup_script(monkeypatch: pytest.MonkeyPatch) -> None:
    scripts: list[str] = []

    def fake_save(family: str) -> str:
        return SAVE if family == "ipv4" else ""

    def fake_run(argv, *, check=True, input=None, timeout=30):  # type: ignore[no-untyped-def]
        scripts.append(input or "")
        return ""

    monkeypatch.setattr(hostnet, "_save", fake_save)
    monkeypatch.setattr(hostnet, "run", fake_run)
    assert hostnet.iptables_cleanup({"ipv4/filter/KUBE-FORWARD"}) == 1  # pre-existing chain is left alone
    script = scripts[0]
    assert "-D FORWARD -j HPAKIT-EGRESS" in script and "-X HPAKIT-EGRESS" in script
    assert "KUBE-FORWARD" not in script and "OTHER" not in script


def test_mounts_under_only_matches_the_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "1 0 0:1 / / rw - ext4 /dev/vda rw\n"
        "2 1 0:2 / /st/a rw - tmpfs tmpfs rw\n"
        "3 2 0:3 / /st/a/b\\040c rw - tmpfs tmpfs rw\n"
        "4 1 0:4 / /stx rw - tmpfs tmpfs rw\n"
    )
    real = Path
    monkeypatch.setattr(hostnet, "Path", lambda p: real(info) if p == "/proc/self/mountinfo" else real(p))
    assert hostnet.mounts_under([real("/st")]) == ["/st/a/b c", "/st/a"]


# ------------------------------------------------------------------------------------------- procs


def test_process_lifecycle_and_records(tmp_path: Path) -> None:
    rec = procs.start(
        "sleeper",
        [sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(60)"],
        log=tmp_path / "sleeper.log",
        pid_dir=tmp_path / "pids",
    )
    try:
        assert procs.alive(rec)
        loaded = procs.load_record(tmp_path / "pids", "sleeper")
        assert loaded is not None and loaded.pid == rec.pid and procs.alive(loaded)
        procs.wait_until(
            lambda: ("hi" in (tmp_path / "sleeper.log").read_text(), "no 'hi' in the log yet"),
            component="sleeper",
            timeout=10,
            record=rec,
        )
        # a record with the same pid but another start time is not "our" process
        fake = procs.ProcessRecord("x", rec.pid, rec.start_ticks + 1, [], "")
        assert not procs.alive(fake)
        assert procs.stop(fake) is False
    finally:
        assert procs.stop(rec, timeout=5)
    assert not procs.alive(rec)


def test_wait_until_fails_fast_with_log_tail_when_the_process_dies(tmp_path: Path) -> None:
    rec = procs.start(
        "dier",
        [sys.executable, "-c", "import sys; print('boom: bad flag'); sys.exit(3)"],
        log=tmp_path / "dier.log",
        pid_dir=tmp_path,
    )
    t0 = time.monotonic()
    with pytest.raises(procs.ComponentError) as err:
        procs.wait_until(lambda: (False, "never"), component="dier", timeout=30, record=rec)
    assert time.monotonic() - t0 < 10
    assert "dier: exited before it was ready" in str(err.value)
    assert "boom: bad flag" in str(err.value)
    assert err.value.component == "dier"


def test_wait_until_timeout_names_the_last_check(tmp_path: Path) -> None:
    with pytest.raises(procs.ComponentError, match=r"not ready after 0s .*HTTP 503"):
        procs.wait_until(lambda: (False, "HTTP 503"), component="x", timeout=0.3, interval=0.05)


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "l"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert procs.tail(log, 3) == "line 97\nline 98\nline 99"
    assert procs.tail(tmp_path / "missing") == "(no log)"


def test_ports() -> None:
    port = procs.free_port()
    assert procs.port_free("127.0.0.1", port)


# ------------------------------------------------------------------------------------- progress & CLI


def test_progress_lines_have_elapsed_seconds() -> None:
    buf = io.StringIO()
    p = Progress(stream=buf, prefix="x: ")
    p("etcd ready")
    with p.step("kube-apiserver"):
        pass
    lines = buf.getvalue().splitlines()
    assert lines[0].endswith("] x: etcd ready") and lines[0].startswith("[")
    assert lines[-1].startswith("[") and "kube-apiserver ready (" in lines[-1]


def test_cli_refuses_local_up_without_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness import cli
    from harness.cluster import local

    monkeypatch.setenv("HPA_KIT_STATE", str(tmp_path))
    monkeypatch.setattr(local, "_is_root", lambda: False)
    rc = cli.main(["up", "--provider", "local"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err == "hpa-kit: the local provider needs root (it runs containerd and kubelet): run with sudo"


def test_cli_rejects_bad_hpa_flag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness import cli

    monkeypatch.setenv("HPA_KIT_STATE", str(tmp_path))
    rc = cli.main(["up", "--provider", "local", "--hpa-sync-period", "soon"])
    assert rc == 1
    assert "invalid duration 'soon'" in capsys.readouterr().err


def test_cli_status_of_a_cluster_that_never_ran(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness import cli

    monkeypatch.setenv("HPA_KIT_STATE", str(tmp_path))
    rc = cli.main(["status", "--provider", "local", "--name", "nothere", "--json"])
    assert rc == 3
    data = json.loads(capsys.readouterr().out)
    assert data["running"] is False and data["provider"] == "local"
    assert {c["name"] for c in data["components"]} >= {"etcd", "kube-apiserver", "kubelet"}


def test_cli_logs_unknown_component(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness import cli

    monkeypatch.setenv("HPA_KIT_STATE", str(tmp_path))
    rc = cli.main(["logs", "--provider", "local", "nope"])
    assert rc == 1 and "unknown component 'nope'" in capsys.readouterr().err


def test_containerd_registry_traffic_goes_to_a_dead_loopback_proxy(tmp_path: Path) -> None:
    env = flags.containerd_env(LocalSettings(name="p1", state_root=tmp_path))
    assert env["HTTPS_PROXY"] == env["HTTP_PROXY"] == "http://127.0.0.1:9"
    assert env["NO_PROXY"] == "" and env["no_proxy"] == ""
    unblocked = LocalSettings(name="p2", state_root=tmp_path, block_registry_pulls=False)
    assert flags.containerd_env(unblocked) == {}


def test_run_dir_falls_back_to_run_for_long_state_paths(tmp_path: Path) -> None:
    short = LocalCluster(LocalSettings(name="s", state_root=tmp_path))
    assert short.run_dir == short.state_dir / "run"
    long_root = tmp_path / ("x" * 90)
    long = LocalCluster(LocalSettings(name="s", state_root=long_root))
    assert long.run_dir == Path("/run/hpa-kit-s")
    assert len(str(long.paths.containerd_sock) + ".ttrpc") < 108


def _vanishing_scandir(monkeypatch: pytest.MonkeyPatch, gone: Path) -> None:
    """os.scandir as the kernel answers it when a pod's cgroup is removed mid-walk."""
    real = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(path) == gone:
            gone.rmdir()
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_cgroup_walks_survive_a_pod_cgroup_vanishing_mid_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CI failed once in cluster.stop(): kubelet removed a container's cgroup between the listing of
    # its parent and the scandir of the directory itself.
    pod = tmp_path / "cpuacct" / "kubepods" / "burstable" / "pod1"
    gone = pod / "c-gone"
    (pod / "c-live").mkdir(parents=True)
    gone.mkdir()
    (pod / "c-live" / "cgroup.procs").write_text("")
    monkeypatch.setattr(hostnet, "CGROUP_ROOT", tmp_path)
    _vanishing_scandir(monkeypatch, gone)
    assert hostnet.kill_cgroup_procs(timeout=1) == 0
    (pod / "c-live" / "cgroup.procs").unlink()  # cgroupfs files go with their directory; tmpfs needs help
    gone.mkdir()
    assert hostnet.remove_cgroups() == []
    assert not (tmp_path / "cpuacct" / "kubepods").exists()
