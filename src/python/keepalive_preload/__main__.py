"""``python -m keepalive_preload``: the same as the ``keepalive-preload`` command."""

from .cli import console

if __name__ == "__main__":
    console()
