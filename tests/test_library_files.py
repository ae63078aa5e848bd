"""The installed library files: exports, dependencies, version, hardening, mode."""

from __future__ import annotations

import os
import re
import stat

import pytest

import keepalive_preload
from support import check_library, output


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
def test_exports_dependencies_and_version(variant: str) -> None:
    check_library(keepalive_preload.path(variant), variant)


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
def test_hardened(variant: str) -> None:
    library = keepalive_preload.path(variant)
    dynamic = output("readelf", "-d", library)
    flags = {tag: words.replace("Flags:", "").split()
             for tag, words in re.findall(r"\((FLAGS(?:_1)?)\)\s+(.*)", dynamic)}
    assert "BIND_NOW" in flags.get("FLAGS", []), dynamic  # -z now: DT_FLAGS
    assert "NOW" in flags.get("FLAGS_1", []), dynamic  # and DT_FLAGS_1
    headers = output("readelf", "-lW", library)
    assert "GNU_RELRO" in headers  # -z relro
    stack = next(line for line in headers.splitlines() if "GNU_STACK" in line)
    assert "RWE" not in stack  # -z noexecstack
    symbols = output("readelf", "-sW", library)
    assert "__stack_chk_fail" in symbols  # -fstack-protector-strong
    assert "_chk@" in symbols  # _FORTIFY_SOURCE (snprintf becomes __snprintf_chk)


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
def test_installed_mode_0644(variant: str) -> None:
    assert stat.S_IMODE(os.stat(keepalive_preload.path(variant)).st_mode) == 0o644
