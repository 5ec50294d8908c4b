"""``python -m poolwatch``: the same as the ``poolwatch`` command."""

from __future__ import annotations

import sys

from poolwatch.cli import main

if __name__ == "__main__":
    sys.exit(main())
