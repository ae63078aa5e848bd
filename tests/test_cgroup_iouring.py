"""The cgroup mode covers what the preload libraries cannot see: sockets
connected with io_uring (``IORING_OP_CONNECT``) or created by it
(``IORING_OP_SOCKET``, Linux 5.19), and MPTCP connections, whose subflows are
TCP sockets as far as sock_ops sees them.

The io_uring client is tests/helpers/uring_connect.c (liburing); it reads the
options back with getsockopt. MPTCP is seen from outside with ``ss -tnoi``
(the subflow: ``tcp-ulp-mptcp`` and its keepalive timer). Each skips with the
reason on a kernel without the feature.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from test_cgroup import (  # noqa: F401 - the fixtures are used by name
    SEVEN,
    SEVEN_ARGS,
    UNTOUCHED,
    Cgroup,
    attach,
    cgroup,
    cgroup2,
    in_cgroup,
    keepalive_timer_on,
    port,
)

from support import (
    HELPERS,
    TIMEOUT,
    c_compiler,
    clean_env,
    preload_env,
    reports,
    subset,
    unavailable,
)

pytestmark = pytest.mark.kernel

IPPROTO_MPTCP = 262


@pytest.fixture(scope="module")
def uring_connect(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/helpers/uring_connect.c, linked with liburing."""
    out = tmp_path_factory.mktemp("uring") / "uring_connect"
    built = subprocess.run([c_compiler(), "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
                            "-o", str(out), str(HELPERS / "uring_connect.c"), "-luring"],
                           capture_output=True, text=True, timeout=120)
    if built.returncode != 0:
        unavailable(f"cannot build uring_connect.c (liburing-dev missing?): "
                    f"{built.stderr.strip()[:300]}")
    return str(out)


def run_uring(argv: list[str], env: dict[str, str]) -> dict[str, int]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    if result.returncode == 2 and "unsupported" in result.stderr:
        pytest.skip(f"this kernel refuses it: {result.stderr.splitlines()[0]}")
    if result.returncode != 0 and "io_uring_queue_init" in result.stderr:
        unavailable(f"io_uring is not available here: {result.stderr.strip()}")
    assert result.returncode == 0, result
    (report,) = reports(result.stdout)
    return report


@pytest.mark.parametrize(("mode", "variant"), [("connect", "connect"), ("socket", "socket")])
def test_io_uring_socket_gets_the_values(cgroup: Cgroup, uring_connect: str,  # noqa: F811
                                         port: int, mode: str, variant: str) -> None:  # noqa: F811
    """A socket connected by IORING_OP_CONNECT, or created by IORING_OP_SOCKET:
    the library that interposes that call sees nothing; the cgroup mode covers it."""
    argv = [uring_connect, mode, str(port)]
    preloaded = run_uring(argv, preload_env(variant))
    assert subset(preloaded, UNTOUCHED) == UNTOUCHED  # out of the library's reach
    attach(cgroup, *SEVEN_ARGS)
    report = run_uring(in_cgroup(cgroup.path, argv), clean_env())
    assert subset(report, SEVEN) == SEVEN


_MPTCP_CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
s.connect(("127.0.0.1", int(sys.argv[1])))
print(json.dumps({"port": s.getsockname()[1]}), flush=True)
sys.stdin.read()
"""

_MPTCP_SERVER = r"""
import json, socket, sys
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
srv.bind(("127.0.0.1", 0)); srv.listen(1)
print(json.dumps({"port": srv.getsockname()[1]}), flush=True)
conn, _ = srv.accept()
sys.stdin.read()
"""


@pytest.fixture
def mptcp_listener() -> Iterator[socket.socket]:
    """An MPTCP listener in this process (outside the test cgroup)."""
    try:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    except OSError as exc:
        pytest.skip(f"MPTCP is not available on this kernel: {exc.strerror} "
                    "(CONFIG_MPTCP, or net.mptcp.enabled = 0)")
    with srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        yield srv


@pytest.mark.parametrize("side", ["client", "server"])
def test_mptcp_subflows_get_the_values(cgroup: Cgroup, mptcp_listener: socket.socket,  # noqa: F811
                                       side: str) -> None:
    """An MPTCP connection made (or accepted) in the cgroup: its TCP subflow
    has our keepalive, as a plain TCP connection does."""
    attach(cgroup, *SEVEN_ARGS)
    if side == "client":
        proc = cgroup.start([sys.executable, "-c", _MPTCP_CLIENT,
                             str(mptcp_listener.getsockname()[1])])
    else:
        proc = cgroup.start([sys.executable, "-c", _MPTCP_SERVER])
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.communicate(timeout=TIMEOUT)
    ours = json.loads(line)["port"]
    if side == "client":
        peer, _ = mptcp_listener.accept()
    else:
        peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
        peer.connect(("127.0.0.1", ours))
    with peer:
        seen = keepalive_timer_on(f"sport = :{ours}")
        other = keepalive_timer_on(f"dport = :{ours}", wait=False)  # the peer, outside
    assert seen, "the subflow in the cgroup has no keepalive timer"
    assert "tcp-ulp-mptcp" in seen, seen
    assert not other, f"the peer outside the cgroup has one: {other}"
