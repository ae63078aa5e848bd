"""The release targets: one table for the build scripts and the tests.

Each is a zig target triple (given to packaging/toolchains/zig.cmake as
KEEPALIVE_ZIG_TARGET) with the wheel platform tag it is built for and, for
glibc, the Debian and RPM architecture of its packages. The one place the
targets are written: the build scripts, the benchmark and the tests read it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from typing import NamedTuple


class Target(NamedTuple):
    triple: str  # zig target
    machine: str  # ELF machine, as uname -m says it
    libc: str  # "glibc" or "musl"
    wheel_tag: str  # platform part of the wheel tag
    policy: str  # what auditwheel show must report
    deb: str | None = None  # Debian architecture (glibc only)
    rpm: str | None = None  # RPM architecture (glibc only)


TARGETS = {
    t.triple: t
    for t in (
        Target("x86_64-linux-gnu.2.17", "x86_64", "glibc",
               "manylinux_2_17_x86_64.manylinux2014_x86_64", "manylinux_2_17_x86_64",
               "amd64", "x86_64"),
        Target("aarch64-linux-gnu.2.17", "aarch64", "glibc",
               "manylinux_2_17_aarch64.manylinux2014_aarch64", "manylinux_2_17_aarch64",
               "arm64", "aarch64"),
        Target("x86_64-linux-musl", "x86_64", "musl", "musllinux_1_2_x86_64",
               "musllinux_1_2_x86_64"),
        Target("aarch64-linux-musl", "aarch64", "musl", "musllinux_1_2_aarch64",
               "musllinux_1_2_aarch64"),
    )
}
PACKAGE_TARGETS = [t.triple for t in TARGETS.values() if t.deb]
HERE = os.path.dirname(os.path.abspath(__file__))


def cmake_toolchain(triple: str) -> dict[str, str]:
    """The CMake definitions (-D) that cross-compile for triple with zig."""
    return {"CMAKE_TOOLCHAIN_FILE": os.path.join(HERE, "toolchains", "zig.cmake"),
            "KEEPALIVE_ZIG_TARGET": triple}


def native(libc: str = "glibc") -> Target:
    """The target for this machine's architecture and the given libc."""
    machine = os.uname().machine
    for target in TARGETS.values():
        if target.machine == machine and target.libc == libc:
            return target
    raise SystemExit(f"no {libc} release target for {machine}")


def zig() -> str:
    """The zig executable, found the one way every build and test finds it:
    $ZIG, else the binary the ziglang package (packaging/requirements-release.txt)
    ships, else ``zig`` on PATH. Raises SystemExit saying how to get it."""
    if os.environ.get("ZIG"):
        return os.environ["ZIG"]
    # ziglang has no types, and the dev tools alone do not install it: found
    # by its spec, not imported, so that mypy needs neither.
    spec = importlib.util.find_spec("ziglang")
    if spec is not None and spec.origin is not None:
        return os.path.join(os.path.dirname(spec.origin), "zig")
    found = shutil.which("zig")
    if found is None:
        raise SystemExit("zig not found: pip install -r packaging/requirements-release.txt, "
                         "or set ZIG")
    return found


def zig_env() -> dict[str, str]:
    """os.environ with ZIG set (``zig()``), for zig.cmake."""
    return {**os.environ, "ZIG": zig()}


if __name__ == "__main__":  # `python3 packaging/targets.py zig`, for zig.cmake
    if sys.argv[1:] != ["zig"]:
        raise SystemExit("usage: targets.py zig")
    print(zig())
