"""`keepalive-preload status`: real processes inspected from outside — the
option values read from their sockets, listeners, our libraries (also after
the file was replaced), processes that cannot be read, `--all` and `--check`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import keepalive_preload
from live import (
    ECHO,
    NOBODY,
    as_nobody,
    as_reported,
    as_root_without_ptrace,
    echo_pair,
    event,
    missing_pid,
    sock,
    status,
    zombie,
)
from support import (
    ENTRY_POINTS,
    TIMEOUT,
    clean_env,
    cli,
    library,
    one_line_error,
    preload_env,
    stop,
    unavailable,
)

pytestmark = pytest.mark.kernel
FAST = {"TCP_KEEPIDLE": "5", "TCP_KEEPINTVL": "2", "TCP_KEEPCNT": "4"}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_status_text_shows_timer_and_values(
        idle_client: tuple[subprocess.Popen[str], dict[str, Any]], listener: int,
        entry: str) -> None:
    proc, report = idle_client
    result = cli("status", str(proc.pid), entry=entry)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"PID {proc.pid} (python")
    assert lines[0].endswith("): preloaded: libkeepalive_socket.so")
    assert lines[1].split() == ["FD", "STATE", "LOCAL", "REMOTE", "TIMER", "KEEPALIVE",
                                "IDLE(s)", "INTVL(s)", "CNT", "USER_TIMEOUT(ms)"]
    row = next(line.split() for line in lines[2:] if line.split()[0] == str(report["fd"]))
    assert row[1:4] == ["ESTABLISHED", row[2], f"127.0.0.1:{listener}"]
    kind, left = row[4].split(":")
    assert kind == "keepalive"
    assert 0 < float(left.rstrip("s")) <= 5
    # idle 5, interval 2, count 9 (default): user timeout (5 + 2 * 9) * 1000 ms
    assert row[5:] == ["on", "5", "2", "9", "23000"]


def test_status_json_values_are_the_sockets(
        idle_client: tuple[subprocess.Popen[str], dict[str, Any]], listener: int) -> None:
    proc, report = idle_client
    (data,) = status(proc.pid)
    assert data["pid"] == proc.pid
    assert data["preloaded"] == ["libkeepalive_socket.so"]
    assert data["libraries"] == [{"name": "libkeepalive_socket.so", "replaced": False,
                                  "path": keepalive_preload.path("socket")}]
    assert data["options_error"] is None
    found = sock(data, report["fd"])
    assert (found["state"], found["remote"], found["timer"]) == (
        "ESTABLISHED", f"127.0.0.1:{listener}", "keepalive")
    assert 0 < found["expires_in"] <= 5
    # What the process itself reads with getsockopt.
    assert {k: v for k, v in as_reported(found["options"]).items() if k in report} == {
        k: v for k, v in report.items() if k != "fd"}
    assert found["options"]["user_timeout"] == 23000
    assert data["without_keepalive"] == 0


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
def test_values_of_each_library_client_and_server(variant: str) -> None:
    """Both ends configured by the library (idle 5, interval 2, count 4): what
    status reads equals what each process reads with getsockopt."""
    env = preload_env(variant, **FAST)
    with echo_pair(env, env) as (server, client, accepted, outbound):
        server_data, client_data = status(server.pid, client.pid)
        got_client = as_reported(sock(client_data, outbound["fd"])["options"])
        assert got_client == {k: v for k, v in outbound.items() if k in got_client}
        got_accepted = as_reported(sock(server_data, accepted["fd"])["options"])
        assert got_accepted == {k: v for k, v in accepted.items() if k in got_accepted}
        expected_on = {"connect": (True, False), "listen": (False, True),
                       "socket": (True, True)}[variant]
        assert (bool(outbound["SO_KEEPALIVE"]), bool(accepted["SO_KEEPALIVE"])) == expected_on
        for data in (server_data, client_data):
            assert data["preloaded"] == [keepalive_preload.LIBRARIES[variant]]


@pytest.mark.socket_level
@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
def test_listener_values_before_any_client(probe: str, variant: str) -> None:
    """A freshly started server can be checked before a client connects: the
    listener's values, equal to what the probe reads on it afterwards."""
    proc = subprocess.Popen([probe, "listen4"], stdout=subprocess.PIPE, text=True,
                            env=preload_env(variant, **FAST))
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        (data,) = status(proc.pid)
        (listening,) = data["sockets"]
        assert (listening["state"], listening["local"]) == ("LISTEN", f"127.0.0.1:{port}")
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
            out, _ = proc.communicate(timeout=TIMEOUT)
        _, reported = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        got = as_reported(listening["options"])
        assert got == {k: v for k, v in reported.items() if k in got}
        if variant != "connect":
            assert got == {"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 5, "TCP_KEEPINTVL": 2,
                           "TCP_KEEPCNT": 4, "TCP_USER_TIMEOUT": 13000}
    finally:
        stop(proc)


def test_without_keepalive() -> None:
    with echo_pair() as (_, client, _, outbound):
        (data,) = status(client.pid)
        found = sock(data, outbound["fd"])
        assert (found["timer"], found["expires_in"]) == (None, None)
        assert found["options"]["keepalive"] == 0
        assert data["preloaded"] == []
        assert data["without_keepalive"] == 1
        text = cli("status", str(client.pid)).stdout
        assert "preloaded: none of ours" in text
        row = next(line.split() for line in text.splitlines()
                   if line.split()[0] == str(outbound["fd"]))
        assert row[4:6] == ["-", "off"]


def test_ipv6_listener(probe: str) -> None:
    proc = subprocess.Popen([probe, "listen6"], stdout=subprocess.PIPE, text=True,
                            env=clean_env(LD_PRELOAD=keepalive_preload.path("listen")))
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        (data,) = status(proc.pid)
        (found,) = data["sockets"]
        assert (found["state"], found["local"]) == ("LISTEN", f"[::1]:{port}")
        assert found["options"]["keepalive"] == 1
        assert data["preloaded"] == ["libkeepalive_listen.so"]
    finally:
        stop(proc)


def test_no_tcp_sockets() -> None:
    proc = subprocess.Popen(["sleep", "30"], env=clean_env(), text=True)
    try:
        result = cli("status", str(proc.pid))
        assert result.returncode == 0
        assert result.stdout.splitlines()[-1] == "no TCP sockets"
    finally:
        stop(proc)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_replaced_library_still_recognised(tmp_path: Path, how: str) -> None:
    """After `pip install -U` or `apt upgrade` the mapped file is gone (maps
    says " (deleted)"): still ours, and status says the file was replaced."""
    copy = tmp_path / "libkeepalive_socket.so"  # our file name, in a directory of its own
    shutil.copy(library("socket"), copy)
    env = clean_env(LD_PRELOAD=str(copy), **FAST)
    with echo_pair(client_env=env) as (_, client, _, outbound):
        copy.unlink()
        if how == "replaced":
            shutil.copy(library("socket"), tmp_path / "new.so")
            os.rename(tmp_path / "new.so", copy)
        (data,) = status(client.pid)
        assert data["preloaded"] == ["libkeepalive_socket.so"]
        assert data["libraries"] == [{"name": "libkeepalive_socket.so", "path": str(copy),
                                      "replaced": True}]
        assert sock(data, outbound["fd"])["timer"] == "keepalive"
        first = cli("status", str(client.pid)).stdout.splitlines()[0]
        assert "libkeepalive_socket.so (file replaced or deleted since it was loaded" in first


def test_several_pids_each_reported_exit_1_if_one_fails() -> None:
    gone = missing_pid()
    with echo_pair() as (server, client, _, _):
        result = cli("status", str(server.pid), str(gone), str(client.pid))
        assert result.returncode == 1
        assert result.stderr == f"keepalive-preload: no process with PID {gone}\n"
        heads = [line for line in result.stdout.splitlines() if line.startswith("PID ")]
        assert [h.split()[1] for h in heads] == [str(server.pid), str(client.pid)]
        data = json.loads(cli("status", "--json", str(server.pid), str(gone),
                              str(client.pid)).stdout)
        assert [d["pid"] for d in data] == [server.pid, gone, client.pid]
        assert data[1] == {"pid": gone, "error": f"no process with PID {gone}"}


# ---- processes that cannot be read: an error and exit 1, never an empty list

@pytest.mark.parametrize("command", ["status", "apply"])
def test_no_such_process(command: str) -> None:
    gone = missing_pid()
    one_line_error(cli(command, str(gone)), 1, f"no process with PID {gone}")


@pytest.mark.parametrize("command", ["status", "apply"])
def test_zombie(command: str) -> None:
    with zombie() as pid:
        one_line_error(cli(command, str(pid)), 1, f"PID {pid}", "zombie")


def test_other_users_process_as_nobody() -> None:
    if os.geteuid() != 0:
        unavailable("needs root to run the check as another user")
    with echo_pair() as (server, _, _, _):
        result = as_nobody("status", str(server.pid))
        one_line_error(result, 1, f"PID {server.pid}", "permission denied")


def test_root_without_cap_sys_ptrace() -> None:
    """Docker's default: root, but no CAP_SYS_PTRACE. /proc/PID/fd lists, but
    its links cannot be read: that is an error, not "no TCP sockets"."""
    with echo_pair() as (server, _, _, _):
        result = as_root_without_ptrace("status", str(server.pid))
        one_line_error(result, 1, f"PID {server.pid}", "permission denied", "CAP_SYS_PTRACE")


def test_nobody_process_read_by_root_without_ptrace() -> None:
    """The issue's case: a server run as nobody, checked by root without
    CAP_SYS_PTRACE."""
    if os.geteuid() != 0:
        unavailable("needs root to start a process as nobody")
    server = subprocess.Popen([*NOBODY, *ECHO, "serve", "127.0.0.1", "0"],
                              stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        event(server, "listening")
        result = as_root_without_ptrace("status", str(server.pid))
        one_line_error(result, 1, f"PID {server.pid}", "permission denied")
    finally:
        stop(server)


def test_own_process_as_an_unprivileged_user() -> None:
    """A user reads their own processes without root: the values where
    ptrace is allowed; under Yama ptrace_scope >= 1 (a process that is not a
    descendant) the timers, and one line saying why."""
    if os.geteuid() != 0:
        unavailable("needs root to start processes as nobody")
    server = subprocess.Popen([*NOBODY, *ECHO, "serve", "127.0.0.1", "0"],
                              stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        port = event(server, "listening")["port"]
        result = as_nobody("status", "--json", str(server.pid))
        assert result.returncode == 0, result.stderr
        (data,) = json.loads(result.stdout)
        (listening,) = data["sockets"]
        assert listening["local"] == f"127.0.0.1:{port}"
        try:
            with open("/proc/sys/kernel/yama/ptrace_scope") as f:
                yama = int(f.read())
        except FileNotFoundError:
            yama = 0
        if yama == 0:
            assert data["options_error"] is None
            assert listening["options"]["keepalive"] == 0
            done = as_nobody("apply", "--idle", "8", str(server.pid))
            assert done.returncode == 0, done.stderr
            (data,) = json.loads(as_nobody("status", "--json", str(server.pid)).stdout)
            assert data["sockets"][0]["options"]["idle"] == 8
        else:
            assert "permission denied" in data["options_error"]
            assert listening["options"] is None
    finally:
        stop(server)


# ---- status --all and --check --------------------------------------------

def test_all_lists_our_processes_needing_attention_first() -> None:
    env = preload_env("socket", **FAST)
    with echo_pair() as (plain_server, plain_client, _, plain_out), \
            echo_pair(env, env) as (good_server, good_client, _, _):
        data = status(extra=("--all",))
        pids = [d["pid"] for d in data]
        by_pid = {d["pid"]: d for d in data}
        for pid in (plain_server.pid, plain_client.pid):
            assert by_pid[pid]["without_keepalive"] == 1
        for pid in (good_server.pid, good_client.pid):
            assert by_pid[pid]["without_keepalive"] == 0
        # Those needing attention come first.
        assert max(pids.index(plain_server.pid), pids.index(plain_client.pid)) < min(
            pids.index(good_server.pid), pids.index(good_client.pid))
        text = cli("status", "--all").stdout
        assert f"    fd {plain_out['fd']}  " in text


def test_all_check_in_a_namespace_of_our_own(tmp_path: Path) -> None:
    """The exit status of --check depends on every process on the host, so it
    is tested in new PID and network namespaces (unshare --mount-proc): there
    /proc, which --all walks, holds only the test's processes. 1 while a
    connection lacks keepalive; 0 once `apply` fixed it; 3 when processes
    cannot be read (root without CAP_SYS_PTRACE)."""
    if os.geteuid() != 0:
        unavailable("new PID and network namespaces need root")
    unshare = shutil.which("unshare")
    if unshare is None:
        unavailable("unshare (util-linux) is not installed")
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import json, subprocess, sys
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        kp = {ENTRY_POINTS["module"]!r}
        echo = {ECHO!r}
        server = subprocess.Popen([*echo, "serve", "127.0.0.1", "0"], stdout=subprocess.PIPE,
                                  text=True)
        port = json.loads(server.stdout.readline())["port"]
        client = subprocess.Popen([*echo, "connect", "127.0.0.1", str(port)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        client.stdout.readline(); server.stdout.readline()
        def check(*prefix):
            done = subprocess.run([*prefix, *kp, "status", "--all", "--check", "--json"],
                                  capture_output=True, text=True, timeout=60)
            return [done.returncode, json.loads(done.stdout or "[]"), done.stderr]
        out = {{"pids": [server.pid, client.pid], "before": check()}}
        out["apply"] = subprocess.run([*kp, "apply", str(server.pid), str(client.pid)],
                                      capture_output=True, text=True, timeout=60).returncode
        out["after"] = check()
        out["unreadable"] = check("setpriv", "--bounding-set=-sys_ptrace",
                                  "--inh-caps=-sys_ptrace")
        client.kill(); server.kill(); client.wait(); server.wait()
        print(json.dumps(out))
    """))
    done = subprocess.run([unshare, "--pid", "--fork", "--mount-proc", "--net",
                           sys.executable, str(driver)], capture_output=True, text=True,
                          timeout=120, env=clean_env())
    if done.returncode != 0 and "unshare" in done.stderr and not done.stdout:
        unavailable(f"cannot create namespaces: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    pids = out["pids"]
    code, data, _ = out["before"]
    assert code == 1
    assert sorted(d["pid"] for d in data) == sorted(pids)
    assert all(d["without_keepalive"] == 1 for d in data)
    assert out["apply"] == 0
    code, data, _ = out["after"]
    assert code == 0, data
    assert all(d["without_keepalive"] == 0 for d in data)
    code, data, _ = out["unreadable"]
    assert code == 3, data
    assert {d["pid"] for d in data if "error" in d} >= set(pids)


# ---- without pidfd_getfd: the timer view, and one line saying why -----------

def test_old_kernel_shows_timers_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """pidfd_getfd missing (Linux < 5.6: ENOSYS): the timers, and why the
    values are not shown. In-process, with the syscall made to fail."""
    from keepalive_preload import _pidfd, _status

    def enosys(pidfd: int, pid: int, fd: int) -> int:
        raise _pidfd._explain(OSError(errno.ENOSYS, "ENOSYS"), pid, "duplicate the sockets")

    monkeypatch.setattr(_pidfd, "pidfd_getfd", enosys)
    with echo_pair() as (_, client, _, outbound):
        report = _status.inspect(client.pid)
        assert "kernel is too old" in report["options_error"]
        found = sock(report, outbound["fd"])
        assert (found["options"], found["timer"]) == (None, None)
        assert report["without_keepalive"] == 1  # judged from the timer
        lines = _status.format_status(report).splitlines()
        assert lines[1] == ("options not read: cannot duplicate the sockets: the kernel is too "
                            "old (pidfd_getfd needs Linux 5.6 or later); showing the timers only")
        assert lines[2].split() == ["FD", "STATE", "LOCAL", "REMOTE", "TIMER"]


def test_pidfd_open_through_ctypes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.8 has no os.pidfd_open: the syscall is made through ctypes."""
    from keepalive_preload import _status

    monkeypatch.delattr(os, "pidfd_open", raising=False)
    env = preload_env("connect", **FAST)
    with echo_pair(client_env=env) as (_, client, _, outbound):
        report = _status.inspect(client.pid)
        assert report["options_error"] is None
        assert sock(report, outbound["fd"])["options"]["idle"] == 5
