"""Locust as an in-cluster master/worker Job pair, for clusters whose Services this host cannot reach.

On the ``existing`` provider (EKS, GKE, on-prem) the machine running the tests usually has no route to
ClusterIPs or pod IPs, so :class:`harness.load.LocustRun` cannot aim at a Service. :class:`InClusterLocust`
runs the same ``harness/locustfile.py`` (shipped as ConfigMap ``locustfile``) inside the cluster and
looks like a ``LocustRun`` to the scenarios and the :class:`harness.report.Recorder`: ``start``,
``stop``, ``running``, ``wait``, ``history``, context manager.

How a run works, and why:

* The Job specs come from ``manifests/base/load/locust.yaml`` (one source for the pod spec users apply
  by hand). A Job's pod template is immutable, so the installed, suspended Jobs cannot be given this
  run's settings: they are saved, deleted, replaced by run-specific copies (env instead of the
  ``locust-settings`` ConfigMap, a run label, the master's stats CSV), unsuspended, and on ``stop``
  deleted with their pods and the saved originals re-created, still suspended.
* The master runs headless with ``--csv``. While it runs, :meth:`history` reads its
  ``load_stats_history.csv`` with ``kubectl exec ... cat`` (cached for a moment: the Recorder polls).
  A finished container cannot be exec'd into, so the master's shell wrapper prints the CSV after a
  marker line when Locust exits, and the final history comes from the pod's log. The Locust web UI
  would need non-headless mode and only shows current totals, not a history.
* Errors name the pod and end with its log tail; a missing image says how to load it.

:func:`load_for` picks the right runner for a cluster: in-cluster for ``existing``, a local
``LocustRun`` against the Service's host-reachable URL for ``local`` and ``kind``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.kubectl import Kubectl, KubectlError
from harness.load import LoadError, LoadSample, LocustRun, Stage, check_run, locustfile_text, read_history
from harness.manifests import LOCUSTFILE, LOCUSTFILE_CONFIGMAP, REPO_ROOT
from harness.waits import Unresolvable, wait_for

__all__ = [
    "HISTORY_MARKER",
    "JOB_TEMPLATE",
    "RUN_LABEL",
    "InClusterLocust",
    "cluster_service_url",
    "host_service_url",
    "load_for",
    "split_master_log",
    "workers_connected",
]

#: The Job/Service specs users apply by hand; the harness derives each run's Jobs from them.
JOB_TEMPLATE = REPO_ROOT / "manifests" / "base" / "load" / "locust.yaml"
MASTER_JOB = "locust-master"
WORKER_JOB = "locust-worker"
#: Label on the run's Jobs and pods: finds them, and marks Jobs a crashed run left behind.
RUN_LABEL = "hpa-kit/load-run"
#: Printed by the master's wrapper between Locust's output and the stats history CSV.
HISTORY_MARKER = "=== hpa-kit: load_stats_history.csv ==="
CSV_PREFIX = "/tmp/load"  # the master's emptyDir /tmp (its root file system is read-only)
HISTORY_FILE = "load_stats_history.csv"
FIELD_MANAGER = "hpa-kit-load"

# sh is PID 1: without the trap a SIGTERM from pod deletion would be ignored until the grace period.
_MASTER_WRAPPER = (
    "trap 'kill -TERM \"$pid\" 2>/dev/null' TERM INT\n"
    'locust "$@" & pid=$!\n'
    'wait "$pid"; rc=$?\n'
    'while kill -0 "$pid" 2>/dev/null; do wait "$pid"; rc=$?; done\n'
    f"echo '{HISTORY_MARKER}'\n"
    f"cat {CSV_PREFIX}_stats_history.csv 2>/dev/null\n"
    'exit "$rc"\n'
)
_BAD_WAITING = {
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}
_IMAGE_REASONS = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
#: Labels the Job controller puts on a Job's pod template (and selector); a re-created Job gets new ones.
_JOB_CONTROLLER_LABELS = (
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
)
_HISTORY_TTL_S = 1.5
_LOG_TAIL = 30


# ------------------------------------------------------------------------------------------- helpers


def _as_kubectl(kubectl_or_kubeconfig: Kubectl | Path | str) -> Kubectl:
    if isinstance(kubectl_or_kubeconfig, Kubectl):
        return kubectl_or_kubeconfig
    return Kubectl(Path(kubectl_or_kubeconfig))


def _list(items: Sequence[Mapping[str, Any]]) -> str:
    """A kubectl ``-f -`` input holding ``items``."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)})


def _stages_json(stages: Sequence[Stage]) -> str:
    return json.dumps([[s.end_s, s.users, s.spawn_rate] for s in stages])


def split_master_log(log: str) -> tuple[str, str | None]:
    """(Locust's own output, the stats history CSV or None) from a finished master's log."""
    head, sep, tail = log.partition(HISTORY_MARKER + "\n")
    if not sep:
        return log, None
    return head, tail


_READY_RE = re.compile(r"reported as ready\. (\d+) workers? connected")
_WAITING_RE = re.compile(r"Waiting for workers to be ready, (\d+) of \d+ connected")


def workers_connected(master_log: str) -> int | None:
    """How many workers the master last counted, from its log; None when it has not said yet.

    The headless master logs each worker that reports ready ("... reported as ready. 2 workers
    connected.") and, while it waits for ``--expect-workers``, "Waiting for workers to be ready, 1 of 2
    connected" every second: the latest of those lines wins.
    """
    latest: tuple[int, int] | None = None
    for regex in (_READY_RE, _WAITING_RE):
        for m in regex.finditer(master_log):
            if latest is None or m.start() > latest[0]:
                latest = (m.start(), int(m.group(1)))
    return None if latest is None else latest[1]


def _complete_lines(text: str) -> str:
    """``text`` up to its last newline: Locust may be mid-flush when the file is read."""
    cut = text.rfind("\n")
    return text[: cut + 1] if cut >= 0 else ""


def _container_problem(pod: Mapping[str, Any]) -> str | None:
    """Why this pod cannot do its job, or None while it is fine (or merely not started yet)."""
    status = pod.get("status") or {}
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _BAD_WAITING:
            return f"container {cs.get('name')} {waiting['reason']}: {waiting.get('message', '')}".strip()
        term = (cs.get("state") or {}).get("terminated") or {}
        if term and term.get("exitCode", 0) != 0:
            return f"container {cs.get('name')} exited {term.get('exitCode')} ({term.get('reason', '')})"
    if status.get("phase") == "Failed":
        return f"pod failed: {status.get('reason', '')} {status.get('message', '')}".strip()
    return None  # Pending/Unschedulable may resolve (autoscaler, pods terminating): the timeout decides


# ------------------------------------------------------------------------------------------- runner


@dataclass
class InClusterLocust:
    """One in-cluster Locust run against ``target_url`` (a Service's in-cluster DNS URL).

    ``stages``, ``user_class``, ``work_ms``, ``think_time`` and ``env`` mean what they mean for
    :class:`~harness.load.LocustRun`. ``workers`` Locust worker pods generate the load; the master only
    coordinates. ``out_dir`` receives the run's Job manifests, the master's stats history
    (``load_stats_history.csv``, as LocustRun writes it) and, after ``stop``/``wait``, the pods' logs.
    ``image`` overrides the Jobs' image (for clusters that pull from a registry).
    """

    kubectl_or_kubeconfig: Kubectl | Path | str
    namespace: str
    target_url: str
    user_class: str
    stages: list[Stage]
    workers: int = 1
    out_dir: Path = field(default_factory=lambda: Path("reports") / "load")
    work_ms: int = 300
    think_time: tuple[float, float] = (0.05, 0.15)
    env: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    start_timeout: float = 180.0
    #: A project's own locustfile (shipped in the ConfigMap with the kit's shape appended); None: built-in.
    locustfile: Path | None = None
    progress: Callable[[str], None] | None = print
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    _started: bool = field(default=False, init=False, repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)
    _final: bool = field(default=False, init=False, repr=False)
    _owns_jobs: bool = field(default=False, init=False, repr=False)
    _fetched_at: float = field(default=0.0, init=False, repr=False)
    _saved_jobs: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.kubectl = _as_kubectl(self.kubectl_or_kubeconfig)
        self.out_dir = Path(self.out_dir)
        check_run(self.user_class, self.stages, self.locustfile)
        if self.workers < 1:
            raise LoadError(f"workers must be at least 1, got {self.workers}")
        if not self.target_url.startswith(("http://", "https://")):
            raise LoadError(
                f"target_url {self.target_url!r} is not a URL: use the Service's in-cluster address, "
                "e.g. http://hits.hpa-demo.svc:8080 (cluster_service_url())"
            )

    # --- what gets applied ------------------------------------------------------------------------

    @property
    def history_path(self) -> Path:
        return self.out_dir / HISTORY_FILE

    def environment(self) -> dict[str, str]:
        """The containers' env: the knobs of harness/locustfile.py plus Locust's own settings."""
        env = {
            "HOME": "/tmp",
            "LOCUST_HOST": self.target_url,
            "LOCUST_USER_CLASSES": self.user_class,
            "LOCUST_EXPECT_WORKERS": str(self.workers),
            # The master exits 1 instead of hanging when workers never connect (image, network policy).
            "LOCUST_EXPECT_WORKERS_MAX_WAIT": str(int(self.start_timeout)),
            "HPA_KIT_STAGES": _stages_json(self.stages),
            "HPA_KIT_WORK_MS": str(self.work_ms),
            "HPA_KIT_WAIT": f"{self.think_time[0]},{self.think_time[1]}",
        }
        env.update(self.env)
        return env

    def _template(self) -> list[dict[str, Any]]:
        try:
            docs = [d for d in yaml.safe_load_all(JOB_TEMPLATE.read_text()) if d]
        except (OSError, yaml.YAMLError) as exc:
            raise LoadError(f"cannot read the Locust Job template {JOB_TEMPLATE}: {exc}") from None
        return docs

    def _template_object(self, kind: str, name: str) -> dict[str, Any]:
        for doc in self._template():
            if doc.get("kind") == kind and doc["metadata"]["name"] == name:
                return doc
        raise LoadError(f"{JOB_TEMPLATE} has no {kind} {name}: the in-cluster load needs it")

    def locustfile_configmap(self) -> dict[str, Any]:
        """ConfigMap ``locustfile`` with harness/locustfile.py, as manifests.render() generates it."""
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": LOCUSTFILE_CONFIGMAP,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/name": "locust", "app.kubernetes.io/part-of": "hpa-kit"},
            },
            "data": {LOCUSTFILE.name: locustfile_text(self.locustfile)},
        }

    def master_service(self) -> dict[str, Any]:
        """The master's Service, selecting *this run's* master only: with the template's selector it
        kept pointing at the previous run's (deleted) master until the endpoints caught up, and a
        worker whose first connection was NATed to that dead pod IP stayed stuck for minutes (its
        socket retransmits into the same conntrack entry)."""
        svc = copy.deepcopy(self._template_object("Service", MASTER_JOB))
        svc["metadata"]["namespace"] = self.namespace
        svc["spec"].setdefault("selector", {})[RUN_LABEL] = self.run_id
        return svc

    def jobs(self) -> list[dict[str, Any]]:
        """The run's master and worker Jobs, suspended (start() unsuspends them once both exist)."""
        env = [{"name": k, "value": v} for k, v in self.environment().items()]
        out = []
        for name in (MASTER_JOB, WORKER_JOB):
            job = copy.deepcopy(self._template_object("Job", name))
            meta = job["metadata"]
            meta["namespace"] = self.namespace
            meta.setdefault("labels", {})[RUN_LABEL] = self.run_id
            spec = job["spec"]
            spec["suspend"] = True
            pod_meta = spec["template"].setdefault("metadata", {})
            pod_meta.setdefault("labels", {})[RUN_LABEL] = self.run_id
            pod = spec["template"]["spec"]
            pod["terminationGracePeriodSeconds"] = 10
            container = pod["containers"][0]
            container.pop("envFrom", None)  # locust-settings is for runs by hand; this run is all env
            container["env"] = env
            if self.image:
                container["image"] = self.image
            args = [
                f"--master-host={MASTER_JOB}.{self.namespace}.svc" if a.startswith("--master-host=") else a
                for a in container.get("args") or []
            ]
            if name == MASTER_JOB:
                spec["backoffLimit"] = 0
                container["command"] = ["/bin/sh", "-c", _MASTER_WRAPPER, "locust"]
                args += [f"--csv={CSV_PREFIX}"]
            else:
                spec["parallelism"] = spec["completions"] = self.workers
                container["command"] = ["locust"]
            container["args"] = args
            out.append(job)
        return out

    # --- lifecycle --------------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        if self.progress:
            self.progress(f"in-cluster load: {message}")

    def _kubectl(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        try:
            return self.kubectl.run(*args, stdin=stdin, timeout=timeout)
        except KubectlError as exc:
            raise LoadError(str(exc)) from None

    def _ns(self, *args: str, **kw: Any) -> str:
        return self._kubectl("-n", self.namespace, *args, **kw)

    def _get_jobs(self) -> list[dict[str, Any]]:
        items = json.loads(self._ns("get", "jobs", "-l", "app.kubernetes.io/name=locust", "-o", "json"))
        return [j for j in items.get("items") or [] if j["metadata"]["name"] in (MASTER_JOB, WORKER_JOB)]

    def _pods(self) -> list[dict[str, Any]]:
        doc = json.loads(self._ns("get", "pods", "-l", f"{RUN_LABEL}={self.run_id}", "-o", "json"))
        return list(doc.get("items") or [])

    @staticmethod
    def _role(pod: Mapping[str, Any]) -> str:
        return str(((pod.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component", "?"))

    def start(self) -> InClusterLocust:
        if self._started:
            raise LoadError("this InClusterLocust was already started: make a new one per run")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._started = True
        try:
            self._replace_installed_jobs()
            self._kubectl(
                "apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-f", "-",
                stdin=_list([self.locustfile_configmap(), self.master_service()]),
            )  # fmt: skip
            jobs = self.jobs()
            (self.out_dir / "locust-jobs.yaml").write_text(yaml.safe_dump_all(jobs, sort_keys=False))
            self._kubectl("create", "-f", "-", stdin=_list(jobs))
            unsuspend = '{"spec":{"suspend":false}}'
            self._ns("patch", "job", MASTER_JOB, WORKER_JOB, "--type=merge", "-p", unsuspend)
            self._say(
                f"{self.user_class} x {self.stages[-1].users} users on {self.workers} worker(s) -> "
                f"{self.target_url} (run {self.run_id}, namespace {self.namespace})"
            )
            self._wait_running()
            self._wait_connected()
        except BaseException:
            try:
                self.stop()
            except Exception as exc:  # the original error matters more than the cleanup's
                self._say(f"cleanup after a failed start failed too: {exc}")
            raise
        return self

    def _replace_installed_jobs(self) -> None:
        """Delete the installed (suspended) Jobs, remembering them for stop(); refuse a live run."""
        for job in self._get_jobs():
            labels = job["metadata"].get("labels") or {}
            if RUN_LABEL in labels:
                self._say(f"deleting job {job['metadata']['name']} left by run {labels[RUN_LABEL]}")
                continue
            if not job["spec"].get("suspend"):
                status = job.get("status") or {}
                if not status.get("succeeded") and not status.get("failed") and status.get("active"):
                    raise LoadError(
                        f"job {self.namespace}/{job['metadata']['name']} is running a load test started "
                        f"by hand: wait for it or `kubectl -n {self.namespace} delete job {MASTER_JOB} "
                        f"{WORKER_JOB}`, then retry"
                    )
                continue  # finished by hand: deleted, not restored (a finished Job cannot rerun)
            self._saved_jobs.append(_reusable(job))
        self._owns_jobs = True  # from here on, stop() deletes the Jobs and restores the saved ones
        self._delete_jobs()

    def _delete_jobs(self) -> None:
        self._ns("delete", "job", MASTER_JOB, WORKER_JOB, "--ignore-not-found", "--cascade=foreground",
                 "--wait=true", "--timeout=90s", timeout=120)  # fmt: skip

        left: list[str] = []

        def gone() -> tuple[bool, str]:
            left[:] = self._pods_of_jobs()
            return not left, ", ".join(left)

        def error(_kind: str, msg: str) -> LoadError:
            if not left:
                return LoadError(f"Locust pods: {msg}")
            return LoadError(f"Locust pods still present 60 s after deleting their Jobs: {', '.join(left)}; "
                             f"kubectl -n {self.namespace} describe pod {left[0]}")  # fmt: skip

        wait_for("Locust pods to go", gone, timeout=60, interval=1, progress=None, error=error)

    def _pods_of_jobs(self) -> list[str]:
        doc = json.loads(
            self._ns("get", "pods", "-l", f"job-name in ({MASTER_JOB},{WORKER_JOB})", "-o", "json")
        )
        return [p["metadata"]["name"] for p in doc.get("items") or []]

    def _wait_running(self) -> None:
        seen = ["no pods listed yet"]

        def running() -> tuple[bool, str]:
            pods = self._pods()
            for pod in pods:
                problem = _container_problem(pod)
                if problem:
                    seen[0] = self._pod_error(pod, problem)
                    raise Unresolvable(seen[0])
            phases = [(self._role(p), (p.get("status") or {}).get("phase")) for p in pods]
            master = [ph for role, ph in phases if role == "master"]
            running_workers = sum(1 for role, ph in phases if role == "worker" and ph == "Running")
            seen[0] = f"master {master or 'no pod'}, {running_workers}/{self.workers} workers Running"
            up = bool(master) and master[0] in ("Running", "Succeeded") and running_workers >= self.workers
            return up, seen[0]

        def error(kind: str, msg: str) -> LoadError:
            if kind == "unresolvable":  # seen[0] is the stuck pod's own message
                return LoadError(seen[0])
            return LoadError(f"Locust pods not Running after {self.start_timeout:.0f}s ({seen[0]}). "
                             + self._events_hint())  # fmt: skip

        wait_for("Locust pods running", running, timeout=self.start_timeout, interval=1,
                 progress=lambda line: self._say(line.split("] ", 1)[-1]), error=error)  # fmt: skip

    def _wait_connected(self) -> None:
        """Until the master counts every worker: Running pods are not yet a running load (a worker
        whose first connection goes astray retries for minutes, and the master waits for it)."""
        seen = ["the master has not counted any worker yet"]

        def connected() -> tuple[bool, str]:
            pod = self._master_pod()
            if pod is None:
                raise Unresolvable(f"the Locust master pod of run {self.run_id} is gone")
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Succeeded":
                return True, "master finished"  # a short shape: wait()/history() report how it went
            log = self._log(pod["metadata"]["name"])
            if phase == "Failed":  # e.g. it gave up waiting for workers (LOCUST_EXPECT_WORKERS_MAX_WAIT)
                head, _ = split_master_log(log)
                seen[0] = f"the master exited: {head.rstrip()[-1500:]}"
                raise Unresolvable(seen[0])
            count = workers_connected(log)
            if count is not None:
                seen[0] = f"the master counts {count} of {self.workers} workers"
            return count is not None and count >= self.workers, seen[0]

        def error(_kind: str, msg: str) -> LoadError:
            tails = []
            for pod in self._pods():
                if self._role(pod) == "worker":
                    name = pod["metadata"]["name"]
                    tail = self._log(name, "--tail=8").rstrip() or "(empty log)"
                    tails.append(f"--- {name} ---\n{tail}")
            return LoadError(
                f"Locust workers not connected to the master ({msg}; {seen[0]}): look at the workers' "
                f"logs (`kubectl -n {self.namespace} logs -l {RUN_LABEL}={self.run_id}`) and the "
                f"{MASTER_JOB} Service's endpoints.\n" + "\n".join(tails)
            )

        wait_for("Locust workers connected", connected, timeout=self.start_timeout, interval=1,
                 progress=lambda line: self._say(line.split("] ", 1)[-1]), error=error)  # fmt: skip

    def _events_hint(self) -> str:
        try:
            events = self._ns("get", "events", "--sort-by=.lastTimestamp", timeout=30)
        except LoadError:
            events = ""
        lines = [ln for ln in events.splitlines() if "locust" in ln][-10:]
        recent = ("\nrecent events:\n" + "\n".join(lines)) if lines else ""
        return (
            f"Look at `kubectl -n {self.namespace} describe job {MASTER_JOB} {WORKER_JOB}` and the pods "
            f"(-l {RUN_LABEL}={self.run_id}).{recent}"
        )

    def _log(self, pod: str, *extra: str) -> str:
        try:
            return self.kubectl.run("-n", self.namespace, "logs", pod, "-c", "locust", *extra,
                                    check=False, timeout=60)  # fmt: skip
        except Exception as exc:  # logs are a courtesy in error paths
            return f"(no log: {exc})"

    def _pod_error(self, pod: Mapping[str, Any], problem: str) -> str:
        name = pod["metadata"]["name"]
        tail = self._log(name, f"--tail={_LOG_TAIL}").rstrip() or "(empty log)"
        head, _ = split_master_log(tail)
        msg = f"Locust {self._role(pod)} pod {self.namespace}/{name}: {problem}\n--- log tail ---\n{head}"
        if any(reason in problem for reason in _IMAGE_REASONS):
            image = pod["spec"]["containers"][0].get("image")
            msg += (
                f"\nthe node has no image {image}: on local/kind run `hpa-kit load-images locust`; on "
                "other clusters push it to a registry the nodes pull from and pass image=..."
            )
        return msg

    def _master_pod(self) -> dict[str, Any] | None:
        pods = [p for p in self._pods() if self._role(p) == "master"]
        return pods[0] if pods else None

    @property
    def running(self) -> bool:
        if not self._started or self._stopped:
            return False
        try:
            pod = self._master_pod()
        except LoadError:
            return False
        return pod is not None and (pod.get("status") or {}).get("phase") in ("Pending", "Running")

    def wait(self, timeout: float | None = None) -> int:
        """Wait until the master finished the staged shape; returns its exit code (0: no failures)."""
        if not self._started:
            raise LoadError("start() first")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pod = self._master_pod()
            if pod is None:
                raise LoadError(f"the Locust master pod of run {self.run_id} is gone (deleted?)")
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                self._fetch_history(final=True)
                self._save_logs()
                for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                    term = (cs.get("state") or {}).get("terminated")
                    if term is not None:
                        return int(term.get("exitCode", 1))
                return 0 if phase == "Succeeded" else 1
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"Locust master still {phase} after {timeout}s (run {self.run_id})")
            time.sleep(2)

    def stop(self) -> None:
        """Keep the final history and logs, delete the run's Jobs and pods, restore the installed Jobs."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        if not self._owns_jobs:  # start() refused before touching anything
            return
        try:
            self._fetch_history(final=True)
        except Exception as exc:  # never let a failed read keep the load running
            self._say(f"could not read the final stats history: {exc}")
        self._save_logs()
        self._delete_jobs()
        if self._saved_jobs:
            self._kubectl("create", "-f", "-", stdin=_list(self._saved_jobs))
            self._say("restored the installed (suspended) Locust Jobs")
        self._say(f"stopped run {self.run_id}")

    def _save_logs(self) -> None:
        try:
            pods = self._pods()
        except LoadError:
            return
        for pod in pods:
            name = pod["metadata"]["name"]
            (self.out_dir / f"locust-{self._role(pod)}-{name}.log").write_text(self._log(name))

    # --- history ----------------------------------------------------------------------------------

    def _fetch_history(self, *, final: bool = False) -> None:
        """Refresh ``history_path`` from the master: exec while it runs, its log once it finished."""
        with self._lock:
            if self._final:
                return
            pod = self._master_pod()
            if pod is None:
                return
            name = pod["metadata"]["name"]
            phase = (pod.get("status") or {}).get("phase")
            text: str | None = None
            if phase == "Running":
                out = self.kubectl.run(
                    "-n", self.namespace, "exec", name, "-c", "locust", "--",
                    "cat", f"{CSV_PREFIX}_stats_history.csv", check=False, timeout=30,
                )  # fmt: skip
                text = _complete_lines(out)
            if phase in ("Succeeded", "Failed") or (final and not text):
                _, csv_text = split_master_log(self._log(name))
                if csv_text is not None:
                    text = _complete_lines(csv_text)
                    self._final = phase in ("Succeeded", "Failed")
            if text:
                tmp = self.history_path.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(self.history_path)
            self._fetched_at = time.monotonic()

    def history(self) -> list[LoadSample]:
        """The master's aggregated stats rows so far (empty before the first flush, ~5 s in)."""
        live = self._started and not self._stopped and not self._final
        if live and time.monotonic() - self._fetched_at > _HISTORY_TTL_S:
            try:
                self._fetch_history()
            except Exception as exc:  # the Recorder polls; a flaky exec must not end the run
                self._say(f"stats history not read: {exc}")
        return read_history(self.history_path)

    def __enter__(self) -> InClusterLocust:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reusable(job: Mapping[str, Any]) -> dict[str, Any]:
    """A live, never-started Job stripped of server-set fields, so it can be created again."""
    out = {k: copy.deepcopy(job[k]) for k in ("apiVersion", "kind", "metadata", "spec")}
    meta = out["metadata"]
    for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink"):
        meta.pop(key, None)
    (meta.get("annotations") or {}).pop("batch.kubernetes.io/job-tracking", None)
    spec = out["spec"]
    if not spec.get("manualSelector"):
        spec.pop("selector", None)
        labels = spec["template"].get("metadata", {}).get("labels") or {}
        for key in _JOB_CONTROLLER_LABELS:
            labels.pop(key, None)
    return out


# ------------------------------------------------------------------------------------------ factory


def _service_port(kubectl: Kubectl, namespace: str, name: str, port: str) -> int:
    try:
        svc = kubectl.get("service", name, namespace=namespace)
    except KubectlError as exc:
        raise LoadError(f"no Service {namespace}/{name} to load: {exc}") from None
    ports = {p.get("name"): int(p["port"]) for p in svc["spec"]["ports"]}
    if port.isdigit():
        return int(port)
    return ports.get(port, next(iter(ports.values())))


def cluster_service_url(kubectl: Kubectl, namespace: str, name: str, port: str = "http") -> str:
    """The Service's address as pods see it (cluster DNS), e.g. ``http://hits.hpa-demo.svc:8080``."""
    return f"http://{name}.{namespace}.svc:{_service_port(kubectl, namespace, name, port)}"


def host_service_url(cluster: object, kubectl: Kubectl, namespace: str, name: str, port: str = "http") -> str:
    """Where load from this host reaches a Service: the provider decides (local: the node is this host,
    so kube-proxy's ClusterIP rules apply; kind: a NodePort mapped to localhost). No port-forward."""
    if hasattr(cluster, "service_url"):
        return str(cluster.service_url(namespace, name, port))
    svc = kubectl.get("service", name, namespace=namespace)
    ports = {p.get("name"): p["port"] for p in svc["spec"]["ports"]}
    return f"http://{svc['spec']['clusterIP']}:{ports.get(port, next(iter(ports.values())))}"


IN_CLUSTER_PROVIDERS = ("existing", "kind")


def load_for(
    cluster: object,
    kubectl: Kubectl | Path | str,
    namespace: str,
    service: str,
    user_class: str,
    stages: list[Stage],
    out_dir: Path,
    *,
    port: str = "http",
    in_cluster: bool | None = None,
    workers: int = 1,
    **kw: Any,
) -> LocustRun | InClusterLocust:
    """A load runner for ``service`` that works on ``cluster``'s provider, not yet started.

    ``existing`` and ``kind`` clusters get an :class:`InClusterLocust` in ``namespace`` aimed at the
    Service's DNS name (the test host cannot reach their cluster IPs, and a port-forward would be the
    bottleneck); ``local`` gets a local :class:`LocustRun` aimed at the ClusterIP, which kube-proxy
    serves on this host because the node is this host. ``in_cluster`` forces either. Other keyword
    arguments (``work_ms``, ``think_time``, ``env``; ``image``, ``start_timeout`` in-cluster) pass through.
    """
    kc = _as_kubectl(kubectl)
    if in_cluster is None:
        in_cluster = getattr(cluster, "provider", "") in IN_CLUSTER_PROVIDERS
    if in_cluster:
        url = cluster_service_url(kc, namespace, service, port)
        return InClusterLocust(kc, namespace, url, user_class, stages, workers=workers, out_dir=out_dir, **kw)
    local_kw = {k: v for k, v in kw.items() if k in ("work_ms", "think_time", "env", "locustfile")}
    unknown = sorted(set(kw) - set(local_kw) - {"image", "start_timeout", "progress"})
    if unknown:
        raise TypeError(f"load_for() got unexpected keyword arguments {unknown}")
    url = host_service_url(cluster, kc, namespace, service, port)
    return LocustRun(url, user_class, stages, out_dir, **local_kw)
