"""The ``keepalive-preload`` command (also ``python -m keepalive_preload``).

``console()`` is the command. ``run`` sits in front of every program it
starts and ``path`` inside ``LD_PRELOAD=$(keepalive-preload path)``, so their
plain forms are read here without argparse, whose import alone costs about
as much as starting the interpreter: ``path [VARIANT]``, and ``run`` with the
variant flags, the option flags (``--idle 30``, ``--idle=30``), ``--debug``
and ``--keep-program-settings`` before ``[--] COMMAND``. Anything else — a
preset, help, an abbreviation, a value out of range, an option the variant
does not apply, any other subcommand — goes to the full command line
(``dispatch.main``), which gives the same result or the one-line error; the
tests compare the two on every form read here.
"""

from __future__ import annotations

import os
import sys

from .. import environ, path
from .._options import BY_NAME, OPTIONS, VARIANTS, WORDS, variant_name
from .launch import launch
from .words import DEFAULT_VARIANT, FAILURE, PROG

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_VARIANT_FLAGS = {f"--{WORDS[v]}": v for v in VARIANTS}
_OPTION_FLAGS = {o.flag: o for o in OPTIONS}


class Plain:
    """The plain form of ``run``: what the full command line would read."""

    __slots__ = ("command", "debug", "keep", "values", "variant")

    def __init__(self) -> None:
        self.variant = DEFAULT_VARIANT
        self.values: dict[str, int | None] = {}
        self.debug = False
        self.keep = False
        self.command: list[str] = []


def plain_run(words: Sequence[str]) -> Plain | None:
    """``run``'s words (after ``run``) in the plain form, or None for the full
    command line."""
    plain = Plain()
    variant = None
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--" or not word.startswith("-"):
            plain.command = list(words[i + 1:] if word == "--" else words[i:])
            break
        if word in _VARIANT_FLAGS:
            if variant is not None and variant != _VARIANT_FLAGS[word]:
                return None  # argparse: not allowed with the other
            variant = plain.variant = _VARIANT_FLAGS[word]
        elif word == "--debug":
            plain.debug = True
        elif word == "--keep-program-settings":
            plain.keep = True
        else:
            flag, equals, text = word.partition("=")
            option = _OPTION_FLAGS.get(flag)
            if option is None:
                return None
            if not equals:
                i += 1
                if i == len(words):
                    return None
                text = words[i]
            try:
                plain.values[option.name] = option.parse(text)
            except ValueError:
                return None
        i += 1
    if not plain.command:
        return None
    if any(plain.variant not in BY_NAME[name].variants for name in plain.values):
        return None
    return plain



def _plain(words: Sequence[str]) -> int | None:
    """Run the plain form of ``run`` or ``path``; None: not a plain form."""
    if words[:1] == ["path"] and len(words) <= 2:
        if len(words) == 2 and words[1].startswith("-"):
            return None
        try:
            variant = variant_name(words[1]) if len(words) == 2 else VARIANTS[0]
            where = path(variant)
        except (ValueError, FileNotFoundError):
            return None
        sys.stdout.write(where + "\n")
        return 0
    if words[:1] == ["run"]:
        plain = plain_run(words[1:])
        if plain is None:
            return None
        try:
            env = environ(plain.variant, debug=plain.debug, force=not plain.keep, base=None,
                          **plain.values)
        except ValueError:
            return None
        given = {BY_NAME[name].variable for name in plain.values}
        return launch(env, plain.command, debug=plain.debug, given=given)
    return None


def console() -> None:
    """The ``keepalive-preload`` command: the plain forms here, the rest by
    ``dispatch.main()``; then the process ends at once. Everything the command
    writes is flushed or closed by then, so the interpreter's teardown of
    every module is pure cost (``run`` never gets here when it replaces
    itself)."""
    words = sys.argv[1:]
    status = _plain(words)
    if status is None:
        # The full command line and its argparse, only when needed: not a
        # cycle (dispatch never imports this package's names).
        from .dispatch import main

        status = main(words)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `... | head`: the reader has all it wanted
        status = status or FAILURE
    except OSError as exc:  # a full disk: say so, once
        os.write(2, f"{PROG}: cannot write the output: {exc.strerror}\n".encode())
        status = status or FAILURE
    os._exit(status)
