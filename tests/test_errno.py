"""The interposed call returns exactly what the real call returns, errno included."""

from __future__ import annotations

import errno
import re
import subprocess
from pathlib import Path

import pytest

import keepalive_preload
from support import (
    HELPERS,
    ROOT,
    Client,
    c_compiler,
    clean_env,
    free_port,
    library,
    preload,
    reports,
    run,
    unavailable,
)

# Rerun against other builds of the libraries (support.rerun_socket_level_tests).
pytestmark = pytest.mark.socket_level

VARIANTS = (None, *keepalive_preload.VARIANTS)


@pytest.fixture
def closed_port() -> int:
    return free_port()


@pytest.mark.parametrize("variant", VARIANTS)
def test_econnrefused(client: Client, closed_port: int, variant: str | None) -> None:
    report, _ = client(variant, "connect4", str(closed_port))
    assert (report["ret"], report["errno"]) == (-1, errno.ECONNREFUSED)


@pytest.mark.parametrize("variant", VARIANTS)
def test_einprogress(client: Client, listener: int, variant: str | None) -> None:
    report, _ = client(variant, "connect4", str(listener), "nonblock")
    assert (report["ret"], report["errno"]) == (-1, errno.EINPROGRESS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_ebadf(client: Client, variant: str | None) -> None:
    report, stderr = client(variant, "badfd")
    assert (report["ret"], report["errno"]) == (-1, errno.EBADF)
    assert stderr == ""


@pytest.mark.parametrize("variant", VARIANTS)
def test_enotsock(client: Client, variant: str | None) -> None:
    report, _ = client(variant, "notsock")
    assert (report["ret"], report["errno"]) == (-1, errno.ENOTSOCK)


@pytest.mark.parametrize("variant", VARIANTS)
def test_listen_on_udp(client: Client, variant: str | None) -> None:
    report, _ = client(variant, "listen-udp")
    assert (report["ret"], report["errno"]) == (-1, errno.EOPNOTSUPP)


@pytest.mark.parametrize("variant", VARIANTS)
def test_errno_untouched_by_successful_socket(client: Client, variant: str | None) -> None:
    # The probe sets errno = EDOM, then calls socket(); success leaves it alone.
    report, _ = client(variant, "socket", LIBKEEPALIVE_DEBUG="1")
    assert (report["ret"], report["errno"]) == (0, errno.EDOM)


@pytest.mark.parametrize(("action", "expected"),
                         [("connect4", (0, 0)), ("closed", (-1, errno.ECONNREFUSED))])
def test_failed_setsockopt_changes_nothing(probe: str, failsockopt: str, listener: int,
                                           closed_port: int, action: str,
                                           expected: tuple[int, int]) -> None:
    port = listener if action == "connect4" else closed_port
    env = clean_env(LD_PRELOAD=preload(library("connect"), failsockopt),
                    LIBKEEPALIVE_DEBUG="1")
    result = run([probe, "connect4", str(port)], env)
    (report,) = reports(result.stdout)
    assert (report["ret"], report["errno"]) == expected
    assert report["SO_KEEPALIVE"] == 0
    if action == "closed":
        # The options are set once the kernel accepted the connect: a refused
        # one gets nothing, so nothing fails.
        assert "setsockopt" not in result.stderr
        return
    # every failure is reported under LIBKEEPALIVE_DEBUG
    assert "setsockopt TCP_KEEPIDLE=15: Operation not permitted" in result.stderr
    assert "setsockopt SO_KEEPALIVE=1: Operation not permitted" in result.stderr


def test_failed_setsockopt_keeps_errno_of_successful_socket(probe: str,
                                                            failsockopt: str) -> None:
    env = clean_env(LD_PRELOAD=preload(library("socket"), failsockopt))
    result = run([probe, "socket"], env)
    (report,) = reports(result.stdout)
    assert (report["ret"], report["errno"]) == (0, errno.EDOM)
    assert result.stderr == ""  # failures are silent without LIBKEEPALIVE_DEBUG


def test_enosys_when_the_real_function_is_missing(tmp_path: Path) -> None:
    """A front-end whose real function cannot be found fails with ENOSYS."""
    src = ROOT / "src" / "c"
    if not src.exists():
        unavailable("runs from a source checkout (src/c)")
    cc = c_compiler()
    flags = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Werror", f"-I{src}"]
    front = tmp_path / "connect.o"
    subprocess.run([cc, *flags, "-Dconnect=kp_test_connect", "-Dkp_variant=kp_unused_variant",
                    "-c", str(src / "connect.c"), "-o", str(front)], check=True, timeout=120)
    program = tmp_path / "enosys"
    # The core as CMakeLists.txt lists it (KEEPALIVE_CORE_SOURCES).
    listed = re.search(r"set\(KEEPALIVE_CORE_SOURCES([^)]*)\)",
                       (ROOT / "CMakeLists.txt").read_text())
    assert listed is not None
    core = [str(ROOT / name) for name in listed.group(1).split()]
    subprocess.run([cc, *flags, "-o", str(program), str(HELPERS / "enosys.c"), str(front),
                    *core, "-ldl"], check=True, timeout=120)
    assert run([str(program)], clean_env()).stdout == "-1 1\n"
