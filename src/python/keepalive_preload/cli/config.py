"""``keepalive-preload config --check [FILE]``: judge a configuration file
with the libraries' own parser (``hostconfig``: a library loaded in a child
process), before installing it as /etc/keepalive-preload.conf."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .._options import BY_NAME
from ..hostconfig import DEFAULT_PATH, HostConfig, HostConfigError, escape, read
from .args import COMMANDS, FAILURE, OK, PROG


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``config`` subcommand to the subparsers ``commands``."""
    parser = commands.add_parser(
        "config", help=COMMANDS["config"],
        description="Check a configuration file as the libraries read it: each problem "
        "with its line, then the values in effect. Exit status 0 when the file has no "
        f"problem, 1 otherwise. Without FILE: {DEFAULT_PATH}, as every process reads it "
        "(trusted only when owned by root and not writable by group or others; absent: "
        "the built-in defaults).")
    parser.add_argument("--check", action="store_true", required=True,
                        help="check the file (the only action so far)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object: path, problems (line, text), mode, values")
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help=f"the file to check (default: {DEFAULT_PATH})")


def _text(config: HostConfig, shown: str, absent: bool) -> str:
    if absent:  # the default file, absent: silence for the libraries
        return f"{shown}: absent; the built-in defaults apply\n"
    lines = [f"{shown}:{p.line}: {p.text}" if p.line is not None else f"{shown}: {p.text}"
             for p in config.problems]
    count = len(config.problems)
    lines.append(f"{shown}: {count} problem{'s' if count != 1 else ''}" if count
                 else f"{shown}: no problems")
    if config.reported:
        values = " ".join(f"{BY_NAME[name].variable}={value}"
                          for name, value in config.values.items() if name in BY_NAME)
        lines.append(f"in effect: KEEPALIVE={config.mode} {values}")
    return "".join(line + "\n" for line in lines)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The ``config`` subcommand; returns the exit status."""
    if args.file == "":
        parser.error("config --check: FILE is empty")
    try:
        config = read(args.file, strict=False)
    except HostConfigError as exc:
        sys.stderr.write(f"{PROG}: config --check: {exc}\n")
        return FAILURE
    shown = escape(args.file if args.file is not None else DEFAULT_PATH)
    if args.json:
        sys.stdout.write(json.dumps({
            "path": args.file if args.file is not None else DEFAULT_PATH,
            "problems": [{"line": p.line, "text": p.text} for p in config.problems],
            "mode": config.mode or None,
            "values": config.values if config.reported else None,
        }) + "\n")
    else:
        absent = args.file is None and not os.path.lexists(DEFAULT_PATH)
        sys.stdout.write(_text(config, shown, absent))
    return FAILURE if config.problems else OK

