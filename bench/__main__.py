"""``python -m bench <name> [args]``: one entry point for the benchmarks (each also runs as its module).

python -m bench adapter        # bench.adapter_bench: ours vs prometheus-adapter, req/s and latency
python -m bench hostile        # bench.hostile_bench: RSS and latency under slow/idle connections
python -m bench resource-diff  # bench.resource_diff: metrics.k8s.io answers vs the peer's
python -m bench soak           # bench.soak: minutes of steady load through the aggregator
python -m bench hpas           # bench.hpas: N emulated HPAs polling every 15 s, ours vs the peer
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "adapter": "bench.adapter_bench",
    "hostile": "bench.hostile_bench",
    "resource-diff": "bench.resource_diff",
    "soak": "bench.soak",
    "hpas": "bench.hpas",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        names = ", ".join(COMMANDS)
        print(f"error: name a benchmark ({names})" if args else "", file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    module = importlib.import_module(COMMANDS[args[0]])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
