"""Run our adapter with a cProfile switch: ``SIGUSR1`` starts profiling, the next ``SIGUSR1`` stops
it and writes ``<prefix>-<k>.prof`` (k = 1, 2, ...), so a profile covers one load run and not the
discovery before it.

    python -m bench.profiled --out /tmp/prof/ours -- serve --provider prometheus ...

The benchmark uses it behind ``--profile-ours DIR``; read a file with
``python -m pstats FILE`` (``sort tottime``, ``stats 30``). cProfile slows the profiled process
down (roughly 1.5-2x), so a profiled run's req/s and CPU are not the headline numbers.
"""

from __future__ import annotations

import argparse
import cProfile
import signal
import sys
from pathlib import Path


class Switch:
    """Toggles one :class:`cProfile.Profile` on and off; every stop writes the next numbered file."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.profile: cProfile.Profile | None = None
        self.written: list[Path] = []

    def toggle(self, *_: object) -> None:
        if self.profile is None:
            self.profile = cProfile.Profile()
            self.profile.enable()
            return
        profile, self.profile = self.profile, None
        profile.disable()
        path = self.prefix.with_name(f"{self.prefix.name}-{len(self.written) + 1}.prof")
        path.parent.mkdir(parents=True, exist_ok=True)
        profile.dump_stats(path)
        self.written.append(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profiled")
    p.add_argument("--out", type=Path, required=True, help="file prefix of the profiles")
    p.add_argument("adapter_args", nargs=argparse.REMAINDER, help="-- then the adapter's arguments")
    args = p.parse_args(argv)
    rest = args.adapter_args[1:] if args.adapter_args[:1] == ["--"] else args.adapter_args
    switch = Switch(args.out)
    signal.signal(signal.SIGUSR1, switch.toggle)
    from adapter.cli import main as adapter_main

    return int(adapter_main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
