"""``keepalive-preload env``: the environment for a shell, systemd or docker."""

from __future__ import annotations

import argparse
import shlex
import sys

from .. import path
from .._options import BY_NAME, OPTIONS, WORDS
from .._version import __version__
from ..preload.envformat import FORMATS, render, upgrade_note, use_library
from .args import COMMANDS, OK, PROG, add_preload_options, chosen_values, environment, explicit


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``env`` subcommand to the subparsers ``commands``."""
    parser = commands.add_parser("env", help=COMMANDS["env"],
                                 description='Print the variables run would set, except '
                                 'KEEPALIVE=force (so a program\'s own keepalive settings win; '
                                 'add KEEPALIVE=force to make ours win): export lines '
                                 'for eval "$(' + PROG + ' env --idle 30)" (sh), a systemd '
                                 '[Service] drop-in (systemd), Dockerfile ENV lines (docker) '
                                 'or a docker --env-file (dotenv).')
    add_preload_options(parser)
    parser.add_argument("--format", choices=FORMATS, default="sh",
                        help="sh (the default; merges with this shell's LD_PRELOAD), systemd, "
                             "docker or dotenv (these three: only our library in LD_PRELOAD)")
    parser.add_argument("--library", metavar="PATH",
                        help="the LD_PRELOAD entry to write instead of this installation's "
                             "path: a bare name (libkeepalive_socket.so) for the .deb/.rpm, or "
                             "a stable copy (/usr/local/lib/libkeepalive_socket.so)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The ``env`` subcommand; returns the exit status."""
    # sh output is eval'd into this shell: its LD_PRELOAD entries are kept. A
    # drop-in, an image or an env-file is another environment: only ours.
    env = environment(args, parser, base=None if args.format == "sh" else {})
    given = chosen_values(args)
    names = ["LD_PRELOAD", *(o.variable for o in OPTIONS if given[o.name] is not None)]
    if args.debug:
        names.append("LIBKEEPALIVE_DEBUG")
    words = ["env", "--format", args.format, f"--{WORDS[args.variant]}",
             *(["--preset", args.preset] if args.preset else []),
             *(f"{BY_NAME[name].flag} {value}" for name, value in explicit(args).items()),
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
    return OK
