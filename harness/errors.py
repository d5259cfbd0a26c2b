"""The harness's root error: every error it raises on purpose is a ``HarnessError``.

``except HarnessError`` in a user's test catches a failed install, a cluster that did not come up, a
failed kubectl command or a load run that could not start, and leaves real bugs (``TypeError``...)
alone. Each subclass's message says what failed and where to look.
"""

from __future__ import annotations

__all__ = ["HarnessError"]


class HarnessError(RuntimeError):
    """Something the harness did failed; the message says what and where to look."""
