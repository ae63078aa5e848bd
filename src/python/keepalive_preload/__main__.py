"""``python -m keepalive_preload``: the same as the ``keepalive-preload`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
