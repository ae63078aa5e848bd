"""Options read back with getsockopt from real loopback sockets, per variant."""

from __future__ import annotations

import pytest

from support import DEFAULTS, Client, Server, subset

# Rerun against other builds of the libraries (support.rerun_socket_level_tests).
pytestmark = pytest.mark.socket_level

# The variants that configure a client (connecting) socket, and a server's
# accepted socket.
CLIENT_VARIANTS = ("connect", "socket")
SERVER_VARIANTS = ("listen", "socket")


@pytest.mark.parametrize("variant", CLIENT_VARIANTS)
def test_client_defaults(client: Client, listener: int, variant: str) -> None:
    report, stderr = client(variant, "connect4", str(listener))
    assert report["ret"] == 0
    assert subset(report, DEFAULTS) == DEFAULTS
    assert stderr == ""


@pytest.mark.parametrize("variant", CLIENT_VARIANTS)
def test_client_ipv6(client: Client, listener6: int, variant: str) -> None:
    report, _ = client(variant, "connect6", str(listener6))
    assert report["ret"] == 0
    assert subset(report, DEFAULTS) == DEFAULTS


@pytest.mark.parametrize("variant", SERVER_VARIANTS)
@pytest.mark.parametrize("family", ["4", "6"])
def test_accepted_socket_defaults(server: Server, variant: str, family: str) -> None:
    if family == "6":
        import socket

        if not socket.has_ipv6:
            pytest.skip("no IPv6")
    accepted, listening, stderr = server(variant, family)
    assert subset(accepted, DEFAULTS) == DEFAULTS
    assert subset(listening, DEFAULTS) == DEFAULTS
    assert stderr == ""


def test_connect_variant_leaves_server_alone(server: Server) -> None:
    accepted, listening, _ = server("connect")
    assert accepted["SO_KEEPALIVE"] == 0
    assert listening["SO_KEEPALIVE"] == 0


def test_listen_variant_leaves_client_alone(client: Client, listener: int) -> None:
    report, _ = client("listen", "connect4", str(listener))
    assert report["SO_KEEPALIVE"] == 0


def test_without_library_nothing_is_set(client: Client, listener: int) -> None:
    report, _ = client(None, "connect4", str(listener))
    assert report["SO_KEEPALIVE"] == 0
    assert report["TCP_USER_TIMEOUT"] == 0


CUSTOM = {"TCP_KEEPIDLE": "7", "TCP_KEEPINTVL": "3", "TCP_KEEPCNT": "4",
          "TCP_USER_TIMEOUT": "12345"}
SEGMENTS = {"TCP_MAXSEG": "1000", "TCP_WINDOW_CLAMP": "20000"}


@pytest.mark.parametrize("variant", CLIENT_VARIANTS)
def test_client_custom_values(client: Client, listener: int, variant: str) -> None:
    baseline, _ = client(None, "connect4", str(listener))
    report, stderr = client(variant, "connect4", str(listener), **CUSTOM, **SEGMENTS,
                            TCP_SYNCNT="3")
    expected = {key: int(value) for key, value in CUSTOM.items()}
    assert subset(report, expected) == expected
    assert report["TCP_SYNCNT"] == 3
    assert report["SO_KEEPALIVE"] == 1
    # Once connected the kernel trims both by the TCP options in use
    # (timestamps: 12 bytes), so they read back a little below what was set.
    assert 900 <= report["TCP_MAXSEG"] <= 1000 < baseline["TCP_MAXSEG"]
    assert 18000 <= report["TCP_WINDOW_CLAMP"] <= 20000 < baseline["TCP_WINDOW_CLAMP"]
    assert stderr == ""


def test_segment_options_exact_before_connect(client: Client) -> None:
    report, _ = client("socket", "socket", **SEGMENTS)
    assert subset(report, SEGMENTS) == {key: int(value) for key, value in SEGMENTS.items()}


@pytest.mark.parametrize("variant", SERVER_VARIANTS)
def test_server_custom_values(server: Server, variant: str) -> None:
    env = CUSTOM
    accepted, listening, _ = server(variant, TCP_DEFER_ACCEPT="5", **env)
    expected = {key: int(value) for key, value in env.items()}
    assert subset(accepted, expected) == expected
    assert accepted["SO_KEEPALIVE"] == 1
    assert listening["TCP_DEFER_ACCEPT"] > 0  # the kernel rounds to retransmissions


def test_syncnt_only_on_client_side(server: Server, client: Client, listener: int) -> None:
    _, listening, _ = server("listen", TCP_SYNCNT="3")
    baseline, _ = client(None, "connect4", str(listener))
    assert listening["TCP_SYNCNT"] == baseline["TCP_SYNCNT"]


def test_defer_accept_not_applied_by_connect_variant(client: Client, listener: int) -> None:
    report, _ = client("connect", "connect4", str(listener), TCP_DEFER_ACCEPT="5")
    assert report["TCP_DEFER_ACCEPT"] == 0


@pytest.mark.parametrize(
    ("env", "idle"),
    [
        ({"KEEPIDLE": "7"}, 7),
        ({"TCP_KEEPIDLE": "8", "KEEPIDLE": "7"}, 8),  # the TCP_* name wins
        ({"KEEPIDLE": "7", "TCP_KEEPIDLE": "8"}, 8),
    ],
)
def test_libkeepalive_03_aliases(client: Client, listener: int, env: dict[str, str],
                                 idle: int) -> None:
    report, _ = client("connect", "connect4", str(listener), **env)
    assert report["TCP_KEEPIDLE"] == idle


def test_all_aliases(client: Client, listener: int) -> None:
    report, _ = client("connect", "connect4", str(listener),
                       KEEPIDLE="5", KEEPINTVL="6", KEEPCNT="7")
    assert subset(report, {"TCP_KEEPIDLE": 0, "TCP_KEEPINTVL": 0, "TCP_KEEPCNT": 0}) == {
        "TCP_KEEPIDLE": 5, "TCP_KEEPINTVL": 6, "TCP_KEEPCNT": 7}
    assert report["TCP_USER_TIMEOUT"] == (5 + 6 * 7) * 1000


@pytest.mark.parametrize("value", ["off", "OFF", "Off"])
@pytest.mark.parametrize("variant", CLIENT_VARIANTS)
def test_keepalive_off(client: Client, listener: int, variant: str, value: str) -> None:
    baseline, _ = client(None, "connect4", str(listener))
    report, stderr = client(variant, "connect4", str(listener), KEEPALIVE=value)
    assert report == baseline
    assert stderr == ""


def test_keepalive_off_server(server: Server) -> None:
    accepted, _, _ = server("listen", KEEPALIVE="off")
    assert accepted["SO_KEEPALIVE"] == 0


@pytest.mark.parametrize("value", ["on", "ON", ""])
def test_keepalive_on(client: Client, listener: int, value: str) -> None:
    report, stderr = client("connect", "connect4", str(listener), KEEPALIVE=value)
    assert report["SO_KEEPALIVE"] == 1
    assert stderr == ""


def test_zero_means_system_default(client: Client, listener: int) -> None:
    baseline, _ = client(None, "connect4", str(listener))
    zeros = {"TCP_KEEPIDLE": "0", "TCP_KEEPINTVL": "0", "TCP_KEEPCNT": "0",
             "TCP_USER_TIMEOUT": "0", "TCP_MAXSEG": "0", "TCP_WINDOW_CLAMP": "0",
             "TCP_SYNCNT": "0"}
    report, stderr = client("connect", "connect4", str(listener), **zeros)
    assert report["SO_KEEPALIVE"] == 1  # still on
    for key in zeros:
        assert report[key] == baseline[key], key
    assert stderr == ""


def test_one_zero_keeps_others_and_no_derived_timeout(client: Client, listener: int) -> None:
    baseline, _ = client(None, "connect4", str(listener))
    report, _ = client("connect", "connect4", str(listener), TCP_KEEPIDLE="0")
    assert report["TCP_KEEPIDLE"] == baseline["TCP_KEEPIDLE"]
    assert report["TCP_KEEPINTVL"] == 15
    # idle is unknown, so nothing is derived: the system default stays.
    assert report["TCP_USER_TIMEOUT"] == baseline["TCP_USER_TIMEOUT"]


@pytest.mark.parametrize(
    ("env", "timeout"),
    [
        ({}, 150000),
        ({"TCP_KEEPIDLE": "1", "TCP_KEEPINTVL": "1", "TCP_KEEPCNT": "2"}, 3000),
        ({"TCP_USER_TIMEOUT": "-1", "TCP_KEEPIDLE": "10"}, 145000),
        ({"TCP_USER_TIMEOUT": "4000", "TCP_KEEPIDLE": "10"}, 4000),
        # (32767 + 32767 * 127) * 1000 overflows an int: saturate at INT_MAX.
        ({"TCP_KEEPIDLE": "32767", "TCP_KEEPINTVL": "32767", "TCP_KEEPCNT": "127"}, 2**31 - 1),
        ({"TCP_KEEPIDLE": "16777", "TCP_KEEPINTVL": "1", "TCP_KEEPCNT": "1"}, 16778000),
    ],
)
def test_user_timeout(client: Client, listener: int, env: dict[str, str], timeout: int) -> None:
    report, _ = client("socket", "connect4", str(listener), **env)
    assert report["TCP_USER_TIMEOUT"] == timeout


def test_socket_variant_without_connect(client: Client) -> None:
    report, _ = client("socket", "socket")
    assert subset(report, DEFAULTS) == DEFAULTS
