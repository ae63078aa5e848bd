"""``keepalive-preload env --format``: the same variables for each consumer.

- ``sh``: ``export NAME='value'`` lines for ``eval`` in a POSIX shell.
- ``systemd``: a ``[Service]`` drop-in with one ``Environment="NAME=value"``
  per variable, quoted as systemd.syntax(7) and systemd.exec(5) say
  (backslash escapes inside double quotes, ``%`` doubled for specifiers).
- ``docker``: Dockerfile ``ENV NAME="value"`` lines (double quotes; ``\\``,
  ``"`` and ``$`` escaped: the builder substitutes ``$`` in ENV).
- ``dotenv``: ``NAME=value`` lines for ``docker run --env-file`` (and
  systemd's ``EnvironmentFile=``): docker takes everything after the first
  ``=`` literally, so values are written bare and must not need quoting.
"""

from __future__ import annotations

import os
import shlex

FORMATS = ("sh", "systemd", "docker", "dotenv")

#: Characters a value written bare in an --env-file may not contain: docker
#: would keep quotes literally, and systemd's EnvironmentFile= would unquote.
_NOT_BARE = set("\n\r\"'\\ \t#$`")


def _systemd_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + escaped + '"'


def _docker_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def use_library(preload: str, ours: str, library: str, flag: str) -> str:
    """``preload`` with the entry ``ours`` written as ``library`` (env
    --library): a bare name or another path of the same file. Raises
    ``ValueError`` if ``library`` names another file or LD_PRELOAD cannot
    carry it."""
    expected = os.path.basename(ours)
    if os.path.basename(library) != expected or any(c in library for c in " :\t\n"):
        raise ValueError(f"--library {library}: expected a path or bare name of {expected} "
                         f"(the {flag} library), without spaces or colons")
    return ":".join(library if entry == ours else entry for entry in preload.split(":"))


def upgrade_note(fmt: str, preload: str) -> str | None:
    """A warning for a file format whose LD_PRELOAD names a path inside a
    Python installation (``.../lib/python3.11/site-packages/...``), which the
    next Python upgrade moves; None otherwise (and for sh: this shell, now)."""
    if fmt == "sh" or "/python3." not in preload:
        return None
    name = os.path.basename(preload.split(":")[-1])
    return ("LD_PRELOAD names a path inside this Python's site-packages, which changes when "
            f"Python is upgraded; for a lasting unit or image use the .deb/.rpm (--library "
            f"{name}) or a copy (--library /usr/local/lib/{name})")


#: How to install a systemd drop-in, said at its top.
_SYSTEMD_HELP = [
    "Install: systemctl edit NAME (paste this), or save it as",
    "/etc/systemd/system/NAME.service.d/keepalive.conf and run systemctl daemon-reload;",
    "then restart NAME. Check: keepalive-preload status "
    "$(systemctl show -p MainPID --value NAME)",
]


def render(fmt: str, variables: list[tuple[str, str]], command: str) -> str:
    """The text of ``variables`` (name, value pairs) in format ``fmt``, saying at
    the top which ``command`` wrote it where the format has comments (not
    ``sh``, whose output is meant for eval). Raises ``ValueError`` for a value
    the format cannot carry (a newline; for dotenv, anything that needs
    quoting)."""
    for name, value in variables:
        if "\n" in value or "\r" in value or "\0" in value:
            raise ValueError(f"{name}={value!r}: a value with a line break cannot be written")
    if fmt == "sh":
        return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables)
    comment = [f"written by {command}", *(_SYSTEMD_HELP if fmt == "systemd" else [])]
    head = "".join(f"# {line}\n" for line in comment)
    if fmt == "systemd":
        return head + "[Service]\n" + "".join(
            f"Environment={_systemd_quote(f'{name}={value}')}\n" for name, value in variables)
    if fmt == "docker":
        return head + "".join(f"ENV {name}={_docker_quote(value)}\n" for name, value in variables)
    if fmt == "dotenv":
        for name, value in variables:
            if _NOT_BARE & set(value):
                raise ValueError(f"{name}={value!r}: an --env-file cannot carry this value "
                                 "(docker does not unquote); choose another path")
        return head + "".join(f"{name}={value}\n" for name, value in variables)
    raise ValueError(f"unknown format {fmt!r}; expected one of: {', '.join(FORMATS)}")
