"""``keepalive-preload status``: the TCP sockets of running processes."""

from __future__ import annotations

import argparse
import json
import sys

from ..live.errors import LiveError
from ..live.proc import parse_pid
from ..live.records import ProcessStatus, Unreadable
from ..live.show import format_all, format_status
from ..live.status import Reader, inspect, inspect_all, no_gc
from .args import COMMANDS, FAILURE, OK, PROG, UNKNOWN, typed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def print_json(items: Iterable[dict[str, object]]) -> None:
    """One JSON list, written item by item (the whole never held as a string)."""
    write = sys.stdout.write
    first = True
    for item in items:
        write("[\n" if first else ",\n")
        write(json.dumps(item, indent=2))
        first = False
    write("[]\n" if first else "\n]\n")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The ``status`` subcommand; returns the exit status."""
    if args.all == bool(args.pids):
        parser.error("status: give either PIDs or --all")
    if args.check and not args.all:
        parser.error("status: --check goes with --all")
    loopback = args.include_loopback
    if args.all:
        reports, _ = inspect_all(loopback)
        if args.json:
            print_json(r.to_json(loopback) for r in reports)
        else:
            print(format_all(reports, loopback))
        if not args.check:
            return OK
        if any(isinstance(r, ProcessStatus) and r.without_keepalive(loopback) for r in reports):
            return FAILURE
        return UNKNOWN if any(isinstance(r, Unreadable) for r in reports) else OK
    failed = False
    reader = Reader()
    results: list[dict[str, object]] = []
    texts: list[str] = []
    with no_gc():
        failed = _each(args, reader, results, texts)
    if args.json:
        print_json(results)
    elif texts:
        print("\n\n".join(texts))
    return FAILURE if failed else OK


def _each(args: argparse.Namespace, reader: Reader, results: list[dict[str, object]],
          texts: list[str]) -> bool:
    """status of each PID, into ``results`` (JSON) or ``texts``; whether one failed."""
    failed = False
    loopback = args.include_loopback
    for pid in args.pids:
        try:
            report = inspect(pid, reader)
        except LiveError as exc:
            failed = True
            sys.stderr.write(f"{PROG}: {exc}\n")
            results.append({"pid": pid, "error": str(exc)})
            continue
        if args.json:
            results.append(report.to_json(loopback))
        else:
            texts.append(format_status(report))
    return failed


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``status`` subcommand to the subparsers ``commands``."""
    parser = commands.add_parser(
        "status", help=COMMANDS["status"],
        description="Show each TCP socket of each PID (listeners included): state, "
        "addresses, the armed timer, SO_KEEPALIVE, idle, interval, count and user "
        "timeout read from the socket itself (pidfd_getfd, Linux 5.6+, needs the right to "
        "ptrace the process), and where they come from (SOURCE: program, library, cgroup, "
        "none, unknown), with our libraries mapped in the process and our cgroup programs "
        "over it. A process that cannot be read is an error (exit 1). With --all: every "
        "process holding TCP sockets, those with connections without keepalive first.")
    parser.add_argument("pids", type=typed(parse_pid), nargs="*", metavar="PID")
    parser.add_argument("--all", action="store_true",
                        help="every process on the host that holds TCP sockets")
    parser.add_argument("--check", action="store_true",
                        help="with --all: exit 1 if any established connection that crosses a "
                        "network (not loopback) lacks keepalive, else "
                        f"{UNKNOWN} if some process could not be read, else 0")
    parser.add_argument("--include-loopback", action="store_true",
                        help="count loopback connections too (for --all, --check and "
                        "without_keepalive)")
    parser.add_argument("--json", action="store_true", help="machine-readable output (a list)")
