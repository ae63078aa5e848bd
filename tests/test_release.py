"""The release artefacts for every platform: manylinux2014 and musllinux 1.2
wheels for x86_64 and aarch64, debs and rpms for both architectures, all
cross-built with zig from one x86_64 host (the `release` fixture builds them
as packaging/build-all does). Inspected, audited, and run: each library
under the loader it is built for, aarch64 under qemu."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import keepalive_preload
from support import (
    DEFAULTS,
    ROOT,
    TIMEOUT,
    Release,
    check_library,
    clean_env,
    need_tool,
    output,
    reports,
    rerun_socket_level_tests,
    serve_one,
    unavailable,
)

sys.path.insert(0, str(ROOT / "packaging"))
import targets
from targets import TARGETS, Target

VERSION = keepalive_preload.__version__
LIBS = {name: variant for variant, name in keepalive_preload.LIBRARIES.items()}
EM = {"x86_64": 62, "aarch64": 183}  # ELF e_machine
WHEELS = {t.triple: f"keepalive_preload-{VERSION}-py3-none-{t.wheel_tag}.whl"
          for t in TARGETS.values()}


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    return int.from_bytes(header[18:20], "little")


@pytest.fixture(scope="module")
def unpacked(release: Release, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each target's library directory, from its wheel."""
    dirs = {}
    for triple, name in WHEELS.items():
        out = tmp_path_factory.mktemp(triple)
        with zipfile.ZipFile(release.dist / name) as whl:
            whl.extractall(out)
        dirs[triple] = out / "keepalive_preload" / "lib"
    return dirs


def test_every_artefact(release: Release) -> None:
    names = sorted(p.name for p in release.dist.iterdir())
    assert names == sorted([
        f"keepalive_preload-{VERSION}.tar.gz", *WHEELS.values(),
        # The libraries per architecture; the command architecture-independent.
        f"libkeepalive-preload_{VERSION}-1_amd64.deb",
        f"libkeepalive-preload_{VERSION}-1_arm64.deb", f"keepalive-preload_{VERSION}-1_all.deb",
        f"libkeepalive-preload-{VERSION}-1.x86_64.rpm",
        f"libkeepalive-preload-{VERSION}-1.aarch64.rpm",
        f"keepalive-preload-{VERSION}-1.noarch.rpm",
    ])


@pytest.mark.parametrize("triple", TARGETS)
def test_auditwheel(release: Release, triple: str, tmp_path: Path) -> None:
    auditwheel = os.path.join(os.path.dirname(sys.executable), "auditwheel")
    report = " ".join(output(auditwheel, "show", "--ldpaths", str(tmp_path),
                             str(release.dist / WHEELS[triple])).split())
    assert f'consistent with the following platform tag: "{TARGETS[triple].policy}"' in report
    assert "external shared libraries are required" not in report  # nothing to graft


@pytest.mark.parametrize("triple", TARGETS)
def test_wheel_libraries(unpacked: dict[str, Path], triple: str) -> None:
    target: Target = TARGETS[triple]
    for lib, symbol in LIBS.items():
        path = unpacked[triple] / lib
        assert elf_machine(path) == EM[target.machine]
        check_library(path, symbol, target.libc, target.machine)
        symbols = output("objdump", "-T", str(path))
        if target.libc == "glibc":
            versions = {tuple(map(int, v.split("."))) for v in
                        re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", symbols)}
            assert max(versions) <= (2, 17), versions
        else:
            assert "GLIBC" not in symbols
            # no _FORTIFY_SOURCE helpers (__snprintf_chk and co. exist in glibc only)
            assert not re.search(r"\b__(?!stack_chk_)\w+_chk\b", symbols), symbols


@pytest.mark.parametrize("triple", [t for t in TARGETS if TARGETS[t].deb])
def test_packages_match_their_architecture(release: Release, triple: str,
                                           tmp_path: Path) -> None:
    target = TARGETS[triple]
    (deb,) = [d for d in release.debs if d.name.endswith(f"_{target.deb}.deb")]
    (rpm,) = [r for r in release.rpms if r.name.endswith(f".{target.rpm}.rpm")]
    assert output("dpkg-deb", "-f", str(deb), "Architecture").strip() == target.deb
    assert output("rpm", "-qp", "--qf", "%{ARCH}", str(rpm)) == target.rpm
    assert re.search(r"libc6 \(>= 2\.17\)", output("dpkg-deb", "-f", str(deb), "Depends"))
    assert re.search(r"^glibc >= 2\.17$", output("rpm", "-qpR", str(rpm)), re.MULTILINE)
    output("dpkg-deb", "-x", str(deb), str(tmp_path / "deb"))
    rpm_root = tmp_path / "rpm"
    rpm_root.mkdir()
    payload = subprocess.run(["rpm2cpio", str(rpm)], capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-idm", "--quiet"], input=payload, cwd=rpm_root, check=True)
    for root, libdir in ((tmp_path / "deb", "usr/lib"), (rpm_root, "usr/lib64")):
        for lib, symbol in LIBS.items():
            path = root / libdir / lib
            assert elf_machine(path) == EM[target.machine]
            check_library(path, symbol, target.libc, target.machine)


# ---- run under the loader each is built for ---------------------------------

@pytest.fixture(scope="module")
def aarch64_probe(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """tests/helpers/probe.c for aarch64 (glibc 2.17, by zig), run by
    qemu-aarch64 against Debian's aarch64 glibc (libc6-arm64-cross)."""
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if qemu is None:
        unavailable("qemu-user-static is not installed")
    sysroot = "/usr/aarch64-linux-gnu"
    if not os.path.exists(f"{sysroot}/lib/ld-linux-aarch64.so.1"):
        unavailable("libc6-arm64-cross (the aarch64 glibc) is not installed")
    try:
        zig = targets.zig()
    except SystemExit as exc:
        unavailable(str(exc))
    out = tmp_path_factory.mktemp("aarch64") / "probe"
    subprocess.run([zig, "cc", "-target", "aarch64-linux-gnu.2.17", "-O2", "-o", str(out),
                    str(ROOT / "tests" / "helpers" / "probe.c")], check=True, timeout=300)
    assert elf_machine(out) == EM["aarch64"]
    return [qemu, "-L", sysroot, str(out)]


@pytest.fixture(scope="module")
def musl_probe(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """tests/helpers/probe.c linked against musl (Debian's musl-tools)."""
    musl_gcc = need_tool("musl-gcc")
    out = tmp_path_factory.mktemp("musl") / "probe"
    subprocess.run([musl_gcc, "-O2", "-o", str(out), str(ROOT / "tests" / "helpers" / "probe.c")],
                   check=True, timeout=300)
    assert "ld-musl" in output("readelf", "-l", str(out))
    return [str(out)]


def check_runs(probe: list[str], libdir: Path, listener: int) -> None:
    for lib, variant in LIBS.items():
        env = clean_env(LD_PRELOAD=str(libdir / lib), TCP_KEEPIDLE="7")
        if variant == "listen":
            report, _, stderr = serve_one(probe, env)
        else:
            result = subprocess.run([*probe, "connect4", str(listener)], env=env,
                                    capture_output=True, text=True, timeout=TIMEOUT)
            stderr = result.stderr
            (report,) = reports(result.stdout)
        assert stderr == "", (lib, stderr)
        expected = {**DEFAULTS, "TCP_KEEPIDLE": 7, "TCP_USER_TIMEOUT": 142000}
        assert {key: report[key] for key in expected} == expected, lib


def test_manylinux_x86_64_runs(unpacked: dict[str, Path], probe: str, listener: int) -> None:
    check_runs([probe], unpacked["x86_64-linux-gnu.2.17"], listener)


def test_manylinux_aarch64_runs_under_qemu(unpacked: dict[str, Path], aarch64_probe: list[str],
                                           listener: int) -> None:
    check_runs(aarch64_probe, unpacked["aarch64-linux-gnu.2.17"], listener)


def test_musllinux_x86_64_runs_with_musl(unpacked: dict[str, Path], musl_probe: list[str],
                                         listener: int) -> None:
    check_runs(musl_probe, unpacked["x86_64-linux-musl"], listener)


def test_glibc_library_does_not_load_under_musl(unpacked: dict[str, Path],
                                                musl_probe: list[str], listener: int) -> None:
    """The control for the test above: a glibc build references glibc-only
    symbols (the _FORTIFY_SOURCE helpers), and musl's loader refuses it."""
    result = subprocess.run(
        [*musl_probe, "connect4", str(listener)], capture_output=True, text=True,
        timeout=TIMEOUT,
        env=clean_env(LD_PRELOAD=str(unpacked["x86_64-linux-gnu.2.17"] / "libkeepalive.so")))
    assert result.returncode != 0
    assert "symbol not found" in result.stderr


def test_old_glibc_build_passes_the_suite(unpacked: dict[str, Path]) -> None:
    """The manylinux2014 x86_64 libraries through the socket-level suite."""
    if os.environ.get("KEEPALIVE_TEST_LIBDIR"):
        pytest.skip("already a nested run")
    summary = rerun_socket_level_tests(str(unpacked["x86_64-linux-gnu.2.17"]))
    print(f"\nold-glibc build: {summary}")


def test_sdist_builds_with_the_system_compiler(release: Release) -> None:
    wheel = release.system_wheel  # packaging/release.py built it
    assert wheel.name == f"keepalive_preload-{VERSION}-py3-none-linux_{os.uname().machine}.whl"
    with zipfile.ZipFile(wheel) as whl:
        assert {Path(n).name for n in whl.namelist()} >= set(LIBS)
