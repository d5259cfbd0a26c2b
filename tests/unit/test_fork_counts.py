"""Counting the processes a session forks, by tool (harness.procs.count_forks), and the pytest
plugin's per-test record of them (forks.json + one summary line). Real forks of a stand-in `kubectl`
script; the plugin runs in a real inner pytest (pytester)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness import procs
from harness.kubectl import Kubectl

pytest_plugins = ["pytester"]


def _fake_kubectl(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "kubectl"
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\necho '{}'\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(("args", "shell", "want"), [
    (["/usr/bin/kubectl", "get", "pods"], False, "kubectl"),
    ((b"/usr/sbin/ctr", b"images", b"ls"), False, "ctr"),
    ([Path("/opt/bin/skopeo"), "copy"], False, "skopeo"),
    ("/usr/bin/buildah", False, "buildah"),
    ("KUBECONFIG=x kubectl get pods", True, "KUBECONFIG=x"),  # only the first word, as documented
    ("/usr/bin/iptables -S | grep x", True, "iptables"),
    ([], False, "?"),
])  # fmt: skip
def test_tool_name(args: object, shell: bool, want: str) -> None:
    assert procs.tool_name(args, shell=shell) == want


def test_every_fork_is_counted_by_tool_whoever_runs_it(tmp_path: Path) -> None:
    procs.count_forks()
    procs.count_forks()  # idempotent: one hook, so one count per fork
    kubectl = Kubectl(tmp_path / "kubeconfig", binary=str(_fake_kubectl(tmp_path)))
    before = procs.fork_counts()
    for _ in range(3):
        assert kubectl.json("get", "pods") == {}
    subprocess.run(["true"], check=True)
    subprocess.run("true && true", shell=True, check=True)  # one sh; its children are not ours
    os.system("true")
    after = procs.fork_counts()
    diff = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    assert diff == {"kubectl": 3, "true": 3}


def test_the_plugin_records_forks_per_test_and_phase(pytester: pytest.Pytester, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    for var in ("HPA_KIT_REPORTS", "CI"):
        monkeypatch.delenv(var, raising=False)
    fake = _fake_kubectl(tmp_path)
    pytester.makepyfile(f"""
        import subprocess
        import pytest

        KUBECTL = {str(fake)!r}

        @pytest.fixture
        def two_in_setup():
            for _ in range(2):
                subprocess.run([KUBECTL, "get", "ns"], check=True, capture_output=True)
            yield
            subprocess.run(["true"], check=True)

        def test_many(two_in_setup):
            for _ in range(5):
                subprocess.run([KUBECTL, "get", "pods"], check=True, capture_output=True)

        def test_few():
            subprocess.run([KUBECTL, "version"], check=True, capture_output=True)

        def test_none():
            pass
    """)
    reports = tmp_path / "reports"
    result = pytester.runpytest_subprocess("-p", "harness.pytest_plugin", "-p", "no:cacheprovider",
                                           f"--hpa-kit-reports={reports}")
    result.assert_outcomes(passed=3)
    data = json.loads((reports / "forks.json").read_text())
    tests = {k.rpartition("::")[2]: v for k, v in data["tests"].items()}
    assert tests["test_many"] == {"total": {"kubectl": 7, "true": 1}, "setup": {"kubectl": 2},
                                  "call": {"kubectl": 5}, "teardown": {"true": 1}}
    assert tests["test_few"]["total"] == {"kubectl": 1}
    assert tests["test_none"]["total"] == {}
    assert data["session"] == {"kubectl": 8, "true": 1} and data["outside_tests"] == {}
    result.stdout.fnmatch_lines([
        f"hpa-kit forks: kubectl 8 (0 outside tests); others: true 1; most kubectl: test_many 7 (call 5), "
        f"test_few 1 (call 1); per test: {reports / 'forks.json'}",
    ])


def test_the_hook_never_breaks_a_fork_it_cannot_name() -> None:
    before = procs.fork_counts().get("?", 0)
    procs._count_hook("subprocess.Popen", (None, [object()], None, None))  # no exception into Popen
    procs._count_hook("open", ("/etc/hostname", "r", 0))  # other audit events are not forks
    assert procs.fork_counts().get("?", 0) == before + 1
