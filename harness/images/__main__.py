"""``python -m harness.images``: build, list, prune or import the offline images."""

import sys

from harness.images.cli import main

sys.exit(main())
