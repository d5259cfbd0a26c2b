"""procs.run, the harness's one way to run a short-lived command: real tiny commands (sh, sleep, a
program that does not exist), checking the exception type the caller asked for and the message."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness import procs
from harness.errors import HarnessError


class Mine(Exception):
    """A caller's own exception type, as each module passes its own (KubectlError, ImageError...)."""


def test_captures_stdout_and_stderr() -> None:
    proc = procs.run(["sh", "-c", "echo out; echo err >&2"])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "out\n", "err\n")
    assert proc.args == ["sh", "-c", "echo out; echo err >&2"]


def test_failure_names_command_exit_code_and_stderr_tail() -> None:
    script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i >&2; done; echo x; exit 3"
    with pytest.raises(Mine) as info:
        procs.run(["sh", "-c", script], error=Mine)
    msg = str(info.value)
    assert msg.startswith(f"sh -c '{script}' failed (exit 3):\n")
    assert msg.splitlines()[1:] == [f"line{i}" for i in range(3, 13)]  # the last 10 lines of stderr
    assert "x" not in msg.splitlines()[1:]  # stdout is not stderr


def test_default_error_is_harness_error_and_what_names_the_command() -> None:
    with pytest.raises(HarnessError) as info:
        procs.run(["sh", "-c", "echo only this >&2; exit 1"], what="the probe", lines=1)
    assert str(info.value) == "the probe failed (exit 1): only this"


def test_failure_without_stderr_quotes_stdout_and_without_output_nothing() -> None:
    with pytest.raises(Mine, match=r"^sh -c 'echo said; exit 2' failed \(exit 2\): said$"):
        procs.run(["sh", "-c", "echo said; exit 2"], error=Mine)
    with pytest.raises(Mine) as info:
        procs.run(["sh", "-c", "exit 4"], error=Mine)
    assert str(info.value) == "sh -c 'exit 4' failed (exit 4)"


def test_long_command_lines_are_shortened() -> None:
    argv = ["sh", "-c", "exit 1", "x" * 500]
    with pytest.raises(Mine) as info:
        procs.run(argv, error=Mine)
    head = str(info.value).split(" failed ")[0]
    assert head.startswith("sh -c 'exit 1' xxx") and head.endswith(" ...")
    assert len(head) == 200


def test_check_false_returns_the_result_as_is() -> None:
    proc = procs.run(["sh", "-c", "echo x; echo e >&2; exit 3"], check=False, error=Mine)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "x\n", "e\n")


def test_timeout() -> None:
    t0 = time.monotonic()
    with pytest.raises(Mine) as info:
        procs.run(["sleep", "5"], timeout=0.3, error=Mine)
    assert time.monotonic() - t0 < 4
    assert str(info.value) == "sleep 5 timed out after 0.3s"
    with pytest.raises(Mine, match=r"^slow timed out after 1s$"):
        procs.run(["sleep", "5"], timeout=1, what="slow", error=Mine)


def test_missing_program_with_and_without_hint(tmp_path: Path) -> None:
    with pytest.raises(Mine) as info:
        procs.run(["hpa-kit-no-such-tool", "x"], error=Mine, missing="install it or set NOSUCH")
    assert str(info.value) == "hpa-kit-no-such-tool not found: install it or set NOSUCH"
    assert isinstance(info.value.__cause__, FileNotFoundError)
    # check=False does not hide it: there is no returncode to look at
    with pytest.raises(Mine, match=r"^hpa-kit-no-such-tool not found: install hpa-kit-no-such-tool or put"):
        procs.run(["hpa-kit-no-such-tool"], check=False, error=Mine)
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(Mine, match=r"^cannot run .*not-executable: Permission denied; fix it$"):
        procs.run([plain], error=Mine, missing="fix it")


def test_input_env_cwd_and_bytes(tmp_path: Path) -> None:
    proc = procs.run(["sh", "-c", 'cat; echo "$HPA_KIT_X"; pwd'], input="in\n", cwd=tmp_path,
                     env={"PATH": os.environ["PATH"], "HPA_KIT_X": "y"})
    assert proc.stdout == f"in\ny\n{tmp_path}\n"
    raw = procs.run(["cat"], input=b"\x00\xff", text=False)
    assert raw.stdout == b"\x00\xff"
    with pytest.raises(Mine, match=r"failed \(exit 1\): b\ufffd$"):
        procs.run(["sh", "-c", "printf 'b\\377' >&2; exit 1"], text=False, error=Mine)


def test_streams_into_a_log_file(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    with log.open("w") as fh:
        fh.write("header\n")
        proc = procs.run(["sh", "-c", "echo out; echo err >&2"], stdout=fh)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    assert log.read_text() == "header\nout\nerr\n"  # what the caller wrote first stays first
    with log.open("w") as fh, pytest.raises(Mine) as info:
        procs.run(["sh", "-c", "echo progress; echo broke >&2; exit 5"], stdout=fh, what="build", error=Mine)
    assert str(info.value) == f"build failed (exit 5); see {log}:\nprogress\nbroke"
    with log.open("w") as fh, pytest.raises(Mine, match=rf"^sleep 5 timed out after 0.2s; see {log}$"):
        procs.run(["sleep", "5"], stdout=fh, timeout=0.2, error=Mine)


def test_streams_into_a_descriptor_and_inherits(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "fd.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(Mine, match=r"^sh -c 'echo to-fd; exit 1' failed \(exit 1\)$"):
            procs.run(["sh", "-c", "echo to-fd; exit 1"], stdout=fd, error=Mine)
    finally:
        os.close(fd)
    assert log.read_text() == "to-fd\n"
    with pytest.raises(Mine, match=r"^script failed \(exit 6\); output above$"):
        procs.run(["sh", "-c", "echo visible; echo also >&2; exit 6"], stdout=procs.INHERIT, what="script",
                  error=Mine)
    out, err = capfd.readouterr()
    assert (out, err) == ("visible\n", "also\n")


def test_runs_are_counted_as_forks_of_their_tool() -> None:
    procs.count_forks()
    before = procs.fork_counts().get("true", 0)
    procs.run(["true"])
    assert procs.fork_counts().get("true", 0) == before + 1


# ------------------------------------------------------------------ callers keep their exception types


def _fake_tool(tmp_path: Path, name: str, script: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


def test_kubectl_errors_are_kubectl_errors(tmp_path: Path) -> None:
    from harness.kubectl import Kubectl, KubectlError

    fake = _fake_tool(tmp_path, "kubectl", 'echo "reading $KUBECONFIG" >&2; echo "Error: boom" >&2; exit 2')
    k = Kubectl(tmp_path / "kc", binary=str(fake))
    with pytest.raises(KubectlError) as info:
        k.run("get", "ns", "-l", "a b")
    kc = tmp_path / "kc"
    assert str(info.value) == f"`kubectl get ns -l 'a b'` failed (exit 2):\nreading {kc}\nError: boom"
    assert k.run("get", "ns", check=False) == ""
    slow = _fake_tool(tmp_path, "slow", "sleep 5")
    with pytest.raises(KubectlError, match=r"`kubectl get ns` timed out after 0.2s"):
        Kubectl(tmp_path / "kc", binary=str(slow)).run("get", "ns", timeout=0.2)
    nope = tmp_path / "nope"
    with pytest.raises(KubectlError) as info:
        Kubectl(tmp_path / "kc", binary=str(nope)).run("get", "ns")
    assert str(info.value) == f"{nope} not found: install kubectl or set KUBECTL (now {str(nope)!r})"


def test_kubectl_apply_is_a_server_side_apply_of_the_docs_as_yaml(tmp_path: Path) -> None:
    import yaml

    from harness.kubectl import FIELD_MANAGER, Kubectl

    script = f'echo "$@" > {tmp_path}/argv; cat > {tmp_path}/stdin; echo applied'
    fake = _fake_tool(tmp_path, "kubectl", script)
    docs = [{"kind": "ConfigMap", "metadata": {"name": "a"}}, {"kind": "Service", "metadata": {"name": "b"}}]
    assert Kubectl(tmp_path / "kc", binary=str(fake)).apply(docs, field_manager="me") == "applied\n"
    argv = (tmp_path / "argv").read_text().split()
    assert argv == ["apply", "--server-side", "--force-conflicts", "--field-manager=me", "-f", "-"]
    assert list(yaml.safe_load_all((tmp_path / "stdin").read_text())) == docs
    Kubectl(tmp_path / "kc", binary=str(fake)).apply(docs[:1])
    assert f"--field-manager={FIELD_MANAGER}" in (tmp_path / "argv").read_text().split()


def test_manifests_name_the_missing_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import manifests

    monkeypatch.setenv("KUBECTL", str(tmp_path / "no-kubectl"))
    with pytest.raises(manifests.ManifestError, match=r"no-kubectl not found: install kubectl \(>= 1.27, it"):
        manifests.kustomize(tmp_path)
    failing = _fake_tool(tmp_path, "kubectl", "echo 'error: no kustomization' >&2; exit 1")
    monkeypatch.setenv("KUBECTL", str(failing))
    with pytest.raises(manifests.ManifestError) as info:
        manifests.kustomize(tmp_path)
    assert str(info.value) == f"kubectl kustomize {tmp_path} failed (exit 1): error: no kustomization"


def test_existing_cluster_without_kubectl_is_not_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.cluster.existing import ExistingCluster

    (tmp_path / "kc").write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECTL", str(tmp_path / "no-kubectl"))
    assert ExistingCluster("x", kubeconfig=tmp_path / "kc").running() is False


def test_hostnet_tools_raise_runtime_error_and_a_missing_ipset_means_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.cluster import hostnet

    with pytest.raises(RuntimeError, match=r"^sh -c 'echo in use >&2; exit 1' failed \(exit 1\): in use$"):
        hostnet.run(["sh", "-c", "echo in use >&2; exit 1"])
    assert hostnet.run(["sh", "-c", "cat; exit 1"], input="kept", check=False) == "kept"
    _fake_tool(tmp_path, "ipset", "echo KUBE-SRC-A; echo other")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert hostnet.ipsets() == ["KUBE-SRC-A", "other"]
    (tmp_path / "ipset").unlink()
    assert hostnet.ipsets() == []  # no ipset tool: no ipsets to clean up
