#!/usr/bin/env python3
"""Build the binary wheels from the sdist, one per target, and check them.

    python3 packaging/build_wheels.py --sdist dist/keepalive_preload-X.tar.gz \\
        [--outdir dist] [--target TRIPLE ...]

Each wheel is built by scikit-build-core from the sdist (or a source tree)
with zig for the target and tagged py3-none-<platform>; then `auditwheel
show` must report the policy the tag claims. packaging/release.py calls
build_wheel().
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from targets import TARGETS, cmake_toolchain, zig_env

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(sdist: Path, triple: str, outdir: Path, workdir: Path) -> Path:
    """Build the wheel for triple from sdist (or a source tree) into outdir."""
    target = TARGETS[triple]
    outdir.mkdir(parents=True, exist_ok=True)
    defines = [f"cmake.define.{name}={value}" for name, value in cmake_toolchain(triple).items()]
    # Built into a directory of its own, then moved: the wheel is the one file
    # there, also when outdir already holds one of the same name (a rebuild).
    fresh = workdir / f"wheel-out-{triple}"
    shutil.rmtree(fresh, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(fresh),
         *(arg for define in defines for arg in ("-C", define)),
         "-C", f"wheel.tags=py3-none-{target.wheel_tag}",
         "-C", f"build-dir={workdir / ('wheel-' + triple)}", str(sdist)],
        check=True, env=zig_env())
    (built,) = fresh.glob("*.whl")
    wheel = outdir / built.name
    shutil.move(str(built), wheel)  # over an older build of the same name
    check_policy(wheel, target.policy)
    return wheel


def check_policy(wheel: Path, policy: str) -> None:
    """auditwheel show must report `policy`. An empty library path: the
    libraries need nothing beyond the policy's own list, and the host's
    libraries (glibc, here) must not stand in for a musl wheel's."""
    auditwheel = os.path.join(os.path.dirname(sys.executable), "auditwheel")
    with tempfile.TemporaryDirectory() as nothing:
        report = subprocess.run([auditwheel, "show", "--ldpaths", nothing, str(wheel)],
                                capture_output=True, text=True, check=True).stdout
    if f'"{policy}"' not in " ".join(report.split()):
        raise SystemExit(f"build_wheels: {wheel.name} is not {policy}:\n{report}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, required=True)
    parser.add_argument("--outdir", type=Path, default=ROOT / "dist")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "wheels")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS),
                        help="a zig target triple (repeatable; default: all)")
    args = parser.parse_args()
    for triple in args.target or list(TARGETS):
        print(build_wheel(args.sdist.resolve(), triple, args.outdir.resolve(),
                          args.workdir.resolve()))


if __name__ == "__main__":
    main()
