"""harness.incluster_load without a cluster: generated Jobs, env, the master's wrapper, history, lifecycle.

The lifecycle tests drive :class:`InClusterLocust` against a small in-memory stand-in for kubectl that
keeps Jobs and pods, so the order of operations (save, delete, create, unsuspend, restore) and the
error messages are checked for real; the e2e test runs the same code on a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from harness import incluster_load as icl
from harness.kubectl import Kubectl, KubectlError
from harness.load import LoadError, LocustRun, Stage
from harness.manifests import LOCUSTFILE

REPO = Path(__file__).resolve().parents[2]
VERSIONS = dict(
    line.split("=", 1)
    for line in (REPO / "scripts" / "versions.env").read_text().splitlines()
    if "=" in line and not line.lstrip().startswith("#")
)
K8S_MINOR = ".".join(VERSIONS["K8S_VERSION"].lstrip("v").split(".")[:2])

HEADER = (
    "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,"
    "100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,"
    "Total Min Response Time,Total Max Response Time,Total Average Content Size\n"
)


def _row(ts: int, users: int, rps: float, fails: float = 0.0, name: str = "Aggregated") -> str:
    pct = ",".join(["4"] * 11)
    return f"{ts},{users},,{name},{rps},{fails},{pct},100,0,4,4.2,1,30,12\n"


def _run(tmp_path: Path, kubectl: Kubectl | None = None, **kw: Any) -> icl.InClusterLocust:
    args: dict[str, Any] = {
        "namespace": "demo",
        "target_url": "http://hits.demo.svc:8080",
        "user_class": "HitUser",
        "stages": [Stage(10, 4, 2), Stage(20, 8, 4)],
        "workers": 2,
        "out_dir": tmp_path / "load",
        "progress": None,
    }
    args.update(kw)
    return icl.InClusterLocust(kubectl or Kubectl(tmp_path / "kubeconfig"), **args)


# ---------------------------------------------------------------------------------- manifests / env


def test_environment_carries_the_locustfile_knobs(tmp_path: Path) -> None:
    run = _run(tmp_path, work_ms=450, think_time=(0.2, 0.4), env={"EXTRA": "1"})
    env = run.environment()
    assert json.loads(env["HPA_KIT_STAGES"]) == [[10, 4, 2], [20, 8, 4]]
    assert env["HPA_KIT_WORK_MS"] == "450"
    assert env["HPA_KIT_WAIT"] == "0.2,0.4"
    assert env["LOCUST_HOST"] == "http://hits.demo.svc:8080"
    assert env["LOCUST_USER_CLASSES"] == "HitUser"
    assert env["LOCUST_EXPECT_WORKERS"] == "2"
    assert env["EXTRA"] == "1"
    # Same encoding as the local runner, so one locustfile reads both.
    local = LocustRun("http://x", "HitUser", run.stages, tmp_path, work_ms=450, think_time=(0.2, 0.4))
    local_env = local.environment()
    for key in ("HPA_KIT_STAGES", "HPA_KIT_WORK_MS", "HPA_KIT_WAIT"):
        assert env[key] == local_env[key]


def test_jobs_are_the_template_with_this_runs_settings(tmp_path: Path) -> None:
    run = _run(tmp_path, image="registry.example/locust:1")
    master, worker = run.jobs()
    template = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all(icl.JOB_TEMPLATE.read_text())
        if d and d["kind"] == "Job"
    }
    for job in (master, worker):
        assert job["metadata"]["namespace"] == "demo"
        assert job["spec"]["suspend"] is True, "created suspended, unsuspended once both exist"
        assert job["metadata"]["labels"][icl.RUN_LABEL] == run.run_id
        assert job["spec"]["template"]["metadata"]["labels"][icl.RUN_LABEL] == run.run_id
        pod = job["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert "envFrom" not in c, "the locust-settings ConfigMap must not leak into a harness run"
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env == run.environment()
        assert c["image"] == "registry.example/locust:1"
        assert pod["volumes"] == template[job["metadata"]["name"]]["spec"]["template"]["spec"]["volumes"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        kubernetes_validate.validate(job, K8S_MINOR, strict=True)
    assert worker["spec"]["parallelism"] == worker["spec"]["completions"] == 2
    assert (
        "--master-host=locust-master.demo.svc" in worker["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    mc = master["spec"]["template"]["spec"]["containers"][0]
    assert mc["command"][:2] == ["/bin/sh", "-c"] and mc["command"][3] == "locust"
    assert "--master" in mc["args"] and "--headless" in mc["args"]
    assert f"--csv={icl.CSV_PREFIX}" in mc["args"]
    assert master["spec"]["backoffLimit"] == 0


def test_locustfile_configmap_and_service_follow_the_namespace(tmp_path: Path) -> None:
    run = _run(tmp_path)
    cm = run.locustfile_configmap()
    assert cm["metadata"] == {
        "name": "locustfile",
        "namespace": "demo",
        "labels": {"app.kubernetes.io/name": "locust", "app.kubernetes.io/part-of": "hpa-kit"},
    }
    assert cm["data"] == {"locustfile.py": LOCUSTFILE.read_text()}
    svc = run.master_service()
    assert svc["metadata"]["namespace"] == "demo"
    master_labels = run.jobs()[0]["spec"]["template"]["metadata"]["labels"]
    assert all(master_labels[k] == v for k, v in svc["spec"]["selector"].items())
    for obj in (cm, svc):
        kubernetes_validate.validate(obj, K8S_MINOR, strict=True)


def test_master_service_routes_only_to_this_runs_ready_master(tmp_path: Path) -> None:
    """A worker must never reach a previous run's master: the Service selects this run's pod only,
    and only once the master listens. Seen on kind: the Service still pointed at the master of the
    run before (deleted), a worker's first SYN was NATed to that dead pod IP, and its connection
    (the same socket, retransmitting into the stale conntrack entry) stayed stuck for over 90 s."""
    run = _run(tmp_path)
    svc = run.master_service()
    assert svc["spec"]["selector"][icl.RUN_LABEL] == run.run_id
    other = _run(tmp_path)
    assert other.master_service()["spec"]["selector"][icl.RUN_LABEL] != run.run_id
    master = run.jobs()[0]["spec"]["template"]["spec"]["containers"][0]
    probe = master["readinessProbe"]
    assert probe["tcpSocket"]["port"] == "comm"
    assert probe["periodSeconds"] <= 2


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"user_class": "NoUser"}, "unknown user class"),
        ({"stages": []}, "at least one Stage"),
        ({"stages": [Stage(5, 1), Stage(3, 1)]}, "increasing"),
        ({"workers": 0}, "at least 1"),
        ({"target_url": "hits.demo.svc:8080"}, "in-cluster address"),
    ],
)
def test_bad_runs_are_refused_before_anything_is_applied(
    tmp_path: Path, kw: dict[str, Any], message: str
) -> None:
    fake = FakeKubectl(tmp_path)
    with pytest.raises(LoadError, match=message):
        _run(tmp_path, fake, **kw)
    assert fake.calls == []


# ------------------------------------------------------------------------------------ master wrapper


def _wrapper_script(prefix: Path) -> str:
    return icl._MASTER_WRAPPER.replace(icl.CSV_PREFIX, str(prefix))


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs /bin/sh")
def test_master_wrapper_prints_history_after_locust_and_keeps_its_exit_code(tmp_path: Path) -> None:
    prefix = tmp_path / "load"
    fake = tmp_path / "bin" / "locust"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f"printf '%s' '{HEADER}{_row(100, 2, 5.0)}' > {prefix}_stats_history.csv\n"
        'echo "summary: args $*"\n'
        "exit 3\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    proc = subprocess.run(
        ["/bin/sh", "-c", _wrapper_script(prefix), "locust", "--master", "--csv=x"],
        capture_output=True, text=True, env=env, timeout=20, check=False,
    )  # fmt: skip
    assert proc.returncode == 3
    head, csv_text = icl.split_master_log(proc.stdout)
    assert "summary: args --master --csv=x" in head
    assert csv_text == HEADER + _row(100, 2, 5.0)


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs /bin/sh")
def test_master_wrapper_forwards_sigterm_so_pod_deletion_is_prompt(tmp_path: Path) -> None:
    prefix = tmp_path / "load"
    fake = tmp_path / "bin" / "locust"
    fake.parent.mkdir()
    # Like Locust: writes its CSV, runs until SIGTERM, then exits 0.
    fake.write_text(
        "#!/bin/sh\n"
        f"printf '%s' '{HEADER}' > {prefix}_stats_history.csv\n"
        "trap 'echo stopping; exit 0' TERM\n"
        "while :; do sleep 0.1; done\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(
        ["/bin/sh", "-c", _wrapper_script(prefix), "locust"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "stopping" in out and icl.HISTORY_MARKER in out


# -------------------------------------------------------------------------------------------- history


def test_split_master_log_and_partial_lines() -> None:
    log = f"[2025] INFO starting\nsummary table\n{icl.HISTORY_MARKER}\n{HEADER}{_row(1, 1, 1.0)}"
    head, csv_text = icl.split_master_log(log)
    assert head == "[2025] INFO starting\nsummary table\n"
    assert csv_text == HEADER + _row(1, 1, 1.0)
    assert icl.split_master_log("no marker here") == ("no marker here", None)
    assert icl._complete_lines(HEADER + _row(1, 1, 1.0) + "17000,3,,Aggr") == HEADER + _row(1, 1, 1.0)
    assert icl._complete_lines("half a header") == ""


# ------------------------------------------------------------------------------------------ lifecycle


class FakeKubectl(Kubectl):
    """kubectl with Jobs and pods in memory: enough of the API for InClusterLocust's calls."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path / "kubeconfig")
        self.calls: list[tuple[str, ...]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.applied: list[dict[str, Any]] = []
        self.csv = HEADER
        self.master_log = (
            "locust master log line\n"
            "[ts] m/INFO/locust.runners: w-a_1 (index 0) reported as ready. 1 workers connected.\n"
            "[ts] m/INFO/locust.runners: w-b_2 (index 1) reported as ready. 2 workers connected.\n"
        )
        self.worker_state: dict[str, Any] = {"running": {}}
        self.master_state: dict[str, Any] = {"running": {}}
        self.master_phase = "Running"
        self.exec_fails = False

    def installed(self, *, suspend: bool = True, **status: Any) -> None:
        for name in ("locust-master", "locust-worker"):
            self.jobs[name] = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": name, "namespace": "demo", "uid": "u-" + name, "resourceVersion": "7",
                    "labels": {"app.kubernetes.io/name": "locust", "app.kubernetes.io/part-of": "hpa-kit"},
                    "managedFields": [{"manager": "kubectl"}],
                },
                "spec": {
                    "suspend": suspend,
                    "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-" + name}},
                    "template": {"metadata": {"labels": {
                        "app.kubernetes.io/name": "locust", "controller-uid": "u-" + name,
                        "batch.kubernetes.io/controller-uid": "u-" + name, "job-name": name,
                        "batch.kubernetes.io/job-name": name,
                    }}, "spec": {"containers": [{"name": "locust", "image": "hpa-kit/locust:0.1.0"}]}},
                },
                "status": dict(status),
            }  # fmt: skip

    def _pod(self, job: dict[str, Any], index: int, state: dict[str, Any], phase: str) -> dict[str, Any]:
        labels = dict(job["spec"]["template"]["metadata"]["labels"])
        labels["job-name"] = job["metadata"]["name"]
        return {
            "metadata": {"name": f"{job['metadata']['name']}-{index}", "labels": labels},
            "spec": job["spec"]["template"]["spec"],
            "status": {"phase": phase, "containerStatuses": [{"name": "locust", "state": state}]},
        }

    def run(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
        self.calls.append(args)
        a = list(args)
        if a[:2] == ["-n", "demo"]:
            a = a[2:]
        verb = a[0]
        if verb == "get" and a[1] == "jobs":
            return json.dumps({"items": list(self.jobs.values())})
        if verb == "get" and a[1] == "pods":
            selector = a[a.index("-l") + 1]
            if selector.startswith(icl.RUN_LABEL):
                run_id = selector.split("=", 1)[1]
                items = [p for p in self.pods if p["metadata"]["labels"].get(icl.RUN_LABEL) == run_id]
            else:
                items = [p for p in self.pods if p["metadata"]["labels"]["job-name"] in self.jobs]
            return json.dumps({"items": items})
        if verb == "get" and a[1] == "events":
            return "LAST SEEN  TYPE  REASON  OBJECT  MESSAGE\n1s Warning Failed pod/locust-worker-0 pull\n"
        if verb == "apply":
            self.applied.extend(json.loads(stdin or "{}")["items"])
            return ""
        if verb == "create":
            for job in json.loads(stdin or "{}")["items"]:
                if job["metadata"]["name"] in self.jobs:
                    raise KubectlError(f"jobs.batch {job['metadata']['name']!r} already exists")
                self.jobs[job["metadata"]["name"]] = job
            return ""
        if verb == "patch":
            for name in ("locust-master", "locust-worker"):
                job = self.jobs[name]
                job["spec"]["suspend"] = False
                if name == "locust-master":
                    self.pods.append(self._pod(job, 0, self.master_state, self.master_phase))
                else:
                    for i in range(job["spec"]["parallelism"]):
                        phase = "Running" if "running" in self.worker_state else "Pending"
                        self.pods.append(self._pod(job, i, self.worker_state, phase))
            return ""
        if verb == "delete":
            for name in ("locust-master", "locust-worker"):
                self.jobs.pop(name, None)
            self.pods = [p for p in self.pods if p["metadata"]["labels"]["job-name"] in self.jobs]
            return ""
        if verb == "exec":
            return "" if self.exec_fails else self.csv
        if verb == "logs":
            return self.master_log if a[1].startswith("locust-master") else "worker log\nconnection refused\n"
        raise AssertionError(f"unexpected kubectl call {args}")


def test_workers_connected_is_the_masters_latest_count() -> None:
    assert icl.workers_connected("starting\n") is None
    log = (
        "[t] m/DEBUG/root: Waiting for workers to be ready, 0 of 2 connected\n"
        "[t] m/INFO/locust.runners: w-1 (index 0) reported as ready. 1 workers connected.\n"
        "[t] m/INFO/root: Waiting for workers to be ready, 1 of 2 connected\n"
    )
    assert icl.workers_connected(log) == 1
    assert icl.workers_connected(log + "[t] w-2 (index 1) reported as ready. 2 workers connected.\n") == 2
    # a worker that left and came back: the latest count, not the highest
    assert icl.workers_connected(log.replace("1 of 2", "0 of 2")) == 0


def test_start_returns_only_once_the_master_counts_every_worker(tmp_path: Path) -> None:
    fake = FakeKubectl(tmp_path)
    fake.master_log = "[t] m/INFO/root: Waiting for workers to be ready, 1 of 2 connected\n"
    with pytest.raises(LoadError) as err:
        _run(tmp_path, fake, start_timeout=2).start()
    msg = str(err.value)
    assert "Locust workers not connected" in msg and "the master counts 1 of 2 workers" in msg, msg
    assert "locust-worker-0" in msg and "connection refused" in msg, "each worker's log tail is shown"
    assert fake.jobs == {} and fake.pods == [], "the run is cleaned up"


def test_a_master_that_gives_up_on_its_workers_fails_start_with_its_log(tmp_path: Path) -> None:
    fake = FakeKubectl(tmp_path)
    fake.master_phase = "Failed"
    fake.master_state = {"terminated": {"exitCode": 1}}
    fake.master_log = "[t] m/ERROR/root: Gave up waiting for workers to connect\n"
    with pytest.raises(LoadError, match="Gave up waiting for workers"):
        _run(tmp_path, fake, start_timeout=30).start()


def test_start_replaces_installed_jobs_and_stop_restores_them(tmp_path: Path) -> None:
    fake = FakeKubectl(tmp_path)
    fake.installed()
    run = _run(tmp_path, fake).start()
    assert fake.jobs["locust-master"]["metadata"]["labels"][icl.RUN_LABEL] == run.run_id
    assert fake.jobs["locust-worker"]["spec"]["suspend"] is False
    assert {o["kind"] for o in fake.applied} == {"ConfigMap", "Service"}
    assert len([p for p in fake.pods if "worker" in p["metadata"]["name"]]) == 2
    assert run.running
    verbs = [c[2] if c[:2] == ("-n", "demo") else c[0] for c in fake.calls]
    assert verbs.index("delete") < verbs.index("create") < verbs.index("patch")
    assert (tmp_path / "load" / "locust-jobs.yaml").is_file()

    run.stop()
    assert not run.running and fake.pods == []
    restored = fake.jobs["locust-master"]
    assert restored["spec"]["suspend"] is True and icl.RUN_LABEL not in restored["metadata"]["labels"]
    assert "uid" not in restored["metadata"] and "managedFields" not in restored["metadata"]
    assert "selector" not in restored["spec"] and "status" not in restored
    assert restored["spec"]["template"]["metadata"]["labels"] == {"app.kubernetes.io/name": "locust"}
    assert (tmp_path / "load" / "locust-master-locust-master-0.log").read_text() == fake.master_log
    run.stop()  # idempotent


def test_history_while_running_and_from_the_log_once_finished(tmp_path: Path) -> None:
    fake = FakeKubectl(tmp_path)
    run = _run(tmp_path, fake)
    assert run.history() == []  # before start: nothing, no kubectl call
    assert fake.calls == []
    now = int(time.time())
    fake.csv = HEADER + _row(now - 2, 4, 35.5) + _row(now - 2, 4, 35.5, name="/") + _row(now - 1, 8, 70.0)
    fake.csv += f"{now},8,,Aggre"  # mid-flush
    run.start()
    hist = run.history()
    assert [(s.users, s.rps) for s in hist] == [(4, 35.5), (8, 70.0)]
    assert run.history_path.read_text().endswith(_row(now - 1, 8, 70.0))
    # The master finished: exec no longer works, the log carries the final CSV.
    fake.csv = ""
    fake.exec_fails = True
    fake.pods[0]["status"] = {
        "phase": "Succeeded",
        "containerStatuses": [{"name": "locust", "state": {"terminated": {"exitCode": 0}}}],
    }
    fake.master_log = f"summary\n{icl.HISTORY_MARKER}\n{HEADER}{_row(now - 1, 8, 70.0)}{_row(now, 0, 0.0)}"
    run._fetched_at = 0.0
    assert run.wait(timeout=5) == 0
    assert [(s.users, s.rps) for s in run.history()] == [(8, 70.0), (0, 0.0)]
    run.stop()
    assert [s.users for s in run.history()] == [8, 0], "history survives the pods"


def test_a_pod_that_cannot_start_is_named_with_its_log_and_the_run_cleaned_up(tmp_path: Path) -> None:
    fake = FakeKubectl(tmp_path)
    fake.worker_state = {"waiting": {"reason": "ErrImageNeverPull", "message": "image not present"}}
    with pytest.raises(LoadError) as err:
        _run(tmp_path, fake).start()
    msg = str(err.value)
    assert "worker pod demo/locust-worker-0" in msg and "ErrImageNeverPull" in msg
    assert "connection refused" in msg, "the log tail is part of the error"
    assert "hpa-kit load-images locust" in msg
    assert fake.jobs == {} and fake.pods == []


def test_start_timeout_names_what_it_waited_for(tmp_path: Path) -> None:
    fake = FakeKubectl(tmp_path)
    fake.worker_state = {"waiting": {"reason": "ContainerCreating"}}
    with pytest.raises(LoadError, match=r"(?s)0/2 workers Running.*describe job.*pull"):
        _run(tmp_path, fake, start_timeout=1).start()
    assert fake.jobs == {}


def test_a_load_test_started_by_hand_is_not_clobbered(tmp_path: Path) -> None:
    fake = FakeKubectl(tmp_path)
    fake.installed(suspend=False, active=1)
    with pytest.raises(LoadError, match="started by hand"):
        _run(tmp_path, fake).start()
    assert set(fake.jobs) == {"locust-master", "locust-worker"}
    assert not any(c[2:3] == ("delete",) for c in fake.calls)


def test_jobs_left_by_a_crashed_run_are_replaced(tmp_path: Path) -> None:
    fake = FakeKubectl(tmp_path)
    old = _run(tmp_path, fake).start()  # never stopped: as if pytest was killed
    new = _run(tmp_path, fake).start()
    assert fake.jobs["locust-master"]["metadata"]["labels"][icl.RUN_LABEL] == new.run_id != old.run_id
    new.stop()
    assert fake.jobs == {}, "nothing to restore: the crashed run's Jobs were not the installed ones"


# --------------------------------------------------------------------------------------------- factory


class _Cluster:
    def __init__(self, provider: str) -> None:
        self.provider = provider


class _SvcKubectl(Kubectl):
    def raw(self, path: str, *, timeout: float = 60) -> Any:
        assert path.startswith("/api/v1/namespaces/demo/services/")
        return {"spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "metrics", "port": 9100},
                                                             {"name": "http", "port": 8080}]}}


def test_load_for_picks_the_runner_by_provider(tmp_path: Path) -> None:
    kc = _SvcKubectl(tmp_path / "kubeconfig")
    stages = [Stage(30, 5)]
    for provider in ("existing", "kind"):
        remote = icl.load_for(_Cluster(provider), kc, "demo", "hits", "HitUser", stages, tmp_path, workers=2)
        assert isinstance(remote, icl.InClusterLocust)
        assert remote.target_url == "http://hits.demo.svc:8080" and remote.workers == 2
    local = icl.load_for(_Cluster("local"), kc, "demo", "hits", "HitUser", stages, tmp_path, work_ms=9)
    assert isinstance(local, LocustRun)
    assert local.host == "http://10.96.0.9:8080" and local.work_ms == 9
    forced = icl.load_for(
        _Cluster("local"), kc, "demo", "hits", "WorkUser", stages, tmp_path, in_cluster=True
    )
    assert isinstance(forced, icl.InClusterLocust) and forced.user_class == "WorkUser"
    with pytest.raises(TypeError, match="bogus"):
        icl.load_for(_Cluster("local"), kc, "demo", "hits", "HitUser", stages, tmp_path, bogus=1)


def test_a_projects_locustfile_ships_with_the_kits_shape_unless_it_has_its_own(tmp_path: Path) -> None:
    mine = tmp_path / "locustfile.py"
    mine.write_text("from locust import HttpUser, task\n\n\nclass ShopUser(HttpUser):\n"
                    "    @task\n    def buy(self):\n        self.client.get('/buy')\n")  # fmt: skip
    shipped = _run(tmp_path, user_class="ShopUser", locustfile=mine).locustfile_configmap()["data"]
    text = shipped["locustfile.py"]
    assert text.startswith(mine.read_text().rstrip())
    assert "class StagedShape(_LoadTestShape)" in text and "HitUser" not in text
    compile(text, "locustfile.py", "exec")  # one valid module
    mine.write_text(mine.read_text() + "\n\nfrom locust import LoadTestShape\n\n\n"
                    "class Ramp(LoadTestShape):\n    def tick(self):\n        return None\n")  # fmt: skip
    assert _run(tmp_path, user_class="ShopUser", locustfile=mine).locustfile_configmap()["data"][
        "locustfile.py"] == mine.read_text()
    with pytest.raises(LoadError, match=r"unknown user class 'HitUser' in .*locustfile.py: pick one of Shop"):
        _run(tmp_path, locustfile=mine)
