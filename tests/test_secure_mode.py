"""Secure-execution mode (AT_SECURE): set-user-ID and file-capability programs.

The environment is not read at all (a getenv/secure_getenv spy sees no
lookup), nothing is printed, and the built-in defaults apply. Needs root to
make the privileged programs and to place the libraries in /usr/lib, the only
place glibc preloads from into such programs.
"""

from __future__ import annotations

import pytest

from support import (
    DEFAULTS,
    clean_env,
    compile_helper,
    library,
    privileged_copy,
    reports,
    run,
    run_as_nobody,
    trusted_libraries,
)

HOSTILE = {"TCP_KEEPIDLE": "7", "TCP_KEEPCNT": "bad", "KEEPALIVE": "off",
           "LIBKEEPALIVE_DEBUG": "1", "TCP_USER_TIMEOUT": "1"}


@pytest.fixture(scope="module")
def spy(tmp_path_factory: pytest.TempPathFactory) -> str:
    return compile_helper(tmp_path_factory, "getenv_spy.c", "-shared", "-fPIC")


def test_spy_sees_lookups_normally(probe: str, spy: str, listener: int) -> None:
    """Control: without secure-execution mode the spy sees every variable read."""
    env = clean_env(LD_PRELOAD=f"{spy}:{library('connect')}")
    result = run([probe, "connect4", str(listener)], env)
    assert "getenv_spy: TCP_KEEPIDLE" in result.stderr
    assert "getenv_spy: KEEPALIVE" in result.stderr


@pytest.mark.parametrize("how", ["setuid", "capability"])
@pytest.mark.parametrize("variant", ["connect", "socket"])
def test_secure_mode_ignores_environment(probe: str, spy: str, listener: int, how: str,
                                         variant: str) -> None:
    with privileged_copy(probe, how) as program, \
            trusted_libraries(spy, library(variant)) as (spy_name, lib_name):
        result = run_as_nobody([program, "connect4", str(listener)],
                               LD_PRELOAD=f"{spy_name}:{lib_name}", **HOSTILE)
        (report,) = reports(result.stdout)
        assert {key: report[key] for key in DEFAULTS} == DEFAULTS  # loaded; defaults
        assert result.stderr == ""  # no lookup seen by the spy, no warning, no debug line


def test_secure_mode_without_trusted_library_not_loaded(probe: str, listener: int) -> None:
    with privileged_copy(probe, "setuid") as program:
        result = run_as_nobody([program, "connect4", str(listener)],
                               LD_PRELOAD=library("connect"))
        (report,) = reports(result.stdout)
        assert report["SO_KEEPALIVE"] == 0
