"""``python -m harness`` is the ``hpa-kit`` CLI."""

import sys

from harness.cli import main

sys.exit(main())
