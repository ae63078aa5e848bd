"""``keepalive-preload run``: run a command with the library preloaded."""

from __future__ import annotations

import argparse

from .._options import BY_NAME
from .args import COMMANDS, add_preload_options, chosen_values, environment
from .launch import launch


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``run`` subcommand to the subparsers ``commands``."""
    parser = commands.add_parser("run", help=COMMANDS["run"],
                                 description="Run COMMAND (it replaces this process) with the "
                                 "library in LD_PRELOAD and the options in its environment.")
    add_preload_options(parser, run=True)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="[--] COMMAND [ARGS ...]")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The ``run`` subcommand: replaces this process, or returns the exit status."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("run: missing COMMAND")
    env = environment(args, parser)
    given = {BY_NAME[name].variable for name, value in chosen_values(args).items()
             if value is not None}
    return launch(env, command, debug=args.debug, given=given)
