"""Drive load with Locust as a subprocess.

Locust patches the standard library with gevent at import time; importing it into the pytest
process would break every other test. So the harness runs ``locust --headless`` in a child
process with a bounded run time, and reads its CSV history for the report.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USER_CLASSES = ("HitUser", "WorkUser", "BurnUser", "ProduceUser")


class LoadError(HarnessError):
    """Locust could not start or died; the message points at its log."""


#: The line that starts the built-in locustfile's staged shape, the part appended to a project's own.
SHAPE_MARKER = "# --- hpa-kit staged shape"


def _read_classes(locustfile: Path) -> tuple[str, list[ast.ClassDef]]:
    """``locustfile``'s text and its top-level classes (read, never imported: Locust patches the
    stdlib on import)."""
    try:
        text = Path(locustfile).read_text()
        tree = ast.parse(text, filename=str(locustfile))
    except OSError as exc:
        raise LoadError(f"locustfile {locustfile}: {exc.strerror}") from None
    except SyntaxError as exc:
        raise LoadError(f"locustfile {locustfile}:{exc.lineno}: {exc.msg}") from None
    return text, [node for node in tree.body if isinstance(node, ast.ClassDef)]


def user_classes(locustfile: Path) -> list[str]:
    """The classes ``locustfile`` defines."""
    return [cls.name for cls in _read_classes(locustfile)[1]]


def locustfile_text(locustfile: Path | None) -> str:
    """What Locust runs: the built-in file, or a project's own with the kit's staged shape appended
    (unless it defines a ``LoadTestShape`` itself), so ``Stage`` lists drive any user class."""
    builtin = LOCUSTFILE.read_text()
    if locustfile is None:
        return builtin
    text, classes = _read_classes(locustfile)
    if any("LoadTestShape" in ast.unparse(base) for cls in classes for base in cls.bases):
        return text
    shape = builtin[builtin.index(SHAPE_MARKER):]
    return f"{text.rstrip()}\n\n\n{shape}"


def check_run(user_class: str, stages: list[Stage], locustfile: Path | None) -> None:
    """Refuse a run Locust would fail on, before anything starts: unknown user class, bad stages."""
    known = user_classes(locustfile) if locustfile is not None else list(USER_CLASSES)
    if user_class not in known:
        where = f"{locustfile}" if locustfile is not None else "the built-in locustfile"
        raise LoadError(f"unknown user class {user_class!r} in {where}: pick one of {', '.join(known)}")
    if not stages:
        raise LoadError("a load run needs at least one Stage(end_s, users)")
    ends = [s.end_s for s in stages]
    if ends != sorted(ends) or ends[0] <= 0:
        raise LoadError(f"stage end times must be positive and increasing, got {ends}")


@dataclass(frozen=True)
class Stage:
    """Hold ``users`` concurrent users (spawned at ``spawn_rate``/s) until ``end_s`` seconds."""

    end_s: float
    users: int
    spawn_rate: float = 10.0


@dataclass
class LoadSample:
    at: float
    users: int
    rps: float
    failures_per_s: float


def _locust_executable() -> list[str]:
    exe = Path(sys.executable).with_name("locust")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("locust")
    if found:
        return [found]
    raise LoadError("locust not found: install the harness extras (pip install -e '.[harness]')")


@dataclass
class LocustRun:
    """One Locust run against ``host`` with one user class and a staged shape.

    ``out_dir`` receives ``locust.log`` and Locust's CSV files (``load_stats_history.csv`` is the
    time series the report plots).
    """

    host: str
    user_class: str
    stages: list[Stage]
    out_dir: Path
    work_ms: int = 300
    think_time: tuple[float, float] = (0.05, 0.15)
    env: dict[str, str] = field(default_factory=dict)
    #: A project's own locustfile (``user_class`` is one of its classes); None: the built-in one.
    locustfile: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        check_run(self.user_class, self.stages, self.locustfile)

    @property
    def locustfile_path(self) -> Path:
        """The file Locust is given: the built-in one, or the project's with the shape appended."""
        return LOCUSTFILE if self.locustfile is None else self.out_dir / "locustfile.py"

    @property
    def csv_prefix(self) -> Path:
        return self.out_dir / "load"

    @property
    def log_path(self) -> Path:
        return self.out_dir / "locust.log"

    def command(self) -> list[str]:
        run_time = int(self.stages[-1].end_s) + 5  # hard stop even if the shape misbehaves
        return [
            *_locust_executable(),
            "-f", str(self.locustfile_path),
            "--headless",
            "--host", self.host,
            "--csv", str(self.csv_prefix),
            "--run-time", f"{run_time}s",
            "--stop-timeout", "5",
            "--loglevel", "WARNING",
            "--only-summary",
            self.user_class,
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env["HPA_KIT_STAGES"] = json.dumps([[s.end_s, s.users, s.spawn_rate] for s in self.stages])
        env["HPA_KIT_WORK_MS"] = str(self.work_ms)
        env["HPA_KIT_WAIT"] = f"{self.think_time[0]},{self.think_time[1]}"
        return env

    def start(self) -> LocustRun:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.locustfile is not None:
            self.locustfile_path.write_text(locustfile_text(self.locustfile))
        log = self.log_path.open("wb")
        self._log = log
        # Long-running (the load runs while the test watches the HPA): a Popen, not procs.run.
        self._proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.environment(),
            start_new_session=True,
        )  # fmt: skip
        time.sleep(0.5)
        if self._proc.poll() not in (None, 0):
            raise LoadError(f"locust exited at once with {self._proc.returncode}; see {self.log_path}")
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the staged shape to finish; returns Locust's exit code."""
        assert self._proc is not None, "start() first"
        try:
            return self._proc.wait(timeout=timeout)
        finally:
            self._close_log()

    def stop(self) -> None:
        """Stop early (SIGTERM to the process group, then SIGKILL after 10 s)."""
        if self._proc is None or self._proc.poll() is not None:
            self._close_log()
            return
        try:
            os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=5)
        except ProcessLookupError:
            pass
        self._close_log()

    def _close_log(self) -> None:
        log = self._log
        if log is not None:
            log.close()  # type: ignore[attr-defined]
            self._log = None

    def history(self) -> list[LoadSample]:
        """Aggregated rows of Locust's stats history (empty until Locust wrote its first row)."""
        return read_history(Path(f"{self.csv_prefix}_stats_history.csv"))

    def __enter__(self) -> LocustRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_history(path: Path) -> list[LoadSample]:
    """Parse Locust's ``*_stats_history.csv`` (the ``Aggregated`` rows)."""
    if not path.exists():
        return []
    out: list[LoadSample] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("Name") != "Aggregated":
                continue
            try:
                out.append(
                    LoadSample(
                        at=float(row["Timestamp"]),
                        users=int(float(row.get("User Count") or 0)),
                        rps=float(row.get("Requests/s") or 0),
                        failures_per_s=float(row.get("Failures/s") or 0),
                    )
                )
            except (KeyError, ValueError):
                continue
    return out


def served_rps(history: list[LoadSample], seconds: float) -> float:
    """Successful requests per second the load generator saw over the last ``seconds`` of ``history``."""
    if not history:
        return 0.0
    recent = [s for s in history if s.at >= history[-1].at - seconds]
    return statistics.fmean(s.rps - s.failures_per_s for s in recent)
