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
import time
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
    holder,
    missing_pid,
    sock,
    status,
    zombie,
)
from support import (
    ENTRY_POINTS,
    FAST,
    TIMEOUT,
    clean_env,
    cli,
    library,
    one_line_error,
    preload_env,
    stop,
    unavailable,
)


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
    head = next(i for i, line in enumerate(lines) if line.startswith("FD "))
    assert lines[head].split() == ["FD", "STATE", "LOCAL", "REMOTE", "TIMER", "KEEPALIVE",
                                   "IDLE(s)", "INTVL(s)", "CNT", "USER_TIMEOUT(ms)", "SOURCE"]
    row = next(line.split() for line in lines[head + 1:]
               if line.split()[0] == str(report["fd"]))
    assert row[1:4] == ["ESTABLISHED", row[2], f"127.0.0.1:{listener}"]
    kind, left = row[4].split(":")
    assert kind == "keepalive"
    assert 0 < float(left.rstrip("s")) <= 5
    # idle 5, interval 2, count 9 (default): user timeout (5 + 2 * 9) * 1000 ms; from
    # our library, which is mapped in the process
    assert row[5:] == ["on", "5", "2", "9", "23000", "library"]


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
    assert (found["protocol"], found["loopback"], found["source"]) == ("tcp", True, "library")
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
        assert found["source"] == "none"
        assert data["preloaded"] == []
        # A loopback connection never crosses a middlebox: counted only when asked.
        assert (found["loopback"], data["without_keepalive"]) == (True, 0)
        (data,) = status(client.pid, extra=("--include-loopback",))
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
        data = status(extra=("--all", "--include-loopback"))
        pids = [d["pid"] for d in data]
        by_pid = {d["pid"]: d for d in data}
        for pid in (plain_server.pid, plain_client.pid):
            assert by_pid[pid]["without_keepalive"] == 1
        for pid in (good_server.pid, good_client.pid):
            assert by_pid[pid]["without_keepalive"] == 0
        # Those needing attention come first.
        assert max(pids.index(plain_server.pid), pids.index(plain_client.pid)) < min(
            pids.index(good_server.pid), pids.index(good_client.pid))
        def details(*args: str) -> list[str]:
            """The lines under the client's row of the --all table."""
            lines = cli("status", "--all", *args).stdout.splitlines()
            at = next(i for i, line in enumerate(lines)
                      if line.split()[0] == str(plain_client.pid))
            return [x for x in lines[at + 1:at + 3] if x.startswith("    fd ")]

        (line,) = details("--include-loopback")
        assert line.startswith(f"    fd {plain_out['fd']}  127.0.0.1:")
        assert details() == []  # a loopback connection: left out by default


def test_all_check_in_a_namespace_of_our_own(tmp_path: Path) -> None:
    """The exit status of --check depends on every process on the host, so it
    is tested in new PID and network namespaces (unshare --mount-proc): there
    /proc, which --all walks, holds only the test's processes. A pair on a
    network address (10.200.9.1, on the namespace's only interface) and a pair on loopback:
    1 while the first lacks keepalive; 0 once `apply` fixed it, the loopback
    pair left out unless --include-loopback; 3 when processes cannot be read
    (root without CAP_SYS_PTRACE)."""
    if os.geteuid() != 0:
        unavailable("new PID and network namespaces need root")
    unshare = shutil.which("unshare")
    if unshare is None:
        unavailable("unshare (util-linux) is not installed")
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import json, subprocess, sys
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "addr", "add", "10.200.9.1/32", "dev", "lo"]):
            subprocess.run(cmd, check=True)
        kp = {ENTRY_POINTS["module"]!r}
        echo = {ECHO!r}
        def pair(address):
            server = subprocess.Popen([*echo, "serve", address, "0"], stdout=subprocess.PIPE,
                                      text=True)
            port = json.loads(server.stdout.readline())["port"]
            client = subprocess.Popen([*echo, "connect", address, str(port)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            client.stdout.readline(); server.stdout.readline()
            return [server, client]
        network, loopback = pair("10.200.9.1"), pair("127.0.0.1")
        def check(*prefix, extra=()):
            done = subprocess.run([*prefix, *kp, "status", "--all", "--check", "--json",
                                   *extra], capture_output=True, text=True, timeout=60)
            return [done.returncode, json.loads(done.stdout or "[]"), done.stderr]
        out = {{"network": [p.pid for p in network], "loopback": [p.pid for p in loopback],
                "before": check()}}
        out["apply"] = subprocess.run([*kp, "apply", *(str(p.pid) for p in network)],
                                      capture_output=True, text=True, timeout=60).returncode
        out["after"] = check()
        out["with_loopback"] = check(extra=["--include-loopback"])
        out["unreadable"] = check("setpriv", "--bounding-set=-sys_ptrace",
                                  "--inh-caps=-sys_ptrace")
        for p in network + loopback:
            p.kill(); p.wait()
        print(json.dumps(out))
    """))
    done = subprocess.run([unshare, "--pid", "--fork", "--mount-proc", "--net",
                           sys.executable, str(driver)], capture_output=True, text=True,
                          timeout=120, env=clean_env())
    if done.returncode != 0 and "unshare" in done.stderr and not done.stdout:
        unavailable(f"cannot create namespaces: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    network, loopback = out["network"], out["loopback"]
    code, data, _ = out["before"]
    assert code == 1
    assert sorted(d["pid"] for d in data) == sorted(network + loopback)
    lacking = {d["pid"]: d["without_keepalive"] for d in data}
    assert lacking == {**dict.fromkeys(network, 1), **dict.fromkeys(loopback, 0)}
    assert out["apply"] == 0
    code, data, _ = out["after"]
    assert code == 0, data
    assert all(d["without_keepalive"] == 0 for d in data)
    code, data, _ = out["with_loopback"]
    assert code == 1, data
    assert {d["pid"] for d in data if d["without_keepalive"]} == set(loopback)
    code, data, _ = out["unreadable"]
    assert code == 3, data
    assert {d["pid"] for d in data if "error" in d} >= set(network + loopback)


def test_cron_recipe_as_written(tmp_path: Path) -> None:
    """The cron line of docs/live-processes.md, run as cron would (sh -c, the
    command after the five time fields and the user), in PID and network
    namespaces of the test's own: output (cron mails it) while a connection
    that crosses a network lacks keepalive, none once `apply` fixed it (a
    loopback pair without keepalive beside it), none when only some processes
    cannot be read."""
    if os.geteuid() != 0:
        unavailable("new PID and network namespaces need root")
    doc = (Path(__file__).resolve().parent.parent / "docs" / "live-processes.md").read_text()
    (line,) = [x for x in doc.splitlines() if x.startswith("*/15 ")]
    command = line.split(None, 6)[6]
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import json, os, subprocess, sys
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "addr", "add", "10.200.9.3/32", "dev", "lo"], check=True)
        kp, echo = {ENTRY_POINTS["module"]!r}, {ECHO!r}
        env = dict(os.environ, PATH={os.path.dirname(sys.executable)!r} + ":/usr/bin:/bin")
        procs = []
        def pair(address):
            server = subprocess.Popen([*echo, "serve", address, "0"], stdout=subprocess.PIPE,
                                      text=True)
            port = json.loads(server.stdout.readline())["port"]
            client = subprocess.Popen([*echo, "connect", address, str(port)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            client.stdout.readline(); server.stdout.readline()
            procs.extend([server, client])
            return [server.pid, client.pid]
        def cron(*prefix):
            done = subprocess.run([*prefix, "sh", "-c", sys.argv[1]], capture_output=True,
                                  text=True, timeout=60, env=env)
            return [done.returncode, done.stdout, done.stderr]
        network = pair("10.200.9.3"); pair("127.0.0.1")
        out = {{"network": network, "before": cron()}}
        subprocess.run([*kp, "apply", *map(str, network)], check=True, capture_output=True)
        out["after"] = cron()
        out["unreadable"] = cron("setpriv", "--bounding-set=-sys_ptrace",
                                 "--inh-caps=-sys_ptrace")
        for p in procs:
            p.kill(); p.wait()
        print(json.dumps(out))
    """))
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--net",
                           sys.executable, str(driver), command], capture_output=True,
                          text=True, timeout=120, env=clean_env())
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    _, text, _ = out["before"]
    assert text.splitlines()[0].split() == ["PID", "COMMAND", "ESTABLISHED",
                                            "WITHOUT_KEEPALIVE"]
    lacking = {int(x.split()[0]) for x in text.splitlines()[1:]
               if x[:1].isdigit() and x.split()[3] == "1"}
    assert lacking == set(out["network"])
    assert out["after"][1] == ""
    assert out["unreadable"][1] == ""


# ---- our cgroup program as the source ---------------------------------------

def test_cgroup_program_shown_as_the_source() -> None:
    """A process in a cgroup carrying our program (idle 41, interval 7, count
    3): status names the program and its cgroup, its sockets' source is
    "cgroup", and apply keeps those values, saying who set them."""
    import importlib

    from keepalive_preload.live.proc import cgroup_mount

    if os.geteuid() != 0:
        unavailable("the cgroup mode needs root")
    if not hasattr(importlib.import_module("keepalive_preload.cgroup"), "covering"):
        unavailable("this build has no keepalive_preload.cgroup.covering yet")
    mount = cgroup_mount()
    if mount is None:
        unavailable("no cgroup2 mount")
    path = os.path.join(mount, f"kp-live-test-{os.getpid()}")
    os.mkdir(path)
    try:
        attached = cli("cgroup", "attach", "--idle", "41", "--interval", "7", "--count", "3",
                       path)
        assert attached.returncode == 0, attached.stderr
        with holder(1, cgroup=path) as (_, info):
            pid = info["pid"]
            (data,) = status(pid)
            (program,) = data["cgroup_programs"]
            assert (program["cgroup"], program["values"]["idle"]) == (path, 41)
            established = [s for s in data["sockets"] if s["state"] == "ESTABLISHED"]
            assert {(s["source"], s["options"]["idle"]) for s in established} == {
                ("cgroup", 41)}
            text = cli("status", str(pid)).stdout
            assert f"cgroup program {program['prog_id']} on {path} (" in text
            (report,) = json.loads(cli("apply", "--json", "--idle", "30", str(pid)).stdout)
            for entry in report["sockets"]:
                if entry["state"] == "ESTABLISHED":
                    assert entry["action"] == "kept"
                    assert entry["by"] == f"our cgroup program on {path}"
    finally:
        cli("cgroup", "detach", path)
        for _ in range(50):  # bounded: the holder's exit frees the cgroup
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.1)


# ---- without pidfd_getfd: the timer view, and one line saying why -----------

def test_old_kernel_shows_timers_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """pidfd_getfd missing (Linux < 5.6: ENOSYS): the timers, and why the
    values are not shown. In-process, with the syscall made to fail."""
    from keepalive_preload import _syscalls
    from keepalive_preload.live import show as _show
    from keepalive_preload.live import status as _status

    def enosys(pidfd: int, fd: int, flags: int = 0) -> int:
        raise _syscalls.SyscallError(errno.ENOSYS, "pidfd_getfd")

    monkeypatch.setattr(_syscalls, "pidfd_getfd", enosys)
    with echo_pair() as (_, client, _, outbound):
        report = _status.inspect(client.pid)
        assert report.options_error is not None
        assert "kernel is too old" in report.options_error
        data = report.to_json()
        found = sock(data, outbound["fd"])
        assert (found["options"], found["timer"], found["source"]) == (None, None, "unknown")
        assert data["without_keepalive"] == 1  # judged from the timer
        lines = _show.format_status(report).splitlines()
        at = lines.index("options not read: cannot duplicate the sockets: the kernel is too "
                         "old (pidfd_getfd needs Linux 5.6 or later); showing the timers only")
        assert lines[at + 1].split() == ["FD", "STATE", "LOCAL", "REMOTE", "TIMER"]


def test_pidfd_open_through_ctypes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.8 has no os.pidfd_open: the syscall is made through ctypes."""
    from keepalive_preload.live import status as _status

    monkeypatch.delattr(os, "pidfd_open", raising=False)
    env = preload_env("connect", **FAST)
    with echo_pair(client_env=env) as (_, client, _, outbound):
        report = _status.inspect(client.pid).to_json()
        assert report["options_error"] is None
        assert sock(report, outbound["fd"])["options"]["idle"] == 5
