"""Only TCP sockets are touched; the syscall budget of the contract holds."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import keepalive_preload
from support import Client, count_syscalls

# Rerun against other builds of the libraries (support.rerun_socket_level_tests).
pytestmark = pytest.mark.socket_level

VARIANTS = keepalive_preload.VARIANTS
CALLS = ("setsockopt", "getsockopt")


@pytest.mark.parametrize("variant", VARIANTS)
def test_udp_untouched(client: Client, variant: str) -> None:
    report, stderr = client(variant, "udp", "9")
    assert report["ret"] == 0
    assert report["SO_KEEPALIVE"] == 0
    assert stderr == ""


@pytest.fixture
def unix_listener(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    yield path
    srv.close()


@pytest.mark.parametrize("variant", VARIANTS)
def test_unix_untouched(client: Client, unix_listener: str, variant: str) -> None:
    report, stderr = client(variant, "unix", unix_listener)
    assert report["ret"] == 0
    assert report["SO_KEEPALIVE"] == 0
    assert stderr == ""


# The connect variant reads the family of the address the kernel accepted:
# IPv4/IPv6 get one getsockopt(SO_PROTOCOL) (TCP or MPTCP?); AF_UNIX gets
# nothing. The socket variant tells TCP from socket()'s
# arguments: no call at all.
# (The listen variant: the probe's "udp" action makes no listen(2) call, so
# its case is test_listen_on_udp_budget below.)
@pytest.mark.parametrize(("variant", "counts"), [("socket", (0, 0)), ("connect", (0, 1))])
def test_udp_syscall_budget(probe: str, tmp_path: Path, variant: str,
                            counts: tuple[int, int]) -> None:
    seen = count_syscalls([probe, "-q", "udp", "9"], variant, CALLS, tmp_path)
    assert (seen["setsockopt"], seen["getsockopt"]) == counts, seen


@pytest.mark.parametrize(("variant", "counts"), [("socket", (0, 0)), ("connect", (0, 0))])
def test_unix_syscall_budget(probe: str, tmp_path: Path, unix_listener: str, variant: str,
                             counts: tuple[int, int]) -> None:
    seen = count_syscalls([probe, "-q", "unix", unix_listener], variant, CALLS, tmp_path)
    assert (seen["setsockopt"], seen["getsockopt"]) == counts, seen


def test_listen_on_udp_budget(probe: str, tmp_path: Path) -> None:
    """listen(2) has no address to look at: one getsockopt(SO_PROTOCOL)."""
    seen = count_syscalls([probe, "-q", "listen-udp"], "listen", CALLS, tmp_path)
    assert (seen["setsockopt"], seen["getsockopt"]) == (0, 1), seen


@pytest.mark.parametrize(("variant", "getsockopt"), [("connect", 1), ("socket", 0)])
@pytest.mark.parametrize(
    ("env", "options"),
    [
        ({}, 5),  # SO_KEEPALIVE, idle, interval, count, derived user timeout
        ({"TCP_USER_TIMEOUT": "0"}, 4),
        ({"TCP_KEEPIDLE": "0", "TCP_USER_TIMEOUT": "0"}, 3),
        ({"TCP_SYNCNT": "2", "TCP_MAXSEG": "1200", "TCP_WINDOW_CLAMP": "30000"}, 8),
    ],
)
def test_tcp_syscall_budget(probe: str, tmp_path: Path, listener: int, variant: str,
                            getsockopt: int, env: dict[str, str], options: int) -> None:
    """Exactly one setsockopt per option that is set, plus in the connect
    variant one getsockopt(SO_PROTOCOL): a program that never set a
    keepalive option itself (the setsockopt interposer would have seen it)
    has nothing on the socket to ask about."""
    counts = count_syscalls([probe, "-q", "connect4", str(listener)], variant, CALLS,
                            tmp_path, **env)
    assert counts == {"setsockopt": options, "getsockopt": getsockopt}


@pytest.mark.parametrize("variant", ["connect", "socket"])
def test_force_needs_no_getsockopt(probe: str, tmp_path: Path, listener: int,
                                   variant: str) -> None:
    """KEEPALIVE=force: ours win whatever the program chose, so nothing is asked."""
    counts = count_syscalls([probe, "-q", "connect4", str(listener)], variant, CALLS,
                            tmp_path, KEEPALIVE="force")
    assert counts == {"setsockopt": 5, "getsockopt": 1 if variant == "connect" else 0}


def test_keepalive_off_makes_no_syscall(probe: str, tmp_path: Path, listener: int) -> None:
    counts = count_syscalls([probe, "-q", "connect4", str(listener)], "connect", CALLS,
                            tmp_path, KEEPALIVE="off")
    assert counts == {"setsockopt": 0, "getsockopt": 0}
