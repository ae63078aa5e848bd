"""``keepalive-preload run``: run a command with the library preloaded."""

from __future__ import annotations

import argparse
import os
import sys

from .._options import BY_NAME, OPTIONS
from ..preload.execute import (
    CommandError,
    execute,
    is_go_elf,
    is_static_elf,
    privilege_change,
    resolve,
)
from .args import (
    CANNOT_EXECUTE,
    COMMANDS,
    NOT_FOUND,
    PROG,
    add_preload_options,
    chosen_values,
    environment,
)


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
    try:
        program = resolve(command[0], env.get("PATH"))
    except CommandError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return _status(exc)
    if is_go_elf(program):
        sys.stderr.write(
            f"{PROG}: warning: {program} is a Go program: it makes its socket calls itself, "
            "so LD_PRELOAD cannot reach them and these options do not apply; Go (1.13 and "
            "later) turns keepalive on by itself for the connections it dials and accepts "
            "(15 s unless the program chooses or disables it); to apply these options use "
            f"the cgroup mode: {PROG} cgroup attach; running it anyway\n")
    elif is_static_elf(program):
        sys.stderr.write(f"{PROG}: warning: {program} is statically linked: LD_PRELOAD "
                         "cannot reach it, so keepalive stays off (the cgroup mode reaches "
                         f"it: {PROG} cgroup attach); running it anyway\n")
    why = privilege_change(program)
    if why is not None:
        sys.stderr.write(
            f"{PROG}: warning: {program} is {why}: the loader ignores this LD_PRELOAD path, "
            "so keepalive stays off; only a library installed set-user-ID in a system "
            "directory is preloaded (see the README), and it then uses the defaults\n")
    if args.debug:
        _report_inherited(args, env)
    sys.stdout.flush()
    sys.stderr.flush()
    failure = execute(program, command, env)
    sys.stderr.write(f"{PROG}: {failure}\n")
    return _status(failure)


def _status(failure: CommandError) -> int:
    """A shell's exit status for a command that cannot be run."""
    return CANNOT_EXECUTE if failure.found else NOT_FOUND


#: Variables the libraries read besides the options' own (KEEPALIVE=off, the
#: configuration file).
_OTHER_VARIABLES = ("KEEPALIVE", "KEEPALIVE_CONFIG")


def _report_inherited(args: argparse.Namespace, env: dict[str, str]) -> None:
    """--debug: name what COMMAND gets from this environment rather than from
    the command line — option variables (and their 0.3 aliases) the user did
    not give, and the LD_PRELOAD it ends up with."""
    given = {BY_NAME[name].variable for name, value in chosen_values(args).items()
             if value is not None}
    watched = [*(o.variable for o in OPTIONS), *(o.alias for o in OPTIONS if o.alias),
               *_OTHER_VARIABLES]
    inherited = [f"{name}={env[name]}" for name in watched
                 if name not in given and name in env and os.environ.get(name) == env[name]]
    sys.stderr.write(f"{PROG}: LD_PRELOAD={env['LD_PRELOAD']}\n")
    if inherited:
        sys.stderr.write(f"{PROG}: inherited from the environment, not given on this command "
                         f"line: {' '.join(inherited)}\n")
