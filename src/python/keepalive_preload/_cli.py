"""The ``keepalive-preload`` command (also ``python -m keepalive_preload``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import TypeVar

from . import _apply, _cgroup, _status, environ, path
from ._envformat import FORMATS, render, upgrade_note, use_library
from ._exec import CommandError, execute, is_go_elf, is_static_elf, privilege_change, resolve
from ._options import BY_NAME, LIBRARIES, OPTIONS, REACHES, VARIANTS, WORDS, variant_name
from ._presets import PRESETS, preset, presets_table
from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PROG = "keepalive-preload"

_EXAMPLES = (
    (f"{PROG} run -- redis-cli -h cache monitor", "keepalive on every TCP socket"),
    (f"{PROG} run --client --idle 30 -- psql -h db", "outbound connections only"),
    (f"{PROG} run --server --idle 60 -- memcached", "every accepted connection"),
    (f"{PROG} run --preset aws-nlb -- psql -h db", "values for AWS NLB's 350 s timeout"),
    (f"{PROG} env --format systemd --preset azure-lb", "a systemd drop-in"),
    (f'eval "$({PROG} env --idle 30)"; COMMAND', "the same, in this shell"),
    (f"{PROG} status 1234", "check a running process"),
    (f"{PROG} apply --idle 30 1234", "fix it without restarting it"),
    (f"{PROG} cgroup attach system.slice", "every connection of a cgroup (eBPF)"),
    (f"LD_PRELOAD=$({PROG} path) COMMAND", "the library itself"),
)
_WIDTH = max(len(line) for line, _ in _EXAMPLES)
EXAMPLES = "examples:\n" + "".join(f"  {line:<{_WIDTH}}  {what}\n" for line, what in _EXAMPLES)


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{PROG}: error: {message} (see {PROG} --help)\n")
        sys.exit(2)


_T = TypeVar("_T")


def _typed(parse: Callable[[str], _T]) -> Callable[[str], _T]:
    """An argparse type from a parser that raises ValueError with its reason."""
    def convert(text: str) -> _T:
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
    parser.add_argument("--preset", type=_typed(lambda text: preset(text).name), metavar="NAME",
                        action=_PresetAction,
                        help="values for a middlebox's idle timeout (see the presets "
                             "subcommand); options given explicitly win: "
                             + ", ".join(p.name for p in PRESETS))
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


class _PresetAction(argparse.Action):
    """--preset NAME fills in the preset's values while parsing, each only if
    the option is not given (before or after it): explicit options win, and
    every subcommand built on _add_preload_options reads the values from the
    namespace like any option. ``preset_values`` keeps what it filled in."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option_string} given twice")
        chosen = preset(str(values))
        setattr(namespace, self.dest, chosen.name)
        filled = {}
        for name, value in chosen.values().items():
            if getattr(namespace, name, None) is None:
                setattr(namespace, name, value)
                filled[name] = value
        namespace.preset_values = filled


def chosen_values(args: argparse.Namespace) -> dict[str, int | None]:
    """The option values the command line asks for, by option name (None: not
    given), a preset's included."""
    return {o.name: getattr(args, o.name) for o in OPTIONS}


def _explicit(args: argparse.Namespace) -> dict[str, int]:
    """The options given on the command line rather than by --preset."""
    filled = getattr(args, "preset_values", {})
    return {name: value for name, value in chosen_values(args).items()
            if value is not None and filled.get(name) != value}


def check_variant_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse, in the words of the command line, an option the chosen variant
    does not apply (--syn-count with --server)."""
    for name, value in chosen_values(args).items():
        option = BY_NAME[name]
        if value is not None and args.variant not in option.variants:
            where = " and ".join(f"--{WORDS[v]}" for v in option.variants)
            parser.error(f"{option.flag} has no effect with --{WORDS[args.variant]}; "
                         f"it applies to {where}")


def _environment(args: argparse.Namespace, parser: argparse.ArgumentParser,
                 base: dict[str, str] | None = None) -> dict[str, str]:
    check_variant_options(args, parser)
    values = chosen_values(args)
    try:
        # run: the values given here are what the user wants, so they win over
        # the program's own keepalive settings unless told otherwise.
        force = not getattr(args, "keep_program_settings", True)
        return environ(args.variant, debug=args.debug, force=force, base=base, **values)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # not reached


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

    env = commands.add_parser("env", help="print the environment for a shell, systemd or docker",
                              description='Print the variables run would set, except '
                              'KEEPALIVE=force (so a program\'s own keepalive settings win; '
                              'add KEEPALIVE=force to make ours win): export lines '
                              'for eval "$(' + PROG + ' env --idle 30)" (sh), a systemd '
                              '[Service] drop-in (systemd), Dockerfile ENV lines (docker) or '
                              'a docker --env-file (dotenv).')
    _add_preload_options(env)
    env.add_argument("--format", choices=FORMATS, default="sh",
                     help="sh (the default; merges with this shell's LD_PRELOAD), systemd, "
                          "docker or dotenv (these three: only our library in LD_PRELOAD)")
    env.add_argument("--library", metavar="PATH",
                     help="the LD_PRELOAD entry to write instead of this installation's path: "
                          "a bare name (libkeepalive_socket.so) for the .deb/.rpm, or a "
                          "stable copy (/usr/local/lib/libkeepalive_socket.so)")

    commands.add_parser("presets", help="list the presets for --preset",
                        description="List the presets for --preset: each middlebox's idle "
                        "timeout and the values chosen for it (idle + interval at most 3/4 "
                        "of the timeout; probes on a live connection come every "
                        "max(idle, interval)).")

    where = commands.add_parser("path", help="print the path of a library",
                                description="Print the absolute path of the library of "
                                "VARIANT: " + ", ".join(f"{WORDS[v]} or {v} ({LIBRARIES[v]})"
                                                        for v in VARIANTS) + ".")
    where.add_argument("variant", nargs="?", default=VARIANTS[0], type=_typed(variant_name),
                       metavar="VARIANT")

    _status.add_parser(commands)
    _apply.add_parser(commands)
    _cgroup.add_parser(commands)
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
    return failure.status


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


def _env(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # sh output is eval'd into this shell: its LD_PRELOAD entries are kept. A
    # drop-in, an image or an env-file is another environment: only ours.
    env = _environment(args, parser, base=None if args.format == "sh" else {})
    given = chosen_values(args)
    names = ["LD_PRELOAD", *(o.variable for o in OPTIONS if given[o.name] is not None)]
    if args.debug:
        names.append("LIBKEEPALIVE_DEBUG")
    words = ["env", "--format", args.format, f"--{WORDS[args.variant]}",
             *(["--preset", args.preset] if args.preset else []),
             *(f"{BY_NAME[name].flag} {value}" for name, value in _explicit(args).items()),
             *(["--library", shlex.quote(args.library)] if args.library else [])]
    try:
        if args.library is not None:
            env["LD_PRELOAD"] = use_library(env["LD_PRELOAD"], path(args.variant),
                                            args.library, f"--{WORDS[args.variant]}")
        text = render(args.format, [(n, env[n]) for n in names],
                      f"{PROG} {__version__}: {PROG} {' '.join(words)}")
    except ValueError as exc:
        parser.error(str(exc))
    note = upgrade_note(args.format, env["LD_PRELOAD"])
    if note:
        sys.stderr.write(f"{PROG}: note: {note}\n")
    sys.stdout.write(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.subcommand == "run":
            return _run(args, parser)
        if args.subcommand == "env":
            return _env(args, parser)
        if args.subcommand == "cgroup":
            return _cgroup.main(args, parser)
        if args.subcommand == "presets":
            sys.stdout.write(presets_table())
            return 0
        if args.subcommand == "path":
            print(path(args.variant))
            return 0
        return int(args.handler(args))
    except FileNotFoundError as exc:  # a broken installation, from path()
        sys.stderr.write(f"{PROG}: {exc.strerror}\n")
        return 1
