"""The ``keepalive-preload`` command (also ``python -m keepalive_preload``)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from . import environ, path
from ._exec import CommandError, is_static_elf, privilege_change, resolve
from ._options import LIBRARIES, OPTIONS, REACHES, VARIANTS, WORDS, variant_name
from ._status import StatusError, format_status, status
from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PROG = "keepalive-preload"

EXAMPLES = "examples:\n" + "".join(f"  {line:<48} {what}\n" for line, what in (
    (f"{PROG} run -- redis-cli -h cache monitor", "keepalive on every TCP socket"),
    (f"{PROG} run --client --idle 30 -- psql -h db", "outbound connections only"),
    (f"{PROG} run --server --idle 60 -- memcached", "every accepted connection"),
    (f'eval "$({PROG} env --idle 30)"; COMMAND', "the same, in this shell"),
    (f"{PROG} status 1234", "check a running process"),
    (f"LD_PRELOAD=$({PROG} path) COMMAND", "the library itself"),
))


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{PROG}: error: {message} (see {PROG} --help)\n")
        sys.exit(2)


def _typed(parse: Callable[[str], int]) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


#: The variant of run, env, apply and cgroup attach when none is named.
DEFAULT_VARIANT = "socket"


def _add_preload_options(parser: argparse.ArgumentParser, *, run: bool = False) -> None:
    """The variant flags (--client, --server, --all) and one flag per option;
    for run, --keep-program-settings."""
    which = parser.add_mutually_exclusive_group()
    for variant in VARIANTS:
        default = "; the default" if variant == DEFAULT_VARIANT else ""
        which.add_argument(f"--{WORDS[variant]}", dest="variant", action="store_const",
                           const=variant, help=f"{REACHES[variant]} ({LIBRARIES[variant]}, "
                           f"{variant}{default})")
    parser.set_defaults(variant=DEFAULT_VARIANT)
    for option in OPTIONS:
        parser.add_argument(option.flag, dest=option.name, type=_typed(option.parse),
                            metavar=option.metavar,
                            help=f"{option.help}; {option.allowed()}, default "
                                 f"{option.describe_default()} [{option.variable}]")
    parser.add_argument("--debug", action="store_true",
                        help="print what is set on each socket to stderr [LIBKEEPALIVE_DEBUG]")
    if run:
        parser.add_argument("--keep-program-settings", action="store_true",
                            help="let a program that sets its own keepalive keep its settings "
                                 "(KEEPALIVE=on); by default these values win over the "
                                 "program's (KEEPALIVE=force)")


def check_variant_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse, in the words of the command line, an option the chosen variant
    does not apply (--syn-count with --server)."""
    for option in OPTIONS:
        if getattr(args, option.name) is not None and args.variant not in option.variants:
            where = " and ".join(f"--{WORDS[v]}" for v in option.variants)
            parser.error(f"{option.flag} has no effect with --{WORDS[args.variant]}; "
                         f"it applies to {where}")


def _environment(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, str]:
    check_variant_options(args, parser)
    values = {o.name: getattr(args, o.name) for o in OPTIONS}
    try:
        # run: the values given here are what the user wants, so they win over
        # the program's own keepalive settings unless told otherwise.
        force = not getattr(args, "keep_program_settings", True)
        return environ(args.variant, debug=args.debug, force=force, **values)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # not reached


def _variant_word(text: str) -> str:
    try:
        return variant_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> _Parser:
    parser = _Parser(prog=PROG, description="Turn on TCP keepalive for any dynamically "
                     "linked program, with LD_PRELOAD.", epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    commands.required = True

    run = commands.add_parser("run", help="run COMMAND with the library preloaded",
                              description="Run COMMAND (it replaces this process) with the "
                              "library in LD_PRELOAD and the options in its environment.")
    _add_preload_options(run, run=True)
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="[--] COMMAND [ARGS ...]")

    env = commands.add_parser("env", help="print shell export lines to eval",
                              description='Print the export lines for: eval "$(' + PROG
                              + ' env --idle 30)"')
    _add_preload_options(env)

    where = commands.add_parser("path", help="print the path of a library",
                                description="Print the absolute path of the library of "
                                "VARIANT: " + ", ".join(f"{WORDS[v]} or {v} ({LIBRARIES[v]})"
                                                        for v in VARIANTS) + ".")
    where.add_argument("variant", nargs="?", default=VARIANTS[0], type=_variant_word,
                       metavar="VARIANT")

    check = commands.add_parser("status", help="show the TCP sockets of a running process",
                                description="Show each TCP socket of process PID with its "
                                "state and armed timer ('keepalive' when keepalive is on).")
    check.add_argument("pid", type=int, metavar="PID")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("run: missing COMMAND")
    env = _environment(args, parser)
    try:
        program = resolve(command[0], env.get("PATH"))
    except CommandError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return exc.status
    if is_static_elf(program):
        sys.stderr.write(f"{PROG}: warning: {program} is statically linked: LD_PRELOAD "
                         "cannot reach it, so keepalive stays off; running it anyway\n")
    why = privilege_change(program)
    if why is not None:
        sys.stderr.write(
            f"{PROG}: warning: {program} is {why}: the loader ignores this LD_PRELOAD path, "
            "so keepalive stays off; only a library installed set-user-ID in a system "
            "directory is preloaded (see the README), and it then uses the defaults\n")
    sys.stdout.flush()
    try:
        os.execve(program, command, env)
    except OSError as exc:
        sys.stderr.write(f"{PROG}: {command[0]}: {exc.strerror}\n")
    return 126


def _env(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    env = _environment(args, parser)
    names = ["LD_PRELOAD", *(o.variable for o in OPTIONS if getattr(args, o.name) is not None)]
    if args.debug:
        names.append("LIBKEEPALIVE_DEBUG")
    for name in names:
        print(f"export {name}={shlex.quote(env[name])}")
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        report = status(args.pid)
    except StatusError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 1
    print(json.dumps(report, indent=2) if args.json else format_status(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.subcommand == "run":
            return _run(args, parser)
        if args.subcommand == "env":
            return _env(args, parser)
        if args.subcommand == "path":
            print(path(args.variant))
            return 0
        return _status(args)
    except FileNotFoundError as exc:  # a broken installation, from path()
        sys.stderr.write(f"{PROG}: {exc.strerror}\n")
        return 1
