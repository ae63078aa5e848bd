"""The keepalive-preload command: run, env, path, status, and their errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

import keepalive_preload
from support import (
    ENTRY_POINTS,
    SCRIPT,
    TIMEOUT,
    clean_env,
    cli,
    one_line_error,
    unavailable,
)


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


def test_run_static_binary_warns_and_runs(static_probe: str) -> None:
    """A statically linked program: one line says LD_PRELOAD cannot reach it
    and points to the cgroup mode (not to Go's own keepalive), then it runs."""
    result = cli("run", "--", static_probe, "socket")
    assert result.returncode == 0
    assert json.loads(result.stdout)["call"] == "socket"  # it ran
    (line,) = result.stderr.splitlines()
    assert "is statically linked" in line
    assert "LD_PRELOAD cannot reach it" in line
    assert "keepalive-preload cgroup attach" in line
    assert "Go" not in line


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


# ---- run: a real client (status is tested in test_status.py) ------------

def test_run_sets_keepalive_on_the_client(
        idle_client: tuple[subprocess.Popen[str], dict[str, Any]]) -> None:
    _, report = idle_client
    assert report["SO_KEEPALIVE"] == 1
    assert report["TCP_KEEPIDLE"] == 5
    assert report["TCP_KEEPINTVL"] == 2
