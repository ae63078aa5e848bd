"""`status` and `apply` under races and hostile input: a process exiting while
it is read, a pass stopped half way, a thread ID or a kernel thread given as a
PID, PIDs in other spellings, another user's process with a terminal-control
name, a closed pipe and a full disk, MPTCP sockets, and one read of each
network namespace's table per command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from typing import Any

import pytest

from keepalive_preload.live import apply as live_apply
from keepalive_preload.live import status as live_status
from keepalive_preload.live.errors import LiveError, ProcessExiting
from live import holder, sock, status
from support import ENTRY_POINTS, TIMEOUT, clean_env, cli, one_line_error, stop, unavailable

KP = ENTRY_POINTS["script"]
#: Bounds of the race loops: tries, and seconds in all.
TRIES, SECONDS = 12, 90
EVIL = "\x1b[2J\x1b[31mEVIL\n"
EVIL_ARG = r"\x1b[2J\x1b[31mEVIL\n"
ESCAPED = "\\x1b[2J\\x1b[31mEVIL\\n"


# ---- a process exiting while it is read -------------------------------------

def test_exiting_process_is_an_error_never_a_short_list() -> None:
    """SIGKILL a process holding 4,001 sockets and read it over and over while
    it exits (its descriptors close one by one): every read is either the full
    list or an error, and the exiting state is caught at least once."""
    seen: list[str] = []
    deadline = time.monotonic() + SECONDS
    for _ in range(TRIES):
        with holder(2000) as (_proc, info):
            pid, full = info["pid"], info["sockets"]
            os.kill(pid, signal.SIGKILL)
            while time.monotonic() < deadline:
                try:
                    report = live_status.inspect(pid)
                except LiveError as exc:
                    seen.append(type(exc).__name__)
                    if not isinstance(exc, ProcessExiting):
                        break  # a zombie now, or gone
                    continue
                assert len(report.sockets) == full, (len(report.sockets), full)
                seen.append("full")
        if "ProcessExiting" in seen or time.monotonic() > deadline:
            break
    assert "ProcessExiting" in seen, seen


@pytest.mark.parametrize("command", ["status", "apply"])
def test_exiting_process_from_the_command_line(command: str) -> None:
    """The same through the command: exit 0 only with the full list; else
    exit 1 and one line. Killed at once and after 10..60 ms."""
    outcomes = []
    for delay in (0.0, 0.01, 0.03, 0.06):
        with holder(2000) as (_proc, info):
            pid, full = info["pid"], info["sockets"]
            args = [command, "--json", str(pid)]
            if command == "apply":
                args.insert(1, "--dry-run")
            run = subprocess.Popen([*KP, *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=clean_env())
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            out, err = run.communicate(timeout=TIMEOUT)
            if run.returncode == 0:
                (data,) = json.loads(out)
                assert len(data["sockets"]) == full
            else:
                assert run.returncode == 1, (run.returncode, err)
                assert len(err.splitlines()) == 1, err
                assert str(pid) in err, err
            outcomes.append(run.returncode)
    assert 1 in outcomes


def test_apply_reports_what_it_changed_when_it_stops_half_way() -> None:
    """The process dies during the pass: what was set is in the report, the
    report says it stopped, and the command exits 1. Bounded retries until a
    kill lands inside the pass."""
    stopped = None
    deadline = time.monotonic() + SECONDS
    delay = 0.02
    while stopped is None and time.monotonic() < deadline:
        with holder(2000) as (_proc, info):
            pid = info["pid"]
            killer = threading.Timer(delay, os.kill, (pid, signal.SIGKILL))
            killer.start()
            try:
                report = live_apply.apply_pids([pid], "socket", {"idle": 20})[0]
            finally:
                killer.cancel()
            if report.error is not None and report.command is not None and report.sockets:
                stopped = report
            elif report.error is None:
                assert {a.action for a in report.sockets} == {"set"}
                delay /= 2  # it finished first: kill sooner
            else:
                delay *= 1.5  # it was killed before the pass began: later
    assert stopped is not None, "no kill landed inside the pass"
    assert stopped.failed
    assert stopped.error is not None
    assert stopped.error.startswith("stopped")
    assert len(stopped.sockets) < info["sockets"]
    assert {a.action for a in stopped.sockets} <= {"set", "skipped"}
    assert any(a.action == "set" and a.after and a.after["idle"] == 20
               for a in stopped.sockets)
    data = stopped.to_json()
    assert data["stopped"] is True
    assert data["error"] == stopped.error


def test_apply_command_stopped_half_way_exits_1_with_the_changes() -> None:
    """The same through the command, as a user who loses the right to the
    process (it is killed): JSON with the sockets set and "stopped", exit 1."""
    got = None
    deadline = time.monotonic() + SECONDS
    delay = 0.15
    while got is None and time.monotonic() < deadline:
        with holder(3000) as (_proc, info):
            pid = info["pid"]
            run = subprocess.Popen([*KP, "apply", "--json", "--idle", "21", str(pid)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=clean_env())
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            out, err = run.communicate(timeout=TIMEOUT)
            (data,) = json.loads(out) if out else [{}]
            if data.get("stopped") and data["sockets"]:
                got = (run.returncode, data, err)
            elif run.returncode == 0:
                delay /= 2
            else:
                delay *= 1.3
    assert got is not None, "no kill landed inside the pass"
    code, data, err = got
    assert code == 1
    assert any(s["action"] == "set" for s in data["sockets"])
    assert err.startswith(f"keepalive-preload: PID {data['pid']}: stopped"), err


# ---- not a process ------------------------------------------------------------

@pytest.mark.parametrize("command", ["status", "apply"])
def test_thread_id_is_not_a_process(command: str) -> None:
    with holder(1) as (_proc, info):
        one_line_error(cli(command, str(info["tid"])), 1,
                       f"{info['tid']} is a thread ID of process {info['pid']}, not a process")


def _kernel_threads() -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[6]) & 0x00200000:
            found.append(int(name))
    return found


def test_kernel_threads_are_never_listed() -> None:
    """A kernel thread named is an error; --all (also as nobody) never lists one."""
    threads = _kernel_threads()
    if not threads:
        unavailable("no kernel thread visible in this PID namespace")
    one_line_error(cli("status", str(threads[0])), 1, "kernel thread")
    from live import as_nobody

    for run in (cli, as_nobody):
        result = run("status", "--all", "--json")
        listed = {d["pid"] for d in json.loads(result.stdout)}
        assert not listed & set(threads)


@pytest.mark.parametrize("command", ["status", "apply"])
@pytest.mark.parametrize("pid", [" 1", "1 ", "\u0661", "0", "-5", "+1", "0x10", "1e3", ""])
def test_pid_is_ascii_decimal_digits(command: str, pid: str) -> None:
    one_line_error(cli(command, pid), 2, "not a process ID")


# ---- another user's process with a hostile name -------------------------------

def test_hostile_name_is_escaped_in_text_and_kept_in_json() -> None:
    with holder(1, name=EVIL_ARG, user=65534) as (_proc, info):
        pid = info["pid"]
        for args in (["status", str(pid)], ["status", "--all", "--include-loopback"],
                     ["apply", "--dry-run", str(pid)]):
            result = cli(*args)
            assert result.returncode in (0, 3), result
            assert "\x1b" not in result.stdout + result.stderr, args
            (line,) = [x for x in result.stdout.splitlines() if ESCAPED in x]
            assert str(pid) in line, args
        (data,) = status(pid)
        assert data["command"] == EVIL


# ---- a closed pipe, a full disk -----------------------------------------------

COMMANDS = [["status", "{pid}"], ["status", "--all"], ["apply", "--dry-run", "{pid}"],
            ["apply", "--json", "{pid}"], ["metrics"]]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_closed_pipe_and_full_disk(args: list[str]) -> None:
    with holder(50) as (_proc, info):
        argv = [*KP, *(a.format(pid=info["pid"]) for a in args)]
        read, write = os.pipe()
        os.close(read)
        try:
            done = subprocess.run(argv, stdout=write, stderr=subprocess.PIPE, text=True,
                                  timeout=TIMEOUT, env=clean_env())
        finally:
            os.close(write)
        assert (done.returncode, done.stderr) == (1, ""), done
        with open("/dev/full", "w") as full:
            done = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True,
                                  timeout=TIMEOUT, env=clean_env())
        assert done.returncode == 1, done
        assert done.stderr == ("keepalive-preload: cannot write the output: No space left "
                               "on device\n")


def test_head_reads_one_line_quietly() -> None:
    """`status PID | head -1`, as typed in a shell."""
    with holder(500) as (_proc, info):
        done = subprocess.run(["sh", "-c", f'"$0" status {info["pid"]} | head -1', *KP],
                              capture_output=True, text=True, timeout=TIMEOUT, env=clean_env())
        assert done.stderr == ""
        assert done.stdout.startswith(f"PID {info['pid']} (")


# ---- MPTCP --------------------------------------------------------------------

def test_mptcp_sockets_read_and_applied_as_tcp() -> None:
    """An MPTCP socket is listed (protocol mptcp), apply turns keepalive on and
    skips quietly what the kernel refuses on it (no "failed"), and it no longer
    counts as lacking keepalive."""
    import socket

    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262).close()
    except OSError as exc:
        unavailable(f"no MPTCP in this kernel ({exc.strerror})")
    with holder(2, proto=262) as (_proc, info):
        pid = info["pid"]
        (data,) = status(pid, extra=("--include-loopback",))
        assert {s["protocol"] for s in data["sockets"]} == {"mptcp"}
        assert len(data["sockets"]) == info["sockets"]
        assert data["without_keepalive"] == 4
        done = cli("apply", "--json", "--idle", "33", str(pid))
        assert done.returncode == 0, done
        (report,) = json.loads(done.stdout)
        assert {s["action"] for s in report["sockets"]} == {"set"}
        (data,) = status(pid, extra=("--include-loopback",))
        assert data["without_keepalive"] == 0
        for entry in data["sockets"]:
            assert (entry["options"]["keepalive"], entry["options"]["idle"]) == (1, 33)
        text = cli("status", str(pid)).stdout
        assert "ESTABLISHED(mptcp)" in text


# ---- one read of each namespace's table per command ---------------------------

def _netlink_sockets(args: list[str]) -> tuple[int, subprocess.CompletedProcess[str]]:
    strace = shutil.which("strace")
    if strace is None:
        unavailable("strace is not installed")
    done = subprocess.run([strace, "-f", "-qq", "-e", "trace=socket", "-o", "/dev/stderr",
                           *KP, *args], capture_output=True, text=True, timeout=TIMEOUT * 2,
                          env=clean_env())
    return done.stderr.count("AF_NETLINK"), done


def test_one_table_read_per_network_namespace() -> None:
    """Ten processes in this namespace and one in another: `status` of all
    eleven reads two tables (one sock_diag socket each), not eleven."""
    if os.geteuid() != 0:
        unavailable("a second network namespace needs root")
    with holder(2) as first:
        others = [holder(1) for _ in range(9)]
        entered: list[tuple[Any, dict[str, Any]]] = [first]
        try:
            entered += [h.__enter__() for h in others]
            remote = subprocess.Popen(
                ["unshare", "--net", "sh", "-c", "ip link set lo up; exec \"$0\" -c \"$1\"",
                 "python3", "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',0));"
                 "s.listen(); print(1, flush=True); sys.stdin.read()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_env())
            try:
                assert remote.stdout is not None
                assert remote.stdout.readline()
                pids = [str(info["pid"]) for _, info in entered]
                count, done = _netlink_sockets(["status", "--json", *pids])
                assert done.returncode == 0, done.stderr[-2000:]
                assert count == 1, done.stderr[-2000:]
                count, done = _netlink_sockets(["status", "--json", *pids, str(remote.pid)])
                assert done.returncode == 0, done.stderr[-2000:]
                assert count == 2
                reports = json.loads(done.stdout)
                assert len(reports[-1]["sockets"]) == 1
                assert sock(reports[0], 3)["state"] == "LISTEN"
            finally:
                stop(remote)
        finally:
            for h in others:
                h.__exit__(None, None, None)
