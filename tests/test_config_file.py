"""The configuration file: /etc/keepalive-preload.conf, or the file named by
KEEPALIVE_CONFIG. Same names and parser as the environment, below it in
priority; trusted only when owned by root (or, for KEEPALIVE_CONFIG, by the
user) and not writable by group or others; bad lines warned about with their
line number and skipped; KEEPALIVE_EXCLUDE leaves named programs alone; read
in secure-execution mode too, where the environment is not.

Tests that write /etc/keepalive-preload.conf need root, refuse to touch one
that already exists, and remove theirs whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keepalive_preload._options import OPTIONS
from support import (
    clean_env,
    library,
    need_tool,
    preload_env,
    privileged_copy,
    reports,
    run,
    run_as_nobody,
    trusted_libraries,
    unavailable,
)

ETC = Path("/etc/keepalive-preload.conf")


def conf(tmp_path: Path, text: str, mode: int = 0o644, name: str = "kp.conf") -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def connect(probe: str, port: int, variant: str = "connect", argv0: str | None = None,
            **env: str) -> tuple[dict[str, Any], str]:
    result = run([argv0 or probe, "connect4", str(port)], preload_env(variant, **env))
    (report,) = reports(result.stdout)
    return report, result.stderr


@contextlib.contextmanager
def etc_config(text: str) -> Iterator[Path]:
    """/etc/keepalive-preload.conf with text, root-owned, 0644; removed after."""
    if os.geteuid() != 0:
        unavailable("writing /etc/keepalive-preload.conf needs root")
    if ETC.exists() or ETC.is_symlink():
        unavailable(f"{ETC} already exists on this host; not touching it")
    try:
        ETC.write_text(text)
        os.chown(ETC, 0, 0)
        ETC.chmod(0o644)
        yield ETC
    finally:
        with contextlib.suppress(FileNotFoundError):
            ETC.unlink()


def test_values_from_the_file(probe: str, listener: int, tmp_path: Path) -> None:
    path = conf(tmp_path, "# keepalive for everything\n\nTCP_KEEPIDLE=42\n  KEEPCNT = 4\n")
    report, stderr = connect(probe, listener, KEEPALIVE_CONFIG=path)
    assert (report["SO_KEEPALIVE"], report["TCP_KEEPIDLE"], report["TCP_KEEPCNT"]) == (1, 42, 4)
    assert report["TCP_USER_TIMEOUT"] == (42 + 15 * 4) * 1000  # derived from the file's values
    assert stderr == ""


def test_environment_wins_over_the_file(probe: str, listener: int, tmp_path: Path) -> None:
    path = conf(tmp_path, "TCP_KEEPIDLE=42\nTCP_KEEPINTVL=5\n")
    report, _ = connect(probe, listener, KEEPALIVE_CONFIG=path, TCP_KEEPIDLE="43")
    assert (report["TCP_KEEPIDLE"], report["TCP_KEEPINTVL"]) == (43, 5)
    # An invalid environment value keeps the file's, with a warning.
    report, stderr = connect(probe, listener, KEEPALIVE_CONFIG=path, TCP_KEEPIDLE="x")
    assert report["TCP_KEEPIDLE"] == 42
    assert "ignoring TCP_KEEPIDLE='x'" in stderr
    assert "using 42" in stderr


@pytest.mark.parametrize("text", ["TCP_KEEPIDLE=42\nKEEPIDLE=50\n",
                                  "KEEPIDLE=50\nTCP_KEEPIDLE=42\n"])
def test_name_wins_over_alias_in_the_file(probe: str, listener: int, tmp_path: Path,
                                          text: str) -> None:
    report, _ = connect(probe, listener, KEEPALIVE_CONFIG=conf(tmp_path, text))
    assert report["TCP_KEEPIDLE"] == 42


def test_bad_lines_are_warned_and_skipped(probe: str, listener: int, tmp_path: Path) -> None:
    path = conf(tmp_path, "TCP_KEEPIDLE=abc\ngarbage\nNOPE=1\nTCP_KEEPCNT=5\n"
                          "KEEPALIVE=sometimes\n" + "TCP_KEEPINTVL=" + "9" * 600 + "\n"
                          "TCP_KEEPINTVL=3\n")
    report, stderr = connect(probe, listener, KEEPALIVE_CONFIG=path)
    assert (report["TCP_KEEPIDLE"], report["TCP_KEEPCNT"], report["TCP_KEEPINTVL"]) == (15, 5, 3)
    lines = stderr.splitlines()
    assert lines == [
        f"libkeepalive: {path}:1: ignoring TCP_KEEPIDLE='abc': expected 0 (system default) or a "
        "whole number in 1..32767; using 15",
        f"libkeepalive: {path}:2: expected NAME=VALUE; line skipped",
        f"libkeepalive: {path}:3: unknown name NOPE; line skipped",
        f"libkeepalive: {path}:5: ignoring KEEPALIVE='sometimes': expected 'on', 'off' or "
        "'force'; keepalive stays on",
        f"libkeepalive: {path}:6: line longer than 512 bytes; line skipped",
    ]


@pytest.mark.parametrize(("text", "expected"), [("KEEPALIVE=off\n", 0), ("KEEPALIVE=on\n", 1)])
def test_keepalive_off_in_the_file(probe: str, listener: int, tmp_path: Path, text: str,
                                   expected: int) -> None:
    report, _ = connect(probe, listener, KEEPALIVE_CONFIG=conf(tmp_path, text))
    assert report["SO_KEEPALIVE"] == expected


def test_force_in_the_file(own_keepalive: str, listener: int, tmp_path: Path) -> None:
    path = conf(tmp_path, "KEEPALIVE=force\nTCP_KEEPIDLE=33\n")
    result = run([own_keepalive, "after", "connect4", str(listener)],
                 preload_env("connect", KEEPALIVE_CONFIG=path))
    (report,) = reports(result.stdout)
    assert report["TCP_KEEPIDLE"] == 33  # not the program's 61


def test_debug_in_the_file(probe: str, listener: int, tmp_path: Path) -> None:
    _, stderr = connect(probe, listener, KEEPALIVE_CONFIG=conf(tmp_path, "LIBKEEPALIVE_DEBUG=1\n"))
    assert "ours: TCP_KEEPIDLE=15" in stderr


@pytest.mark.parametrize("value", ["0", ""])
def test_debug_off_in_the_file(probe: str, listener: int, tmp_path: Path, value: str) -> None:
    """LIBKEEPALIVE_DEBUG=0 or empty is off, in the file as in the environment."""
    path = conf(tmp_path, f"LIBKEEPALIVE_DEBUG={value}\n")
    _, stderr = connect(probe, listener, KEEPALIVE_CONFIG=path)
    assert stderr == ""
    _, stderr = connect(probe, listener, LIBKEEPALIVE_DEBUG=value)
    assert stderr == ""


@pytest.mark.parametrize(("mode", "why"), [(0o664, "writable by group or others"),
                                           (0o646, "writable by group or others")])
def test_writable_file_is_ignored(probe: str, listener: int, tmp_path: Path, mode: int,
                                  why: str) -> None:
    path = conf(tmp_path, "TCP_KEEPIDLE=42\n", mode)
    report, stderr = connect(probe, listener, KEEPALIVE_CONFIG=path)
    assert report["TCP_KEEPIDLE"] == 15
    assert stderr == f"libkeepalive: ignoring the configuration file {path}: {why}\n"


def test_file_of_another_user_is_ignored(probe: str, listener: int, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        unavailable("giving a file to another user needs root")
    path = conf(tmp_path, "TCP_KEEPIDLE=42\n")
    os.chown(path, 65534, 65534)
    report, stderr = connect(probe, listener, KEEPALIVE_CONFIG=path)
    assert report["TCP_KEEPIDLE"] == 15
    assert "not owned by root" in stderr


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory any user can reach, removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="kp-conf-", dir="/var/tmp"))
    try:
        directory.chmod(0o755)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize(("owner", "trusted"), [(65534, True), (0, True), (1, False)])
def test_keepalive_config_owned_by_the_user(probe: str, listener: int, shared_dir: Path,
                                            owner: int, trusted: bool) -> None:
    """Run as nobody: a file named by KEEPALIVE_CONFIG may be nobody's own or
    root's, not another user's."""
    if os.geteuid() != 0:
        unavailable("running as nobody needs root")
    program = shared_dir / "probe"
    shutil.copy(probe, program)
    program.chmod(0o755)
    path = Path(conf(shared_dir, "TCP_KEEPIDLE=42\n"))
    os.chown(path, owner, owner)
    result = run_as_nobody([str(program), "connect4", str(listener)],
                           LD_PRELOAD=library("connect"), KEEPALIVE_CONFIG=str(path))
    if "cannot open shared object" in result.stderr:
        unavailable(f"nobody cannot read {library('connect')}")
    (report,) = reports(result.stdout)
    assert report["TCP_KEEPIDLE"] == (42 if trusted else 15)
    assert ("not owned by root or by you" in result.stderr) == (not trusted)


@pytest.mark.parametrize("kind", ["directory", "fifo", "large"])
def test_not_a_small_regular_file_is_ignored(probe: str, listener: int, tmp_path: Path,
                                             kind: str) -> None:
    path = tmp_path / "odd"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path, 0o644)  # must not block the program
    else:
        path.write_text("# padding\n" * 7000 + "TCP_KEEPIDLE=42\n")
    report, stderr = connect(probe, listener, KEEPALIVE_CONFIG=str(path))
    assert report["TCP_KEEPIDLE"] == 15
    expected = "larger than 65536 bytes" if kind == "large" else "not a regular file"
    assert expected in stderr


def test_missing_named_file_is_warned(probe: str, listener: int, tmp_path: Path) -> None:
    report, stderr = connect(probe, listener, KEEPALIVE_CONFIG=str(tmp_path / "absent"))
    assert report["SO_KEEPALIVE"] == 1
    assert "cannot read the configuration file" in stderr
    assert "No such file" in stderr


def opens_of_config(probe: str, port: int, tmp_path: Path, **env: str) -> list[str]:
    """The open/openat calls strace sees for a configuration file."""
    strace = need_tool("strace")
    trace = tmp_path / "trace"
    run([strace, "-f", "-qq", "-o", str(trace), "-e", "trace=open,openat",
         "-E", f"LD_PRELOAD={library('connect')}",
         *[arg for key, value in env.items() for arg in ("-E", f"{key}={value}")],
         probe, "-q", "connect4", str(port)], clean_env())
    return [line for line in trace.read_text().splitlines()
            if "keepalive-preload.conf" in line or "kp.conf" in line]


def test_absent_file_costs_one_failed_open(probe: str, listener: int, tmp_path: Path) -> None:
    if ETC.exists():
        unavailable(f"{ETC} exists on this host")
    (line,) = opens_of_config(probe, listener, tmp_path)
    assert str(ETC) in line
    assert "ENOENT" in line


def test_empty_keepalive_config_reads_no_file(probe: str, listener: int, tmp_path: Path) -> None:
    assert opens_of_config(probe, listener, tmp_path, KEEPALIVE_CONFIG="") == []


def test_file_read_with_plain_calls(probe: str, listener: int, tmp_path: Path) -> None:
    """open, fstat, read, close: no stdio (which would fstat and mmap a buffer)."""
    path = conf(tmp_path, "TCP_KEEPIDLE=42\n")
    strace = need_tool("strace")
    trace = tmp_path / "trace"
    run([strace, "-qq", "-o", str(trace), "-e", "trace=all", "-E",
         f"LD_PRELOAD={library('connect')}", "-E", f"KEEPALIVE_CONFIG={path}",
         probe, "-q", "connect4", str(listener)], clean_env())
    lines = trace.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if path in line)
    fd = lines[start].rsplit("= ", 1)[1].split()[0]
    calls = []
    for line in lines[start + 1:]:
        if line.startswith("close(" + fd + ")"):
            break
        calls.append(line.split("(", 1)[0])
    assert set(calls) <= {"fstat", "newfstatat", "read"}, calls
    assert "mmap" not in calls


@pytest.fixture
def excluded_program(probe: str, tmp_path: Path) -> tuple[str, str]:
    """A copy of the probe named kp-excl-probe, and a symlink kp-alias to it:
    started through the link, argv[0] is kp-alias and the executable is
    kp-excl-probe."""
    program = tmp_path / "kp-excl-probe"
    shutil.copy(probe, program)
    link = tmp_path / "kp-alias"
    link.symlink_to(program)
    return str(program), str(link)


@pytest.mark.parametrize(("names", "excluded"), [
    ("kp-alias", True),             # the command's name, argv[0]
    ("sshd kp-excl-probe", True),   # the executable's name, /proc/self/exe
    ("kp-excl sshd", False),        # whole names only
])
def test_exclude(excluded_program: tuple[str, str], listener: int, tmp_path: Path, names: str,
                 excluded: bool) -> None:
    _, link = excluded_program
    path = conf(tmp_path, f"KEEPALIVE_EXCLUDE={names}\nKEEPALIVE=force\n")
    report, stderr = connect(link, listener, KEEPALIVE_CONFIG=path, LIBKEEPALIVE_DEBUG="1")
    assert report["SO_KEEPALIVE"] == (0 if excluded else 1)
    # With debug on, the configuration line says whether the program is left alone.
    assert ("configuration: KEEPALIVE=off " in stderr) == excluded
    assert (" fd " in stderr) == (not excluded)


def test_environment_keepalive_wins_over_exclude(excluded_program: tuple[str, str],
                                                 listener: int, tmp_path: Path) -> None:
    _, link = excluded_program
    path = conf(tmp_path, "KEEPALIVE_EXCLUDE=kp-alias\n")
    report, _ = connect(link, listener, KEEPALIVE_CONFIG=path, KEEPALIVE="on")
    assert report["SO_KEEPALIVE"] == 1


def test_keepalive_config_in_the_file_is_refused(probe: str, listener: int,
                                                 tmp_path: Path) -> None:
    other = conf(tmp_path, "TCP_KEEPIDLE=99\n", name="other.conf")
    path = conf(tmp_path, f"KEEPALIVE_CONFIG={other}\n")
    report, stderr = connect(probe, listener, KEEPALIVE_CONFIG=path)
    assert report["TCP_KEEPIDLE"] == 15
    assert "KEEPALIVE_CONFIG is read from the environment only" in stderr


def test_etc_file_applies(probe: str, listener: int) -> None:
    with etc_config("TCP_KEEPIDLE=42\n"):
        report, _ = connect(probe, listener)
        assert report["TCP_KEEPIDLE"] == 42
        report, _ = connect(probe, listener, TCP_KEEPIDLE="43")
        assert report["TCP_KEEPIDLE"] == 43
        report, _ = connect(probe, listener, KEEPALIVE_CONFIG="")
        assert report["TCP_KEEPIDLE"] == 15
    assert not ETC.exists()


@pytest.mark.parametrize("variant", ["connect", "socket"])
def test_etc_file_applies_in_secure_mode(probe: str, listener: int, tmp_path: Path,
                                         variant: str) -> None:
    """A set-user-ID program: the file in /etc applies (nothing is printed,
    not even about its bad line); the environment, KEEPALIVE_CONFIG included,
    is not read."""
    tmp_path.chmod(0o755)
    elsewhere = conf(tmp_path, "TCP_KEEPIDLE=99\n", name="user.conf")
    with etc_config("TCP_KEEPIDLE=42\nthis line is bad\nTCP_KEEPCNT=4\n"), \
            privileged_copy(probe, "setuid") as program, \
            trusted_libraries(library(variant)) as (lib_name,):
        result = run_as_nobody([program, "connect4", str(listener)], LD_PRELOAD=lib_name,
                               KEEPALIVE_CONFIG=elsewhere, TCP_KEEPCNT="7",
                               LIBKEEPALIVE_DEBUG="1")
        (report,) = reports(result.stdout)
        assert (report["SO_KEEPALIVE"], report["TCP_KEEPIDLE"], report["TCP_KEEPCNT"]) == (1, 42, 4)
        assert result.stderr == ""
    assert not ETC.exists()






def test_exclude_by_executable_in_a_long_path(probe: str, listener: int, tmp_path: Path) -> None:
    """The executable's name is found whatever the length of its path."""
    deep = tmp_path
    for _ in range(6):
        deep = deep / ("d" * 100)
    deep.mkdir(parents=True)
    program = deep / "kp-deep-probe"
    shutil.copy(probe, program)
    assert len(str(program)) > 600
    path = conf(tmp_path, "KEEPALIVE_EXCLUDE=kp-deep-probe\n")
    link = tmp_path / "kp-short"
    link.symlink_to(program)
    report, _ = connect(str(link), listener, KEEPALIVE_CONFIG=path)
    assert report["SO_KEEPALIVE"] == 0
    report, _ = connect(probe, listener, KEEPALIVE_CONFIG=path)
    assert report["SO_KEEPALIVE"] == 1


def test_warnings_are_bounded(probe: str, listener: int, tmp_path: Path) -> None:
    """A file of 30,000 bad lines: a handful of warnings, then one line
    saying how many more; the good line at the end still applies."""
    path = conf(tmp_path, "x\n" * 30000 + "TCP_KEEPIDLE=42\n")
    report, stderr = connect(probe, listener, KEEPALIVE_CONFIG=path)
    assert report["TCP_KEEPIDLE"] == 42
    lines = stderr.splitlines()
    assert 2 <= len(lines) <= 10, lines
    assert lines[-1] == f"libkeepalive: {30000 - (len(lines) - 1)} more warnings not shown"


def test_warnings_are_escaped(probe: str, listener: int, tmp_path: Path) -> None:
    """Names, values and paths from the file reach the terminal escaped."""
    directory = tmp_path / "d\x1b]0;x\x07"
    directory.mkdir()
    path = conf(directory, "N\x1b[31mAME=1\nTCP_KEEPIDLE=\x1b[2J\nKEEPALIVE=\x9b1m\n")
    _, stderr = connect(probe, listener, KEEPALIVE_CONFIG=path)
    assert not any(c in stderr for c in "\x1b\x07\x9b"), stderr
    lines = stderr.splitlines()
    shown = str(directory).replace("\x1b", "\\x1b").replace("\x07", "\\x07") + "/kp.conf"
    assert lines[0] == f"libkeepalive: {shown}:1: unknown name N\\x1b[31mAME; line skipped"
    assert "TCP_KEEPIDLE='\\x1b[2J'" in lines[1]
    assert "KEEPALIVE='\\xc2\\x9b1m'" in lines[2]


def test_unknown_name_with_a_long_value(probe: str, listener: int, tmp_path: Path) -> None:
    path = conf(tmp_path, "NOPE=" + "1" * 100 + "\nTCP_KEEPIDLE=" + "1" * 100 + "\n")
    _, stderr = connect(probe, listener, KEEPALIVE_CONFIG=path)
    assert stderr.splitlines() == [
        f"libkeepalive: {path}:1: unknown name NOPE; line skipped",
        f"libkeepalive: {path}:2: the value is too long or holds a NUL byte for TCP_KEEPIDLE; "
        "line skipped",
    ]


def test_configuration_line(probe: str, listener: int, tmp_path: Path) -> None:
    """LIBKEEPALIVE_DEBUG: after the warnings, one line with every variable of
    the option table, in its order (what keepalive_preload.hostconfig reads)."""
    path = conf(tmp_path, "TCP_KEEPIDLE=42\nbad\nKEEPALIVE=force\n")
    _, stderr = connect(probe, listener, KEEPALIVE_CONFIG=path, LIBKEEPALIVE_DEBUG="1",
                        TCP_KEEPCNT="3")
    lines = stderr.splitlines()
    assert lines[0] == f"libkeepalive: {path}:2: expected NAME=VALUE; line skipped"
    values = {**{o.variable: o.default for o in OPTIONS}, "TCP_KEEPIDLE": 42, "TCP_KEEPCNT": 3}
    assert lines[1] == "libkeepalive: configuration: KEEPALIVE=force " + " ".join(
        f"{o.variable}={values[o.variable]}" for o in OPTIONS)
    assert all(" configuration: " not in line for line in lines[2:])
