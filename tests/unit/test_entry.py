"""``pip install hpa-kit`` without extras: each program names the extra it needs, no traceback."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from harness import entry


@pytest.mark.parametrize(("program", "extra"), [("hpa_kit", "harness"), ("adapter", "adapter"),
                                                ("mockmetrics", "mockmetrics")])  # fmt: skip
def test_a_missing_extra_is_named(program: str, extra: str, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    real = importlib.util.find_spec
    gone = entry.EXTRAS[extra][0]
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == gone else real(name, *a))  # fmt: skip
    assert getattr(entry, program)() == 3
    err = capsys.readouterr().err
    assert f"needs the [{extra}] extra ({gone} not installed): pip install 'hpa-kit[{extra}]'" in err


def test_entry_needs_nothing_but_the_stdlib() -> None:
    # It runs before any extra is known to be there: importing it must not pull one in.
    code = ("import sys, harness.entry; bad = [m for m in ('yaml', 'aiohttp', 'kubernetes', 'httpx') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


def test_with_the_extra_the_program_runs() -> None:
    code = "import sys; from harness.entry import hpa_kit; sys.argv = ['hpa-kit', '--help']; hpa_kit()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: hpa-kit" in out.stdout
