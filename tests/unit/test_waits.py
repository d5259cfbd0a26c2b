"""wait_for: progress, timeouts with context, exceptions as not-yet."""

from __future__ import annotations

import pytest

from harness.waits import WaitTimeout, wait_for


def test_returns_when_probe_is_done() -> None:
    calls = iter([(False, "0/2 ready"), (False, "1/2 ready"), (True, "2/2 ready")])
    lines: list[str] = []
    assert wait_for("pods", lambda: next(calls), timeout=5, interval=0, progress=lines.append) == "2/2 ready"
    assert any("waiting for pods: 1/2 ready" in line for line in lines)


def test_probe_exceptions_are_not_yet_and_reported_on_timeout() -> None:
    def probe() -> tuple[bool, str]:
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(WaitTimeout) as err:
        wait_for("apiserver", probe, timeout=0.05, interval=0.01, hint="see logs/kube-apiserver.log",
                 progress=None)  # fmt: skip
    text = str(err.value)
    assert "apiserver" in text and "connection refused" in text and "kube-apiserver.log" in text


def test_a_probe_that_breaks_the_convention_is_a_bug_raised_at_once() -> None:
    from harness.waits import ProbeError

    with pytest.raises(ProbeError, match=r"answers \(done, detail\)"):
        wait_for("x", lambda: True, timeout=5, interval=0, progress=None)  # type: ignore[arg-type,return-value]


def test_error_factory_shapes_both_failures() -> None:
    from harness.waits import Unresolvable

    class Mine(Exception):
        pass

    def error(kind: str, message: str) -> Mine:
        return Mine(f"{kind}|{message}")

    with pytest.raises(Mine, match=r"^timeout\|timed out after 0s waiting for t; last seen: no; see x$"):
        wait_for("t", lambda: (False, "no"), timeout=0, interval=0, hint="see x", progress=None, error=error)

    def gone() -> tuple[bool, str]:
        raise Unresolvable("process exited")

    with pytest.raises(Mine, match=r"^unresolvable\|u: process exited$"):
        wait_for("u", gone, timeout=5, interval=0, progress=None, error=error)


def test_async_wait_takes_sync_and_async_probes_and_bounds_a_hanging_probe() -> None:
    import asyncio
    import time

    from harness.waits import wait_for_async

    answers = iter([(False, "0/1"), (True, "1/1")])

    async def probe() -> tuple[bool, str]:
        return next(answers)

    lines: list[str] = []
    assert asyncio.run(wait_for_async("a", probe, timeout=5, interval=0, progress=lines.append)) == "1/1"
    assert any("waiting for a: 0/1" in line for line in lines)
    sync = wait_for_async("s", lambda: (True, "sync"), timeout=5, interval=0, progress=None)
    assert asyncio.run(sync) == "sync"

    async def hangs() -> tuple[bool, str]:
        await asyncio.sleep(60)
        return True, "never"

    t0 = time.monotonic()
    with pytest.raises(WaitTimeout, match="waiting for h"):
        asyncio.run(wait_for_async("h", hangs, timeout=0.3, interval=0.05, progress=None))
    assert time.monotonic() - t0 < 5
