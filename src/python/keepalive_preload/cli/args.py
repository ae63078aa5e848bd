"""What the subcommands share: the program name, the exit statuses, the parser
class, the typed converters and the preload-option flags (one flag per row of
the option table)."""

from __future__ import annotations

import argparse
import os
import sys

from .. import environ
from .._options import BY_NAME, LIBRARIES, OPTIONS, REACHES, VARIANTS, WORDS
from ..presets import PRESETS, preset
from .words import (  # the shared words, re-exported for the subcommands
    CANNOT_EXECUTE as CANNOT_EXECUTE,
)
from .words import (
    COMMANDS as COMMANDS,
)
from .words import (
    DEFAULT_VARIANT as DEFAULT_VARIANT,
)
from .words import (
    FAILURE as FAILURE,
)
from .words import (
    NOT_FOUND as NOT_FOUND,
)
from .words import (
    OK as OK,
)
from .words import (
    PROG as PROG,
)
from .words import (
    UNKNOWN as UNKNOWN,
)
from .words import (
    USAGE as USAGE,
)

# typing is imported for the type checker only: it costs `run` (which sits in
# front of every program it starts) a few milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn, Protocol, TypeVar

    _T = TypeVar("_T")

    class Subcommand(Protocol):
        """What a subcommand's module provides."""

        def add_parser(self, commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
            """Add the subcommand, with its arguments and ``help=COMMANDS[name]``."""

        def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
            """Run it; return the exit status."""


class Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see {PROG} --help)\n")
        sys.exit(USAGE)

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse's formatter asks shutil for the terminal's width on every
        # add_argument; importing shutil (and the compression modules it
        # imports) would cost each start of `run` ~2 ms. The same width:
        return self.formatter_class(prog=self.prog, width=_help_width())  # type: ignore[call-arg]


_WIDTH: list[int] = []


def _help_width() -> int:
    """The width argparse's HelpFormatter takes by default:
    shutil.get_terminal_size().columns - 2 ($COLUMNS, else stdout's terminal, else 80)."""
    if not _WIDTH:
        try:
            columns = int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            columns = 0
        if columns <= 0:
            try:
                stdout = sys.__stdout__
                columns = 80 if stdout is None else os.get_terminal_size(stdout.fileno()).columns
            except (ValueError, OSError):
                columns = 80
            columns = columns or 80
        _WIDTH.append(columns - 2)
    return _WIDTH[0]


def typed(parse: Callable[[str], _T]) -> Callable[[str], _T]:
    """An argparse type from a parser that raises ValueError with its reason."""
    def convert(text: str) -> _T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert




def add_preload_options(parser: argparse.ArgumentParser, *, run: bool = False) -> None:
    """The variant flags (--client, --server, --all) and one flag per option;
    for run, --keep-program-settings."""
    which = parser.add_mutually_exclusive_group()
    for variant in VARIANTS:
        default = "; the default" if variant == DEFAULT_VARIANT else ""
        which.add_argument(f"--{WORDS[variant]}", dest="variant", action="store_const",
                           const=variant, help=f"{REACHES[variant]} ({LIBRARIES[variant]}, "
                           f"{variant}{default})")
    parser.set_defaults(variant=DEFAULT_VARIANT)
    parser.add_argument("--preset", type=typed(lambda text: preset(text).name), metavar="NAME",
                        action=PresetAction,
                        help="values for a middlebox's idle timeout (see the presets "
                             "subcommand); options given explicitly win: "
                             + ", ".join(p.name for p in PRESETS))
    for option in OPTIONS:
        parser.add_argument(option.flag, dest=option.name, type=typed(option.parse),
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


class PresetAction(argparse.Action):
    """--preset NAME fills in the preset's values while parsing, each only if
    the option is not given (before or after it): explicit options win, and
    every subcommand built on add_preload_options reads the values from the
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


def explicit(args: argparse.Namespace) -> dict[str, int]:
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


def environment(args: argparse.Namespace, parser: argparse.ArgumentParser,
                base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment ``run`` and ``env`` give: the library and the options."""
    check_variant_options(args, parser)
    values = chosen_values(args)
    try:
        # run: the values given here are what the user wants, so they win over
        # the program's own keepalive settings unless told otherwise.
        force = not getattr(args, "keep_program_settings", True)
        return environ(args.variant, debug=args.debug, force=force, base=base, **values)
    except ValueError as exc:
        parser.error(str(exc))
