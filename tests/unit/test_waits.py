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
