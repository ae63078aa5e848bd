"""LIBKEEPALIVE_DEBUG: one line per socket on stderr, saying what was set."""

from __future__ import annotations

import re

import pytest

from support import Client, Server

# Rerun against other builds of the libraries (support.rerun_socket_level_tests).
pytestmark = pytest.mark.socket_level

LINE = ("{lib}: fd {fd}: SO_KEEPALIVE=1 TCP_KEEPIDLE=15 TCP_KEEPINTVL=15 TCP_KEEPCNT=9 "
        "TCP_USER_TIMEOUT=150000")


def test_connect_debug_line(client: Client, listener: int) -> None:
    report, stderr = client("connect", "connect4", str(listener), LIBKEEPALIVE_DEBUG="1")
    assert report["ret"] == 0
    (line,) = stderr.splitlines()
    fd = re.search(r"fd (\d+)", line)
    assert fd is not None
    assert line == LINE.format(lib="libkeepalive", fd=fd.group(1))


def test_debug_names_what_was_set(client: Client, listener: int) -> None:
    _, stderr = client("socket", "connect4", str(listener), LIBKEEPALIVE_DEBUG="yes",
                       TCP_KEEPIDLE="0", TCP_SYNCNT="2", TCP_USER_TIMEOUT="0")
    (line,) = stderr.splitlines()
    assert line.startswith("libkeepalive_socket: fd ")
    assert line.endswith(": SO_KEEPALIVE=1 TCP_KEEPINTVL=15 TCP_KEEPCNT=9 TCP_SYNCNT=2")


def test_listen_debug_line(server: Server) -> None:
    _, _, stderr = server("listen", LIBKEEPALIVE_DEBUG="1")
    (line,) = stderr.splitlines()
    assert line.startswith("libkeepalive_listen: fd ")


def test_no_debug_line_for_udp(client: Client) -> None:
    _, stderr = client("connect", "udp", "9", LIBKEEPALIVE_DEBUG="1")
    assert stderr == ""
