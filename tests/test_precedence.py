"""Whose keepalive settings win, per option: the program's (KEEPALIVE=on, the
default) or ours (KEEPALIVE=force); the same rule in every variant, whether
the program sets its own before or after the call we interpose.

tests/helpers/chooser.c sets some options itself (nothing, only
SO_KEEPALIVE, only a user timeout, its own timers, keepalive off), before or
after connect()/listen(), and reports what its socket has, read back with
getsockopt in the preloaded process.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support import (
    DEFAULTS,
    compile_helper,
    count_syscalls,
    preload_env,
    reports,
    run,
    serve_one,
)

# Rerun against other builds of the libraries (support.rerun_socket_level_tests).
pytestmark = pytest.mark.socket_level

RULED = ("SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT")
OURS = {name: DEFAULTS[name] for name in RULED}
#: The program's own timers (chooser.c "timers"), and the user timeout
#: derived from them: (idle + interval * count) * 1000 ms.
TIMERS = {"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 2, "TCP_KEEPINTVL": 1, "TCP_KEEPCNT": 2}
DERIVED = (2 + 1 * 2) * 1000
#: Where each variant sees the program: the action the chooser takes.
ACTIONS = {"connect": ["connect4"], "listen": ["listen4"], "socket": ["connect4", "listen4"]}
CASES = [(variant, action) for variant, actions in ACTIONS.items() for action in actions]
WHAT = ("nothing", "keepalive", "user_timeout", "timers", "off")
PAIR = re.compile(r"\b(SO_KEEPALIVE|TCP_[A-Z_]+)=(-?\d+)")


def expected(mode: str, what: str, when: str, variant: str) -> dict[str, int]:
    """What the rule says the socket ends up with. The socket variant's call
    comes first: everything the program does is after it."""
    if variant == "socket":
        when = "after"
    if mode == "force" or what in ("nothing", "keepalive"):
        return dict(OURS)
    if what == "user_timeout":
        return {**OURS, "TCP_USER_TIMEOUT": 5000}
    if what == "timers":
        return {**TIMERS, "TCP_USER_TIMEOUT": DERIVED}
    # off: after our call, the program's explicit off wins; before it, 0 is
    # a fresh socket's value, which counts as "not set" (documented).
    return {**OURS, "SO_KEEPALIVE": 0 if when == "after" else 1}


@pytest.fixture(scope="module")
def chooser(tmp_path_factory: pytest.TempPathFactory) -> str:
    return compile_helper(tmp_path_factory, "chooser.c")


def choose(chooser: str, variant: str | None, what: str, when: str, action: str, port: int,
           **env: str) -> tuple[dict[str, Any], str]:
    """The report on the program's socket (listen4: the accepted one) and stderr."""
    environment = preload_env(variant, **env)
    if action == "listen4":
        accepted, _, stderr = serve_one([chooser, what, when], environment)
        return accepted, stderr
    result = run([chooser, what, when, action, str(port)], environment)
    (report,) = reports(result.stdout)
    return report, result.stderr


def claims(stderr: str, fd: int) -> dict[str, int]:
    """What the debug lines about fd say each option was left at (later
    lines supersede earlier ones)."""
    said: dict[str, int] = {}
    for line in stderr.splitlines():
        if f": fd {fd}: " in line:
            said.update((name, int(value)) for name, value in PAIR.findall(line))
    return said


def subset(report: dict[str, Any], names: tuple[str, ...] = RULED) -> dict[str, Any]:
    return {name: report[name] for name in names}


@pytest.mark.parametrize(("variant", "action"), CASES)
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("what", WHAT)
@pytest.mark.parametrize("mode", ["on", "force"])
def test_rule(chooser: str, listener: int, variant: str, action: str, when: str, what: str,
              mode: str) -> None:
    """Each option read back is the one the rule says; the program's own
    setsockopt succeeds for it in every mode; the debug output never claims a
    value the socket does not have."""
    report, stderr = choose(chooser, variant, what, when, action, listener, KEEPALIVE=mode,
                            LIBKEEPALIVE_DEBUG="1")
    assert subset(report) == expected(mode, what, when, variant), stderr
    assert (report["set"], report["set_errno"]) == (0, 0)
    said = claims(stderr, report["fd"])
    assert {key: report[key] for key in said} == said, stderr


def test_without_the_library(chooser: str, listener: int) -> None:
    """The reference: what the same programs get from the kernel alone."""
    report, _ = choose(chooser, None, "timers", "after", "connect4", listener)
    assert subset(report) == {**TIMERS, "TCP_USER_TIMEOUT": 0}
    report, _ = choose(chooser, None, "keepalive", "before", "connect4", listener)
    assert report["SO_KEEPALIVE"] == 1
    assert report["TCP_USER_TIMEOUT"] == 0
    assert report["TCP_KEEPIDLE"] != OURS["TCP_KEEPIDLE"]


@pytest.mark.parametrize("variant", ["connect", "socket"])
def test_debug_names_whose_value(chooser: str, listener: int, variant: str) -> None:
    """Debug output names, per option, whose value it is."""
    _, stderr = choose(chooser, variant, "timers", "before", "connect4", listener,
                       LIBKEEPALIVE_DEBUG="1")
    if variant == "connect":
        assert re.search(r"fd \d+: ours: TCP_USER_TIMEOUT=4000 SO_KEEPALIVE=1; the program's: "
                         r"TCP_KEEPIDLE=2 TCP_KEEPINTVL=1 TCP_KEEPCNT=2$", stderr, re.M), stderr
    else:
        assert "the program's TCP_KEEPCNT=2; ours TCP_USER_TIMEOUT=4000 (derived" in stderr
    _, stderr = choose(chooser, variant, "user_timeout", "before", "connect4", listener,
                       LIBKEEPALIVE_DEBUG="1")
    assert "the program's TCP_USER_TIMEOUT=5000" in stderr
    _, stderr = choose(chooser, variant, "timers", "after", "connect4", listener,
                       KEEPALIVE="force", LIBKEEPALIVE_DEBUG="1")
    assert "overrode the program's TCP_KEEPIDLE=2: TCP_KEEPIDLE=15" in stderr


def test_user_timeout_follows_the_program_timers(tmp_path: Path, listener: int) -> None:
    """A program that changes its timers again and again: the derived user
    timeout follows each change; one that sets its own user timeout keeps it,
    whatever timers it sets after."""
    script = tmp_path / "timers.py"
    script.write_text(
        "import socket, sys\n"
        "T = socket.IPPROTO_TCP\n"
        "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
        "def ut(): return s.getsockopt(T, socket.TCP_USER_TIMEOUT)\n"
        "out = []\n"
        "s.setsockopt(T, socket.TCP_KEEPIDLE, 30); out.append(ut())\n"
        "s.setsockopt(T, socket.TCP_KEEPCNT, 3); out.append(ut())\n"
        "s.setsockopt(T, socket.TCP_USER_TIMEOUT, 777); out.append(ut())\n"
        "s.setsockopt(T, socket.TCP_KEEPIDLE, 5); out.append(ut())\n"
        "print(out)\n")
    for variant in ("connect", "socket"):
        result = run(["python3", str(script), str(listener)], preload_env(variant))
        assert result.stdout.strip() == str([(30 + 15 * 9) * 1000, (30 + 15 * 3) * 1000,
                                             777, 777]), variant


@pytest.mark.parametrize("variant", ["connect", "listen", "socket"])
def test_force_keeps_keepalive_on(chooser: str, listener: int, variant: str) -> None:
    """The program's SO_KEEPALIVE=0 succeeds for it and changes nothing."""
    action = ACTIONS[variant][0]
    report, _ = choose(chooser, variant, "off", "after", action, listener, KEEPALIVE="force")
    assert (report["SO_KEEPALIVE"], report["set"], report["set_errno"]) == (1, 0, 0)


def test_force_leaves_system_default_options_alone(chooser: str, listener: int) -> None:
    """An option we leave at 0 (the system default) is not ours to force."""
    report, _ = choose(chooser, "connect", "timers", "after", "connect4", listener,
                       KEEPALIVE="force", TCP_KEEPIDLE="0")
    assert (report["TCP_KEEPIDLE"], report["TCP_KEEPINTVL"]) == (2, 15)


def test_force_keeps_the_real_error(tmp_path: Path) -> None:
    """A TCP-level keepalive option on a UDP socket fails as it would anyway."""
    probe = tmp_path / "udp.py"
    probe.write_text(
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n"
        "    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 61)\n"
        "except OSError as e:\n"
        "    print(e.errno)\n")
    plain = subprocess.run(["python3", str(probe)], capture_output=True, text=True,
                           timeout=30, env=preload_env(None))
    forced = subprocess.run(["python3", str(probe)], capture_output=True, text=True,
                            timeout=30, env=preload_env("socket", KEEPALIVE="force"))
    assert forced.stdout == plain.stdout != ""


# The chooser's report reads 5 options back with getsockopt.
REPORT = 5


@pytest.mark.parametrize(
    ("variant", "what", "when", "mode", "counts"),
    [
        # Program sets nothing: our 5 setsockopt, getsockopt(SO_PROTOCOL) at connect.
        ("connect", "nothing", "after", "on", (5, 1)),
        ("socket", "nothing", "after", "on", (5, 0)),
        # Only SO_KEEPALIVE before connect (libpq, Java): + its own call; at connect
        # SO_PROTOCOL, a fresh socket's four ruled options (once per process) and
        # the same four read back from the program's socket.
        ("connect", "keepalive", "before", "on", (1 + 5, 1 + 4 + 4)),
        # Own timers before connect: its 4 calls, one getsockopt(TCP_USER_TIMEOUT)
        # after each timer (none of ours yet), then at connect as above, and only
        # the user timeout and SO_KEEPALIVE set.
        ("connect", "timers", "before", "on", (4 + 2, 3 + 1 + 4 + 4)),
        # Own timers after: ours (5), its 4, and for each timer the user timeout
        # and the three timers read, and the user timeout set again.
        ("connect", "timers", "after", "on", (5 + 4 + 3, 1 + 3 * 4)),
        ("socket", "timers", "after", "on", (5 + 4 + 3, 3 * 4)),
        # force: ours, stateless: its 4 calls, then ours again for each that differs.
        ("connect", "timers", "after", "force", (5 + 4 + 3, 1)),
        ("socket", "timers", "before", "force", (5 + 4 + 3, 0)),
    ],
)
def test_syscall_budget(chooser: str, tmp_path: Path, listener: int, variant: str, what: str,
                        when: str, mode: str, counts: tuple[int, int]) -> None:
    seen = count_syscalls([chooser, what, when, "connect4", str(listener)], variant,
                          ("setsockopt", "getsockopt"), tmp_path, KEEPALIVE=mode)
    assert (seen["setsockopt"], seen["getsockopt"] - REPORT) == counts, seen
