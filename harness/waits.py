"""Waiting on real conditions, with progress and a useful error when the wait runs out.

Every wait in the harness goes through one primitive: :func:`wait_for` (blocking) or
:func:`wait_for_async` (in an event loop; the probe may be a coroutine function). Both poll one kind of
probe, a callable that answers ``(done, detail)``; they print the detail when it changes (so a long wait
shows what it is waiting on) and on timeout raise :class:`WaitTimeout` with the last detail and a hint of
where to look. Exceptions a probe raises count as "not yet" (a server that is still starting refuses
connections) and the last one is reported. A probe that sees a state which cannot resolve by itself (an
image that will never be pulled, a process that exited) raises :class:`Unresolvable`, and the wait ends
at once with that message instead of running out its timeout.

``error=`` lets a caller turn a failed wait into its own error type (a component's
:class:`~harness.procs.ComponentError` with its log, a Prometheus error with its log tail) without a
second polling loop.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from harness.errors import HarnessError

__all__ = ["AsyncProbe", "Probe", "ProbeError", "Unresolvable", "WaitTimeout", "wait_for", "wait_for_async"]


class WaitTimeout(TimeoutError):
    """A condition did not hold in time; ``str()`` says what, the last observation, and where to look."""


class Unresolvable(HarnessError):
    """Raised by a probe: the awaited state cannot come about by itself. ``wait_for`` re-raises it."""


#: The one probe convention: called once per poll, answers whether the state holds and what it saw.
Probe = Callable[[], tuple[bool, str]]
AsyncProbe = Callable[[], tuple[bool, str] | Awaitable[tuple[bool, str]]]
#: Builds the error a failed wait raises: (kind, message) -> exception; kind is "timeout" or "unresolvable".
ErrorFactory = Callable[[str, str], BaseException]
ProgressFn = Callable[[str], None]


class _Poll:
    """The state of one wait: what was seen, what was shown, and how the wait ends. Shared by both loops."""

    def __init__(self, what: str, timeout: float, hint: str, progress: ProgressFn | None,
                 error: ErrorFactory | None) -> None:  # fmt: skip
        self.what, self.timeout, self.hint, self.progress, self.error = what, timeout, hint, progress, error
        self.start = time.monotonic()
        self.detail = ""
        self.shown: str | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def _fail(self, kind: str, msg: str, default: type[BaseException]) -> BaseException:
        if self.hint:
            msg += f"; {self.hint}"
        return self.error(kind, msg) if self.error else default(msg)

    def unresolvable(self, exc: Unresolvable) -> BaseException:
        if self.progress:
            self.progress(f"[{self.elapsed():6.1f}s] {self.what}: giving up: {exc}")
        return self._fail("unresolvable", f"{self.what}: {exc}", Unresolvable)

    def observe(self, done: bool, detail: str) -> bool:
        """Record one answer; True when the wait is over (done), raises when it ran out of time."""
        self.detail = detail
        elapsed = self.elapsed()
        if done:
            if self.progress:
                self.progress(f"[{elapsed:6.1f}s] {self.what}: {detail or 'ok'}")
            return True
        if self.progress and detail != self.shown:
            self.progress(f"[{elapsed:6.1f}s] waiting for {self.what}: {detail}")
            self.shown = detail
        if elapsed >= self.timeout:
            msg = f"timed out after {self.timeout:.0f}s waiting for {self.what}; last seen: {detail}"
            raise self._fail("timeout", msg, WaitTimeout)
        return False


class ProbeError(TypeError):
    """A probe broke the convention (it must answer ``(done, detail)``): a bug, raised at once."""


def _answer(result: object) -> tuple[bool, str]:
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bool)):
        raise ProbeError(f"a probe answers (done, detail), not {result!r}")
    return result[0], str(result[1])


def wait_for(
    what: str,
    probe: Probe,
    *,
    timeout: float,
    interval: float = 1.0,
    hint: str = "",
    progress: ProgressFn | None = print,
    error: ErrorFactory | None = None,
) -> str:
    """Poll ``probe`` until it reports done; returns its last detail."""
    poll = _Poll(what, timeout, hint, progress, error)
    while True:
        try:
            done, detail = _answer(probe())
        except Unresolvable as exc:
            raise poll.unresolvable(exc) from None
        except ProbeError:
            raise
        except Exception as exc:
            done, detail = False, f"{type(exc).__name__}: {exc}"
        if poll.observe(done, detail):
            return detail
        time.sleep(interval)


async def wait_for_async(
    what: str,
    probe: AsyncProbe,
    *,
    timeout: float,
    interval: float = 1.0,
    hint: str = "",
    progress: ProgressFn | None = print,
    error: ErrorFactory | None = None,
) -> str:
    """:func:`wait_for` for an event loop: the same probe convention, sync or ``async def``.

    A probe call that itself hangs is cut off at the remaining time, so the wait never outlives its
    timeout by more than one interval.
    """
    poll = _Poll(what, timeout, hint, progress, error)
    while True:
        try:
            result = probe()
            if inspect.isawaitable(result):
                left = max(timeout - poll.elapsed(), 0.01)
                result = await asyncio.wait_for(result, left)  # type: ignore[arg-type]
            done, detail = _answer(result)
        except Unresolvable as exc:
            raise poll.unresolvable(exc) from None
        except ProbeError:
            raise
        except Exception as exc:
            done, detail = False, f"{type(exc).__name__}: {exc}"
        if poll.observe(done, detail):
            return detail
        await asyncio.sleep(interval)
