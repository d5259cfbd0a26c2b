"""``python -m adapter`` = ``hpa-kit-adapter`` (handy where the console script is not on PATH)."""

import sys

from adapter.cli import main

sys.exit(main())
