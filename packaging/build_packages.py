"""Build the .deb and .rpm packages: per format, the libraries
(libkeepalive-preload) and the command (keepalive-preload).

    python3 packaging/build_packages.py [--outdir dist] [--target TRIPLE ...] [--wheel WHEEL ...]

For each glibc target of packaging/targets.py (default: all of them), takes
the target's wheel - the one packaging/release.py built (--wheel), else one
built here from the source tree with build_wheels.py - and stages what the
packages carry: the wheel's libraries (one compile per target: the packages
ship the very files the wheel does), its Python package with a generated
_paths.py naming the system libraries, a /usr/bin/keepalive-preload
launcher, the systemd units (packaging/systemd/), the man pages and the
changelogs compressed as the distributions want them (gzip -9n). Then nfpm
builds packaging/nfpm/libkeepalive-preload.yaml and keepalive-preload.yaml,
which take everything from the staging directory and read the rest from the
environment set here. The command's packages are architecture-independent
(all, noarch: built once); the libraries' are per architecture. nfpm and zig come from
packaging/requirements-release.txt (on PATH or next to this Python).
packaging/release.py calls build_packages().
"""

from __future__ import annotations

import argparse
import configparser
import email.utils
import gzip
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from build_wheels import build_wheel
from targets import PACKAGE_TARGETS, TARGETS

ROOT = Path(__file__).resolve().parent.parent
NFPM = ROOT / "packaging" / "nfpm"
LIBS_YAML = NFPM / "libkeepalive-preload.yaml"
COMMAND_YAML = NFPM / "keepalive-preload.yaml"
#: Where each format installs the libraries and the command's Python package.
LIBDIR = {"deb": "/usr/lib", "rpm": "/usr/lib64"}
PYDIR = {"deb": "/usr/lib/python3/dist-packages", "rpm": "/usr/share/keepalive-preload/python"}
REINSTALL = {"deb": "apt-get install --reinstall libkeepalive-preload",
             "rpm": "dnf reinstall libkeepalive-preload (zypper install -f on openSUSE)"}


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


class Wheel:
    """A wheel, unpacked: its version, libraries, Python package and command."""

    def __init__(self, wheel: Path, into: Path) -> None:
        shutil.rmtree(into, ignore_errors=True)
        with zipfile.ZipFile(wheel) as whl:
            whl.extractall(into)
        self.root = into
        self.package = into / "keepalive_preload"
        self.version = wheel.name.split("-")[1]
        self.libraries = sorted((self.package / "lib").glob("*.so"))
        if not self.libraries:
            fail(f"{wheel.name} has no libraries in keepalive_preload/lib")
        (info,) = into.glob("*.dist-info")
        points = configparser.ConfigParser()
        points.read(info / "entry_points.txt")
        module, _, function = points["console_scripts"]["keepalive-preload"].partition(":")
        self.entry = (module.strip(), function.strip())


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
    """The maintainer, as the nfpm configuration (the one place it is written) says."""
    found = re.search(r"^maintainer: (.+)$", LIBS_YAML.read_text(), re.MULTILINE)
    if found is None:
        fail(f"{LIBS_YAML} has no maintainer line")
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
            f"    - note: New upstream release; see changelog.gz.\n")


def debian_news(version: str, epoch: int) -> bytes:
    """NEWS.Debian of libkeepalive-preload: packaging/NEWS.Debian (the text
    of the one entry) under this version's header, as apt-listchanges shows it."""
    body = (ROOT / "packaging" / "NEWS.Debian").read_text().rstrip("\n")
    date = email.utils.formatdate(epoch, usegmt=False)
    return (f"libkeepalive-preload ({version}-1) unstable; urgency=medium\n\n{body}\n\n"
            f" -- {maintainer()}  {date}\n").encode()


def copy(source: Path, target: Path, mode: int = 0o644) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(mode)


def stage_common(stage: Path, version: str, epoch: int) -> None:
    """What both packages of a format take, whatever the architecture: the
    man pages (section 7 in the libraries' package, 1 in the command's),
    changelogs, copyright, the example configuration file, the maintainer
    scripts, lintian overrides and the systemd units."""
    for page in sorted((ROOT / "man").glob("keepalive-preload.[17]")):
        gzip_n(page.read_bytes(), stage / "man" / f"man{page.suffix[1:]}" / f"{page.name}.gz")
    upstream = (ROOT / "CHANGELOG.md").read_bytes()
    for doc in ("doc-libs", "doc-command"):
        gzip_n(upstream, stage / doc / "changelog.gz")
        copy(ROOT / "packaging" / "copyright", stage / doc / "copyright")
    gzip_n(debian_news(version, epoch), stage / "doc-libs" / "NEWS.Debian.gz")
    copy(ROOT / "README.md", stage / "doc-command" / "README.md")
    example = "keepalive-preload.conf"
    copy(ROOT / "packaging" / example, stage / "examples" / example)
    for script in sorted((ROOT / "packaging" / "scripts").iterdir()):
        copy(script, stage / "scripts" / script.name, 0o755)
    for name in ("libkeepalive-preload", "keepalive-preload"):
        copy(ROOT / "packaging" / f"lintian-{name}", stage / "lintian" / name)
    for unit in sorted((ROOT / "packaging" / "systemd").iterdir()):
        copy(unit, stage / "systemd" / unit.name)
    copy(ROOT / "LICENSE", stage / "license" / "LICENSE")
    (stage / "changelog.yml").write_text(changelog(version, epoch))


def stage_command(wheel: Wheel, stage: Path, packager: str, epoch: int) -> None:
    """The command for one format: the wheel's Python package without its
    libraries, with _paths.py naming the system ones, and the launcher."""
    python = stage / "python"
    shutil.rmtree(python, ignore_errors=True)
    shutil.copytree(wheel.package, python / "keepalive_preload",
                    ignore=shutil.ignore_patterns("lib", "*.in", "__pycache__", "*.pyc"))
    (python / "keepalive_preload" / "_paths.py").write_text(
        '"""Where the system packages put the libraries: written by\n'
        'packaging/build_packages.py into the packaged copy only (a wheel has its\n'
        'libraries in keepalive_preload/lib and no _paths.py)."""\n\n'
        f"LIB_DIR = {LIBDIR[packager]!r}\n"
        f"REINSTALL = {REINSTALL[packager]!r}\n")
    module, function = wheel.entry
    path = ""
    if PYDIR[packager] != "/usr/lib/python3/dist-packages":
        path = (f"# The package lives in a private directory (see packaging/nfpm/):\n"
                f"sys.path.insert(0, {PYDIR[packager]!r})\n")
    launcher = stage / "bin" / "keepalive-preload"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    # -I: no PYTHON* variables, no user site-packages, no script directory on
    # sys.path: the command root runs is the package's, whatever the caller's
    # environment.
    launcher.write_text(
        "#!/usr/bin/python3 -I\n"
        '"""keepalive-preload, the command of the keepalive-preload package."""\n\n'
        f"import sys\n\n{path}from {module} import {function}\n\n"
        f"sys.exit({function}())\n")
    launcher.chmod(0o755)
    # nfpm takes a tree's modes and times from the files: make them reproducible.
    for entry in (*(python / "keepalive_preload").rglob("*"), launcher):
        entry.chmod(0o755 if entry.is_dir() or entry == launcher else 0o644)
        os.utime(entry, (epoch, epoch))


def nfpm(config: Path, packager: str, outdir: Path, stage: Path, env: dict[str, str]) -> Path:
    before = set(outdir.glob(f"*.{packager}"))
    subprocess.run([tool("nfpm"), "package", "--config", str(config), "--packager", packager,
                    "--target", str(outdir)], check=True, env=env, cwd=stage)
    (built,) = set(outdir.glob(f"*.{packager}")) - before
    return built


def package(triple: str, wheel_file: Path, outdir: Path, work: Path,
            command: bool) -> list[Path]:
    """The libraries' packages of one target and, if command, the command's
    (architecture-independent) packages."""
    target = TARGETS[triple]
    stage = work / f"stage-{triple}"
    shutil.rmtree(stage, ignore_errors=True)
    wheel = Wheel(wheel_file, work / f"wheel-{triple}")
    epoch = source_date_epoch()
    stage_common(stage, wheel.version, epoch)
    for library in wheel.libraries:
        copy(library, stage / "lib" / library.name)
    if ".symtab" in subprocess.run([os.environ.get("READELF") or tool("readelf"), "-SW",
                                    str(wheel.libraries[0])], capture_output=True, text=True,
                                   check=True).stdout:
        fail(f"{wheel_file.name}: the libraries are not stripped")
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "PKG_VERSION": wheel.version,
           "PKG_STAGE": str(stage),
           "GLIBC_VERSION": glibc_requirement(sorted((stage / "lib").glob("*.so")))}
    built = []
    for packager, arch in (("deb", target.deb), ("rpm", target.rpm)):
        assert arch is not None
        built.append(nfpm(LIBS_YAML, packager, outdir, stage, {**env, "PKG_ARCH": arch}))
        if command:
            # Architecture-independent in both formats: built once.
            stage_command(wheel, stage, packager, epoch)
            built.append(nfpm(COMMAND_YAML, packager, outdir, stage,
                              {**env, "PKG_ARCH": "all" if packager == "deb" else "noarch",
                               "PKG_PYDIR": PYDIR[packager]}))
    return built


def build_packages(outdir: Path, workdir: Path, triples: list[str] | None = None,
                   wheels: dict[str, Path] | None = None) -> list[Path]:
    """Build the packages of each glibc target into outdir from its wheel
    (wheels: triple -> wheel; a missing one is built from the source tree);
    return them."""
    outdir.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    outdir, workdir = outdir.resolve(), workdir.resolve()
    built = []
    for n, triple in enumerate(triples or PACKAGE_TARGETS):
        wheel = (wheels or {}).get(triple)
        if wheel is None:
            wheel = build_wheel(ROOT, triple, workdir / "wheels", workdir)
        built.extend(package(triple, wheel.resolve(), outdir, workdir, command=n == 0))
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=ROOT / "dist")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "packages")
    parser.add_argument("--target", action="append", choices=PACKAGE_TARGETS,
                        help="a glibc zig target triple (repeatable; default: all)")
    parser.add_argument("--wheel", action="append", type=Path, default=[],
                        help="a target's wheel, built already (repeatable; default: build it)")
    args = parser.parse_args()
    wheels = {}
    for wheel in args.wheel:
        found = [t.triple for t in TARGETS.values()
                 if wheel.name.endswith(f"-py3-none-{t.wheel_tag}.whl")]
        if not found:
            fail(f"{wheel.name}: not the wheel of a release target")
        wheels[found[0]] = wheel
    for path in build_packages(args.outdir, args.workdir, args.target, wheels):
        print(path)


if __name__ == "__main__":
    main()
