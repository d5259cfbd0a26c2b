"""Console-script entry points that check their extra is installed before importing anything heavy.

``pip install hpa-kit`` alone installs no third-party packages; each program needs its extra
(``[harness]``, ``[adapter]``, ``[mockmetrics]``). Without it, the program says which extra to install
instead of failing with a ``ModuleNotFoundError`` traceback. Stdlib only: nothing here may need an extra.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable

#: extra -> the import names it provides (what each program needs at import time).
EXTRAS = {
    "harness": ("yaml", "kubernetes", "httpx", "cryptography"),
    "adapter": ("aiohttp", "httpx", "prometheus_client", "yaml", "cryptography", "kubernetes"),
    "mockmetrics": ("aiohttp", "prometheus_client"),
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def _run(program: str, extra: str, target: str) -> Callable[[], int | None]:
    def main() -> int | None:
        absent = missing(extra)
        if absent:
            print(
                f"{program} needs the [{extra}] extra ({', '.join(absent)} not installed): "
                f"pip install 'hpa-kit[{extra}]'",
                file=sys.stderr,
            )
            return 3
        module, func = target.split(":")
        result: int | None = getattr(importlib.import_module(module), func)()
        return result

    return main


hpa_kit = _run("hpa-kit", "harness", "harness.cli:main")
adapter = _run("hpa-kit-adapter", "adapter", "adapter.cli:main")
mockmetrics = _run("mockmetrics", "mockmetrics", "mockmetrics.app:main")
