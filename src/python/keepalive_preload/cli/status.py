"""``keepalive-preload status``: the TCP sockets of running processes."""

from __future__ import annotations

import argparse
import json

from ..live.status import (
    StatusError,
    _public,
    format_all,
    format_status,
    inspect,
    inspect_all,
    report_each,
)
from .args import COMMANDS, UNKNOWN


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The ``status`` subcommand; returns the exit status."""
    if args.all == bool(args.pids):
        parser.error("status: give either PIDs or --all")
    if args.check and not args.all:
        parser.error("status: --check goes with --all")
    if args.all:
        reports = inspect_all()
        if args.json:
            print(json.dumps([_public(r) for r in reports], indent=2))
        else:
            print(format_all(reports))
        if not args.check:
            return 0
        if any(r.get("without_keepalive") for r in reports):
            return 1
        return UNKNOWN if any("error" in r for r in reports) else 0
    failed, _ = report_each(args.pids, inspect, StatusError, format_status, args.json,
                            public=_public, separator="\n\n")
    return 1 if failed else 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``status`` subcommand to the subparsers ``commands``."""
    parser = commands.add_parser(
        "status", help=COMMANDS["status"],
        description="Show each TCP socket of each PID (listeners included): state, "
        "addresses, the armed timer, and SO_KEEPALIVE, idle, interval, count and user "
        "timeout read from the socket itself (pidfd_getfd, Linux 5.6+, needs the right to "
        "ptrace the process). A process that cannot be read is an error (exit 1). "
        "With --all: every process holding TCP sockets, those with connections "
        "without keepalive first.")
    parser.add_argument("pids", type=int, nargs="*", metavar="PID")
    parser.add_argument("--all", action="store_true",
                        help="every process on the host that holds TCP sockets")
    parser.add_argument("--check", action="store_true",
                        help="with --all: exit 1 if any established connection lacks "
                        f"keepalive, else {UNKNOWN} if some process could not be read, else 0")
    parser.add_argument("--json", action="store_true", help="machine-readable output (a list)")
