"""The dial: move ``total_hit_count`` up, down or hold it, without generating load.

Why it exists: load-driven metrics are noisy, so scenarios that must assert exact HPA behaviour (scale out
at a known rate, then hold, then scale in) drive the metric deterministically instead. In ``up`` mode the
value rises by ``step`` per second, continuously (a Prometheus ``rate()`` over it reads exactly ``step``);
``down`` lowers it by ``step`` per second and stops at 0; ``stop`` holds it. Real hits (``GET /``) add 1
on top in every mode.

Like the job queue this is a pure class with an injectable clock: the value is a function of the time
since the last change, computed when read, so unit tests need no sleeping and no background task exists.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal, cast, get_args

Mode = Literal["up", "down", "stop"]
MODES: tuple[Mode, ...] = get_args(Mode)


class Dial:
    """A value that drifts at ``±step``/s (or holds), floored at 0, plus discrete increments."""

    def __init__(
        self,
        step: float,
        clock: Callable[[], float] = time.monotonic,
        initial: float = 0.0,
    ) -> None:
        if not math.isfinite(step) or step < 0:
            raise ValueError(f"step must be a finite number >= 0 per second, got {step!r}")
        if not math.isfinite(initial) or initial < 0:
            raise ValueError(f"initial value must be a finite number >= 0, got {initial!r}")
        self.step = float(step)
        self._clock = clock
        self._mode: Mode = "stop"
        self._base = float(initial)
        self._since = clock()

    @property
    def mode(self) -> Mode:
        """The current direction: ``up``, ``down`` or ``stop``."""
        return self._mode

    def _value_at(self, now: float) -> float:
        elapsed = max(0.0, now - self._since)
        if self._mode == "up":
            return self._base + self.step * elapsed
        if self._mode == "down":
            return max(0.0, self._base - self.step * elapsed)
        return self._base

    def _rebase(self) -> None:
        """Fold the drift so far into the base, so a mode change or increment starts from "now"."""
        now = self._clock()
        self._base = self._value_at(now)
        self._since = max(now, self._since)

    def value(self) -> float:
        """The current value."""
        return self._value_at(self._clock())

    def set_mode(self, mode: str) -> None:
        """Switch to ``up``, ``down`` or ``stop``; the value continues from where it is."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self._rebase()
        self._mode = cast(Mode, mode)

    def hit(self, n: float = 1.0) -> float:
        """Add ``n`` (a real hit); returns the new value."""
        if not math.isfinite(n) or n < 0:
            raise ValueError(f"increment must be a finite number >= 0, got {n!r}")
        self._rebase()
        self._base += n
        return self._base

    def set_value(self, value: float) -> None:
        """Jump to ``value`` (>= 0); the mode is kept."""
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"value must be a finite number >= 0, got {value!r}")
        self._rebase()
        self._base = float(value)
