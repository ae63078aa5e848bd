"""``keepalive-preload path``: the absolute path of a library."""

from __future__ import annotations

import argparse

from .. import path
from .._options import LIBRARIES, VARIANTS, WORDS, variant_name
from .args import COMMANDS, OK, typed


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``path`` subcommand to the subparsers ``commands``."""
    parser = commands.add_parser("path", help=COMMANDS["path"],
                                 description="Print the absolute path of the library of "
                                 "VARIANT: " + ", ".join(f"{WORDS[v]} or {v} ({LIBRARIES[v]})"
                                                         for v in VARIANTS) + ".")
    parser.add_argument("variant", nargs="?", default=VARIANTS[0], type=typed(variant_name),
                        metavar="VARIANT")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The ``path`` subcommand; returns the exit status."""
    print(path(args.variant))
    return OK
