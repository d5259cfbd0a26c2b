"""Waiting on real conditions, with progress and a useful error when the wait runs out.

Every wait in the harness goes through :func:`wait_for`: it polls a probe that returns
``(done, detail)``, prints the detail when it changes (so a long wait shows what it is waiting on),
and on timeout raises :class:`WaitTimeout` with the last detail and a hint of where to look. A probe
that sees a state which cannot resolve by itself (an image that will never be pulled) raises
:class:`Unresolvable`, and the wait ends at once with that message instead of running out its timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.errors import HarnessError


class WaitTimeout(TimeoutError):
    """A condition did not hold in time; ``str()`` says what, the last observation, and where to look."""


class Unresolvable(HarnessError):
    """Raised by a probe: the awaited state cannot come about by itself. ``wait_for`` re-raises it."""


Probe = Callable[[], tuple[bool, str]]


def wait_for(
    what: str,
    probe: Probe,
    *,
    timeout: float,
    interval: float = 1.0,
    hint: str = "",
    progress: Callable[[str], None] | None = print,
) -> str:
    """Poll ``probe`` until it reports done; returns its last detail.

    Exceptions raised by the probe count as "not yet" (an API that is still starting refuses
    connections), and the last one is reported if the wait times out; :class:`Unresolvable` ends the
    wait at once.
    """
    start = time.monotonic()
    last_detail = ""
    shown = None
    while True:
        try:
            done, last_detail = probe()
        except Unresolvable as exc:
            if progress:
                progress(f"[{time.monotonic() - start:6.1f}s] {what}: giving up: {exc}")
            raise Unresolvable(f"{what}: {exc}" + (f"; {hint}" if hint else "")) from None
        except Exception as exc:
            done, last_detail = False, f"{type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - start
        if done:
            if progress:
                progress(f"[{elapsed:6.1f}s] {what}: {last_detail or 'ok'}")
            return last_detail
        if progress and last_detail != shown:
            progress(f"[{elapsed:6.1f}s] waiting for {what}: {last_detail}")
            shown = last_detail
        if elapsed >= timeout:
            msg = f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last_detail}"
            if hint:
                msg += f"; {hint}"
            raise WaitTimeout(msg)
        time.sleep(interval)
