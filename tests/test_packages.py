"""The .deb and .rpm packages: built once per session, inspected, linted,
installed for real (root), and the setuid opt-in exercised (root).

Everything installed or changed here is undone in a finalizer, even when a
test fails.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import keepalive_preload
from support import (
    TIMEOUT,
    Release,
    clean_env,
    need_tool,
    output,
    privileged_copy,
    reports,
    run_as_nobody,
    serve_one,
    unavailable,
)

ROOT = Path(__file__).resolve().parent.parent
ARCH = {"x86_64": ("amd64", "x86_64"), "aarch64": ("arm64", "aarch64")}[os.uname().machine]
LIBS = tuple(keepalive_preload.LIBRARIES.values())
FILES = {f"/usr/lib/{lib}": 0o644 for lib in LIBS} | {
    "/usr/share/man/man1/keepalive-preload.1.gz": 0o644,
    "/usr/share/man/man7/keepalive-preload.7.gz": 0o644,
    "/usr/share/doc/keepalive-preload/changelog.gz": 0o644,
    "/usr/share/doc/keepalive-preload/README.md": 0o644,
    "/usr/share/doc/keepalive-preload/examples/keepalive-preload.conf": 0o644,
}
DEB_ONLY = {"/usr/share/doc/keepalive-preload/copyright": 0o644,
            "/usr/share/doc/keepalive-preload/changelog.Debian.gz": 0o644,
            "/usr/share/doc/keepalive-preload/NEWS.Debian.gz": 0o644,
            "/usr/share/lintian/overrides/keepalive-preload": 0o644}
RPM_ONLY = {"/usr/share/licenses/keepalive-preload/LICENSE": 0o644}
VERSION = keepalive_preload.__version__


@pytest.fixture(scope="session")
def packages(release: Release) -> dict[str, Path]:
    """This machine's .deb and .rpm, from the release build."""
    (deb,) = [d for d in release.debs if d.name.endswith(f"_{ARCH[0]}.deb")]
    (rpm,) = [r for r in release.rpms if r.name.endswith(f".{ARCH[1]}.rpm")]
    return {"deb": deb, "rpm": rpm}


# ---- inspection -----------------------------------------------------------

def test_package_file_names(packages: dict[str, Path]) -> None:
    assert packages["deb"].name == f"keepalive-preload_{VERSION}-1_{ARCH[0]}.deb"
    assert packages["rpm"].name == f"keepalive-preload-{VERSION}-1.{ARCH[1]}.rpm"


def test_deb_contents_and_modes(packages: dict[str, Path]) -> None:
    listing = output("dpkg-deb", "-c", str(packages["deb"]))
    files = {}
    for line in listing.splitlines():
        perms, owner, *_, name = line.split()
        if perms.startswith("-"):
            files[name.lstrip(".")] = (perms, owner)
    expected = FILES | DEB_ONLY
    assert set(files) == set(expected)
    for name, (perms, owner) in files.items():
        assert (perms, owner) == ("-rw-r--r--", "root/root"), name


def test_deb_metadata(packages: dict[str, Path]) -> None:
    info = output("dpkg-deb", "-f", str(packages["deb"]))
    fields = dict(re.findall(r"^([\w-]+): (.*)$", info, re.MULTILINE))
    assert fields["Package"] == "keepalive-preload"
    assert fields["Version"] == f"{VERSION}-1"
    assert fields["Architecture"] == ARCH[0]
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
    assert fields["Architecture"] == ARCH[1]
    assert fields["License"] == "MIT"
    assert fields["URL"].startswith("https://")
    files = {}
    for line in output("rpm", "-qplv", rpm).splitlines():
        perms, _, owner, group, *_, name = line.split()
        files[name] = (perms, owner, group)
    assert set(files) == set(FILES | RPM_ONLY)
    assert all(v == ("-rw-r--r--", "root", "root") for v in files.values()), files
    assert output("rpm", "-qp", "--conflicts", rpm).split() == ["libkeepalive0"]
    assert re.search(r"^glibc >= 2\.\d+$", output("rpm", "-qpR", rpm), re.MULTILINE)
    assert "digests OK" in output("rpm", "-K", "--nosignature", rpm)


def test_packaged_libraries_are_stripped_and_export_the_interposed_symbols(
        packages: dict[str, Path], tmp_path: Path) -> None:
    output("dpkg-deb", "-x", str(packages["deb"]), str(tmp_path))
    for lib, symbol in zip(LIBS, ("connect", "listen", "socket")):
        path = str(tmp_path / "usr" / "lib" / lib)
        assert ".symtab" not in output("readelf", "-SW", path)
        names = output("nm", "-D", "--defined-only", path).split()[2::3]
        assert sorted(names) == sorted([symbol, "setsockopt"])
        with open(path, "rb") as f:
            assert f"keepalive-preload {VERSION}\0".encode() in f.read()


def test_man_page_and_changelogs(packages: dict[str, Path], tmp_path: Path) -> None:
    output("dpkg-deb", "-x", str(packages["deb"]), str(tmp_path))
    doc = tmp_path / "usr" / "share" / "doc" / "keepalive-preload"
    man = tmp_path / "usr" / "share" / "man" / "man7" / "keepalive-preload.7.gz"
    man1 = tmp_path / "usr" / "share" / "man" / "man1" / "keepalive-preload.1.gz"
    assert gzip.decompress(man1.read_bytes()) == (ROOT / "man" / "keepalive-preload.1").read_bytes()
    for gz in (man, man1, doc / "changelog.gz", doc / "changelog.Debian.gz"):
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


def test_lintian_clean(packages: dict[str, Path]) -> None:
    report = output("lintian", "--fail-on", "none", str(packages["deb"]))
    problems = [line for line in report.splitlines() if re.match(r"[EW]: ", line)]
    assert problems == []


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


@pytest.fixture(scope="class")
def installed_deb(packages: dict[str, Path]) -> Iterator[Path]:
    """The .deb installed with apt-get; purged afterwards, whatever happens."""
    require_root_with_apt()
    if installed("keepalive-preload") or installed("libkeepalive0"):
        unavailable("keepalive-preload or libkeepalive0 is already installed here; "
                    "not touching it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", str(packages["deb"])], check=True,
                       env=env, capture_output=True, timeout=600)
        yield packages["deb"]
    finally:
        subprocess.run(["apt-get", "purge", "-y", "-q", "keepalive-preload"], env=env,
                       capture_output=True, timeout=600)


@pytest.mark.usefixtures("installed_deb")
class TestInstalledDeb:
    """With the .deb installed by apt-get (once for the class, purged after)."""

    def test_installed_files(self) -> None:
        for name, mode in (FILES | DEB_ONLY).items():
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
        if shutil.which("man") is None:
            unavailable("man is not installed")
        assert output("man", "-w", "7", "keepalive-preload").strip() == \
            "/usr/share/man/man7/keepalive-preload.7.gz"
        # Section 1 first: `man keepalive-preload` is the command's page.
        assert output("man", "-w", "keepalive-preload").strip() == \
            "/usr/share/man/man1/keepalive-preload.1.gz"
        shown = subprocess.run(["man", "1", "keepalive-preload"], capture_output=True, text=True,
                               timeout=TIMEOUT, env={**os.environ, "MANPAGER": "cat",
                                                     "MANWIDTH": "80"})
        assert shown.returncode == 0, shown.stderr
        assert "keepalive-preload presets" in shown.stdout

    def test_setuid_opt_in_with_statoverride(self, probe: str, listener: int) -> None:
        with privileged_copy(probe, "setuid") as setuid_probe:
            self.check_setuid_opt_in(setuid_probe, listener)

    def check_setuid_opt_in(self, setuid_probe: str, listener: int) -> None:
        statoverride = need_tool("dpkg-statoverride")
        library = "/usr/lib/libkeepalive.so"
        args = [setuid_probe, "connect4", str(listener)]
        env = {"LD_PRELOAD": "libkeepalive.so", "TCP_KEEPIDLE": "7", "TCP_KEEPCNT": "bad",
               "LIBKEEPALIVE_DEBUG": "1"}

        # 0644, as packaged: glibc does not load it into a set-user-ID program.
        result = run_as_nobody(args, **env)
        (report,) = reports(result.stdout)
        assert report["ret"] == 0
        assert report["SO_KEEPALIVE"] == 0

        try:
            subprocess.run([statoverride, "--update", "--add", "root", "root", "4755", library],
                           check=True, capture_output=True, timeout=TIMEOUT)
            assert os.stat(library).st_mode & 0o7777 == 0o4755
            result = run_as_nobody(args, **env)
            (report,) = reports(result.stdout)
            # Loaded now, in secure-execution mode: the environment is ignored,
            # the defaults apply, nothing is printed (not even the bad TCP_KEEPCNT).
            assert report["SO_KEEPALIVE"] == 1
            assert report["TCP_KEEPIDLE"] == 15
            assert report["TCP_KEEPCNT"] == 9
            assert report["TCP_USER_TIMEOUT"] == 150000
            assert result.stderr == ""
            # A path with a slash is never preloaded into it, setuid bit or not.
            result = run_as_nobody(args, LD_PRELOAD=library)
            (report,) = reports(result.stdout)
            assert report["SO_KEEPALIVE"] == 0
        finally:
            subprocess.run([statoverride, "--remove", library], capture_output=True,
                           timeout=TIMEOUT)
            os.chmod(library, 0o644)


def test_purge_leaves_nothing(packages: dict[str, Path]) -> None:
    require_root_with_apt()
    if installed("keepalive-preload") or installed("libkeepalive0"):
        unavailable("keepalive-preload or libkeepalive0 is already installed here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", str(packages["deb"])], check=True,
                       env=env, capture_output=True, timeout=600)
        assert installed("keepalive-preload")
    finally:
        subprocess.run(["apt-get", "purge", "-y", "-q", "keepalive-preload"], check=True,
                       env=env, capture_output=True, timeout=600)
    assert not installed("keepalive-preload")
    leftovers = [name for name in (*FILES, *DEB_ONLY) if os.path.lexists(name)]
    assert leftovers == []
    assert not os.path.exists("/usr/share/doc/keepalive-preload")


# ---- the rpm, into a scratch root -----------------------------------------

def test_rpm_installs_into_scratch_root(packages: dict[str, Path], tmp_path: Path) -> None:
    rpm = need_tool("rpm")
    root = str(tmp_path / "root")
    # --nodeps: the scratch root has no glibc package to satisfy the dependency.
    output(rpm, "--root", root, "--initdb")
    output(rpm, "--root", root, "-i", "--nodeps", str(packages["rpm"]))
    for name, mode in (FILES | RPM_ONLY).items():
        assert os.stat(root + name).st_mode & 0o7777 == mode, name
    assert output(rpm, "--root", root, "-q", "keepalive-preload").strip() == \
        f"keepalive-preload-{VERSION}-1.{ARCH[1]}"
    output(rpm, "--root", root, "-e", "--nodeps", "keepalive-preload")
    assert [n for n in (*FILES, *RPM_ONLY) if os.path.lexists(root + n)] == []


def test_cmake_install_modes(tmp_path: Path) -> None:
    cmake = need_tool("cmake")
    for setuid, mode in (("OFF", 0o644), ("ON", 0o4755)):
        build = tmp_path / f"build-{setuid}"
        dest = tmp_path / f"dest-{setuid}"
        output(cmake, "-S", str(ROOT), "-B", str(build), f"-DKEEPALIVE_INSTALL_SETUID={setuid}")
        output(cmake, "--build", str(build))
        subprocess.run([cmake, "--install", str(build), "--prefix", "/usr"], check=True,
                       capture_output=True, env={**os.environ, "DESTDIR": str(dest)})
        for lib in LIBS:
            assert os.stat(dest / "usr" / "lib" / lib).st_mode & 0o7777 == mode, (setuid, lib)
        for section in (1, 7):
            page = f"keepalive-preload.{section}"
            assert (dest / "usr" / "share" / "man" / f"man{section}" / page).read_bytes() == \
                (ROOT / "man" / page).read_bytes()
