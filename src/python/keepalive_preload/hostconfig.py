"""The host's configuration, as the libraries themselves read it.

There is one parser of ``/etc/keepalive-preload.conf``: the libraries' (C,
``conffile.c``). This module does not parse the file; it loads one of our
libraries into ``/bin/true`` in a child process with a clean environment
(``KEEPALIVE_CONFIG=path``, ``LIBKEEPALIVE_DEBUG=1``) and reads what the
library prints on stderr at load time:

- the warnings about the file, ``<library>: PATH:LINE: text`` (or, for the
  file as a whole, ``<library>: text``), and
- after them exactly one line with the configuration it ended up with:
  ``<library>: configuration: KEEPALIVE=on|off|force TCP_KEEPIDLE=N ...``
  (every variable of the option table, the configured value;
  ``TCP_USER_TIMEOUT`` stays -1 when it is to be derived).

``cgroup attach`` and ``apply`` take their values from ``read()`` under the
command line's; ``config --check`` prints the problems.

The child is ``/bin/true``: a file whose ``KEEPALIVE_EXCLUDE`` names ``true``
excludes it, and the library then reports ``KEEPALIVE=off`` for it (the
values stay the file's).
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import NamedTuple

from . import path as library_path
from ._options import BY_VARIABLE

__all__ = ["DEFAULT_PATH", "HostConfig", "HostConfigError", "Problem", "read"]

#: The file the libraries read when ``KEEPALIVE_CONFIG`` is not set.
DEFAULT_PATH = "/etc/keepalive-preload.conf"
#: The program the library is loaded into: it opens no socket, so the
#: library prints nothing but its load-time lines.
PROGRAM = "/bin/true"
MODES = ("on", "off", "force")
_TIMEOUT = 30.0
_PREFIX = re.compile(r"(libkeepalive[A-Za-z0-9_]*): (.*)\Z")
_AT_LINE = re.compile(r"(.*?):([0-9]+): (.*)\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class HostConfigError(Exception):
    """The library could not be run, or did not say what it read."""


class Problem(NamedTuple):
    """One thing the library warned about: a line of the file (``line``) or
    the file as a whole (``line`` is None). ``text`` is printable (control
    bytes escaped)."""

    line: int | None
    text: str


class HostConfig(NamedTuple):
    """What the libraries read from a configuration file.

    ``values``: option name (``idle``, ``interval``...) -> the configured
    value, as the file sets it or the built-in default (``user_timeout`` -1:
    derived). ``mode``: ``KEEPALIVE`` (``on``, ``off`` or ``force``).
    ``problems``: every warning, in the library's order. ``path``: the file
    judged (``None``: the default one). ``reported``: whether the library
    printed its configuration line; ``values`` and ``mode`` come from it
    (``read(strict=False)`` returns ``values == {}`` and ``mode == ""``
    without it).
    """

    path: str | None
    values: dict[str, int]
    mode: str
    problems: list[Problem]
    reported: bool


def escape(text: str) -> str:
    """``text`` with control characters (terminal escapes, newlines) shown
    as ``\\xNN``: what another user wrote never reaches a terminal raw."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _problem(rest: str, path: str | None) -> Problem:
    shown = path if path is not None else DEFAULT_PATH
    if rest.startswith(shown + ":"):
        number, _, text = rest[len(shown) + 1:].partition(": ")
        if number.isdigit() and number.isascii():
            return Problem(int(number), escape(text))
    found = _AT_LINE.match(rest)
    if found and not rest.startswith(("ignoring the configuration file ",
                                      "cannot read the configuration file ")):
        return Problem(int(found.group(2)), escape(found.group(3)))
    return Problem(None, escape(rest))


def _configuration(rest: str) -> tuple[str, dict[str, int]]:
    """The values of the ``configuration:`` line."""
    mode = ""
    values: dict[str, int] = {}
    for word in rest.split():
        name, equals, value = word.partition("=")
        if not equals:
            raise HostConfigError(f"cannot read the library's configuration line: {escape(rest)}")
        if name == "KEEPALIVE":
            if value not in MODES:
                raise HostConfigError(f"the library reports KEEPALIVE={escape(value)}")
            mode = value
        elif name in BY_VARIABLE:
            try:
                values[BY_VARIABLE[name].name] = int(value)
            except ValueError:
                raise HostConfigError(
                    f"the library reports {name}={escape(value)}, not a number") from None
        # A variable this package does not know (a newer library): ignored.
    missing = [v for v, option in BY_VARIABLE.items() if option.name not in values]
    if not mode or missing:
        raise HostConfigError("the library's configuration line lacks "
                              + ", ".join((["KEEPALIVE"] if not mode else []) + missing))
    return mode, values


def parse(stderr: str, path: str | None = None) -> tuple[list[Problem], str, dict[str, int]]:
    """The problems, mode and values in what a library printed at load
    (``mode`` is "" and ``values`` empty without a configuration line)."""
    problems: list[Problem] = []
    mode = ""
    values: dict[str, int] = {}
    for line in stderr.splitlines():
        found = _PREFIX.match(line)
        if found is None:
            continue  # not ours (the program's own output: /bin/true has none)
        rest = found.group(2)
        if rest.startswith("configuration: "):
            mode, values = _configuration(rest[len("configuration: "):])
        elif not mode:  # warnings come before the configuration line
            problems.append(_problem(rest, path))
    return problems, mode, values


def read(path: str | None = None, *, strict: bool = True) -> HostConfig:
    """The configuration the libraries read from ``path`` (``None``: the
    default file, as every process that loads a library without
    ``KEEPALIVE_CONFIG`` reads it, trusted only when owned by root).

    The environment plays no part: the child gets a clean one. Raises
    ``HostConfigError`` when the library cannot be run, or (``strict``,
    the default) when it printed no configuration line (a library older
    than this package).
    """
    library = library_path("socket")
    env = {"LIBKEEPALIVE_DEBUG": "1", "LD_PRELOAD": library}
    if path is not None:
        if not path:
            raise HostConfigError("an empty path names no configuration file")
        env["KEEPALIVE_CONFIG"] = os.path.abspath(path)
    try:
        done = subprocess.run([PROGRAM], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise HostConfigError(f"cannot run {PROGRAM} with {library}: {exc}") from None
    stderr = done.stderr.decode("utf-8", "backslashreplace")
    shown = env.get("KEEPALIVE_CONFIG")
    problems, mode, values = parse(stderr, shown)
    if not mode and strict:
        raise HostConfigError(
            f"{library} printed no configuration line with LIBKEEPALIVE_DEBUG=1: the library "
            "is older than this command (it reports its configuration from 0.3.0)")
    return HostConfig(path, values, mode, problems, bool(mode))
