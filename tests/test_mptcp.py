"""MPTCP sockets (IPPROTO_MPTCP) are TCP to the libraries: every variant sets
the keepalive options on them; an option the kernel refuses on MPTCP is
skipped quietly (no error line even with LIBKEEPALIVE_DEBUG)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import keepalive_preload
from support import DEFAULTS, compile_helper, preload_env, reports, run, unavailable

pytestmark = pytest.mark.socket_level

IPPROTO_MPTCP = 262
TIMERS = ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT")


def mptcp_enabled() -> None:
    enabled = Path("/proc/sys/net/mptcp/enabled")
    if not enabled.exists() or enabled.read_text().strip() != "1":
        unavailable("the kernel has no MPTCP (/proc/sys/net/mptcp/enabled)")
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP).close()
    except OSError as exc:
        unavailable(f"cannot make an MPTCP socket: {exc}")


def kernel_takes(name: str) -> bool:
    """Whether this kernel's MPTCP takes the TCP-level option at all."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP) as s:
        try:
            s.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), 20)
            return s.getsockopt(socket.IPPROTO_TCP, getattr(socket, name)) == 20
        except OSError:
            return False


@pytest.fixture(scope="module")
def chooser(tmp_path_factory: pytest.TempPathFactory) -> str:
    return compile_helper(tmp_path_factory, "chooser.c")


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
def test_mptcp_client_gets_the_options(chooser: str, listener: int, variant: str) -> None:
    mptcp_enabled()
    result = run([chooser, "nothing", "after", "mptcp", str(listener)],
                 preload_env(variant, LIBKEEPALIVE_DEBUG="1"))
    (report,) = reports(result.stdout)
    if variant == "listen":  # clients are not the listen variant's
        assert report["SO_KEEPALIVE"] == 0
        return
    assert report["SO_KEEPALIVE"] == 1
    taken = [name for name in TIMERS if kernel_takes(name)]
    assert taken, "this kernel's MPTCP takes none of the timers"
    assert {name: report[name] for name in taken} == {name: DEFAULTS[name] for name in taken}
    assert "setsockopt" not in result.stderr  # refused options: quietly
    assert " ours: " in result.stderr


def test_mptcp_listener_gets_the_options(listener: int, tmp_path: Path) -> None:
    """The listen variant on an MPTCP listener (several runtimes' default)."""
    mptcp_enabled()
    script = tmp_path / "listen.py"
    script.write_text(
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)\n"
        "s.bind(('127.0.0.1', 0)); s.listen()\n"
        "print(s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),"
        " s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))\n")
    for variant in ("listen", "socket"):
        result = run(["python3", str(script)], preload_env(variant, LIBKEEPALIVE_DEBUG="1"))
        keepalive, idle = map(int, result.stdout.split())
        assert keepalive == 1, result.stderr
        if kernel_takes("TCP_KEEPIDLE"):
            assert idle == DEFAULTS["TCP_KEEPIDLE"]
        assert "setsockopt" not in result.stderr
