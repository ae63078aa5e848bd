"""What the libraries cannot reach, as the docs say: a socket connected with
io_uring (IORING_OP_CONNECT), or also created with it (IORING_OP_SOCKET),
makes no C library call, so no variant sees it (the socket variant still
configures a socket that socket(2) created). The cgroup mode covers them
(tests/test_cgroup.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support import DEFAULTS, HELPERS, c_compiler, preload_env, reports, unavailable

pytestmark = pytest.mark.socket_level


@pytest.fixture(scope="module")
def uring_connect(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not Path("/usr/include/liburing.h").exists():
        unavailable("liburing is not installed (Debian: liburing-dev)")
    out = tmp_path_factory.mktemp("uring") / "uring_connect"
    subprocess.run([c_compiler(), "-std=c11", "-O2", "-Wall", "-Werror", "-o", str(out),
                    str(HELPERS / "uring_connect.c"), "-luring"], check=True, timeout=120)
    return str(out)


@pytest.mark.parametrize("variant", ["connect", "listen", "socket"])
@pytest.mark.parametrize("created_by", ["uring", "libc"])
def test_io_uring_is_out_of_reach(uring_connect: str, listener: int, variant: str,
                                  created_by: str) -> None:
    # uring_connect.c: "socket" creates it with IORING_OP_SOCKET, "connect" with
    # socket(2); both connect with IORING_OP_CONNECT.
    mode = "socket" if created_by == "uring" else "connect"
    result = subprocess.run([uring_connect, mode, str(listener)], capture_output=True,
                            text=True, timeout=30, env=preload_env(variant))
    if result.returncode == 2 and "unsupported" in result.stderr:
        unavailable(f"this kernel's io_uring lacks the operation: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    (report,) = reports(result.stdout)
    if variant == "socket" and created_by == "libc":
        # socket(2) went through the library: configured before the ring connects it.
        assert report["SO_KEEPALIVE"] == 1
        assert report["TCP_KEEPIDLE"] == DEFAULTS["TCP_KEEPIDLE"]
    else:
        assert report["SO_KEEPALIVE"] == 0
