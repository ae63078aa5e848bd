"""The ``keepalive-preload`` command (also ``python -m keepalive_preload``).

Its layout is its list of subcommands (``args.COMMANDS``: name and one-line
help): one module each in this package, with ``add_parser(subparsers)`` and
``run(args, parser)``, over the shared arguments of ``args``. Only the module
of the subcommand being run is imported, and only its parser built (``run``
sits in front of every program it starts); the top-level ``--help`` builds
them all.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from .._version import __version__
from .args import COMMANDS, FAILURE, PROG, Parser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .args import Subcommand

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


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line: the first word that is not an
    option (the top-level parser takes no option with a value)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
        if word == "--":
            return None
    return None


def parser(chosen: str | None = None) -> Parser:
    """The command line's parser: with the subcommand ``chosen`` only, or
    (None) with every subcommand, for the top-level --help and the tests."""
    top = Parser(prog=PROG, description="Turn on TCP keepalive for any dynamically "
                 "linked program, with LD_PRELOAD.", epilog=EXAMPLES,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = top.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    commands.required = True
    for name in COMMANDS:
        # Only the chosen one: the others would only be listed by a --help
        # that is not asked for, and each parser costs `run` start-up time.
        if chosen is None or name == chosen:
            module(name).add_parser(commands)
    return top


def module(name: str) -> Subcommand:
    """The module of subcommand ``name``."""
    return importlib.import_module(f"{__name__}.{name}")


def _quiet_exit(status: int) -> int:
    """stdout is gone (closed pipe) or full: nothing more is written to it,
    also not by the interpreter's final flush."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:
        pass
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]); return the exit status."""
    words = sys.argv[1:] if argv is None else list(argv)
    chosen = _chosen(words)
    top = parser(chosen)
    args = top.parse_args(words)
    try:
        status = int(module(args.subcommand).run(args, top))
        sys.stdout.flush()
        return status
    except BrokenPipeError:  # `... | head`: the reader has all it wanted
        return _quiet_exit(FAILURE)
    except FileNotFoundError as exc:  # a broken installation, from path()
        sys.stderr.write(f"{PROG}: {exc.strerror}\n")
        return FAILURE
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT) and not exc.filename:
            sys.stderr.write(f"{PROG}: cannot write the output: {os.strerror(exc.errno)}\n")
            return _quiet_exit(FAILURE)
        raise


def console() -> None:
    """The ``keepalive-preload`` command and ``python -m keepalive_preload``:
    ``main()``, then the process ends at once. Everything the command writes is
    flushed or closed by then, so the interpreter's teardown of every module
    is pure cost (about a tenth of ``path``'s start-up, measured by
    bench/startup.py); ``run`` never gets here when it replaces itself."""
    status = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        status = _quiet_exit(status or FAILURE)
    except OSError:
        status = status or FAILURE
    os._exit(status)
