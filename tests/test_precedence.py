"""Whose keepalive settings win: the program's (KEEPALIVE=on, the default) or
ours (KEEPALIVE=force); the same rule in every variant, whether the program
sets its own before or after the call we interpose.

tests/helpers/own_keepalive.c sets SO_KEEPALIVE=1, TCP_KEEPIDLE=61 and
TCP_KEEPINTVL=7 itself, before or after connect()/listen() (after socket()),
and reports what the socket has, read back with getsockopt.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support import (
    compile_helper,
    count_syscalls,
    preload_env,
    reports,
    run,
    serve_one,
)

# Rerun against other builds of the libraries (support.rerun_socket_level_tests).
pytestmark = [pytest.mark.socket_level, pytest.mark.kernel]

VARIANTS = ("connect", "listen", "socket")
PROGRAMS = {"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 61, "TCP_KEEPINTVL": 7}
OURS = {"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 15, "TCP_KEEPINTVL": 15}
PAIR = re.compile(r"\b(SO_KEEPALIVE|TCP_[A-Z_]+)=(-?\d+)")


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> str:
    return compile_helper(tmp_path_factory, "own_keepalive.c")


def own_socket(own: str, variant: str, when: str, action: str, port: int,
               **env: str) -> tuple[dict[str, Any], str]:
    """The report on the socket the program chose for (for listen4: the
    accepted one) and stderr."""
    environment = preload_env(variant, **env)
    if action == "listen4":
        accepted, _, stderr = serve_one([own, when], environment)
        return accepted, stderr
    args = [own, when, action] + ([str(port)] if action == "connect4" else [])
    result = run(args, environment)
    (report,) = reports(result.stdout)
    return report, result.stderr


def claims(stderr: str) -> dict[str, int]:
    """What the debug lines say each option was left at: the last value each
    line names after its last ': ' (later lines supersede earlier ones)."""
    said: dict[str, int] = {}
    for line in stderr.splitlines():
        tail = line.rsplit(": ", 1)[-1]
        said.update((name, int(value)) for name, value in PAIR.findall(tail))
    return said


def subset(report: dict[str, Any], expected: dict[str, int]) -> dict[str, Any]:
    return {key: report[key] for key in expected}


# Where the program sets its own: before or after connect(), before listen()
# or after accept(), after socket() (nothing comes before it).
MOMENTS = [(action, when) for action in ("connect4", "listen4", "socket")
           for when in ("before", "after") if (action, when) != ("socket", "before")]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("action", "when"), MOMENTS)
@pytest.mark.parametrize(("mode", "expected"), [("on", PROGRAMS), ("force", OURS)])
def test_rule(own: str, listener: int, variant: str, action: str, when: str, mode: str,
              expected: dict[str, int]) -> None:
    """Default: the program's choice wins, before or after our call, in every
    variant. Force: ours win, and the program's setsockopt still succeeds.
    The debug output never claims a value the socket does not have."""
    report, stderr = own_socket(own, variant, when, action, listener, KEEPALIVE=mode,
                                LIBKEEPALIVE_DEBUG="1")
    assert subset(report, expected) == expected, stderr
    assert (report["set"], report["set_errno"]) == (0, 0)
    said = claims(stderr)
    assert {key: report[key] for key in said} == said, stderr


@pytest.mark.parametrize("variant", ["connect", "socket"])
def test_debug_says_what_happened(own: str, listener: int, variant: str) -> None:
    _, stderr = own_socket(own, variant, "after", "connect4", listener, LIBKEEPALIVE_DEBUG="1")
    assert "kept the program's TCP_KEEPIDLE=61" in stderr
    _, stderr = own_socket(own, variant, "after", "connect4", listener, KEEPALIVE="force",
                           LIBKEEPALIVE_DEBUG="1")
    assert "overrode the program's TCP_KEEPIDLE=61: TCP_KEEPIDLE=15" in stderr


def test_debug_kept_before_reads_the_socket(own: str, listener: int) -> None:
    _, stderr = own_socket(own, "connect", "before", "connect4", listener,
                           LIBKEEPALIVE_DEBUG="1")
    assert re.search(r"fd \d+: kept the program's SO_KEEPALIVE=1 TCP_KEEPIDLE=61 "
                     r"TCP_KEEPINTVL=7 TCP_KEEPCNT=\d+ TCP_USER_TIMEOUT=0$", stderr,
                     re.MULTILINE), stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_force_keeps_keepalive_on(own: str, listener: int, variant: str) -> None:
    """The program's SO_KEEPALIVE=0 succeeds for it and changes nothing."""
    report, _ = own_socket(own, variant, "off", "connect4", listener, KEEPALIVE="force")
    assert (report["SO_KEEPALIVE"], report["set"], report["set_errno"]) == (1, 0, 0)


@pytest.mark.parametrize("variant", ["connect", "socket"])
def test_program_may_turn_keepalive_off(own: str, listener: int, variant: str) -> None:
    report, _ = own_socket(own, variant, "off", "connect4", listener)
    assert report["SO_KEEPALIVE"] == 0


def test_force_leaves_system_default_options_alone(own: str, listener: int) -> None:
    """An option we leave at 0 (the system default) is not ours to force."""
    report, _ = own_socket(own, "connect", "after", "connect4", listener, KEEPALIVE="force",
                           TCP_KEEPIDLE="0")
    assert (report["TCP_KEEPIDLE"], report["TCP_KEEPINTVL"]) == (61, 15)


def test_force_keeps_the_real_error(own: str, tmp_path: Path) -> None:
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


@pytest.mark.parametrize(
    ("variant", "when", "mode", "counts"),
    [
        # The program's own 3 setsockopt calls, our 5 (when we set ours), our one
        # getsockopt(SO_KEEPALIVE) in connect/listen with KEEPALIVE=on.
        ("connect", "before", "on", (3, 1)),   # kept: nothing of ours set
        ("connect", "after", "on", (5 + 3, 1)),
        ("connect", "before", "force", (3 + 5, 0)),
        ("socket", "after", "on", (5 + 3, 0)),
        ("socket", "after", "force", (5 + 3, 0)),
    ],
)
def test_syscall_budget_with_a_program_that_chooses(own: str, tmp_path: Path, listener: int,
                                                    variant: str, when: str, mode: str,
                                                    counts: tuple[int, int]) -> None:
    # own_keepalive's report reads 5 options back with getsockopt.
    seen = count_syscalls([own, when, "connect4", str(listener)], variant,
                          ("setsockopt", "getsockopt"), tmp_path, KEEPALIVE=mode)
    assert (seen["setsockopt"], seen["getsockopt"] - 5) == counts, seen
