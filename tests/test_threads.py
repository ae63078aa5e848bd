"""Concurrency: many threads making many connections at once, and calls that
arrive before the library's constructor has run."""

from __future__ import annotations

import json
import subprocess

import pytest

from support import c_compiler, clean_env, compile_helper, library, preload, preload_env, run

# Rerun against other builds of the libraries (support.rerun_socket_level_tests).
pytestmark = pytest.mark.socket_level


@pytest.fixture(scope="module")
def threads(tmp_path_factory: pytest.TempPathFactory) -> str:
    return compile_helper(tmp_path_factory, "threads.c", "-pthread")


@pytest.fixture(scope="module")
def early(tmp_path_factory: pytest.TempPathFactory) -> str:
    return compile_helper(tmp_path_factory, "early.c", "-shared", "-fPIC")


@pytest.mark.parametrize(("variant", "mode"), [("connect", "connect"), ("socket", "connect"),
                                               ("listen", "listen"), ("socket", "listen")])
def test_threads_every_socket_configured(threads: str, variant: str, mode: str) -> None:
    # 8 threads x 250 connections, all at once.
    result = run([threads, mode, "8", "250", "11"],
                 preload_env(variant, TCP_KEEPIDLE="11"), check=False)
    report = json.loads(result.stdout)
    assert report == {"checked": 2000, "wrong": 0, "errors": 0}, result.stderr
    assert result.returncode == 0
    assert result.stderr == ""


def test_threads_baseline_is_unconfigured(threads: str) -> None:
    # Without the library the same sockets are not configured: the check can fail.
    result = run([threads, "connect", "2", "10", "11"], clean_env(), check=False)
    assert json.loads(result.stdout)["wrong"] == 20
    assert result.returncode == 1


def test_constructor_order(early: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """glibc runs preload constructors last-listed first: the test below relies on it."""
    marker = tmp_path_factory.mktemp("marker") / "marker.c"
    marker.write_text('#include <unistd.h>\n__attribute__((constructor)) static void m(void)'
                      ' { if (write(1, "marker\\n", 7) < 0) _exit(3); }\n')
    lib = marker.with_suffix(".so")
    subprocess.run([c_compiler(), "-shared", "-fPIC", "-o", str(lib), str(marker)], check=True,
                   timeout=120)
    result = run(["/bin/true"], clean_env(LD_PRELOAD=f"{lib}:{early}", KP_EARLY_PORT="1"))
    assert result.stdout.splitlines() == ["early: SO_KEEPALIVE=-1 TCP_KEEPIDLE=-1", "marker"]


@pytest.mark.parametrize("order", ["keepalive-first", "early-first"])
@pytest.mark.parametrize("variant", ["connect", "socket"])
def test_call_before_constructor(early: str, listener: int, variant: str, order: str) -> None:
    # keepalive-first in the list: early.so's constructor runs before ours.
    libs = [library(variant), early] if order == "keepalive-first" else [early, library(variant)]
    env = clean_env(LD_PRELOAD=preload(*libs), KP_EARLY_PORT=str(listener), TCP_KEEPIDLE="7",
                    TCP_KEEPCNT="bad")
    result = run(["/bin/true"], env)
    assert result.stdout == "early: SO_KEEPALIVE=1 TCP_KEEPIDLE=7\n"
    assert len(result.stderr.splitlines()) == 1  # the warning, once
    assert "TCP_KEEPCNT='bad'" in result.stderr
