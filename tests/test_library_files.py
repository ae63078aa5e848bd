"""The installed library files: exports, hardening, dependencies, version."""

from __future__ import annotations

import re

import pytest

import keepalive_preload
from support import output

SYMBOLS = {"connect": "connect", "listen": "listen", "socket": "socket"}


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
def test_exports_exactly_the_interposed_symbols(variant: str) -> None:
    # The variant's call, and setsockopt (only to enforce whose settings win).
    out = output("nm", "-D", "--defined-only", keepalive_preload.path(variant))
    names = [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert sorted(names) == sorted([SYMBOLS[variant], "setsockopt"])


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
def test_export_is_unversioned(variant: str) -> None:
    # A named version node would not satisfy programs bound to connect@GLIBC_x.
    out = output("objdump", "-T", keepalive_preload.path(variant))
    line = next(line for line in out.splitlines() if line.endswith(" " + SYMBOLS[variant]))
    assert "Base" in line


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
def test_depends_on_libc_alone(variant: str) -> None:
    out = output("readelf", "-d", keepalive_preload.path(variant))
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)
    assert set(needed) <= {"libc.so.6", "libdl.so.2"}
    assert "libc.so.6" in needed


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
def test_hardened(variant: str) -> None:
    library = keepalive_preload.path(variant)
    dynamic = output("readelf", "-d", library)
    assert "BIND_NOW" in dynamic or "NOW" in dynamic  # -z now
    headers = output("readelf", "-lW", library)
    assert "GNU_RELRO" in headers  # -z relro
    stack = next(line for line in headers.splitlines() if "GNU_STACK" in line)
    assert "RWE" not in stack  # -z noexecstack
    symbols = output("readelf", "-sW", library)
    assert "__stack_chk_fail" in symbols  # -fstack-protector-strong
    assert "_chk@" in symbols  # _FORTIFY_SOURCE (snprintf becomes __snprintf_chk)


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
def test_version_string_embedded(variant: str) -> None:
    with open(keepalive_preload.path(variant), "rb") as f:
        data = f.read()
    assert f"keepalive-preload {keepalive_preload.__version__}\0".encode() in data


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
def test_installed_mode_0644(variant: str) -> None:
    import os
    import stat

    mode = stat.S_IMODE(os.stat(keepalive_preload.path(variant)).st_mode)
    assert mode & 0o7022 == 0  # no setuid, not group/world-writable
