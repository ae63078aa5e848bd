"""``keepalive-preload metrics``: the host's TCP connections for Prometheus."""

from __future__ import annotations

import argparse
import sys

from ..live.metrics import collect, exposition, write
from .args import COMMANDS, FAILURE, OK, PROG


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The ``metrics`` subcommand; returns the exit status."""
    text = exposition(collect())
    if args.output is None:
        sys.stdout.write(text)
        return OK
    try:
        write(args.output, text)
    except OSError as exc:
        sys.stderr.write(f"{PROG}: cannot write {args.output}: {exc.strerror or exc}\n")
        return FAILURE
    return OK


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``metrics`` subcommand to the subparsers ``commands``."""
    parser = commands.add_parser(
        "metrics", help=COMMANDS["metrics"],
        description="Print the host's TCP sockets in the Prometheus text format: counts by "
        "protocol, state, keepalive on/off, where it comes from (program, library, cgroup, "
        "none, unknown) and loopback; no addresses, no PIDs. With --output, write them "
        "atomically (for node_exporter's textfile collector).")
    parser.add_argument("--output", metavar="FILE",
                        help="write FILE atomically (a temporary file in its directory, "
                        "renamed over it; mode 0644) instead of standard output")
