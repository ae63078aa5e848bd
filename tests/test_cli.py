"""The keepalive-preload command: run, env, path, status, and their errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import keepalive_preload
from support import HELPERS, TIMEOUT, c_compiler, clean_env, unavailable

SCRIPT = shutil.which("keepalive-preload", path=os.path.dirname(sys.executable))
# Both entry points: the console script and python -m.
ENTRY_POINTS = {"script": [SCRIPT or "keepalive-preload"],
                "module": [sys.executable, "-m", "keepalive_preload"]}


def cli(*args: str, env: dict[str, str] | None = None,
        entry: str = "script") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENTRY_POINTS[entry], *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=clean_env() if env is None else env)


def one_line_error(result: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert result.returncode == status, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


def test_console_script_installed() -> None:
    assert SCRIPT is not None


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_version(entry: str) -> None:
    result = cli("--version", entry=entry)
    assert result.stdout == f"keepalive-preload {keepalive_preload.__version__}\n"


def test_help_has_examples() -> None:
    result = cli("--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout
    assert "status" in result.stdout


@pytest.mark.parametrize("variant", [*keepalive_preload.VARIANTS, "client", "server", "all",
                                     None])
def test_path(variant: str | None) -> None:
    result = cli("path", *([variant] if variant else []))
    assert result.stdout == keepalive_preload.path(variant or "connect") + "\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["path", "udp"], ["unknown variant 'udp'", "client (connect)"]),
        (["frobnicate"], ["invalid choice"]),
        (["run", "--idle", "x", "--", "true"], ["--idle", "'x'", "1..32767"]),
        (["run", "--idle", "40000", "--", "true"], ["--idle", "1..32767"]),
        (["run", "--count", "-1", "--", "true"], ["--count", "1..127"]),
        (["run", "--user-timeout", "-2", "--", "true"], ["--user-timeout", "-1 (derive)"]),
        (["run", "--client", "--server", "--", "true"], ["not allowed with"]),
        (["run", "--server", "--syn-count", "3", "--", "true"],
         ["--syn-count has no effect with --server; it applies to --client and --all"]),
        (["run", "--client", "--defer-accept", "3", "--", "true"],
         ["--defer-accept has no effect with --client; it applies to --server and --all"]),
        (["run"], ["missing COMMAND"]),
        (["run", "--"], ["missing COMMAND"]),
        (["env", "--maxseg", "10"], ["--maxseg", "88..32767"]),
        (["status"], ["PID"]),
        (["status", "abc"], ["'abc'"]),
        (["path", "--bogus"], ["unrecognized arguments"]),
        ([], ["required", "SUBCOMMAND"]),
    ],
)
def test_bad_arguments_one_line_exit_2(args: list[str], words: list[str]) -> None:
    one_line_error(cli(*args), 2, *words)


# ---- env -----------------------------------------------------------------

def test_env_eval_in_a_shell() -> None:
    env = clean_env(LD_PRELOAD="libfoo.so libbar.so")
    shell = (f'eval "$({SCRIPT} env --server --idle 30 --count 4 --debug)" && '
             'printf "%s|%s|%s|%s\\n" "$LD_PRELOAD" "$TCP_KEEPIDLE" "$TCP_KEEPCNT" '
             '"$LIBKEEPALIVE_DEBUG"')
    result = subprocess.run(["sh", "-c", shell], env=env, capture_output=True, text=True,
                            timeout=TIMEOUT, check=True)
    expected = f"libfoo.so libbar.so:{keepalive_preload.path('listen')}|30|4|1\n"
    assert result.stdout == expected


def test_env_prints_only_what_it_sets() -> None:
    result = cli("env")
    assert result.stdout == f"export LD_PRELOAD={keepalive_preload.path('socket')}\n"


# ---- run -----------------------------------------------------------------

def test_run_preload_and_options_per_variant() -> None:
    shell = 'printf "%s|%s\\n" "$LD_PRELOAD" "$TCP_KEEPINTVL"'
    for flag, variant in [("--client", "connect"), ("--server", "listen"),
                          ("--all", "socket"), (None, "socket")]:
        args = [*([flag] if flag else []), "--interval", "4", "--", "sh", "-c", shell]
        result = cli("run", *args)
        assert result.stdout == f"{keepalive_preload.path(variant)}|4\n", flag


def test_run_keeps_existing_preload() -> None:
    result = cli("run", "--", "sh", "-c", 'echo "$LD_PRELOAD"',
                 env=clean_env(LD_PRELOAD="libfoo.so"))
    assert result.stdout == f"libfoo.so:{keepalive_preload.path('socket')}\n"


def test_run_without_double_dash() -> None:
    result = cli("run", "--idle", "3", "sh", "-c", 'echo "$TCP_KEEPIDLE" "$@"', "x", "--idle")
    assert result.stdout == "3 --idle\n"


def test_run_exit_status_is_the_commands() -> None:
    assert cli("run", "--", "sh", "-c", "exit 7").returncode == 7


def test_run_execs_same_pid() -> None:
    proc = subprocess.Popen([*ENTRY_POINTS["script"], "run", "--", "sh", "-c", "echo $$"],
                            stdout=subprocess.PIPE, text=True, env=clean_env())
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert int(out) == proc.pid


def test_run_signals_reach_the_command() -> None:
    with subprocess.Popen([*ENTRY_POINTS["script"], "run", "--", "sh", "-c",
                           "echo ready; exec sleep 30"],
                          stdout=subprocess.PIPE, text=True, env=clean_env()) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == -signal.SIGTERM


def test_run_command_not_found() -> None:
    one_line_error(cli("run", "--", "no-such-command-kp"), 127, "no-such-command-kp",
                   "command not found")


def test_run_path_not_found(tmp_path: Path) -> None:
    one_line_error(cli("run", "--", str(tmp_path / "nope")), 127, "no such file")


def test_run_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    one_line_error(cli("run", "--", str(script)), 126, "permission denied")


def test_run_directory(tmp_path: Path) -> None:
    one_line_error(cli("run", "--", str(tmp_path)), 126, "is a directory")


@pytest.fixture(scope="module")
def static_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    source = tmp_path_factory.mktemp("static") / "hello.c"
    source.write_text('#include <stdio.h>\nint main(void) { puts("hello"); return 3; }\n')
    cc = c_compiler()
    out = source.with_suffix("")
    built = subprocess.run([cc, "-static", "-o", str(out), str(source)], capture_output=True,
                           text=True, timeout=120)
    if built.returncode != 0:
        unavailable(f"cannot link statically (libc6-dev's libc.a missing?): {built.stderr}")
    return str(out)


def test_run_static_binary_warns_and_runs(static_binary: str) -> None:
    result = cli("run", "--", static_binary)
    assert result.returncode == 3
    assert result.stdout == "hello\n"
    (line,) = result.stderr.splitlines()
    assert "statically linked" in line
    assert "LD_PRELOAD cannot reach it" in line


def test_run_dynamic_binary_does_not_warn() -> None:
    result = cli("run", "--", "sh", "-c", "true")
    assert (result.returncode, result.stderr) == (0, "")


def test_run_setuid_command_warns(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        unavailable("needs root to make a set-user-ID file owned by another user")
    program = tmp_path / "suid-true"
    shutil.copy("/bin/true", program)
    os.chown(program, 65534, 65534)
    program.chmod(0o4755)
    result = cli("run", "--", str(program))
    assert result.returncode == 0
    (line,) = result.stderr.splitlines()
    assert "set-user-ID" in line
    assert "installed set-user-ID in a system directory" in line


# ---- run + status: a real client, inspected from outside -----------------

@pytest.fixture
def idle_client(listener: int) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    proc = subprocess.Popen(
        [*ENTRY_POINTS["script"], "run", "--idle", "5", "--interval", "2", "--", sys.executable,
         str(HELPERS / "idle_client.py"), "127.0.0.1", str(listener)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        assert proc.stdout is not None
        report = json.loads(proc.stdout.readline())
        yield proc, report
    finally:
        proc.kill()
        proc.communicate(timeout=TIMEOUT)  # and close its pipes


def test_run_sets_keepalive_on_the_client(
        idle_client: tuple[subprocess.Popen[str], dict[str, Any]]) -> None:
    _, report = idle_client
    assert report["SO_KEEPALIVE"] == 1
    assert report["TCP_KEEPIDLE"] == 5
    assert report["TCP_KEEPINTVL"] == 2


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_status_shows_keepalive_timer(
        idle_client: tuple[subprocess.Popen[str], dict[str, Any]], listener: int,
        entry: str) -> None:
    proc, report = idle_client
    result = cli("status", str(proc.pid), entry=entry)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"PID {proc.pid}: preloaded: libkeepalive_socket.so"
    assert lines[1].split() == ["FD", "STATE", "LOCAL", "REMOTE", "TIMER"]
    row = next(line.split() for line in lines[2:] if line.split()[0] == str(report["fd"]))
    assert row[1] == "ESTABLISHED"
    assert row[3] == f"127.0.0.1:{listener}"
    assert row[4] == "keepalive"
    assert 0 < float(row[5].rstrip("s")) <= 5


def test_status_json(idle_client: tuple[subprocess.Popen[str], dict[str, Any]],
                     listener: int) -> None:
    proc, report = idle_client
    result = cli("status", "--json", str(proc.pid))
    data = json.loads(result.stdout)
    assert data["pid"] == proc.pid
    assert data["preloaded"] == ["libkeepalive_socket.so"]
    (sock,) = [s for s in data["sockets"] if s["fd"] == report["fd"]]
    assert sock["state"] == "ESTABLISHED"
    assert sock["remote"] == f"127.0.0.1:{listener}"
    assert sock["timer"] == "keepalive"
    assert 0 < sock["expires_in"] <= 5


def test_status_without_keepalive_has_no_timer(listener: int) -> None:
    proc = subprocess.Popen([sys.executable, str(HELPERS / "idle_client.py"), "127.0.0.1",
                             str(listener)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=clean_env())
    try:
        assert proc.stdout is not None
        report = json.loads(proc.stdout.readline())
        data = json.loads(cli("status", "--json", str(proc.pid)).stdout)
        (sock,) = [s for s in data["sockets"] if s["fd"] == report["fd"]]
        assert (sock["timer"], sock["expires_in"]) == (None, None)
        assert data["preloaded"] == []
    finally:
        proc.kill()
        proc.communicate(timeout=TIMEOUT)  # and close its pipes


def test_status_ipv6_and_listener(probe: str) -> None:
    proc = subprocess.Popen([probe, "listen6"], stdout=subprocess.PIPE, text=True,
                            env=clean_env(LD_PRELOAD=keepalive_preload.path("listen")))
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        data = json.loads(cli("status", "--json", str(proc.pid)).stdout)
        (sock,) = data["sockets"]
        assert (sock["state"], sock["local"]) == ("LISTEN", f"[::1]:{port}")
        assert data["preloaded"] == ["libkeepalive_listen.so"]
    finally:
        proc.kill()
        proc.communicate(timeout=TIMEOUT)  # and close its pipes


def test_status_no_tcp_sockets() -> None:
    proc = subprocess.Popen(["sleep", "30"], env=clean_env())
    try:
        result = cli("status", str(proc.pid))
        assert result.returncode == 0
        assert result.stdout.splitlines()[-1] == "no TCP sockets"
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)


def test_status_no_such_process() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=TIMEOUT)
    time.sleep(0.1)
    one_line_error(cli("status", str(proc.pid)), 1, f"no process with PID {proc.pid}")


def test_status_permission_denied() -> None:
    if os.geteuid() != 0:
        unavailable("needs root to run the check as another user")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        unavailable("setpriv (util-linux) is not installed")
    result = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                             *ENTRY_POINTS["module"], "status", "1"],
                            capture_output=True, text=True, timeout=TIMEOUT, env=clean_env())
    one_line_error(result, 1, "permission denied")
