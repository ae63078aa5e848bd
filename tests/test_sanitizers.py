"""The integration tests again, against an ASan + UBSan build of the libraries,
and a client under valgrind memcheck.

The sanitizer run builds the libraries with -DKEEPALIVE_SANITIZE=address,undefined
(any error aborts: -fno-sanitize-recover=all, abort_on_error) and reruns the
socket-level test files in a nested pytest with KEEPALIVE_TEST_LIBDIR pointing
at that build and the ASan runtime first in LD_PRELOAD, as the programs under
test are not instrumented themselves.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support import (
    ROOT,
    c_compiler,
    clean_env,
    library,
    need_tool,
    reports,
    rerun_socket_level_tests,
    run,
    unavailable,
)

HERE = Path(__file__).resolve().parent


def test_integration_tests_under_asan_and_ubsan(tmp_path: Path) -> None:
    if os.environ.get("KEEPALIVE_TEST_LIBDIR"):
        pytest.skip("already the nested run")
    cmake = need_tool("cmake")
    cc = c_compiler()
    asan = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True,
                          text=True, check=True).stdout.strip()
    if not os.path.isabs(asan):
        unavailable(f"{cc} has no ASan runtime (libasan)")
    build = tmp_path / "asan"
    for step in ([cmake, "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Debug",
                  "-DKEEPALIVE_SANITIZE=address,undefined", "-DKEEPALIVE_WERROR=ON"],
                 [cmake, "--build", str(build)]):
        done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    needed = run(["readelf", "-d", str(build / "libkeepalive.so")], clean_env()).stdout
    assert "libasan" in needed
    assert "libubsan" in needed
    summary = rerun_socket_level_tests(
        str(build), KEEPALIVE_TEST_PRELOAD_FIRST=os.path.realpath(asan),
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:verify_asan_link_order=0",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    print(f"\nsanitizer run: {summary}")


@pytest.mark.parametrize("variant", ["connect", "socket"])
def test_valgrind_memcheck_clean(probe: str, listener: int, variant: str) -> None:
    if os.environ.get("KEEPALIVE_TEST_PRELOAD_FIRST"):
        pytest.skip("valgrind and ASan do not mix")
    valgrind = need_tool("valgrind")
    result = subprocess.run(
        [valgrind, "-q", "--error-exitcode=99", "--leak-check=full",
         "--errors-for-leak-kinds=definite,indirect", "--track-fds=no",
         probe, "connect4", str(listener)],
        capture_output=True, text=True, timeout=300,
        env=clean_env(LD_PRELOAD=library(variant), TCP_KEEPIDLE="bad",
                      LIBKEEPALIVE_DEBUG="1"))
    assert result.returncode == 0, result.stderr
    (report,) = reports(result.stdout)
    assert report["SO_KEEPALIVE"] == 1  # the library was loaded and did its work
    assert "==" not in result.stderr, result.stderr  # no valgrind report at all
