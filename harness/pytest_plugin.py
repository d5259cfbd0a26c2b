"""hpa-kit's pytest plugin: a cluster, the reference stack, kubectl, load and HPA reports as fixtures.

Installed with the package (entry point ``pytest11``: ``hpa_kit``), so any project that runs
``pip install 'hpa-kit[harness]'`` gets it; ``-p no:hpa_kit`` turns it off.

Settings (command line > environment > ``[tool.pytest.ini_options]`` > default):

========================== ======================== ======================= ============================
option                     env                      ini                     meaning
========================== ======================== ======================= ============================
--hpa-kit-provider         HPA_KIT_PROVIDER         hpa_kit_provider        local, kind, existing, auto
--hpa-kit-cluster-name     HPA_KIT_CLUSTER_NAME     hpa_kit_cluster_name    cluster name (hpa-kit)
--hpa-kit-kubeconfig       HPA_KIT_KUBECONFIG       hpa_kit_kubeconfig      kubeconfig (existing)
--hpa-kit-context          HPA_KIT_CONTEXT          hpa_kit_context         kubeconfig context (existing)
--hpa-kit-keep-cluster     HPA_KIT_KEEP_CLUSTER=1   hpa_kit_keep_cluster    leave the cluster running
--hpa-kit-overlay          HPA_KIT_OVERLAY          hpa_kit_overlay         overlay name or path (test)
--hpa-kit-adapter-rules    HPA_KIT_ADAPTER_RULES    hpa_kit_adapter_rules   extra adapter rules (YAML)
--hpa-kit-keep-stack       HPA_KIT_KEEP_STACK=1     hpa_kit_keep_stack      leave the stack installed
--hpa-kit-reports          HPA_KIT_REPORTS          hpa_kit_reports         report folder (./reports)
--hpa-kit-fail-on-skip     HPA_KIT_FAIL_ON_SKIP=1   hpa_kit_fail_on_skip    a skip fails the run (CI)
========================== ======================== ======================= ============================

Fixtures: ``cluster``, ``kubeconfig``, ``kubectl``, ``kube_api``, ``stack``, ``report_root``,
``scenario_dir``, ``load``, ``hpa_recorder``, ``progress_for``. Tests marked ``disruptive`` run last;
when a test that uses ``stack`` fails, the stack's diagnostics land in its ``scenario_dir``.

Every process the session forks is counted by tool (``harness.procs.count_forks``): per test and phase
into ``forks.json`` (the session's report folder when it made one, else the reports folder), and a
summary line at the end names the tests that forked kubectl most. A session-scoped fixture's forks
count in the setup of the first test that needs it (the ``stack`` install in the first scenario's),
its finalizer's in the teardown of the session's last test.

The plugin imports nothing heavy at load time: a project without the ``[harness]`` extra still runs
its other tests, and a fixture that needs the extra says which one to install.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness import entry, procs
from harness.progress import Progress

if TYPE_CHECKING:
    from harness.cluster.base import Cluster
    from harness.kubectl import Kubectl
    from harness.load import Stage
    from harness.report import Recorder
    from harness.stack import Stack


@dataclass(frozen=True)
class _Setting:
    option: str
    env: str
    help: str
    default: str | None = None
    flag: bool = False
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        return self.option.removeprefix("--").replace("-", "_")


SETTINGS = (
    _Setting("--hpa-kit-provider", "HPA_KIT_PROVIDER", "cluster provider (default: best available)",
             aliases=("--provider",), choices=("local", "kind", "existing", "auto")),
    _Setting("--hpa-kit-cluster-name", "HPA_KIT_CLUSTER_NAME", "cluster name", default="hpa-kit"),
    _Setting("--hpa-kit-kubeconfig", "HPA_KIT_KUBECONFIG",
             "kubeconfig for the existing provider (default: KUBECONFIG)",
             aliases=("--existing-kubeconfig",)),
    _Setting("--hpa-kit-context", "HPA_KIT_CONTEXT", "kubeconfig context for the existing provider"),
    _Setting("--hpa-kit-keep-cluster", "HPA_KIT_KEEP_CLUSTER", "leave the cluster running", flag=True),
    _Setting("--hpa-kit-overlay", "HPA_KIT_OVERLAY", "stack overlay: a name in manifests/overlays or a path",
             default="test"),
    _Setting("--hpa-kit-adapter-rules", "HPA_KIT_ADAPTER_RULES",
             "YAML file of adapter rules (prometheus-adapter format) added to the stack's"),
    _Setting("--hpa-kit-keep-stack", "HPA_KIT_KEEP_STACK", "leave the stack installed", flag=True),
    _Setting("--hpa-kit-reports", "HPA_KIT_REPORTS", "report folder (default: <rootdir>/reports)"),
    _Setting("--hpa-kit-fail-on-skip", "HPA_KIT_FAIL_ON_SKIP",
             "a skipped test fails the run (for CI: a cluster that never came up is not a pass)", flag=True),
)  # fmt: skip
_BY_DEST = {s.dest: s for s in SETTINGS}


def pytest_addoption(parser: pytest.Parser) -> None:
    # Every option is namespaced --hpa-kit-*: pytest-kind-ng registers --cluster-name, --keep-cluster
    # and --kubeconfig itself, and pytest refuses a second option with the same dest.
    group = parser.getgroup("hpa-kit", "hpa-kit: clusters, the reference stack and HPA scenarios")
    for s in SETTINGS:
        env_help = f"{s.env}=1" if s.flag else s.env
        kwargs: dict[str, Any] = {"dest": s.dest, "help": f"{s.help} (env {env_help}; ini {s.dest})"}
        if s.flag:
            kwargs.update(action="store_true", default=None)
        else:
            kwargs.update(default=None, choices=s.choices)
        group.addoption(s.option, *s.aliases, **kwargs)
        if s.flag:
            parser.addini(s.dest, s.help, type="bool", default=None)
        else:
            parser.addini(s.dest, s.help, type="string", default=None)


def setting(config: pytest.Config, dest: str) -> Any:
    """A setting's value: command line, then environment, then ini file, then the default."""
    s = _BY_DEST[dest]
    value = config.getoption(dest)
    if value is not None:
        return value
    env = os.environ.get(s.env)
    if s.env == "HPA_KIT_CLUSTER_NAME" and not env:
        env = os.environ.get("HPA_KIT_CLUSTER")  # the name the Makefile used first
    if env:
        if s.flag:
            return env == "1"
        if s.choices and env not in s.choices:
            raise pytest.UsageError(f"{s.env}={env}: pick one of {', '.join(s.choices)}")
        return env
    ini = config.getini(dest)
    if ini not in (None, ""):
        if s.choices and ini not in s.choices:
            raise pytest.UsageError(f"ini {dest} = {ini}: pick one of {', '.join(s.choices)}")
        return ini
    return False if s.flag else s.default


def _ini_relative(config: pytest.Config, value: str) -> Path:
    """A path setting, relative to the ini file's folder (or the rootdir) unless absolute."""
    path = Path(value).expanduser()
    base = config.inipath.parent if config.inipath else config.rootpath
    return path if path.is_absolute() else (base / path)


# --------------------------------------------------------------------------------- hooks, progress


def pytest_configure(config: pytest.Config) -> None:
    global _LIVE
    _LIVE = _LiveStderr(config)
    procs.count_forks()
    config.stash[_FORKS_KEY] = _ForkLedger(start=procs.fork_counts())
    config.addinivalue_line(
        "markers", "disruptive: restarts or reconfigures the session's cluster (run after all other tests)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run ``disruptive`` tests last, so they cannot break tests that share the session's cluster."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """When a test that uses the stack fails, dump the stack's state and logs into its scenario_dir."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    if report.when == "call" and report.failed and "stack" in funcargs:
        st = funcargs["stack"]
        out = st.diagnostics(Path(funcargs.get("scenario_dir", st.work_dir)) / "diagnostics")
        report.sections.append(("hpa-kit diagnostics", f"component state and logs dumped to {out}"))
    return report


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """``--hpa-kit-fail-on-skip``: any skipped test turns a passing run into a failed one."""
    if exitstatus != 0 or not setting(session.config, "hpa_kit_fail_on_skip"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        if reporter:
            reporter.write_sep("=", f"hpa-kit: {len(skipped)} skipped test(s) fail this run (fail-on-skip)",
                               red=True)  # fmt: skip
            for rep in skipped:
                reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
                reporter.write_line(f"  {rep.nodeid}: {reason}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ------------------------------------------------------------------------------------ fork counts


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in sorted(after.items()) if n - before.get(k, 0)}


class _ForkLedger:
    """Processes forked per test and phase (setup, call, teardown), by tool, from ``procs.fork_counts``."""

    def __init__(self, start: dict[str, int]) -> None:
        self.start = start
        self.tests: dict[str, dict[str, dict[str, int]]] = {}

    def record(self, nodeid: str, phase: str, before: dict[str, int]) -> None:
        got = _diff(procs.fork_counts(), before)
        self.tests.setdefault(nodeid, {})[phase] = got

    def report(self) -> dict[str, Any]:
        """``{"session": totals, "outside_tests": ..., "tests": {nodeid: {"total", "setup", ...}}}``."""
        session = _diff(procs.fork_counts(), self.start)
        tests: dict[str, dict[str, dict[str, int]]] = {}
        in_tests: Counter[str] = Counter()
        for nodeid, phases in self.tests.items():
            total: Counter[str] = Counter()
            for counts in phases.values():
                total.update(counts)
            in_tests.update(total)
            tests[nodeid] = {"total": dict(sorted(total.items())), **phases}
        outside = {k: n - in_tests.get(k, 0) for k, n in session.items() if n - in_tests.get(k, 0)}
        return {"session": session, "outside_tests": outside, "tests": tests}

    def summary(self, report: dict[str, Any], *, tool: str = "kubectl", top: int = 3) -> str:
        """One line: the session's forks of ``tool`` and the tests with the most."""
        ranked = sorted(((t["total"].get(tool, 0), nodeid) for nodeid, t in report["tests"].items()),
                        key=lambda x: (-x[0], x[1]))
        ranked = [(n, nodeid) for n, nodeid in ranked if n][:top]
        by_count = sorted(report["session"].items(), key=lambda x: (-x[1], x[0]))
        others = ", ".join([f"{k} {n}" for k, n in by_count if k != tool][:4])
        line = (f"hpa-kit forks: {tool} {report['session'].get(tool, 0)} "
                f"({report['outside_tests'].get(tool, 0)} outside tests)")
        if others:
            line += f"; others: {others}"
        if ranked:
            calls = {nodeid: report["tests"][nodeid].get("call", {}).get(tool, 0) for _, nodeid in ranked}
            line += f"; most {tool}: " + ", ".join(
                f"{nodeid.rpartition('::')[2]} {n} (call {calls[nodeid]})" for n, nodeid in ranked)
        return line


_FORKS_KEY = pytest.StashKey[_ForkLedger]()
_REPORT_ROOT_KEY = pytest.StashKey[Path]()


def _count_phase(item: pytest.Item, phase: str) -> Iterator[None]:
    before = procs.fork_counts()
    try:
        yield
    finally:
        ledger = item.config.stash.get(_FORKS_KEY, None)
        if ledger is not None:
            ledger.record(item.nodeid, phase, before)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    return (yield from _count_phase(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    return (yield from _count_phase(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    return (yield from _count_phase(item, "teardown"))


def _reports_base(config: pytest.Config) -> Path:
    configured = setting(config, "hpa_kit_reports")
    return _ini_relative(config, configured) if configured else config.rootpath / "reports"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Write ``forks.json`` and print the one-line fork summary (only when a test forked anything)."""
    ledger = config.stash.get(_FORKS_KEY, None)
    if ledger is None or not ledger.tests:
        return
    report = ledger.report()
    if not report["session"]:
        return
    folder = config.stash.get(_REPORT_ROOT_KEY, None) or _reports_base(config)
    path = folder / "forks.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")
        where = f"; per test: {path}"
    except OSError as exc:
        where = f"; could not write {path}: {exc.strerror}"
    terminalreporter.write_line(ledger.summary(report) + where)


class _LiveStderr:
    """stderr around pytest's output capture (fd-level capture swallows even ``sys.__stderr__``):
    a cold build or a stack install takes minutes and must show its progress as it happens."""

    def __init__(self, config: pytest.Config) -> None:
        self.capman = config.pluginmanager.getplugin("capturemanager")

    def write(self, text: str) -> int:
        if self.capman is None:
            return sys.stderr.write(text)
        with self.capman.global_and_fixture_disabled():
            n = sys.stderr.write(text)
            sys.stderr.flush()
        return n

    def flush(self) -> None:
        """Each write flushes already."""


_LIVE: _LiveStderr | None = None


def live_progress(prefix: str) -> Progress:
    """A progress printer that shows through pytest's capture (for fixtures that take minutes)."""
    return Progress(stream=_LIVE or sys.__stderr__, prefix=prefix)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def progress_for() -> Callable[[str], Progress]:
    """``progress_for("stack: ")``: a live progress printer for long fixtures (builds, installs)."""
    return live_progress


def _need_harness_extra() -> None:
    absent = entry.missing("harness")
    if absent:
        pytest.fail(
            f"hpa-kit fixtures need the [harness] extra ({', '.join(absent)} missing): "
            "pip install 'hpa-kit[harness]'",
            pytrace=False,
        )


# ---------------------------------------------------------------------------------------- cluster


def local_skip_reason(need: list[str], root: bool) -> str | None:
    """Why the local provider (or a bare control plane) cannot run here, or None when it can."""
    from harness.cluster import binaries

    if root and os.geteuid() != 0:
        return "the local provider needs root (it runs containerd and kubelet): run the tests with sudo"
    missing = binaries.missing(need)
    if missing and os.environ.get("HPA_KIT_BUILD", "1") == "0":
        return (
            f"binaries not built ({', '.join(missing)} missing in {binaries.bin_dir()}) and "
            "HPA_KIT_BUILD=0: run scripts/build-binaries.sh"
        )
    return None


@pytest.fixture(scope="session")
def cluster_provider_name(pytestconfig: pytest.Config) -> str:
    from harness.cluster import best_available

    name = setting(pytestconfig, "hpa_kit_provider")
    return best_available() if name in (None, "auto") else str(name)


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config, cluster_provider_name: str) -> Iterator[Cluster]:
    """The cluster under test, up once per session (a ``harness.cluster.Cluster``).

    A cluster that was already running when the session started is left running; otherwise it is
    stopped (state kept for a warm start) unless ``--hpa-kit-keep-cluster``.
    """
    _need_harness_extra()
    from harness.cluster import ClusterError, get_provider, provider_class
    from harness.cluster.binaries import CONTROL_PLANE, NODE

    name = cluster_provider_name
    ok, why = provider_class(name).available()
    if not ok:
        pytest.skip(f"{name} provider unavailable: {why}")
    kwargs: dict[str, object] = {}
    if name == "local":
        reason = local_skip_reason([*CONTROL_PLANE, *NODE], root=True)
        if reason:
            pytest.skip(reason)
    if name == "existing":
        kubeconfig = setting(pytestconfig, "hpa_kit_kubeconfig")
        if kubeconfig:
            kwargs["kubeconfig"] = kubeconfig
        kwargs["context"] = setting(pytestconfig, "hpa_kit_context")
    c = get_provider(name, cluster_name=setting(pytestconfig, "hpa_kit_cluster_name"), **kwargs)
    progress = live_progress(f"{name}: ")
    was_running = c.running()
    try:
        c.create(progress)
    except ClusterError as exc:
        pytest.fail(f"cluster {c.name} ({name}) did not come up:\n{exc}", pytrace=False)
    yield c
    if was_running or setting(pytestconfig, "hpa_kit_keep_cluster"):
        progress(f"leaving cluster {c.name} running (kubeconfig {c.kubeconfig})")
        return
    c.stop(progress)


@pytest.fixture(scope="session")
def kubeconfig(cluster: Cluster) -> Path:
    """Admin kubeconfig of the cluster under test."""
    return cluster.kubeconfig


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Kubectl:
    """``harness.kubectl.Kubectl`` bound to the cluster's kubeconfig and context."""
    return cluster.kubectl()


@pytest.fixture(scope="session")
def kube_api(kubectl: Any) -> Any:
    """A ``kubernetes.client.ApiClient`` for the same kubeconfig and context as ``kubectl``: the very
    client ``kubectl.get`` and ``kubectl.raw`` read through."""
    return kubectl.api


# ------------------------------------------------------------------------------------------ stack


@pytest.fixture(scope="session")
def report_root(pytestconfig: pytest.Config) -> Path:
    """This session's report folder: ``<reports>/e2e-YYYYmmdd-HHMMSS``."""
    root = _reports_base(pytestconfig) / time.strftime("e2e-%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    pytestconfig.stash[_REPORT_ROOT_KEY] = root
    live_progress("")(f"report folder: {root}")
    return root


@pytest.fixture(scope="session")
def stack(
    pytestconfig: pytest.Config, cluster: Cluster, report_root: Path, progress_for: Callable[[str], Progress]
) -> Iterator[Stack]:
    """The reference stack installed on ``cluster`` (Prometheus Operator, Prometheus, the adapter
    with its APIServices, mockmetrics, HPAs), ready: every wait passed. Uninstalled at the end unless
    ``--hpa-kit-keep-stack``. ``--hpa-kit-adapter-rules FILE`` adds a project's own rules."""
    from harness.stack import Stack

    overlay = str(setting(pytestconfig, "hpa_kit_overlay"))
    if "/" in overlay or overlay.startswith("."):
        overlay = str(_ini_relative(pytestconfig, overlay))
    rules = setting(pytestconfig, "hpa_kit_adapter_rules")
    # Passing the cluster makes the install build and load every image it runs where the cluster
    # cannot pull: a fresh cluster holds none of them.
    st = Stack(kubeconfig=cluster.kubeconfig, work_dir=report_root / "stack", overlay=overlay,
               cluster=cluster, progress=progress_for(""),
               adapter_rules=_ini_relative(pytestconfig, rules) if rules else None)  # fmt: skip
    try:
        st.install(timeout=float(os.environ.get("HPA_KIT_STACK_TIMEOUT", "600")))
    except Exception:
        st.diagnostics(report_root / "stack" / "diagnostics")
        raise
    yield st
    # Leave the cluster as the session found it: a later session (or the cluster's own tests, which
    # need the metrics APIService group free) starts clean.
    if not setting(pytestconfig, "hpa_kit_keep_stack"):
        st.uninstall()


@pytest.fixture
def scenario_dir(request: pytest.FixtureRequest, report_root: Path) -> Path:
    """This test's report folder (timeseries, plot, events, load CSVs, diagnostics on failure)."""
    path = report_root / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------------------- load, HPA


@pytest.fixture
def load(cluster: Cluster, kubectl: Kubectl, scenario_dir: Path) -> Iterator[Callable[..., Any]]:
    """``load(namespace, service, user_class, stages, locustfile=None, **kw)``: a Locust run against a
    Service that works on the cluster's provider (not started; ``.start()`` or ``hpa_recorder`` starts
    it). ``locustfile`` is the project's own; the built-in one has ``HitUser``, ``WorkUser`` and
    ``ProduceUser``. Every run still going at the end of the test is stopped."""
    from harness.incluster_load import load_for

    runs: list[Any] = []

    def make(namespace: str, service: str, user_class: str, stages: list[Stage], **kw: Any) -> Any:
        out = scenario_dir / ("load" if not runs else f"load-{len(runs) + 1}")
        run = load_for(cluster, kubectl, namespace, service, user_class, stages, out, **kw)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.stop()


@pytest.fixture
def hpa_recorder(kubectl: Kubectl, scenario_dir: Path) -> Callable[..., Any]:
    """``with hpa_recorder(namespace, hpa, load=run) as rec:`` records the HPA every 3 s (replicas,
    metric, target, conditions, the adapter's answer) and writes ``timeseries.csv``, ``plot.png``,
    ``budget.json`` (the scale-up latency budget) and ``events.txt`` into ``scenario_dir``. A ``load``
    run is started on entry and stopped on exit, both marked on the plot; ``direct=`` adds a reference
    value (e.g. a PromQL query) to every sample."""

    @contextmanager
    def record(namespace: str, name: str, *, load: Any = None, target: str | None = None,
               direct: Callable[[], float] | None = None) -> Iterator[Recorder]:  # fmt: skip
        from harness.hpa import recorded

        with recorded(kubectl, namespace, name, scenario_dir, load, direct=direct, target=target) as rec:
            yield rec

    return record
