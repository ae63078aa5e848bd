"""Invalid values: ignored with one warning each, defaults kept, host undisturbed."""

from __future__ import annotations

import sys

import pytest

from support import DEFAULTS, Client, preload_env, run

# Rerun against other builds of the libraries (support.rerun_socket_level_tests).
pytestmark = pytest.mark.socket_level

BAD_IDLE = ["abc", "15s", "1.5", "-3", "0x10", " 15", "15 ", "+15", "", "-", "32768",
            "99999999999999999999999", "1e3", "15\n", "\u00e9", "--1"]


@pytest.mark.parametrize("value", BAD_IDLE)
@pytest.mark.parametrize("variant", ["connect", "socket"])
def test_bad_idle_is_ignored_with_one_warning(client: Client, listener: int, variant: str,
                                              value: str) -> None:
    report, stderr = client(variant, "connect4", str(listener), TCP_KEEPIDLE=value)
    assert report["ret"] == 0  # the program ran and printed its output
    assert {key: report[key] for key in DEFAULTS} == DEFAULTS
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "TCP_KEEPIDLE" in lines[0]
    assert "1..32767" in lines[0]
    assert "using 15" in lines[0]


def test_warning_names_alias_spelling(client: Client, listener: int) -> None:
    _, stderr = client("connect", "connect4", str(listener), KEEPCNT="lots")
    assert stderr.splitlines() == [
        "libkeepalive: ignoring KEEPCNT='lots': expected 0 (system default) or a whole "
        "number in 1..127; using 9"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TCP_KEEPINTVL", "0.5"), ("TCP_KEEPCNT", "128"), ("TCP_USER_TIMEOUT", "-2"),
     ("TCP_USER_TIMEOUT", "2147483648"), ("TCP_SYNCNT", "200"), ("TCP_MAXSEG", "87"),
     ("TCP_MAXSEG", "40000"), ("TCP_WINDOW_CLAMP", "-5"), ("TCP_DEFER_ACCEPT", "x")],
)
def test_out_of_range(client: Client, listener: int, variable: str, value: str) -> None:
    report, stderr = client("socket", "connect4", str(listener), **{variable: value})
    assert report["ret"] == 0
    assert {key: report[key] for key in DEFAULTS} == DEFAULTS
    assert len(stderr.splitlines()) == 1
    assert f"{variable}=" in stderr


def test_one_warning_per_bad_variable(client: Client, listener: int) -> None:
    report, stderr = client("connect", "connect4", str(listener),
                            TCP_KEEPIDLE="x", TCP_KEEPCNT="y", TCP_KEEPINTVL="20",
                            KEEPALIVE="maybe")
    assert report["TCP_KEEPINTVL"] == 20
    assert report["SO_KEEPALIVE"] == 1  # an unknown KEEPALIVE value leaves it on
    lines = sorted(stderr.splitlines())
    assert len(lines) == 3
    assert "KEEPALIVE='maybe'" in lines[0]
    assert "TCP_KEEPCNT='y'" in lines[1]
    assert "TCP_KEEPIDLE='x'" in lines[2]


def test_warning_is_one_printable_line(client: Client, listener: int) -> None:
    _, stderr = client("connect", "connect4", str(listener),
                       TCP_KEEPIDLE="1\n2\x1b[31m" + "9" * 5000)
    lines = stderr.splitlines()
    assert len(lines) == 1
    assert "\x1b" not in lines[0]
    assert len(lines[0]) < 300
    assert lines[0].endswith("using 15")


def test_warnings_are_printed_once_per_process(listener: int) -> None:
    # Ten sockets, one warning: the configuration is read once, at load.
    code = ("import socket, sys\n"
            "for _ in range(10):\n"
            "    socket.create_connection(('127.0.0.1', int(sys.argv[1]))).close()\n"
            "print('done')")
    result = run([sys.executable, "-c", code, str(listener)],
                 preload_env("socket", TCP_KEEPIDLE="bad"))
    assert result.stdout == "done\n"
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("value", "idle"),
    [("010", 10), ("0007", 7), ("-0", 0), ("00", 0)],  # leading zeros are decimal
)
def test_leading_zeros_are_decimal(client: Client, listener: int, value: str,
                                   idle: int) -> None:
    baseline, _ = client(None, "connect4", str(listener))
    report, stderr = client("connect", "connect4", str(listener), TCP_KEEPIDLE=value)
    assert stderr == ""
    # "-0" and "00" are 0: the system default
    assert report["TCP_KEEPIDLE"] == (idle or baseline["TCP_KEEPIDLE"])


@pytest.mark.parametrize("value", ["9" * 100_000, "1" + "0" * 5000, "-" + "9" * 3000,
                                   "\u2167", "\u0661\u0665", "\uff11\uff15", "15\u200b"])
def test_hostile_values(client: Client, listener: int, value: str) -> None:
    """Huge numbers, 100 kB strings, Unicode digits and look-alikes: rejected,
    one short warning line, defaults kept, the program's output intact."""
    report, stderr = client("socket", "connect4", str(listener), TCP_KEEPIDLE=value,
                            TCP_USER_TIMEOUT=value)
    assert report["ret"] == 0
    assert {key: report[key] for key in DEFAULTS} == DEFAULTS
    lines = stderr.splitlines()
    assert len(lines) == 2
    assert all(len(line) < 300 for line in lines)


def test_bad_alias_is_not_read_when_the_tcp_name_is_set(client: Client, listener: int) -> None:
    report, stderr = client("connect", "connect4", str(listener), TCP_KEEPIDLE="20",
                            KEEPIDLE="junk")
    assert report["TCP_KEEPIDLE"] == 20
    assert stderr == ""
