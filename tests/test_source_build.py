"""Building from source the ways users and distributions do: pip from a
read-only checkout, a compiler that predefines _FORTIFY_SOURCE, and the
system-call fallback for a process without dlsym."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import keepalive_preload
from support import ROOT, c_compiler, need_tool, output, rerun_socket_level_tests, unavailable


def cmake_build(build: Path, *defines: str, env: dict[str, str] | None = None) -> str:
    """Configure and build the libraries with -Werror; return the build's output."""
    cmake = need_tool("cmake")
    log = ""
    for step in ([cmake, "-S", str(ROOT), "-B", str(build), "-DKEEPALIVE_WERROR=ON", *defines],
                 [cmake, "--build", str(build)]):
        done = subprocess.run(step, capture_output=True, text=True, timeout=600,
                              env={**os.environ, **(env or {})})
        assert done.returncode == 0, done.stdout + done.stderr
        log += done.stdout + done.stderr
    return log


def snapshot(tree: Path) -> dict[str, tuple[int, int]]:
    """Every path under tree with its mode and mtime."""
    return {str(p.relative_to(tree)): (p.lstat().st_mode, p.lstat().st_mtime_ns)
            for p in tree.rglob("*")}


@pytest.fixture
def read_only_checkout(tmp_path: Path) -> Iterator[Path]:
    """The checkout's tracked files, copied and made read-only (made writable
    again afterwards so that the temporary directory can be removed)."""
    git = need_tool("git")
    if not (ROOT / ".git").exists():
        unavailable("runs from a git checkout")
    tree = tmp_path / "src"
    files = subprocess.run([git, "-C", str(ROOT), "ls-files", "-z"], capture_output=True,
                           check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, files):
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
        target.chmod(stat.S_IMODE((ROOT / name).stat().st_mode))
    paths = sorted(tree.rglob("*"), reverse=True)
    try:
        for path in [*paths, tree]:
            path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
        yield tree
    finally:
        for path in [tree, *sorted(tree.rglob("*"))]:
            path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o200)


def test_pip_installs_from_a_read_only_checkout(read_only_checkout: Path,
                                                tmp_path: Path) -> None:
    """pip install /path/to/checkout works when the checkout is read-only and
    leaves nothing in it (scikit-build-core builds in a temporary directory)."""
    before = snapshot(read_only_checkout)
    target = tmp_path / "installed"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--no-compile", "--target", str(target), str(read_only_checkout)],
                          capture_output=True, text=True, timeout=900,
                          cwd=tmp_path, env={**os.environ, "PIP_NO_CACHE_DIR": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    for lib in keepalive_preload.LIBRARIES.values():
        assert (target / "keepalive_preload" / "lib" / lib).is_file()
    assert snapshot(read_only_checkout) == before


def test_compiler_predefining_fortify_source(tmp_path: Path) -> None:
    """Ubuntu's gcc predefines _FORTIFY_SOURCE: the -Werror build still
    passes (our flags undefine it first) and is still fortified."""
    wrapper = tmp_path / "cc"
    wrapper.write_text(f'#!/bin/sh\nexec {c_compiler()} -D_FORTIFY_SOURCE=3 "$@"\n')
    wrapper.chmod(0o755)
    build = tmp_path / "build"
    log = cmake_build(build, f"-DCMAKE_C_COMPILER={wrapper}", "-DCMAKE_BUILD_TYPE=Release")
    assert "_FORTIFY_SOURCE" not in log
    assert "_chk@" in output("readelf", "-sW", str(build / "libkeepalive.so"))


def test_without_dlsym_the_system_call_is_the_next_definition(tmp_path: Path) -> None:
    """On glibc < 2.34 dlsym lives in libdl, which the shipped libraries do
    not load (src/c/real.c references it weakly). In a process without
    libdl the interposed call goes straight to the system call: a build that
    never uses dlsym (KEEPALIVE_TEST_NO_DLSYM) passes the socket-level suite.
    Left out: our library in front of another interposer of the same call
    (connect, or the setsockopt our library makes), which cannot happen
    without dlsym in the process (that interposer would need it itself to
    chain to the real call)."""
    if os.environ.get("KEEPALIVE_TEST_LIBDIR"):
        pytest.skip("already a nested run")
    build = tmp_path / "build"
    cmake_build(build, "-DKEEPALIVE_TEST_NO_DLSYM=ON")
    for lib in keepalive_preload.LIBRARIES.values():
        symbols = output("objdump", "-T", str(build / lib)).splitlines()
        assert not [line for line in symbols if line.endswith(" dlsym")]
    summary = rerun_socket_level_tests(
        str(build), "-k",
        "not (test_with_unrelated_preload or test_failed_setsockopt_changes_nothing)")
    print(f"\nwithout dlsym: {summary}")
