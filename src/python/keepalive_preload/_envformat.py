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


def render(fmt: str, variables: list[tuple[str, str]], comment: list[str]) -> str:
    """The text of ``variables`` (name, value pairs) in format ``fmt``, with
    ``comment`` lines at the top where the format has comments (not ``sh``,
    whose output is meant for eval). Raises ``ValueError`` for a value the
    format cannot carry (a newline; for dotenv, anything that needs quoting)."""
    for name, value in variables:
        if "\n" in value or "\r" in value or "\0" in value:
            raise ValueError(f"{name}={value!r}: a value with a line break cannot be written")
    if fmt == "sh":
        return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables)
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
