"""What ``run`` does once its command line is read: check the command, warn
where LD_PRELOAD cannot reach it, and replace this process with it. No
argparse here: the package's ``console()`` runs the plain form of ``run``
through this module directly (``run`` sits in front of every program it
starts)."""

from __future__ import annotations

import os
import sys

from .._options import OPTIONS
from ..preload.execute import (
    CommandError,
    execute,
    is_go_elf,
    is_static_elf,
    privilege_change,
    resolve,
)
from .words import CANNOT_EXECUTE, NOT_FOUND, PROG


def launch(env: dict[str, str], command: list[str], *, debug: bool, given: set[str]) -> int:
    """Run ``command`` in ``env`` (it replaces this process); return the exit
    status if it cannot run. ``given``: the variables the command line set
    (for --debug's account of what the environment gives besides them)."""
    try:
        program = resolve(command[0], env.get("PATH"))
    except CommandError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return _status(exc)
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
            "directory is preloaded (see keepalive-preload(7), SETUID PROGRAMS), and it then "
            "takes its values from the configuration file, not from the environment\n")
    if debug:
        _report_inherited(given, env)
    sys.stdout.flush()
    sys.stderr.flush()
    failure = execute(program, command, env)
    sys.stderr.write(f"{PROG}: {failure}\n")
    return _status(failure)


def _status(failure: CommandError) -> int:
    """A shell's exit status for a command that cannot be run."""
    return CANNOT_EXECUTE if failure.found else NOT_FOUND


#: Variables the libraries read besides the options' own (KEEPALIVE=off, the
#: configuration file).
_OTHER_VARIABLES = ("KEEPALIVE", "KEEPALIVE_CONFIG")


def _report_inherited(given: set[str], env: dict[str, str]) -> None:
    """--debug: name what COMMAND gets from this environment rather than from
    the command line — option variables (and their 0.3 aliases) the user did
    not give, and the LD_PRELOAD it ends up with."""
    watched = [*(o.variable for o in OPTIONS), *(o.alias for o in OPTIONS if o.alias),
               *_OTHER_VARIABLES]
    inherited = [f"{name}={env[name]}" for name in watched
                 if name not in given and name in env and os.environ.get(name) == env[name]]
    sys.stderr.write(f"{PROG}: LD_PRELOAD={env['LD_PRELOAD']}\n")
    if inherited:
        sys.stderr.write(f"{PROG}: inherited from the environment, not given on this command "
                         f"line: {' '.join(inherited)}\n")
