"""The host configuration file as ``apply`` and ``cgroup attach`` take it: read
by the libraries' own parser (``hostconfig.read()``), under the command
line's values. Apart from args.py: ``run`` does not import it."""

from __future__ import annotations

import argparse
import os

from .. import hostconfig
from .._options import BY_NAME
from ..live.proc import escape


class ConfigUnreadable(Exception):
    """The host configuration file cannot be read; str(): the message."""


def host_config(args: argparse.Namespace) -> tuple[dict[str, int], str, list[str]]:
    """The configuration file's values (option name -> value), its KEEPALIVE
    mode and its problems (``PATH:LINE: text``, escaped), read by the
    libraries' own parser (``hostconfig.read()``) for ``apply`` and ``cgroup
    attach``. None read with --no-config (``args.no_config``) or when there is
    no file: the libraries then use the built-in defaults too."""
    if args.no_config:
        return {}, "", []
    if args.config is None and not os.path.exists(hostconfig.DEFAULT_PATH):
        return {}, "", []
    try:
        config = hostconfig.read(args.config)
    except (hostconfig.HostConfigError, OSError) as exc:
        raise ConfigUnreadable(f"cannot read the configuration file: {exc} (--no-config: "
                               "the built-in defaults)") from None
    shown = escape(args.config or hostconfig.DEFAULT_PATH)
    problems = [f"{shown}:{p.line}: {p.text}" if p.line else f"{shown}: {p.text}"
                for p in config.problems]
    values = {n: int(v) for n, v in config.values.items() if n in BY_NAME}
    return values, str(config.mode), problems
