"""LIBKEEPALIVE_DEBUG: one line per socket on stderr, saying whose value each
option has; on only for a value other than empty and "0"."""

from __future__ import annotations

import errno
import re

import pytest

from support import Client, Server

# Rerun against other builds of the libraries (support.rerun_socket_level_tests).
pytestmark = pytest.mark.socket_level

LINE = ("{lib}: fd {fd}: ours: TCP_KEEPIDLE=15 TCP_KEEPINTVL=15 TCP_KEEPCNT=9 "
        "TCP_USER_TIMEOUT=150000 SO_KEEPALIVE=1")


def socket_lines(stderr: str) -> list[str]:
    """The lines about sockets (not the configuration line at load)."""
    return [line for line in stderr.splitlines() if " configuration: " not in line]


def test_connect_debug_line(client: Client, listener: int) -> None:
    report, stderr = client("connect", "connect4", str(listener), LIBKEEPALIVE_DEBUG="1")
    assert report["ret"] == 0
    (line,) = socket_lines(stderr)
    fd = re.search(r"fd (\d+)", line)
    assert fd is not None
    assert line == LINE.format(lib="libkeepalive", fd=fd.group(1))


def test_debug_names_what_was_set(client: Client, listener: int) -> None:
    _, stderr = client("socket", "connect4", str(listener), LIBKEEPALIVE_DEBUG="yes",
                       TCP_KEEPIDLE="0", TCP_SYNCNT="2", TCP_USER_TIMEOUT="0")
    (line,) = socket_lines(stderr)
    assert line.startswith("libkeepalive_socket: fd ")
    assert line.endswith(": ours: TCP_KEEPINTVL=15 TCP_KEEPCNT=9 TCP_SYNCNT=2 SO_KEEPALIVE=1")


def test_connect_sets_syn_count_before_connect(client: Client, listener: int) -> None:
    report, stderr = client("connect", "connect4", str(listener), LIBKEEPALIVE_DEBUG="1",
                            TCP_SYNCNT="2")
    assert report["TCP_SYNCNT"] == 2
    first, second = socket_lines(stderr)
    assert first.endswith(": before connect: ours: TCP_SYNCNT=2")
    assert second.endswith(": ours: TCP_KEEPIDLE=15 TCP_KEEPINTVL=15 TCP_KEEPCNT=9 "
                           "TCP_USER_TIMEOUT=150000 SO_KEEPALIVE=1")


def test_listen_debug_line(server: Server) -> None:
    _, _, stderr = server("listen", LIBKEEPALIVE_DEBUG="1")
    (line,) = socket_lines(stderr)
    assert line.startswith("libkeepalive_listen: fd ")


def test_no_debug_line_for_udp(client: Client) -> None:
    _, stderr = client("connect", "udp", "9", LIBKEEPALIVE_DEBUG="1")
    assert socket_lines(stderr) == []


@pytest.mark.parametrize("value", ["0", ""])
def test_debug_off(client: Client, listener: int, value: str) -> None:
    _, stderr = client("connect", "connect4", str(listener), LIBKEEPALIVE_DEBUG=value)
    assert stderr == ""


def test_repeated_connect_is_reported_truthfully(client: Client, listener: int) -> None:
    """A program polling a non-blocking connect with connect() again (until 0,
    then EISCONN): the repeats change nothing of the program's and say so."""
    report, stderr = client("connect", "connect4", str(listener), "poll",
                            LIBKEEPALIVE_DEBUG="1")
    assert (report["ret"], report["errno"]) == (0, errno.EISCONN)
    assert report["SO_KEEPALIVE"] == 1
    lines = socket_lines(stderr)
    assert "program's" not in stderr
    assert lines[-1].endswith(": connect repeated (EISCONN): options left as they are")
    ours = LINE.format(lib="libkeepalive", fd=report.get("fd", 3))
    assert all(line.endswith(ours.split(": ", 2)[2]) for line in lines if ": ours:" in line)
