"""``keepalive-preload apply``: set the options on a running process's sockets."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .._options import BY_NAME, OPTIONS
from ..live.apply import apply_pids
from ..live.proc import escape, parse_pid
from ..live.show import format_apply
from .args import (
    COMMANDS,
    FAILURE,
    OK,
    PROG,
    add_preload_options,
    check_variant_options,
    chosen_values,
    typed,
)
from .status import print_json


def host_config(args: argparse.Namespace) -> tuple[dict[str, int], str]:
    """The configuration file's values (option name -> value) and KEEPALIVE
    mode, read by the libraries' own parser (``hostconfig.read()``); its
    problems are warnings on stderr. None read with --no-config, or when there
    is no file (the libraries then use the built-in defaults too)."""
    if args.no_config:
        return {}, ""
    try:  # the pkg helper's module; a build without it has the defaults only
        hostconfig = importlib.import_module("keepalive_preload.hostconfig")
    except ModuleNotFoundError:
        return {}, ""
    if args.config is None and not os.path.exists(hostconfig.DEFAULT_PATH):
        return {}, ""
    try:
        config = hostconfig.read(args.config)
    except (hostconfig.HostConfigError, OSError) as exc:
        sys.stderr.write(f"{PROG}: cannot read the configuration file: {exc} (--no-config: "
                         "the built-in defaults)\n")
        raise SystemExit(FAILURE) from None
    shown = args.config or hostconfig.DEFAULT_PATH
    for problem in config.problems:
        where = f"{shown}:{problem.line}" if problem.line else shown
        sys.stderr.write(f"{PROG}: {escape(where)}: {problem.text}\n")
    return {n: int(v) for n, v in config.values.items() if n in BY_NAME}, str(config.mode)


def values(args: argparse.Namespace) -> tuple[dict[str, int], bool]:
    """The values to apply (the command line's, over the configuration
    file's, over the built-in defaults; user_timeout -1: derived) and whether
    ours win (--force, or KEEPALIVE=force in the file)."""
    from_file, mode = host_config(args)
    chosen = {o.name: o.default for o in OPTIONS}
    chosen.update(from_file)
    chosen.update({n: v for n, v in chosen_values(args).items() if v is not None})
    return chosen, bool(args.force) or mode == "force"


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The ``apply`` subcommand; returns the exit status."""
    check_variant_options(args, parser)
    chosen, force = values(args)
    reports = apply_pids(args.pids, args.variant, chosen, force=force, dry_run=args.dry_run,
                         debug=args.debug)
    for report in reports:
        if report.error is not None:
            sys.stderr.write(f"{PROG}: {report.error}\n" if report.command is None else
                             f"{PROG}: PID {report.pid}: {report.error}\n")
    if args.json:
        print_json(report.to_json() for report in reports)
    else:
        texts = [format_apply(r) for r in reports if r.command is not None]
        if texts:
            print("\n".join(texts))
    return FAILURE if any(r.failed for r in reports) else OK


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``apply`` subcommand to the subparsers ``commands``."""
    parser = commands.add_parser(
        "apply", help=COMMANDS["apply"],
        description="Set keepalive and the other options on the TCP sockets each PID "
        "already holds (established connections, and listeners so that connections "
        "accepted later inherit them), through pidfd_getfd (Linux 5.6+; needs the right "
        "to ptrace the process), in one pass, without stopping it. Values: the command "
        "line's, over the configuration file's (KEEPALIVE=force in it: as --force), over "
        "the built-in defaults. An option "
        "someone already set on a socket (the program, our library, our cgroup program) is "
        "kept unless --force, and the report says who set it. --client: outbound "
        "connections (an established socket whose local port the process does not listen "
        "on); --server: listeners and accepted connections; --all: both (the default). "
        "What was changed is reported also when it stops half way (exit 1).")
    add_preload_options(parser)
    parser.add_argument("--force", action="store_true",
                        help="our values also on sockets where someone set their own")
    config = parser.add_mutually_exclusive_group()
    config.add_argument("--config", metavar="FILE",
                        help="the configuration file whose values the command line's go over "
                        "(default: /etc/keepalive-preload.conf, when it exists)")
    config.add_argument("--no-config", action="store_true",
                        help="ignore the configuration file: the built-in defaults under the "
                        "command line's values")
    parser.add_argument("--dry-run", action="store_true",
                        help="report what would be set, change nothing")
    parser.add_argument("--json", action="store_true", help="machine-readable output (a list)")
    parser.add_argument("pids", type=typed(parse_pid), nargs="+", metavar="PID")
