#!/usr/bin/env python3
"""Build the .deb and .rpm packages of the preload libraries.

    python3 packaging/build_packages.py [--outdir dist] [--target TRIPLE ...]

For each glibc target of packaging/targets.py (default: all of them),
compiles the libraries with CMake and the target's zig toolchain (for glibc
2.17, so one package serves every distribution since), installs them
stripped into a staging directory, adds the man pages and the changelogs
compressed as the distributions want them (gzip -9n), and runs nfpm on
packaging/nfpm.yaml, which takes everything from the staging directory by
glob and reads the rest from the environment set here. nfpm and zig come
from packaging/requirements-release.txt (on PATH or next to this Python).
packaging/release.py calls build_packages().
"""

from __future__ import annotations

import argparse
import email.utils
import gzip
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from targets import PACKAGE_TARGETS, TARGETS, cmake_toolchain, zig_env

ROOT = Path(__file__).resolve().parent.parent
NFPM_YAML = ROOT / "packaging" / "nfpm.yaml"


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
                    *(f"-D{name}={value}" for name, value in cmake_toolchain(triple).items())],
                   check=True, env=env)
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


def maintainer() -> str:
    """The maintainer, as packaging/nfpm.yaml (the one place it is written) says."""
    found = re.search(r"^maintainer: (.+)$", NFPM_YAML.read_text(), re.MULTILINE)
    if found is None:
        fail(f"{NFPM_YAML} has no maintainer line")
    assert found is not None
    return found.group(1).strip()


def changelog(version: str, epoch: int) -> str:
    """The packages' changelog entry, in nfpm's chglog format: nfpm writes it
    as the RPM %changelog and as Debian's changelog.Debian.gz."""
    text = (ROOT / "CHANGELOG.md").read_text()
    if not re.search(rf"^## {re.escape(version)}\b", text, re.MULTILINE):
        fail(f"CHANGELOG.md has no '## {version}' entry: write one before packaging")
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    return (f"- semver: {version}-1\n"
            f"  date: {date}\n"
            f"  packager: {maintainer()}\n"
            f"  deb:\n    urgency: medium\n    distributions: [unstable]\n"
            f"  changes:\n"
            f"    - note: Release {version}; see changelog.gz for the upstream changes.\n")


def debian_news(version: str, epoch: int) -> bytes:
    """NEWS.Debian: packaging/NEWS.Debian (the text of the one entry) under
    this version's header, as apt-listchanges shows it."""
    body = (ROOT / "packaging" / "NEWS.Debian").read_text().rstrip("\n")
    date = email.utils.formatdate(epoch, usegmt=False)
    return (f"keepalive-preload ({version}-1) unstable; urgency=medium\n\n{body}\n\n"
            f" -- {maintainer()}  {date}\n").encode()


def stage_docs(stage: Path, version: str, epoch: int) -> None:
    """Everything but the libraries, where packaging/nfpm.yaml takes it."""
    # Section 1 (the command, from the wheel; the page says so) and section 7
    # (the libraries).
    for page in sorted((ROOT / "man").glob("keepalive-preload.[17]")):
        gzip_n(page.read_bytes(), stage / "man" / f"man{page.suffix[1:]}" / f"{page.name}.gz")
    gzip_n((ROOT / "CHANGELOG.md").read_bytes(), stage / "doc" / "changelog.gz")
    gzip_n(debian_news(version, epoch), stage / "doc" / "NEWS.Debian.gz")
    (stage / "examples").mkdir()
    shutil.copy(ROOT / "packaging" / "keepalive-preload.conf", stage / "examples")
    (stage / "scripts").mkdir()
    shutil.copy(ROOT / "packaging" / "postinst", stage / "scripts" / "postinst")
    shutil.copy(ROOT / "README.md", stage / "doc" / "README.md")
    shutil.copy(ROOT / "packaging" / "copyright", stage / "doc" / "copyright")
    (stage / "changelog.yml").write_text(changelog(version, epoch))
    (stage / "lintian").mkdir()
    shutil.copy(ROOT / "packaging" / "lintian-overrides", stage / "lintian" / "keepalive-preload")
    (stage / "license").mkdir()
    shutil.copy(ROOT / "LICENSE", stage / "license" / "LICENSE")


def package(triple: str, outdir: Path, work: Path) -> list[Path]:
    target = TARGETS[triple]
    stage = work / f"stage-{triple}"
    shutil.rmtree(stage, ignore_errors=True)
    version = build_libraries(work / f"cmake-{triple}", stage, triple)
    epoch = source_date_epoch()
    stage_docs(stage, version, epoch)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "PKG_VERSION": version,
           "PKG_STAGE": str(stage),
           "GLIBC_VERSION": glibc_requirement(sorted((stage / "lib").glob("*.so")))}
    built = []
    for packager, arch in (("deb", target.deb), ("rpm", target.rpm)):
        assert arch is not None
        before = set(outdir.glob(f"*.{packager}"))
        subprocess.run([tool("nfpm"), "package", "--config", str(NFPM_YAML), "--packager",
                        packager, "--target", str(outdir)], check=True,
                       env={**env, "PKG_ARCH": arch}, cwd=stage)
        built.extend(sorted(set(outdir.glob(f"*.{packager}")) - before))
    return built


def build_packages(outdir: Path, workdir: Path,
                   triples: list[str] | None = None) -> list[Path]:
    """Build the .deb and .rpm of each glibc target into outdir; return them."""
    outdir.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    built = []
    for triple in triples or PACKAGE_TARGETS:
        built.extend(package(triple, outdir.resolve(), workdir.resolve()))
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=ROOT / "dist")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "packages")
    parser.add_argument("--target", action="append", choices=PACKAGE_TARGETS,
                        help="a glibc zig target triple (repeatable; default: all)")
    args = parser.parse_args()
    for path in build_packages(args.outdir, args.workdir, args.target):
        print(path)


if __name__ == "__main__":
    main()
