"""The .deb and .rpm packages: built once per session, inspected, linted,
their libraries run through the behaviour suite, installed for real (root),
and the setuid opt-in exercised (root).

Everything installed or changed here is undone in a finalizer, even when a
test fails.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import keepalive_preload
from support import (
    ROOT,
    TIMEOUT,
    Release,
    check_library,
    clean_env,
    need_tool,
    output,
    privileged_copy,
    reports,
    rerun_socket_level_tests,
    run_as_nobody,
    serve_one,
    unavailable,
)

sys.path.insert(0, str(ROOT / "packaging"))
from targets import PACKAGE_TARGETS, TARGETS, native

NATIVE = native()
LIBS = keepalive_preload.LIBRARIES  # variant: file name
DOCS = {
    "/usr/share/man/man1/keepalive-preload.1.gz": 0o644,
    "/usr/share/man/man7/keepalive-preload.7.gz": 0o644,
    "/usr/share/doc/keepalive-preload/changelog.gz": 0o644,
    "/usr/share/doc/keepalive-preload/README.md": 0o644,
    "/usr/share/doc/keepalive-preload/examples/keepalive-preload.conf": 0o644,
}
# Where each family's loader looks for a bare name (ld.so(8)), and the
# family's mode for shared objects.
DEB_FILES = {f"/usr/lib/{lib}": 0o644 for lib in LIBS.values()} | DOCS | {
    "/usr/share/doc/keepalive-preload/copyright": 0o644,
    "/usr/share/doc/keepalive-preload/changelog.Debian.gz": 0o644,
    "/usr/share/doc/keepalive-preload/NEWS.Debian.gz": 0o644,
    "/usr/share/lintian/overrides/keepalive-preload": 0o644}
RPM_FILES = {f"/usr/lib64/{lib}": 0o755 for lib in LIBS.values()} | DOCS | {
    "/usr/share/licenses/keepalive-preload/LICENSE": 0o644}
VERSION = keepalive_preload.__version__


def built(release: Release, triple: str) -> dict[str, Path]:
    """The .deb and .rpm of a target, from the release build."""
    target = TARGETS[triple]
    (deb,) = [d for d in release.debs if d.name.endswith(f"_{target.deb}.deb")]
    (rpm,) = [r for r in release.rpms if r.name.endswith(f".{target.rpm}.rpm")]
    return {"deb": deb, "rpm": rpm}


@pytest.fixture(scope="session")
def packages(release: Release) -> dict[str, Path]:
    """This machine's .deb and .rpm."""
    return built(release, NATIVE.triple)


@pytest.fixture(scope="session")
def unpacked(packages: dict[str, Path],
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The root directory of each of this machine's packages, unpacked."""
    deb, rpm = tmp_path_factory.mktemp("deb"), tmp_path_factory.mktemp("rpm")
    output("dpkg-deb", "-x", str(packages["deb"]), str(deb))
    payload = subprocess.run([need_tool("rpm2cpio"), str(packages["rpm"])], capture_output=True,
                             check=True, timeout=TIMEOUT).stdout
    subprocess.run([need_tool("cpio"), "-idm", "--quiet"], input=payload, cwd=rpm, check=True,
                   timeout=TIMEOUT)
    return {"deb": deb, "rpm": rpm}


# ---- inspection -----------------------------------------------------------

def test_package_file_names(packages: dict[str, Path]) -> None:
    assert packages["deb"].name == f"keepalive-preload_{VERSION}-1_{NATIVE.deb}.deb"
    assert packages["rpm"].name == f"keepalive-preload-{VERSION}-1.{NATIVE.rpm}.rpm"


def test_deb_contents_and_modes(packages: dict[str, Path]) -> None:
    listing = output("dpkg-deb", "-c", str(packages["deb"]))
    files = {}
    for line in listing.splitlines():
        perms, owner, *_, name = line.split()
        if perms.startswith("-"):
            files[name.lstrip(".")] = (perms, owner)
    assert set(files) == set(DEB_FILES)
    for name, (perms, owner) in files.items():
        # nfpm writes its changelog.Debian.gz with numeric ids: root all the same
        assert (perms, owner) in (("-rw-r--r--", "root/root"), ("-rw-r--r--", "0/0")), name


def test_deb_metadata(packages: dict[str, Path]) -> None:
    info = output("dpkg-deb", "-f", str(packages["deb"]))
    fields = dict(re.findall(r"^([\w-]+): (.*)$", info, re.MULTILINE))
    assert fields["Package"] == "keepalive-preload"
    assert fields["Version"] == f"{VERSION}-1"
    assert fields["Architecture"] == NATIVE.deb
    assert fields["Section"] == "net"
    assert fields["Priority"] == "optional"
    assert fields["Conflicts"] == "libkeepalive0"
    assert fields["Replaces"] == "libkeepalive0"
    assert re.fullmatch(r"libc6 \(>= 2\.\d+\)", fields["Depends"])
    assert re.fullmatch(r".+ <.+@.+>", fields["Maintainer"])
    assert fields["Homepage"].startswith("https://")
    assert "TCP keepalive" in fields["Description"]


def test_rpm_metadata_and_contents(packages: dict[str, Path]) -> None:
    rpm = str(packages["rpm"])
    fields = dict(re.findall(r"^(\w[\w ]*?)\s*: (.*)$",
                             output("rpm", "-qip", rpm), re.MULTILINE))
    assert fields["Name"] == "keepalive-preload"
    assert fields["Version"] == VERSION
    assert fields["Architecture"] == NATIVE.rpm
    assert fields["License"] == "MIT"
    assert fields["URL"].startswith("https://")
    files = {}
    for line in output("rpm", "-qplv", rpm).splitlines():
        perms, _, owner, group, *_, name = line.split()
        files[name] = (perms, owner, group)
    assert set(files) == set(RPM_FILES)
    for name, (perms, owner, group) in files.items():
        assert (owner, group) == ("root", "root"), name
        assert perms == ("-rwxr-xr-x" if RPM_FILES[name] == 0o755 else "-rw-r--r--"), name
    # The man page, README and changelog are documentation; the license is one.
    assert set(output("rpm", "-qpd", rpm).split()) == set(DOCS)
    assert output("rpm", "-qpL", rpm).split() == \
        ["/usr/share/licenses/keepalive-preload/LICENSE"]
    assert f"- {VERSION}-1\n" in output("rpm", "-qp", "--changelog", rpm)
    assert output("rpm", "-qp", "--conflicts", rpm).split() == ["libkeepalive0"]
    assert re.search(r"^glibc >= 2\.\d+$", output("rpm", "-qpR", rpm), re.MULTILINE)
    assert "digests OK" in output("rpm", "-K", "--nosignature", rpm)


@pytest.mark.parametrize(("kind", "libdir"), [("deb", "usr/lib"), ("rpm", "usr/lib64")])
def test_packaged_libraries(unpacked: dict[str, Path], kind: str, libdir: str) -> None:
    """Stripped, exporting one symbol, needing libc alone; the same files in both."""
    for variant, lib in LIBS.items():
        path = unpacked[kind] / libdir / lib
        assert ".symtab" not in output("readelf", "-SW", str(path))
        check_library(path, variant)
        assert path.read_bytes() == (unpacked["deb"] / "usr" / "lib" / lib).read_bytes()


def test_deb_libraries_pass_the_suite(unpacked: dict[str, Path]) -> None:
    """The .deb's libraries (the .rpm's are the same files) through every
    socket-level test, as the manylinux ones are in test_release.py."""
    if os.environ.get("KEEPALIVE_TEST_LIBDIR"):
        pytest.skip("already a nested run")
    summary = rerun_socket_level_tests(str(unpacked["deb"] / "usr" / "lib"))
    print(f"\n.deb libraries: {summary}")


def test_man_page_and_changelogs(unpacked: dict[str, Path]) -> None:
    root = unpacked["deb"]
    doc = root / "usr" / "share" / "doc" / "keepalive-preload"
    man = root / "usr" / "share" / "man" / "man7" / "keepalive-preload.7.gz"
    man1 = root / "usr" / "share" / "man" / "man1" / "keepalive-preload.1.gz"
    assert gzip.decompress(man1.read_bytes()) == (ROOT / "man" / "keepalive-preload.1").read_bytes()
    for gz in (man, man1, doc / "changelog.gz", doc / "changelog.Debian.gz",
               doc / "NEWS.Debian.gz"):
        raw = gz.read_bytes()
        assert raw[4:8] == b"\0\0\0\0"  # gzip -n: no timestamp
        gzip.decompress(raw)
    page = gzip.decompress(man.read_bytes()).decode()
    for variable in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT",
                     "TCP_SYNCNT", "TCP_DEFER_ACCEPT", "TCP_MAXSEG", "TCP_WINDOW_CLAMP",
                     "LIBKEEPALIVE_DEBUG", "KEEPALIVE", "ld.so.preload", "dpkg-statoverride"):
        assert variable in page
    debian = gzip.decompress((doc / "changelog.Debian.gz").read_bytes()).decode()
    assert debian.startswith(f"keepalive-preload ({VERSION}-1) ")


@pytest.mark.parametrize("triple", PACKAGE_TARGETS)
def test_lintian_clean(release: Release, triple: str) -> None:
    report = output("lintian", "--fail-on", "none", str(built(release, triple)["deb"]))
    problems = [line for line in report.splitlines() if re.match(r"[EW]: ", line)]
    assert problems == []


@pytest.mark.parametrize("triple", PACKAGE_TARGETS)
def test_rpmlint_clean(release: Release, triple: str) -> None:
    """No error and no warning; the few filters are in packaging/rpmlint.toml,
    each with its reason."""
    report = output("rpmlint", "-c", str(ROOT / "packaging" / "rpmlint.toml"),
                    str(built(release, triple)["rpm"]))
    assert re.search(r"\b0 errors, 0 warnings\b", report), report


# ---- a real install (root) ------------------------------------------------

def require_root_with_apt() -> None:
    if os.geteuid() != 0:
        unavailable("installing packages needs root")
    need_tool("apt-get")
    need_tool("dpkg")


def installed(name: str) -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True,
                            text=True)
    return result.returncode == 0 and "ok installed" in result.stdout


@contextlib.contextmanager
def apt_installed(deb: Path) -> Iterator[None]:
    """deb installed with apt-get; purged afterwards, whatever happens (a
    failed purge fails the test)."""
    require_root_with_apt()
    if installed("keepalive-preload") or installed("libkeepalive0"):
        unavailable("keepalive-preload or libkeepalive0 is already installed here; "
                    "not touching it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", str(deb)], check=True,
                       env=env, capture_output=True, timeout=600)
        yield
    finally:
        subprocess.run(["apt-get", "purge", "-y", "-q", "keepalive-preload"], check=True,
                       env=env, capture_output=True, timeout=600)


@pytest.fixture(scope="class")
def installed_deb(packages: dict[str, Path]) -> Iterator[None]:
    with apt_installed(packages["deb"]):
        yield


@pytest.mark.usefixtures("installed_deb")
class TestInstalledDeb:
    """With the .deb installed by apt-get (once for the class, purged after)."""

    def test_installed_files(self) -> None:
        for name, mode in DEB_FILES.items():
            assert os.stat(name).st_mode & 0o7777 == mode, name

    @pytest.mark.parametrize("lib", ["libkeepalive.so", "libkeepalive_socket.so"])
    def test_bare_name_client(self, probe: str, listener: int, lib: str) -> None:
        result = subprocess.run([probe, "connect4", str(listener)], capture_output=True, text=True,
                                timeout=TIMEOUT, env=clean_env(LD_PRELOAD=lib, TCP_KEEPIDLE="7"))
        assert result.stderr == ""  # the loader found it by bare name
        (report,) = reports(result.stdout)
        assert (report["SO_KEEPALIVE"], report["TCP_KEEPIDLE"]) == (1, 7)

    def test_bare_name_listen(self, probe: str) -> None:
        env = clean_env(LD_PRELOAD="libkeepalive_listen.so", TCP_KEEPIDLE="7")
        accepted, _, stderr = serve_one(probe, env)
        assert stderr == ""
        assert (accepted["SO_KEEPALIVE"], accepted["TCP_KEEPIDLE"]) == (1, 7)

    def test_man_page_installed(self) -> None:
        # As a user of the package sees it: no venv on PATH (man-db would look
        # beside it first and find the test venv's pages), no MANPATH.
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C", "MANPAGER": "cat",
               "MANWIDTH": "80"}

        def man(*args: str) -> str:
            shown = subprocess.run([need_tool("man"), *args], capture_output=True, text=True,
                                   timeout=TIMEOUT, env=env)
            assert shown.returncode == 0, shown.stderr
            return shown.stdout

        assert man("-w", "7", "keepalive-preload").strip() == \
            "/usr/share/man/man7/keepalive-preload.7.gz"
        # Section 1 first: `man keepalive-preload` is the command's page.
        assert man("-w", "keepalive-preload").strip() == \
            "/usr/share/man/man1/keepalive-preload.1.gz"
        assert "keepalive-preload presets" in man("1", "keepalive-preload")

    def test_setuid_opt_in_with_statoverride(self, probe: str, listener: int) -> None:
        with privileged_copy(probe, "setuid") as setuid_probe:
            self.check_setuid_opt_in(setuid_probe, listener)

    def check_setuid_opt_in(self, setuid_probe: str, listener: int) -> None:
        statoverride = need_tool("dpkg-statoverride")
        library = "/usr/lib/libkeepalive.so"
        args = [setuid_probe, "connect4", str(listener)]
        env = {"LD_PRELOAD": "libkeepalive.so", "TCP_KEEPIDLE": "7", "TCP_KEEPCNT": "bad",
               "LIBKEEPALIVE_DEBUG": "1"}

        def as_nobody(**env: str) -> tuple[dict[str, Any], str]:
            result = run_as_nobody(args, **env)
            (report,) = reports(result.stdout)
            return report, result.stderr

        # 0644, as packaged: glibc does not load it into a set-user-ID program.
        report, _ = as_nobody(**env)
        assert report["ret"] == 0
        assert report["SO_KEEPALIVE"] == 0

        try:
            subprocess.run([statoverride, "--update", "--add", "root", "root", "4755", library],
                           check=True, capture_output=True, timeout=TIMEOUT)
            assert os.stat(library).st_mode & 0o7777 == 0o4755
            report, stderr = as_nobody(**env)
            # Loaded now, in secure-execution mode: the environment is ignored,
            # the defaults apply, nothing is printed (not even the bad TCP_KEEPCNT).
            assert report["SO_KEEPALIVE"] == 1
            assert report["TCP_KEEPIDLE"] == 15
            assert report["TCP_KEEPCNT"] == 9
            assert report["TCP_USER_TIMEOUT"] == 150000
            assert stderr == ""
            # A path with a slash is never preloaded into it, setuid bit or not.
            report, _ = as_nobody(LD_PRELOAD=library)
            assert report["SO_KEEPALIVE"] == 0
        finally:
            subprocess.run([statoverride, "--remove", library], capture_output=True,
                           timeout=TIMEOUT)
            os.chmod(library, 0o644)


def test_purge_leaves_nothing(packages: dict[str, Path]) -> None:
    with apt_installed(packages["deb"]):
        assert installed("keepalive-preload")
    assert not installed("keepalive-preload")
    leftovers = [name for name in DEB_FILES if os.path.lexists(name)]
    assert leftovers == []
    assert not os.path.exists("/usr/share/doc/keepalive-preload")


# ---- the rpm, into a scratch root -----------------------------------------

def test_rpm_installs_into_scratch_root(packages: dict[str, Path], tmp_path: Path) -> None:
    rpm = need_tool("rpm")
    root = str(tmp_path / "root")
    # --nodeps: the scratch root has no glibc package to satisfy the dependency.
    output(rpm, "--root", root, "--initdb")
    output(rpm, "--root", root, "-i", "--nodeps", str(packages["rpm"]))
    for name, mode in RPM_FILES.items():
        assert os.stat(root + name).st_mode & 0o7777 == mode, name
    assert output(rpm, "--root", root, "-q", "keepalive-preload").strip() == \
        f"keepalive-preload-{VERSION}-1.{NATIVE.rpm}"
    output(rpm, "--root", root, "-e", "--nodeps", "keepalive-preload")
    assert [n for n in RPM_FILES if os.path.lexists(root + n)] == []


def test_cmake_install_modes(tmp_path: Path) -> None:
    cmake = need_tool("cmake")
    # The default library directory (Debian's lib) with the default mode; an
    # RPM distribution's lib64 with the set-user-ID opt-in.
    for setuid, mode, libdir in (("OFF", 0o644, "lib"), ("ON", 0o4755, "lib64")):
        build = tmp_path / f"build-{setuid}"
        dest = tmp_path / f"dest-{setuid}"
        output(cmake, "-S", str(ROOT), "-B", str(build), f"-DKEEPALIVE_INSTALL_SETUID={setuid}",
               *([f"-DKEEPALIVE_LIBDIR={libdir}"] if libdir != "lib" else []))
        output(cmake, "--build", str(build))
        subprocess.run([cmake, "--install", str(build), "--prefix", "/usr"], check=True,
                       capture_output=True, env={**os.environ, "DESTDIR": str(dest)})
        assert sorted(os.listdir(dest / "usr")) == sorted([libdir, "share"])
        for lib in LIBS.values():
            assert os.stat(dest / "usr" / libdir / lib).st_mode & 0o7777 == mode, (setuid, lib)
        for section in (1, 7):
            page = f"keepalive-preload.{section}"
            assert (dest / "usr" / "share" / "man" / f"man{section}" / page).read_bytes() == \
                (ROOT / "man" / page).read_bytes()
