"""The harness's one way to run a subprocess: :func:`run` for short-lived commands (kubectl, docker,
buildah, cfssl, iptables, ...), and supervision of long-running helper processes (etcd,
kube-apiserver, containerd, ...).

:func:`run` words every failure the same way (the command, its exit code and the tail of its
stderr, or the log it streamed into; a timeout; a missing program with the caller's install hint)
and raises the caller's own exception type, so each module keeps its ``KubectlError``,
``ImageError``... without its own copy of the ``subprocess`` handling.

Why not plain ``subprocess.Popen`` objects: the CLI's ``up`` and ``down`` run in different Python
processes, so each component is started in its own session (it survives the process that started it)
and described by a small JSON record on disk: pid, the kernel's start time of that pid (so a recycled
pid is never mistaken for our process, and never signalled), argv and log file. Every wait has a
timeout and fails with the component's name and the tail of its log, which is what one needs to see
first when a component does not come up.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from harness.errors import HarnessError

__all__ = [
    "INHERIT",
    "ComponentError",
    "ProcessRecord",
    "alive",
    "count_forks",
    "fork_counts",
    "free_port",
    "load_record",
    "port_free",
    "proc_rss_kib",
    "run",
    "short_command",
    "start",
    "stop",
    "tail",
    "tool_name",
    "wait_until",
]

#: Popen objects of processes this Python process started, so they get reaped (no zombies) when
#: they are stopped from the same process (pytest fixtures).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

TAIL_LINES = 30

#: Processes this Python process started, by tool (:func:`tool_name`), once :func:`count_forks` ran.
_FORKS: Counter[str] = Counter()
_FORKS_LOCK = threading.Lock()
_FORKS_HOOKED = False


def tool_name(args: Any, *, shell: bool = False) -> str:
    """The program a process runs, as counted: the base name of ``argv[0]`` (``/usr/bin/kubectl`` ->
    ``kubectl``); for a shell command string, of its first word."""
    if isinstance(args, (str, bytes, os.PathLike)) and not shell:
        first: Any = args
    elif isinstance(args, (str, bytes)):
        text = os.fsdecode(args)
        try:
            words = shlex.split(text)
        except ValueError:
            words = text.split()
        first = words[0] if words else ""
    else:
        seq = list(args or ())
        first = seq[0] if seq else ""
    return os.path.basename(os.fsdecode(first)) or "?"


def _count_hook(event: str, args: tuple[Any, ...]) -> None:
    if event != "subprocess.Popen" and event != "os.system":  # every audit event comes here: be quick
        return
    try:
        if event == "subprocess.Popen":  # (executable, args, cwd, env): every subprocess.run/Popen/call
            executable, argv = args[0], args[1]
            # subprocess passes a shell=True command as ["/bin/sh", "-c", cmd]: count the command's program
            seq = list(argv) if isinstance(argv, (list, tuple)) else None
            if seq and len(seq) >= 3 and tool_name(seq) in ("sh", "bash") and seq[1] == "-c":
                name = tool_name(seq[2], shell=True)
            else:
                name = tool_name(argv if argv else executable)
        else:  # os.system(command)
            name = tool_name(args[0], shell=True)
    except Exception:  # an exception here would fail the caller's fork: count it, never break it
        name = "?"
    with _FORKS_LOCK:
        _FORKS[name] += 1


def count_forks() -> None:
    """Start counting every process this Python process starts, by tool (idempotent).

    One Python audit hook on ``subprocess.Popen`` (which ``subprocess.run``, ``call`` and
    ``check_output`` go through, whichever module calls them: :class:`harness.kubectl.Kubectl`, the
    image builds, the manifests' ``kubectl kustomize``) and ``os.system``. Audit hooks cannot be
    removed; the cost is a dict update per fork.
    """
    global _FORKS_HOOKED
    with _FORKS_LOCK:
        if _FORKS_HOOKED:
            return
        _FORKS_HOOKED = True
    sys.addaudithook(_count_hook)


def fork_counts() -> dict[str, int]:
    """How many processes were started per tool since :func:`count_forks` (a snapshot)."""
    with _FORKS_LOCK:
        return dict(_FORKS)


class ComponentError(HarnessError):
    """A component failed to start or to become healthy; the message names it and shows its log tail."""

    def __init__(self, component: str, problem: str, log: Path | None = None, lines: int = TAIL_LINES):
        self.component = component
        self.problem = problem
        self.log = log
        text = f"{component}: {problem}"
        if log is not None:
            text += f"\n--- last {lines} lines of {log} ---\n{tail(log, lines)}"
        super().__init__(text)


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist); reads at most 256 KiB."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read()
    except OSError:
        return "(no log)"
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


#: ``run(..., stdout=INHERIT)``: the command writes to this process's stdout and stderr (a build
#: script whose progress the user watches); a failure then says "output above".
INHERIT: Literal["inherit"] = "inherit"

#: Longest command line quoted in an error message; the rest is elided.
_CMD_CHARS = 200


def short_command(argv: Sequence[str | os.PathLike[str]]) -> str:
    """``argv`` as a shell line for messages, elided past :data:`_CMD_CHARS` characters."""
    text = shlex.join(os.fspath(a) for a in argv)
    return text if len(text) <= _CMD_CHARS else text[: _CMD_CHARS - 4] + " ..."


def _last_lines(output: str | bytes | None, lines: int) -> str:
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    kept = [line.rstrip() for line in (output or "").splitlines() if line.strip()]
    return "\n".join(kept[-lines:])[-2000:]


def _detail(text: str) -> str:
    """``text`` after a colon: on the same line when it is one line, below it otherwise."""
    if not text:
        return ""
    return f":\n{text}" if "\n" in text else f": {text}"


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 120,
    check: bool = True,
    cwd: str | os.PathLike[str] | None = None,
    text: bool = True,
    stdout: IO[Any] | int | Literal["inherit"] | None = None,
    what: str | None = None,
    error: Callable[[str], BaseException] = HarnessError,
    missing: str | None = None,
    lines: int = 10,
) -> subprocess.CompletedProcess[Any]:
    """Run a short-lived command to its end; every failure raises ``error(message)``.

    Output is captured (``.stdout``/``.stderr`` of the result) unless ``stdout`` is given: a file
    handle or descriptor (a log file) receives stdout and stderr both, and the result's ``stdout``
    and ``stderr`` are empty; :data:`INHERIT` lets the command write to this process's own.
    ``env`` replaces the environment (``None`` inherits it); ``input`` is fed to stdin. ``what``
    names the command in messages (default: the command line, shortened).

    - exit code != 0 with ``check``: "<what> failed (exit N): <last ``lines`` lines of stderr (or
      stdout)>", or "...; see <log>" and the log's tail when streamed into a named file;
    - ``timeout`` seconds passed (``None``: no limit): "<what> timed out after Ns";
    - the program cannot be executed: "<program> not found: <missing>" (``missing`` is the hint
      that says how to install it), also with ``check=False``.

    With ``check=False`` a non-zero exit is returned as is, for callers that read ``returncode``.
    """
    argv = [os.fspath(a) for a in argv]
    label = what or short_command(argv)
    log = getattr(stdout, "name", None) if stdout is not None and not isinstance(stdout, (int, str)) else None
    log_path = Path(log) if isinstance(log, str) else None
    streamed = stdout is not None
    kw: dict[str, Any] = {}
    if stdout == INHERIT:
        pass
    elif streamed:
        if hasattr(stdout, "flush"):
            stdout.flush()  # type: ignore[union-attr]  # what the caller wrote first stays first
        kw.update(stdout=stdout, stderr=subprocess.STDOUT)
    else:
        kw.update(capture_output=True)
    try:
        proc = subprocess.run(
            argv, input=input, env=None if env is None else dict(env), cwd=cwd, text=text,
            timeout=timeout, check=False, **kw,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        where = f"; see {log_path}" if log_path else ""
        partial = "" if streamed else _last_lines(exc.stderr or exc.output, lines)
        raise error(f"{label} timed out after {timeout:g}s{where}{_detail(partial)}") from exc
    except OSError as exc:
        hint = missing or f"install {os.path.basename(argv[0])} or put it on PATH"
        if isinstance(exc, FileNotFoundError) and (cwd is None or Path(cwd).is_dir()):
            raise error(f"{argv[0]} not found: {hint}") from exc
        raise error(f"cannot run {argv[0]}: {exc.strerror or exc}; {hint}") from exc
    if streamed:
        proc.stdout = proc.stderr = "" if text else b""
    if check and proc.returncode != 0:
        if stdout == INHERIT:
            raise error(f"{label} failed (exit {proc.returncode}); output above")
        if log_path is not None:
            raise error(f"{label} failed (exit {proc.returncode}); see {log_path}"
                        f"{_detail(tail(log_path, lines))}")  # fmt: skip
        if streamed:
            raise error(f"{label} failed (exit {proc.returncode})")
        out = _last_lines(proc.stderr, lines) or _last_lines(proc.stdout, lines)
        raise error(f"{label} failed (exit {proc.returncode}){_detail(out)}")
    return proc


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None when the pid is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = stat[stat.rfind(")") + 2 :].split()
    if rest[0] in ("Z", "X"):
        return None
    return int(rest[19])


@dataclass
class ProcessRecord:
    """What is known about one started component; persisted as ``<pid_dir>/<name>.json``."""

    name: str
    pid: int
    start_ticks: int
    argv: list[str]
    log: str
    started_at: float = field(default_factory=time.time)

    @property
    def log_path(self) -> Path:
        return Path(self.log)

    def save(self, pid_dir: Path) -> None:
        pid_dir.mkdir(parents=True, exist_ok=True)
        tmp = pid_dir / f".{self.name}.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(pid_dir / f"{self.name}.json")
        (pid_dir / f"{self.name}.pid").write_text(f"{self.pid}\n")


def load_record(pid_dir: Path, name: str) -> ProcessRecord | None:
    """The saved record of component ``name``, or None."""
    try:
        data = json.loads((pid_dir / f"{name}.json").read_text())
        return ProcessRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def forget(pid_dir: Path, name: str) -> None:
    """Remove the saved record of ``name``."""
    for suffix in (".json", ".pid"):
        with contextlib.suppress(FileNotFoundError):
            (pid_dir / f"{name}{suffix}").unlink()


def alive(record: ProcessRecord | None) -> bool:
    """True when the recorded process still runs (same pid *and* same start time, not a zombie)."""
    if record is None:
        return False
    child = _CHILDREN.get(record.pid)
    if child is not None and child.poll() is not None:
        return False
    return _start_ticks(record.pid) == record.start_ticks


def start(
    name: str,
    argv: Sequence[str],
    *,
    log: Path,
    pid_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessRecord:
    """Start ``argv`` detached (own session, stdin from /dev/null, stdout+stderr appended to ``log``)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(log, "ab") as out:
        out.write(
            f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {name}: {' '.join(argv)}\n".encode()
        )
        out.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=full_env,
                cwd=cwd,
            )
        except OSError as exc:
            raise ComponentError(name, f"cannot execute {argv[0]}: {exc.strerror}") from exc
    _CHILDREN[proc.pid] = proc
    ticks = None
    for _ in range(50):  # /proc entry appears immediately; this only guards a very fast crash
        ticks = _start_ticks(proc.pid)
        if ticks is not None or proc.poll() is not None:
            break
        time.sleep(0.01)
    record = ProcessRecord(name=name, pid=proc.pid, start_ticks=ticks or -1, argv=list(argv), log=str(log))
    record.save(pid_dir)
    return record


def _reap(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(Exception):
            child.wait(timeout=0)


def terminate(proc: subprocess.Popen[Any], timeout: float = 15.0) -> int:
    """SIGTERM a child we started, SIGKILL it if it outlives ``timeout``; returns its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def stop(record: ProcessRecord | None, timeout: float = 15.0, sig: int = signal.SIGTERM) -> bool:
    """Stop a recorded process: ``sig`` to its process group, SIGKILL after ``timeout``.

    Returns True if it was running. Only the process group this module created (pgid == pid) is
    signalled, never anything found by name.
    """
    if record is None or not alive(record):
        if record is not None:
            _reap(record.pid)
        return False

    def send(s: int) -> None:
        try:
            if os.getpgid(record.pid) == record.pid:
                os.killpg(record.pid, s)
            else:
                os.kill(record.pid, s)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise

    send(sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(record):
            _reap(record.pid)
            return True
        time.sleep(0.05)
    send(signal.SIGKILL)
    for _ in range(100):
        if not alive(record):
            break
        time.sleep(0.05)
    _reap(record.pid)
    return True


def wait_until(
    check: Callable[[], tuple[bool, str]],
    *,
    component: str,
    timeout: float,
    what: str = "ready",
    record: ProcessRecord | None = None,
    log: Path | None = None,
    interval: float = 0.2,
) -> None:
    """:func:`harness.waits.wait_for` for a component: fails fast if ``record``'s process exits.

    ``check`` is a probe (``(done, detail)``); the last detail goes into the error, which is a
    :class:`ComponentError` with the component's log tail.
    """
    from harness.waits import Unresolvable, wait_for

    log = log or (record.log_path if record else None)
    last = ["not checked yet"]

    def probe() -> tuple[bool, str]:
        try:
            done, detail = check()
        except Exception as exc:
            done, detail = False, f"{type(exc).__name__}: {exc}"
        if not done:
            last[0] = detail
            if record is not None and not alive(record):
                raise Unresolvable("exited")
        return done, detail

    def error(kind: str, _message: str) -> ComponentError:
        if kind == "unresolvable":
            return ComponentError(component, f"exited before it was {what} (last check: {last[0]})", log)
        return ComponentError(component, f"not {what} after {timeout:.0f}s (last check: {last[0]})", log)

    wait_for(f"{component} {what}", probe, timeout=timeout, interval=interval, progress=None, error=error)


def port_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` (checked by binding it, with SO_REUSEADDR like servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", avoid: Sequence[int] = ()) -> int:
    """A TCP port the kernel says is free now on ``host`` (there is a small race; callers re-check)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port
    raise RuntimeError("could not find a free port")


def proc_rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
