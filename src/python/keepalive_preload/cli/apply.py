"""``keepalive-preload apply``: set the options on a running process's sockets."""

from __future__ import annotations

import argparse

from .._options import effective
from ..live.apply import ApplyError, apply, format_apply
from ..live.status import report_each
from .args import COMMANDS, add_preload_options, check_variant_options, chosen_values


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The ``apply`` subcommand; returns the exit status."""
    check_variant_options(args, parser)
    values = effective(chosen_values(args))
    failed, reports = report_each(
        args.pids, lambda pid: apply(pid, args.variant, values, force=args.force,
                                     dry_run=args.dry_run, debug=args.debug),
        ApplyError, format_apply, args.json)
    socket_failed = any(e["action"] == "failed" for r in reports for e in r["sockets"])
    return 1 if failed or socket_failed else 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``apply`` subcommand to the subparsers ``commands``."""
    parser = commands.add_parser(
        "apply", help=COMMANDS["apply"],
        description="Set keepalive and the other options on the TCP sockets each PID "
        "already holds (established connections, and listeners so that connections "
        "accepted later inherit them), through pidfd_getfd (Linux 5.6+; needs the right "
        "to ptrace the process), without stopping it. A socket on which keepalive is "
        "already on keeps the program's settings unless --force. --client: outbound "
        "connections (an established socket whose local port the process does not listen "
        "on); --server: listeners and accepted connections; --all: both (the default).")
    add_preload_options(parser)
    parser.add_argument("--force", action="store_true",
                        help="our values also on sockets where the program turned keepalive on")
    parser.add_argument("--dry-run", action="store_true",
                        help="report what would be set, change nothing")
    parser.add_argument("--json", action="store_true", help="machine-readable output (a list)")
    parser.add_argument("pids", type=int, nargs="+", metavar="PID")
