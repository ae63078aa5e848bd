"""run: what COMMAND inherits (LD_PRELOAD, option variables) and how it is
executed (like a shell: scripts without #!, missing interpreters, Go)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import keepalive_preload
from support import TIMEOUT, clean_env, cli, one_line_error, reports, unavailable

MAPPED = 'grep -o "libkeepalive[a-z_]*\\.so" /proc/$$/maps | sort -u | tr "\\n" " "'


# ---- leftovers from an earlier `eval "$(keepalive-preload env ...)"` ------

def test_run_replaces_our_other_library_in_inherited_preload() -> None:
    # After eval "$(keepalive-preload env --idle 30 --count 4)" (the socket
    # library), run --client must be client-only: one library, ours.
    env = clean_env(LD_PRELOAD=keepalive_preload.path("socket"), TCP_KEEPCNT="4")
    result = cli("run", "--client", "--idle", "40", "--", "sh", "-c",
                 f'echo "$LD_PRELOAD"; {MAPPED}', env=env)
    assert result.returncode == 0, result.stderr
    preload, mapped = result.stdout.splitlines()
    assert preload == keepalive_preload.path("connect")
    assert mapped.split() == ["libkeepalive.so"]


def test_run_keeps_foreign_entries_and_drops_ours_from_elsewhere() -> None:
    env = clean_env(LD_PRELOAD="/opt/other/libkeepalive_listen.so:libfoo-kp.so")
    result = cli("run", "--client", "--", "sh", "-c", 'echo "$LD_PRELOAD"', env=env)
    assert result.stdout == f"libfoo-kp.so:{keepalive_preload.path('connect')}\n"


def test_inherited_option_variables_apply_and_debug_names_them(
        probe: str, listener: int) -> None:
    # The documented choice: run keeps option variables from its environment
    # (the environment is a configuration source; the command line wins), and
    # --debug says which ones COMMAND gets from there.
    env = clean_env(TCP_KEEPCNT="4", KEEPINTVL="7", TCP_KEEPIDLE="99")
    result = cli("run", "--client", "--idle", "40", "--debug", "--", probe, "connect4",
                 str(listener), env=env)
    assert result.returncode == 0, result.stderr
    (report,) = reports(result.stdout)
    assert (report["TCP_KEEPIDLE"], report["TCP_KEEPINTVL"], report["TCP_KEEPCNT"]) == (40, 7, 4)
    ours = [line for line in result.stderr.splitlines()
            if line.startswith("keepalive-preload: ")]
    assert ours[0] == f"keepalive-preload: LD_PRELOAD={keepalive_preload.path('connect')}"
    assert ours[1] == ("keepalive-preload: inherited from the environment, not given on this "
                       "command line: TCP_KEEPCNT=4 KEEPINTVL=7")


def test_without_debug_nothing_is_said(probe: str, listener: int) -> None:
    result = cli("run", "--client", "--", probe, "connect4", str(listener),
                 env=clean_env(TCP_KEEPCNT="4"))
    assert result.stderr == ""


def test_a_preset_counts_as_given() -> None:
    result = cli("run", "--preset", "ipvs", "--debug", "--", "true",
                 env=clean_env(TCP_KEEPIDLE="5", TCP_SYNCNT="2"))
    inherited = [line for line in result.stderr.splitlines() if "inherited" in line]
    assert inherited == ["keepalive-preload: inherited from the environment, not given on "
                         "this command line: TCP_SYNCNT=2"]


# ---- exec like a shell ------------------------------------------------------

def executable(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    path.chmod(0o755)
    return str(path)


def test_script_without_shebang_runs_with_sh(tmp_path: Path) -> None:
    script = executable(tmp_path / "plain", b'echo "$0|$1|$LD_PRELOAD"; exit 5\n')
    result = cli("run", "--server", "--", script, "arg")
    assert (result.returncode, result.stderr) == (5, "")
    assert result.stdout == f"{script}|arg|{keepalive_preload.path('listen')}\n"
    # The same through PATH, as `sh -c plain` would find it.
    on_path = cli("run", "--", "plain", "x", env=clean_env(PATH=f"{tmp_path}:/usr/bin:/bin"))
    assert on_path.returncode == 5
    assert on_path.stdout.startswith(f"{script}|x|")


def test_missing_interpreter_is_127_and_named(tmp_path: Path) -> None:
    script = executable(tmp_path / "s", b"#!/nonexistent/interp -x\necho hi\n")
    one_line_error(cli("run", "--", script), 127, "/nonexistent/interp", "bad interpreter")
    shell = subprocess.run(["sh", "-c", script], capture_output=True, timeout=TIMEOUT)
    assert shell.returncode == 127  # what a shell says


def test_interpreter_not_executable_is_126(tmp_path: Path) -> None:
    interp = tmp_path / "interp"
    interp.write_text("not a program\n")
    interp.chmod(0o644)
    script = executable(tmp_path / "s", f"#!{interp}\n".encode())
    one_line_error(cli("run", "--", script), 126, str(interp))


def test_binary_the_kernel_refuses_is_126(tmp_path: Path) -> None:
    blob = executable(tmp_path / "blob", b"\x01\x02\x00\x03garbage\n")
    one_line_error(cli("run", "--", blob), 126, "cannot execute binary file")
    shell = subprocess.run(["sh", "-c", blob], capture_output=True, timeout=TIMEOUT)
    assert shell.returncode == 126


# ---- Go ---------------------------------------------------------------------

GO_PROGRAM = """package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	_ = net.Dialer{}
	fmt.Println("hello from go")
	os.Exit(4)
}
"""


@pytest.fixture(scope="module")
def go_binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The same Go program built static (CGO_ENABLED=0) and dynamic (cgo)."""
    go = shutil.which("go")
    if go is None:
        unavailable("go is not installed (Debian: golang-go)")
    work = tmp_path_factory.mktemp("go")
    (work / "main.go").write_text(GO_PROGRAM)
    env = {**os.environ, "GOCACHE": str(work / "cache"), "GOPATH": str(work / "gopath"),
           "GO111MODULE": "off", "GOFLAGS": ""}
    built = {}
    for kind, cgo in (("static", "0"), ("dynamic", "1")):
        out = work / f"hello-{kind}"
        done = subprocess.run([go, "build", "-o", str(out), "main.go"], cwd=work,
                              env={**env, "CGO_ENABLED": cgo}, capture_output=True,
                              text=True, timeout=600)
        if done.returncode != 0:
            unavailable(f"go build ({kind}) failed: {done.stderr[-500:]}")
        built[kind] = str(out)
    return built


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_go_program_warning(go_binaries: dict[str, str], kind: str) -> None:
    program = go_binaries[kind]
    interp = subprocess.run(["readelf", "-lW", program], capture_output=True, text=True,
                            timeout=TIMEOUT).stdout
    assert ("Requesting program interpreter" in interp) == (kind == "dynamic")
    result = cli("run", "--idle", "30", "--", program)
    assert (result.returncode, result.stdout) == (4, "hello from go\n")
    (line,) = result.stderr.splitlines()
    for words in ("is a Go program", "LD_PRELOAD cannot reach",
                  "Go (1.13 and later) turns keepalive on by itself", "15 s",
                  "keepalive-preload cgroup attach"):
        assert words in line, line
