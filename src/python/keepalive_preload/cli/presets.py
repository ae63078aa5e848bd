"""``keepalive-preload presets``: the presets for --preset."""

from __future__ import annotations

import argparse
import sys

from ..presets import presets_table
from .args import COMMANDS, OK


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``presets`` subcommand to the subparsers ``commands``."""
    commands.add_parser("presets", help=COMMANDS["presets"],
                        description="List the presets for --preset: each middlebox's idle "
                        "timeout and the values chosen for it (idle + interval at most 3/4 "
                        "of the timeout; probes on a live connection come every "
                        "max(idle, interval)).")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The ``presets`` subcommand; returns the exit status."""
    sys.stdout.write(presets_table())
    return OK
