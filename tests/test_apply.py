"""`keepalive-preload apply`: the options set on the sockets a running process
already holds (pidfd_getfd), without stopping it — seen by `ss`, read back by
`status`, the connection still working, and a dead peer then detected within
the bound on a real link.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from keepalive_preload.live.apply import apply_pids
from live import (
    ECHO,
    as_nobody,
    as_root_without_ptrace,
    echo,
    echo_pair,
    event,
    missing_pid,
    sock,
    status,
)
from netns import BOUND, PORT, SLACK, Hosts, read_event
from support import FAST, TIMEOUT, clean_env, cli, one_line_error, preload_env, stop, unavailable


def apply(*args: str) -> list[dict[str, Any]]:
    result = cli("apply", "--json", *args)
    assert result.returncode == 0, result
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data


def actions(report: dict[str, Any]) -> dict[int, str]:
    return {s["fd"]: s["action"] for s in report["sockets"]}


def test_idle_connection_fixed_then_dead_peer_detected(hosts: Hosts) -> None:
    """A plain client (no preload, no keepalive) on host a; apply gives it idle
    1 + 1 s x 2 probes; it keeps running, its connection keeps working, and
    when host b vanishes it gets ETIMEDOUT within the bound."""
    pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
    server = hosts.start("b", [*ECHO, "serve", hosts.addr["b"], str(PORT)], clean_env(),
                         **pipes)
    event(server, "listening")
    client = hosts.start("a", [*ECHO, "connect", hosts.addr["b"], str(PORT)], clean_env(),
                         **pipes)
    connected = event(client, "connected")
    event(server, "connected")
    pid, fd = connected["pid"], connected["fd"]
    assert connected["SO_KEEPALIVE"] == 0

    def ss() -> str:
        done = subprocess.run(["ip", "netns", "exec", hosts.ns["a"], "ss", "-tno"],
                              capture_output=True, text=True, timeout=TIMEOUT, check=True)
        (line,) = [x for x in done.stdout.splitlines() if f":{PORT}" in x]
        return line

    assert "keepalive" not in ss()
    (report,) = apply("--idle", "1", "--interval", "1", "--count", "2", str(pid))
    assert actions(report) == {fd: "set"}
    assert sock(report, fd)["after"]["keepalive"] == 1
    assert "timer:(keepalive," in ss()
    (data,) = status(pid)
    options = sock(data, fd)["options"]
    assert (options["keepalive"], options["idle"], options["interval"], options["count"],
            options["user_timeout"]) == (1, 1, 1, 2, 3000)
    # The process agrees, is still running, and the connection still works.
    assert client.stdin is not None
    client.stdin.write("options\n")
    client.stdin.flush()
    seen = event(client, "options")
    assert (seen["SO_KEEPALIVE"], seen["TCP_KEEPIDLE"], seen["TCP_KEEPCNT"]) == (1, 1, 2)
    echo(client, "still there")
    assert client.poll() is None
    # Host b vanishes: no FIN, no RST.
    hosts.link("b", up=False)
    started = time.monotonic()
    closed = read_event(client, BOUND + SLACK + 5)
    elapsed = time.monotonic() - started
    assert closed is not None, "still blocked: the dead peer was not detected"
    assert closed == {"event": "closed", "errno": "ETIMEDOUT"}
    print(f"\napplied idle 1 + 1 s x 2: bound {BOUND:g} s, detected after {elapsed:.2f} s")
    assert BOUND - SLACK <= elapsed <= BOUND + SLACK


def test_dry_run_changes_nothing() -> None:
    with echo_pair() as (server, client, accepted, outbound):
        reports = apply("--dry-run", "--idle", "9", str(server.pid), str(client.pid))
        assert [r["pid"] for r in reports] == [server.pid, client.pid]
        assert set(actions(reports[0]).values()) == {"would set"}
        assert actions(reports[1]) == {outbound["fd"]: "would set"}
        assert sock(reports[1], outbound["fd"])["set"] == {
            "keepalive": 1, "idle": 9, "interval": 15, "count": 9, "user_timeout": 144000}
        for data, fd in zip(status(server.pid, client.pid), (accepted["fd"], outbound["fd"])):
            found = sock(data, fd)
            assert (found["timer"], found["options"]["keepalive"]) == (None, 0)
        text = cli("apply", "--dry-run", str(client.pid)).stdout
        assert f"fd {outbound['fd']}  ESTABLISHED" in text
        assert "would set keepalive=1 idle=15" in text
        echo(client, "untouched")


def test_program_keepalive_kept_unless_forced() -> None:
    env = preload_env("socket", **FAST)  # keepalive already on, idle 5
    with echo_pair(client_env=env) as (_, client, _, outbound):
        (report,) = apply("--idle", "30", str(client.pid))
        assert actions(report) == {outbound["fd"]: "kept"}
        entry = sock(report, outbound["fd"])
        # Said truthfully: the values come from our library, mapped in the process.
        assert entry["by"] == "our library (libkeepalive_socket.so is mapped in the process)"
        assert entry["kept"] == {"idle": 5, "interval": 2, "count": 4, "user_timeout": 13000}
        assert sock(status(client.pid)[0], outbound["fd"])["options"]["idle"] == 5
        text = cli("apply", "--idle", "30", str(client.pid)).stdout
        assert ("kept: already set by our library (libkeepalive_socket.so is mapped in the "
                "process); --force sets ours") in text
        (report,) = apply("--force", "--idle", "30", str(client.pid))
        assert actions(report) == {outbound["fd"]: "set"}
        after = sock(status(client.pid)[0], outbound["fd"])["options"]
        assert (after["idle"], after["interval"], after["count"], after["user_timeout"]) == (
            30, 15, 9, 165000)
        # Again: it has these values already, and says from where.
        (report,) = apply("--idle", "30", str(client.pid))
        assert actions(report) == {outbound["fd"]: "unchanged"}
        assert sock(report, outbound["fd"])["reason"] == (
            "it already has these values, set by an earlier apply")
        echo(client, "forced")


def test_client_and_server_select_sockets() -> None:
    with echo_pair() as (server, client, accepted, outbound):
        pids = (str(server.pid), str(client.pid))
        served, connected = apply("--server", "--idle", "11", *pids)
        roles = {s["fd"]: s["role"] for s in served["sockets"]}
        assert roles[accepted["fd"]] == "accepted"
        assert sorted(roles.values()) == ["accepted", "listener"]
        assert set(actions(served).values()) == {"set"}
        assert actions(connected) == {outbound["fd"]: "skipped"}
        assert "--server" in sock(connected, outbound["fd"])["reason"]
        served, connected = apply("--client", "--idle", "12", *pids)
        assert set(actions(served).values()) == {"skipped"}
        assert actions(connected) == {outbound["fd"]: "set"}
        server_data, client_data = status(*map(int, pids))
        assert {s["options"]["idle"] for s in server_data["sockets"]} == {11}
        assert sock(client_data, outbound["fd"])["options"]["idle"] == 12
        echo(client, "both")


def test_listener_options_inherited_and_inapplicable_ones_reported(probe: str) -> None:
    """Set on a listener: connections accepted later inherit them. TCP_SYNCNT
    and TCP_MAXSEG cannot change an established connection: reported, not set."""
    proc = subprocess.Popen([probe, "listen4"], stdout=subprocess.PIPE, text=True,
                            env=clean_env())
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        (report,) = apply("--server", "--idle", "7", "--count", "3", "--defer-accept", "5",
                          str(proc.pid))
        (listening,) = report["sockets"]
        assert (listening["role"], listening["action"]) == ("listener", "set")
        assert listening["after"]["defer_accept"] > 0
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
            conn.sendall(b"x")  # TCP_DEFER_ACCEPT: accepted once data arrives
            out, _ = proc.communicate(timeout=TIMEOUT)
        accepted, _ = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert (accepted["SO_KEEPALIVE"], accepted["TCP_KEEPIDLE"], accepted["TCP_KEEPCNT"],
                accepted["TCP_USER_TIMEOUT"]) == (1, 7, 3, (7 + 15 * 3) * 1000)
    finally:
        stop(proc)
    with echo_pair() as (_, client, _, outbound):
        (report,) = apply("--syn-count", "3", "--maxseg", "1200", str(client.pid))
        entry = sock(report, outbound["fd"])
        assert entry["action"] == "set"
        assert set(entry["not_set"]) == {"syn_count", "maxseg"}
        assert "syn_count" not in entry["set"]
        text = cli("apply", "--syn-count", "3", str(client.pid), "--force").stdout
        assert ("syn_count not set: applies only to connections still connecting "
                "(SYN-SENT)") in text


def test_values_from_the_configuration_file(tmp_path: Path) -> None:
    """The file's values under the command line's (hostconfig.read(): the
    libraries' own parser), its problems as warnings with their line;
    --no-config: the built-in defaults."""
    import importlib.util

    if importlib.util.find_spec("keepalive_preload.hostconfig") is None:
        unavailable("this build has no keepalive_preload.hostconfig yet")
    config = tmp_path / "keepalive-preload.conf"
    config.write_text("TCP_KEEPIDLE=44\nTCP_KEEPCNT=nine\nTCP_KEEPINTVL=6\n")
    config.chmod(0o644)
    with echo_pair() as (_, client, _, outbound):
        pid = str(client.pid)
        done = cli("apply", "--dry-run", "--json", "--config", str(config), pid)
        assert done.returncode == 0, done.stderr
        (report,) = json.loads(done.stdout)
        assert sock(report, outbound["fd"])["set"] == {
            "keepalive": 1, "idle": 44, "interval": 6, "count": 9,
            "user_timeout": (44 + 6 * 9) * 1000}
        (warning,) = done.stderr.splitlines()
        assert warning.startswith(f"keepalive-preload: {config}:2: "), warning
        (report,) = json.loads(cli("apply", "--dry-run", "--json", "--config", str(config),
                                   "--idle", "50", pid).stdout)
        assert sock(report, outbound["fd"])["set"]["idle"] == 50
        (report,) = json.loads(cli("apply", "--dry-run", "--json", "--no-config", pid).stdout)
        assert sock(report, outbound["fd"])["set"]["idle"] == 15
        one_line_error(cli("apply", "--config", str(tmp_path / "none"), "--no-config", pid), 2,
                       "not allowed with")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["apply"], ["PID"]),
        (["apply", "--server", "--syn-count", "3", "1"],
         ["--syn-count has no effect with --server; it applies to --client and --all"]),
        (["apply", "--client", "--defer-accept", "3", "1"], ["--defer-accept", "--client"]),
        (["apply", "--idle", "0x10", "1"], ["--idle", "1..32767"]),
        (["apply", "--client", "--server", "1"], ["not allowed with"]),
    ],
)
def test_bad_arguments(args: list[str], words: list[str]) -> None:
    one_line_error(cli(*args), 2, *words)


# ---- processes that cannot be changed: one line, exit 1 --------------------

# (no such process, a zombie: test_status.py, for both commands)

def test_as_nobody_permission_denied() -> None:
    with echo_pair() as (_, client, _, outbound):
        one_line_error(as_nobody("apply", str(client.pid)), 1, "permission denied")
        assert sock(status(client.pid)[0], outbound["fd"])["options"]["keepalive"] == 0


def test_root_without_cap_sys_ptrace() -> None:
    with echo_pair() as (_, client, _, outbound):
        one_line_error(as_root_without_ptrace("apply", str(client.pid)), 1,
                       "permission denied")
        assert sock(status(client.pid)[0], outbound["fd"])["options"]["keepalive"] == 0


def test_several_pids_exit_1_if_one_fails() -> None:
    gone = missing_pid()
    with echo_pair() as (_, client, _, outbound):
        result = cli("apply", str(gone), str(client.pid))
        assert result.returncode == 1
        assert result.stderr == f"keepalive-preload: no process with PID {gone}\n"
        assert f"PID {client.pid} (" in result.stdout
        assert sock(status(client.pid)[0], outbound["fd"])["options"]["keepalive"] == 1


def test_apply_pids_leaves_out_a_process_gone_when_asked() -> None:
    """``cgroup attach --existing`` lists a cgroup's processes, which may exit
    before they are read (at boot, udev workers do): with gone_ok such a
    process is left out, not a failure; without it, it is an error report."""
    gone = subprocess.Popen(["/bin/true"])
    gone.wait()
    values = {"idle": 30}
    (report,) = apply_pids([gone.pid], "socket", values, dry_run=True)
    assert report.failed, report
    assert report.command is None, report
    assert str(gone.pid) in (report.error or ""), report
    assert apply_pids([gone.pid], "socket", values, dry_run=True, gone_ok=True) == []
