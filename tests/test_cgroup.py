"""The cgroup mode: ``keepalive-preload cgroup attach|detach|show``.

A fresh cgroup v2 directory per test; processes are put in it by writing
their PID to cgroup.procs before they exec. The programs under test are ones
LD_PRELOAD cannot reach: a ``gcc -static`` C program and a Go program
(CGO_ENABLED=0). Options are read back inside the process with getsockopt and
seen from outside with ``ss -tno``. Needs root, cgroup v2 and Linux >= 5.9;
elsewhere skipped with the reason (failed in CI). Every test leaves nothing
attached and no cgroup behind, also when it fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keepalive_preload.cgroup import covering
from keepalive_preload.cgroup.asm import assemble, exit_
from keepalive_preload.cgroup.attach import (
    TEST_PAUSE,
    cgroup2_mounts,
    detach_id,
    explain,
    foreign_program,
)
from keepalive_preload.cgroup.loader import (
    BPF_F_ALLOW_MULTI,
    BPF_F_ALLOW_OVERRIDE,
    MAX_PROGS,
    BPFError,
    load,
    query,
)
from netns import BOUND, SLACK, Hosts, read_event
from support import (
    ENTRY_POINTS,
    HELPERS,
    TIMEOUT,
    clean_env,
    cli,
    cli_for_nobody,
    need_tool,
    one_line_error,
    reports,
    run_as_nobody,
    serve_one,
    static_helper,
    subset,
    unavailable,
)

pytestmark = pytest.mark.kernel

CLI = ENTRY_POINTS["script"]
#: What `attach --idle 7 --interval 3 --count 4` sets: the user timeout is derived.
SEVEN = {"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 7, "TCP_KEEPINTVL": 3, "TCP_KEEPCNT": 4,
         "TCP_USER_TIMEOUT": 19000}
SEVEN_ARGS = ("--idle", "7", "--interval", "3", "--count", "4")
#: A socket nobody set anything on (the system defaults of a fresh namespace).
UNTOUCHED = {"SO_KEEPALIVE": 0, "TCP_USER_TIMEOUT": 0}

_counter = itertools.count()



def ok(*args: str) -> str:
    result = cli(*args)
    assert result.returncode == 0, result
    return result.stdout



def in_cgroup(directory: str, argv: list[str]) -> list[str]:
    """argv, started as a member of the cgroup: the shell writes its own PID to
    cgroup.procs, then execs argv in place."""
    return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', directory, *argv]


def attached_ids(directory: str) -> list[int]:
    """The sock_ops programs attached to the cgroup itself, anyone's."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return list(query(fd).prog_ids)
    finally:
        os.close(fd)


def keepalive_timer_on(filter_: str, wait: bool = True) -> str:
    """The ss line (-tnoiH) of the established socket matching filter_ once it
    shows a keepalive timer (bounded wait: 5 s; none without ``wait``); ""
    when it does not."""
    ss = need_tool("ss")
    line = ""
    for _ in range(50 if wait else 1):
        line = subprocess.run([ss, "-tnoiH", "state", "established", filter_],
                              capture_output=True, text=True, timeout=TIMEOUT).stdout
        if "timer:(keepalive," in line:
            return " ".join(line.split())
        time.sleep(0.1)
    assert line, f"no established socket matching {filter_}"
    return ""


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def cgroup2() -> Iterator[str]:
    """The cgroup2 mount; when the host has none, one on a private temporary
    directory, unmounted afterwards."""
    if os.geteuid() != 0:
        unavailable("the cgroup mode needs root")
    release = re.match(r"(\d+)\.(\d+)", os.uname().release)
    if release and (int(release.group(1)), int(release.group(2))) < (5, 9):
        unavailable(f"the cgroup mode needs Linux >= 5.9, not {os.uname().release}")
    mounts = cgroup2_mounts()
    if mounts:
        yield mounts[0]
        return
    directory = tempfile.mkdtemp(prefix="kp-cgroup2-")
    mounted = subprocess.run(["mount", "-t", "cgroup2", "none", directory],
                             capture_output=True, text=True, timeout=TIMEOUT)
    if mounted.returncode != 0:
        os.rmdir(directory)
        unavailable(f"no cgroup2 mount and cannot mount one: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", directory], capture_output=True, timeout=TIMEOUT)
        os.rmdir(directory)


class Cgroup:
    """A fresh cgroup directory; processes started with start() are ended by PID."""

    def __init__(self, mount: str) -> None:
        self.mount = mount
        self.path = os.path.join(mount, f"kp-test-{os.getpid()}-{next(_counter)}")
        os.mkdir(self.path)
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(in_cgroup(self.path, argv), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=clean_env())
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str]) -> list[dict[str, Any]]:
        result = subprocess.run(in_cgroup(self.path, argv), capture_output=True, text=True,
                                timeout=TIMEOUT, env=clean_env())
        assert result.returncode == 0, result
        return reports(result.stdout)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=TIMEOUT)
        for prog_id in attached_ids(self.path):  # ours and any a test attached
            detach_id(self.path, prog_id)
        for _ in range(50):  # bounded: about 5 s
            with open(os.path.join(self.path, "cgroup.procs")) as procs:
                left = [line.strip() for line in procs if line.strip()]
            for pid in left:  # stragglers (a helper's own children) go back to the root
                with contextlib.suppress(OSError), \
                        open(os.path.join(self.mount, "cgroup.procs"), "w") as root:
                    root.write(pid)
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)
        os.rmdir(self.path)


@pytest.fixture
def cgroup(cgroup2: str) -> Iterator[Cgroup]:
    group = Cgroup(cgroup2)
    try:
        yield group
    finally:
        group.close()


@pytest.fixture(scope="module")
def static_peer(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/helpers/static_peer.c, linked statically: LD_PRELOAD cannot reach it."""
    return static_helper(tmp_path_factory, "static_peer.c")


@pytest.fixture(scope="module")
def goclient(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/helpers/goclient, built with go (static, CGO_ENABLED=0), offline."""
    go = need_tool("go")
    work = tmp_path_factory.mktemp("go")
    out = work / "goclient"
    env = clean_env(GOCACHE=str(work / "cache"), GOPATH=str(work / "gopath"), HOME=str(work),
                    GOFLAGS="-mod=mod", GOPROXY="off", CGO_ENABLED="0")
    built = subprocess.run([go, "build", "-o", str(out), "."], cwd=HELPERS / "goclient",
                           env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    return str(out)


@pytest.fixture
def port() -> Iterator[int]:
    """A loopback listener in this process (outside the test cgroup)."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(64)
        yield srv.getsockname()[1]


def attach(group: Cgroup, *args: str) -> str:
    return ok("cgroup", "attach", *args, group.path)


def connect(group: Cgroup, static_peer: str, port: int, *extra: str) -> dict[str, Any]:
    """The static client's report of one connection made from inside the cgroup."""
    proc = group.start([static_peer, "connect", "127.0.0.1", str(port), *extra])
    event = read_event(proc, 10)
    assert event is not None, proc.communicate(timeout=TIMEOUT)
    assert event["event"] == "connected"
    return event


# --- the options reach programs LD_PRELOAD cannot --------------------------------------------

def test_static_client_gets_the_values(cgroup: Cgroup, static_probe: str, port: int) -> None:
    attach(cgroup, *SEVEN_ARGS, "--syn-count", "3")
    (report,) = cgroup.run([static_probe, "connect4", str(port)])
    assert subset(report, SEVEN) == SEVEN
    assert report["TCP_SYNCNT"] == 3  # set at the connect callback


def test_seen_from_outside_with_ss(cgroup: Cgroup, static_peer: str) -> None:
    need_tool("ss")
    attach(cgroup, *SEVEN_ARGS)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        event = connect(cgroup, static_peer, port)
        assert subset(event, SEVEN) == SEVEN
        conn, _ = srv.accept()
        with conn:
            lines = subprocess.run(["ss", "-tnoH", "state", "established", "dport", "=",
                                    f":{port}"], capture_output=True, text=True,
                                   timeout=TIMEOUT, check=True).stdout
    (line,) = lines.splitlines()
    assert re.search(r"timer:\(keepalive,[0-9.]+m?s(ec)?,0\)", line), line


@pytest.mark.parametrize("keepalive", ["off", "default"])
def test_go_client(cgroup: Cgroup, goclient: str, port: int, keepalive: str) -> None:
    attach(cgroup, *SEVEN_ARGS)
    (report,) = cgroup.run([goclient, str(port), keepalive])
    if keepalive == "off":  # Dialer.KeepAlive -1: ours
        assert report == SEVEN
    else:  # Go sets its own 15 s after connect returns, after our callback: Go's wins
        assert (report["SO_KEEPALIVE"], report["TCP_KEEPIDLE"]) == (1, 15)


def test_server_accepted_sockets(cgroup: Cgroup, static_probe: str) -> None:
    attach(cgroup, *SEVEN_ARGS)
    accepted, listening, _ = serve_one(in_cgroup(cgroup.path, [static_probe]), clean_env())
    assert subset(accepted, SEVEN) == SEVEN
    assert listening["SO_KEEPALIVE"] == 0  # listeners are not connections


def test_process_outside_untouched(cgroup: Cgroup, static_probe: str, port: int) -> None:
    attach(cgroup, *SEVEN_ARGS)
    result = subprocess.run([static_probe, "connect4", str(port)], capture_output=True,
                            text=True, timeout=TIMEOUT, env=clean_env(), check=True)
    (report,) = reports(result.stdout)
    assert subset(report, UNTOUCHED) == UNTOUCHED


@pytest.mark.parametrize("scope", ["--client", "--server", "--all"])
def test_scope(cgroup: Cgroup, static_probe: str, port: int, scope: str) -> None:
    attach(cgroup, scope, *SEVEN_ARGS)
    (client,) = cgroup.run([static_probe, "connect4", str(port)])
    accepted, _, _ = serve_one(in_cgroup(cgroup.path, [static_probe]), clean_env())
    assert client["SO_KEEPALIVE"] == (scope != "--server")
    assert accepted["SO_KEEPALIVE"] == (scope != "--client")


def test_child_cgroups_inherit(cgroup: Cgroup, static_probe: str, port: int) -> None:
    """Attached to a parent (a slice, kubepods), the program reaches the cgroups below."""
    attach(cgroup, *SEVEN_ARGS)
    child = os.path.join(cgroup.path, "child")
    os.mkdir(child)
    try:
        result = subprocess.run(in_cgroup(child, [static_probe, "connect4", str(port)]),
                                capture_output=True, text=True, timeout=TIMEOUT,
                                env=clean_env(), check=True)
        (report,) = reports(result.stdout)
        assert subset(report, SEVEN) == SEVEN
        (entry,) = json.loads(ok("cgroup", "show", "--json", child))
        assert (entry["cgroup"], entry["inherited_by"]) == (cgroup.path, child)
        assert entry["decides"] == ["outbound", "accepted"]
        assert f"{cgroup.path} (inherited by {child})" in ok("cgroup", "show", child)
    finally:
        os.rmdir(child)


def test_attach_by_a_process_cgroup_path(cgroup: Cgroup, static_peer: str) -> None:
    """The container recipe: the path from /proc/PID/cgroup, relative to the mount."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        first = connect(cgroup, static_peer, port)  # a process already in the cgroup
        assert first["SO_KEEPALIVE"] == 0
        pid = cgroup.procs[-1].pid
        with open(f"/proc/{pid}/cgroup") as f:
            (path,) = [line.split(":", 2)[2].strip() for line in f if line.startswith("0::")]
        assert os.path.join(cgroup.mount, path.lstrip("/")) == cgroup.path
        ok("cgroup", "attach", *SEVEN_ARGS, path)
        assert subset(connect(cgroup, static_peer, port), SEVEN) == SEVEN  # new connections


_JOIN_LATE = r"""
import json, os, socket, sys
early = socket.socket(); early.bind(("127.0.0.1", 0)); early.listen()  # before joining
with open(sys.argv[1] + "/cgroup.procs", "w") as procs:
    procs.write(str(os.getpid()))
late = socket.socket(); late.bind(("127.0.0.1", 0)); late.listen()  # after joining
out = {}
for name, srv in (("early", early), ("late", late)):
    with socket.create_connection(srv.getsockname()):
        conn, _ = srv.accept()
        out[name] = conn.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
print(json.dumps(out))
"""


def test_socket_belongs_to_the_cgroup_it_was_created_in(cgroup: Cgroup) -> None:
    """What socket activation runs into: a listener created before the process joined
    the cgroup (as systemd creates it, in its own cgroup) stays outside, and so do the
    connections accepted on it."""
    attach(cgroup, "--server", *SEVEN_ARGS)
    result = subprocess.run([sys.executable, "-c", _JOIN_LATE, cgroup.path],
                            capture_output=True, text=True, timeout=TIMEOUT, env=clean_env())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"early": 0, "late": 1}


def test_ipv6(cgroup: Cgroup, static_probe: str, listener6: int) -> None:
    attach(cgroup, *SEVEN_ARGS)
    (report,) = cgroup.run([static_probe, "connect6", str(listener6)])
    assert subset(report, SEVEN) == SEVEN


@pytest.mark.parametrize("scope", ["--client", "--server"])
def test_window_clamp(cgroup: Cgroup, static_probe: str, port: int, scope: str) -> None:
    attach(cgroup, scope, "--window-clamp", "20000")
    if scope == "--client":
        (report,) = cgroup.run([static_probe, "connect4", str(port)])
    else:
        report, _, _ = serve_one(in_cgroup(cgroup.path, [static_probe]), clean_env())
    assert report["TCP_WINDOW_CLAMP"] == 20000


def test_maxseg_on_outbound(cgroup: Cgroup, static_probe: str, port: int) -> None:
    attach(cgroup, "--client", "--maxseg", "1000")
    (report,) = cgroup.run([static_probe, "connect4", str(port)])
    assert 0 < report["TCP_MAXSEG"] <= 1000, report


# --- whose settings win ----------------------------------------------------------------------

@pytest.mark.parametrize("force", [False, True])
def test_program_own_keepalive(cgroup: Cgroup, static_peer: str, port: int,
                               force: bool) -> None:
    attach(cgroup, *SEVEN_ARGS, *(["--force"] if force else []))
    event = connect(cgroup, static_peer, port, "own")  # SO_KEEPALIVE, idle 100, before connect
    if force:
        assert subset(event, SEVEN) == SEVEN
    else:
        assert (event["SO_KEEPALIVE"], event["TCP_KEEPIDLE"], event["TCP_USER_TIMEOUT"]) == \
            (1, 100, 0)


def test_server_own_keepalive_on_listener(cgroup: Cgroup, static_peer: str) -> None:
    attach(cgroup, *SEVEN_ARGS)
    proc = cgroup.start([static_peer, "listen", "127.0.0.1", "0", "own"])
    event = read_event(proc, 10)
    assert event is not None
    with socket.create_connection(("127.0.0.1", event["port"]), timeout=TIMEOUT):
        accepted = read_event(proc, 10)
    assert accepted is not None
    assert (accepted["SO_KEEPALIVE"], accepted["TCP_KEEPIDLE"]) == (1, 100)


# --- a dead peer, detected by a static binary -------------------------------------------------

def test_dead_peer_detected_within_bound(hosts: Hosts, cgroup: Cgroup, static_peer: str) -> None:
    attach(cgroup, "--idle", "1", "--interval", "1", "--count", "2")  # bound 1 + 1 * 2 = 3 s
    server = hosts.start("b", [sys.executable, str(HELPERS / "blocked_peer.py"), "listen",
                               hosts.addr["b"], "5001"], clean_env(),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert read_event(server, 10) == {"event": "listening"}
    # Into the cgroup first, then into the namespace: `ip netns exec` mounts a /sys of
    # its own, where the cgroup2 mount is not.
    client = cgroup.start(["ip", "netns", "exec", hosts.ns["a"], static_peer, "connect",
                           hosts.addr["b"], "5001"])
    event = read_event(client, 10)
    assert event is not None
    assert (event["event"], event["TCP_KEEPIDLE"], event["TCP_USER_TIMEOUT"]) == \
        ("connected", 1, 3000)
    hosts.link("b", up=False)
    event = read_event(client, BOUND + SLACK + 5)
    assert event is not None, "still blocked: the dead peer was not detected"
    assert event["errno"] == "ETIMEDOUT"
    print(f"\nstatic client in the cgroup: bound {BOUND:g} s, detected after "
          f"{event['elapsed']:.2f} s")
    assert BOUND - SLACK <= event["elapsed"] <= BOUND + SLACK, event


# --- show, replace, detach --------------------------------------------------------------------

def test_show_reports_the_values(cgroup: Cgroup) -> None:
    attach(cgroup, "--client", *SEVEN_ARGS, "--syn-count", "2")
    (entry,) = json.loads(ok("cgroup", "show", "--json", cgroup.path))
    assert entry["cgroup"] == cgroup.path
    assert entry["name"] == "kp_keepalive"
    assert entry["values"] == {"scope": "client", "force": False, "idle": 7, "interval": 3,
                               "count": 4, "user_timeout": 19000, "syn_count": 2, "maxseg": 0,
                               "window_clamp": 0}
    assert entry.pop("decides") == ["outbound"]
    everywhere = json.loads(ok("cgroup", "show", "--json"))
    assert entry in everywhere
    text = ok("cgroup", "show", cgroup.path)
    assert "idle 7 s, interval 3 s, count 4, user timeout 19000 ms" in text
    # relative to the mount, as the command line accepts it
    relative = os.path.relpath(cgroup.path, cgroup.mount)
    assert json.loads(ok("cgroup", "show", "--json", relative)) == [{**entry,
                                                                     "decides": ["outbound"]}]


def test_attach_twice_replaces(cgroup: Cgroup, static_probe: str, port: int) -> None:
    other = _foreign_program(cgroup)
    try:
        attach(cgroup, *SEVEN_ARGS)
        attach(cgroup, "--idle", "9")
        entries = json.loads(ok("cgroup", "show", "--json", cgroup.path))
        assert [e["values"]["idle"] for e in entries] == [9]
        (report,) = cgroup.run([static_probe, "connect4", str(port)])
        assert report["TCP_KEEPIDLE"] == 9
        ok("cgroup", "detach", cgroup.path)
        assert other in attached_ids(cgroup.path)  # someone else's program stays
    finally:
        detach_id(cgroup.path, other)


def _foreign_program(group: Cgroup) -> int:
    """Attach a program that is not ours (another name, does nothing), next to others."""
    return foreign_program(group.path, "kp_test_other", BPF_F_ALLOW_MULTI)


def test_detach_restores(cgroup: Cgroup, static_probe: str, port: int) -> None:
    attach(cgroup, *SEVEN_ARGS)
    assert "detached" in ok("cgroup", "detach", cgroup.path)
    (report,) = cgroup.run([static_probe, "connect4", str(port)])
    assert subset(report, UNTOUCHED) == UNTOUCHED
    assert json.loads(ok("cgroup", "show", "--json", cgroup.path)) == []
    bpftool = shutil.which("bpftool")
    if bpftool:
        listed = subprocess.run([bpftool, "cgroup", "show", cgroup.path], capture_output=True,
                                text=True, timeout=TIMEOUT).stdout
        assert "kp_keepalive" not in listed
    assert "nothing of ours" in ok("cgroup", "detach", cgroup.path)  # idempotent


def test_attachment_outlives_the_command(cgroup: Cgroup) -> None:
    attach(cgroup, *SEVEN_ARGS)
    bpftool = need_tool("bpftool")
    listed = subprocess.run([bpftool, "cgroup", "show", cgroup.path], capture_output=True,
                            text=True, timeout=TIMEOUT, check=True).stdout
    assert "kp_keepalive" in listed
    dump = subprocess.run([bpftool, "map", "dump", "name", "kp_keepalive"], capture_output=True,
                          text=True, timeout=TIMEOUT).stdout
    # flags, then idle 7, interval 3, count 4, as the map holds them (u32, little-endian)
    assert "07 00 00 00 03 00 00 00 04 00 00 00" in " ".join(dump.split())


def test_unit_name_resolved_with_systemctl(cgroup: Cgroup, tmp_path: Path) -> None:
    relative = "/" + os.path.relpath(cgroup.path, cgroup.mount)
    fake = tmp_path / "systemctl"
    fake.write_text(f'#!/bin/sh\n[ "$*" = "show -p ControlGroup --value demo.service" ] '
                    f'&& echo {relative}\n')
    fake.chmod(0o755)
    env = clean_env(PATH=f"{tmp_path}:/usr/bin:/bin")
    result = cli("cgroup", "attach", *SEVEN_ARGS, "demo.service", env=env)
    assert result.returncode == 0, result
    assert cgroup.path in result.stdout
    assert "kp_keepalive" in ok("cgroup", "show", cgroup.path)


def test_debug_prints_the_program(cgroup: Cgroup) -> None:
    result = cli("cgroup", "attach", "--debug", "--client", "--idle", "7", cgroup.path)
    assert result.returncode == 0, result
    listing = result.stderr
    assert "established:" in listing
    assert "call bpf_getsockopt" in listing  # the precedence check
    assert listing.count("call bpf_setsockopt") == 5  # SO_KEEPALIVE and four TCP options
    assert "exit" in listing.splitlines()[-1]


def test_verifier_log_in_the_error() -> None:
    if os.geteuid() != 0:
        unavailable("loading BPF programs needs root")
    with pytest.raises(BPFError) as refused:
        load(assemble([exit_()]), "kp_test_bad")  # r0 never set
    assert refused.value.operation == "loading the program"
    assert "R0" in refused.value.log
    error = explain(refused.value)
    assert str(error).startswith("loading the program: Permission denied; the kernel's "
                                 "verifier says: "), error  # the operation named once
    assert "R0 !read_ok" in str(error)
    assert "\n" not in str(error)


# --- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("action", ["attach", "detach", "show"])
def test_without_capabilities(cgroup: Cgroup, action: str) -> None:
    """Root with every capability dropped: the kernel says EPERM, we say which."""
    setpriv = need_tool("setpriv")
    result = subprocess.run([setpriv, "--inh-caps=-all", "--ambient-caps=-all",
                             "--bounding-set=-all", "--", *CLI, "cgroup", action, cgroup.path],
                            capture_output=True, text=True, timeout=TIMEOUT, env=clean_env())
    one_line_error(result, 1, "needs root", "CAP_BPF", "CAP_NET_ADMIN")


@pytest.mark.parametrize("action", ["attach", "detach", "show"])
def test_not_root(cgroup: Cgroup, action: str) -> None:
    with cli_for_nobody() as (argv, env):
        result = run_as_nobody([*argv, "cgroup", action, cgroup.path], **env)
    one_line_error(result, 1, "needs root", "CAP_BPF")


_COVERING = """
import sys
from keepalive_preload.cgroup import covering
try:
    covering(sys.argv[1])
except PermissionError as exc:
    print("PermissionError:", exc)
"""


def test_covering_not_root_is_a_permission_error(cgroup: Cgroup) -> None:
    """What status and metrics get from covering() when not root: a
    PermissionError, whose text says why."""
    attach(cgroup, *SEVEN_ARGS)
    with cli_for_nobody() as (argv, env):
        result = run_as_nobody([argv[0], "-c", _COVERING, cgroup.path], **env)
    assert result.returncode == 0, result
    assert result.stdout.startswith("PermissionError: querying the cgroup: operation not "
                                    "permitted: the cgroup mode needs root"), result.stdout


def test_no_such_cgroup(cgroup2: str) -> None:
    one_line_error(cli("cgroup", "attach", "kp-no-such-cgroup"), 1, "no such cgroup")
    one_line_error(cli("cgroup", "show", "/nonexistent/kp"), 1, "no such cgroup")


def test_unit_without_systemctl(cgroup2: str, tmp_path: Path) -> None:
    one_line_error(cli("cgroup", "attach", "demo.service", env=clean_env(PATH=str(tmp_path))),
                   1, "demo.service", "no systemctl")


def test_not_a_cgroup2_directory(cgroup2: str, tmp_path: Path) -> None:
    one_line_error(cli("cgroup", "attach", str(tmp_path)), 1, "not a cgroup v2 directory")


def test_no_cgroup2_mount_said_clearly(tmp_path: Path) -> None:
    """With no cgroup2 in mountinfo (a private mount namespace whose cgroup2
    mounts are gone), the command says so."""
    if os.geteuid() != 0:
        unavailable("needs root for a mount namespace")
    need_tool("unshare")
    script = ("for m in $(awk '$0 ~ / - cgroup2 / {print $5}' /proc/self/mountinfo); do "
              "umount -l \"$m\"; done; exec \"$@\"")
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                             "sh", *CLI, "cgroup", "show"], capture_output=True, text=True,
                            timeout=TIMEOUT, env=clean_env())
    one_line_error(result, 1, "no cgroup v2 mount")


# --- nested cgroups: the nearest of ours decides ----------------------------------------------

@contextlib.contextmanager
def child_of(group: Cgroup) -> Iterator[str]:
    """A cgroup below ``group``; whatever is attached to it is detached, and it is
    removed, also on failure."""
    child = os.path.join(group.path, "child")
    os.mkdir(child)
    try:
        yield child
    finally:
        for prog_id in attached_ids(child):
            detach_id(child, prog_id)
        os.rmdir(child)


def run_in(directory: str, argv: list[str]) -> dict[str, Any]:
    result = subprocess.run(in_cgroup(directory, argv), capture_output=True, text=True,
                            timeout=TIMEOUT, env=clean_env(), check=True)
    (report,) = reports(result.stdout)
    return report


@pytest.mark.parametrize("parent", [[], ["--force"]], ids=["parent", "parent-force"])
def test_nested_nearest_wins(cgroup: Cgroup, static_probe: str, port: int,
                             parent: list[str]) -> None:
    """Ours on a parent and a child: a connection in the child gets the child's
    values, whatever the parent's --force, on every kernel (the first of ours
    marks the callback's context; the ones above leave it)."""
    attach(cgroup, "--idle", "9", *parent)
    with child_of(cgroup) as child:
        ok("cgroup", "attach", *SEVEN_ARGS, child)
        assert subset(run_in(child, [static_probe, "connect4", str(port)]), SEVEN) == SEVEN
        accepted, _, _ = serve_one(in_cgroup(child, [static_probe]), clean_env())
        assert subset(accepted, SEVEN) == SEVEN
        assert run_in(cgroup.path, [static_probe, "connect4", str(port)])["TCP_KEEPIDLE"] == 9
        text = ok("cgroup", "show", child).splitlines()
        assert text[0].startswith(f"{child}: kp_keepalive")
        assert text[0].endswith("outbound and accepted connections get these values")
        assert text[1].startswith(f"{cgroup.path} (inherited by {child})")
        assert text[1].endswith("not used for " + child + "'s connections: a nearer one of "
                                "ours decides")
        assert "nearest one handling its direction" in text[2]


def test_nested_by_direction(cgroup: Cgroup, static_probe: str, port: int) -> None:
    """A child's program for accepted connections only leaves outbound ones to
    the parent's: each direction gets the nearest of ours that handles it."""
    attach(cgroup, "--client", "--idle", "9")
    with child_of(cgroup) as child:
        ok("cgroup", "attach", "--server", *SEVEN_ARGS, child)
        assert run_in(child, [static_probe, "connect4", str(port)])["TCP_KEEPIDLE"] == 9
        accepted, _, _ = serve_one(in_cgroup(child, [static_probe]), clean_env())
        assert subset(accepted, SEVEN) == SEVEN
        entries = json.loads(ok("cgroup", "show", "--json", child))
        assert [(e["cgroup"], e["decides"]) for e in entries] == \
            [(child, ["accepted"]), (cgroup.path, ["outbound"])]
        found = covering(child)
        assert [(a.cgroup, a.decides, a.scope, a.values["idle"]) for a in found] == \
            [(child, ("accepted",), "server", 7), (cgroup.path, ("outbound",), "client", 9)]
        assert all(a.effective for a in found)


# --- serialised, and errors by their real cause -----------------------------------------------

def test_concurrent_attaches_leave_one(cgroup: Cgroup) -> None:
    """Two attaches at once, each pausing between reading what is attached and
    attaching (a test-only window): they serialise, and one of ours remains,
    with the values of the one that ran second."""
    env = clean_env(**{TEST_PAUSE: "1"})
    procs = [subprocess.Popen([*CLI, "cgroup", "attach", "--idle", str(idle), cgroup.path],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for idle in (5, 6)]
    outs = {idle: proc.communicate(timeout=TIMEOUT) for idle, proc in zip((5, 6), procs)}
    assert [proc.returncode for proc in procs] == [0, 0], outs
    (entry,) = json.loads(ok("cgroup", "show", "--json", cgroup.path))
    assert len(attached_ids(cgroup.path)) == 1
    second = [idle for idle, (out, _) in outs.items() if out.startswith("replaced ours on")]
    assert second == [entry["values"]["idle"]], outs


@pytest.mark.parametrize(("flags", "how"), [(0, "exclusively (no flags)"),
                                            (BPF_F_ALLOW_OVERRIDE, "with BPF_F_ALLOW_OVERRIDE")])
def test_foreign_exclusive_program(cgroup: Cgroup, flags: int, how: str) -> None:
    """Root, but a foreign program attached without BPF_F_ALLOW_MULTI: the kernel
    refuses ours beside it (EPERM), and the error says so, not "needs root"."""
    other = foreign_program(cgroup.path, "kp_test_excl", flags)
    result = cli("cgroup", "attach", cgroup.path)
    one_line_error(result, 1, "attaching the program: operation not permitted: program "
                   f"{other} is attached to {cgroup.path} {how}", "detach it first")
    assert "root" not in result.stderr
    assert attached_ids(cgroup.path) == [other]


def test_foreign_exclusive_program_above(cgroup: Cgroup) -> None:
    other = foreign_program(cgroup.path, "kp_test_excl", 0)
    with child_of(cgroup) as child:
        result = cli("cgroup", "attach", child)
        one_line_error(result, 1, f"program {other} is attached exclusively (no flags) to "
                       f"{cgroup.path}, above {child}")
        assert attached_ids(child) == []


def test_program_limit(cgroup: Cgroup) -> None:
    """The kernel's 64 programs per cgroup: said in words, not "Argument list too long"."""
    for i in range(MAX_PROGS):
        foreign_program(cgroup.path, f"kp_test_{i}", BPF_F_ALLOW_MULTI)
    result = cli("cgroup", "attach", cgroup.path)
    one_line_error(result, 1, f"attaching the program: {cgroup.path} already has 64 sock_ops "
                   "programs attached, the kernel's limit")
    assert len(attached_ids(cgroup.path)) == MAX_PROGS


def test_paths_as_given(cgroup2: str) -> None:
    missing = os.path.join(cgroup2, "kp-no-such-cgroup")
    result = cli("cgroup", "attach", missing)
    one_line_error(result, 1, f"cgroup attach: {missing}: no such cgroup")
    assert result.stderr.count(cgroup2) == 1, result.stderr
    one_line_error(cli("cgroup", "attach", "kp-no-such"), 1,
                   f"kp-no-such: no such cgroup under {cgroup2}")


def test_root_cgroup(cgroup2: str) -> None:
    """"/" is the cgroup2 root (the container recipe for a process in the root
    cgroup); only looked at here: attaching there would cover the whole host."""
    result = cli("cgroup", "show", "--json", "/")
    assert result.returncode == 0, result
    assert all(e["cgroup"] == cgroup2 for e in json.loads(result.stdout))


_HOLD = r"""
import os, socket, sys
with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as procs:
    procs.write(str(os.getpid()))
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
with open(os.path.join(sys.argv[2], "cgroup.procs"), "w") as procs:  # out again
    procs.write(str(os.getpid()))
print(srv.getsockname()[1], flush=True)
sys.stdin.read()
"""


def test_show_lists_ours_on_a_removed_cgroup(cgroup2: str) -> None:
    """A cgroup removed while a socket made in it lives keeps our program loaded
    (and attached for that socket): show lists it, as such."""
    path = os.path.join(cgroup2, f"kp-test-{os.getpid()}-removed")
    os.mkdir(path)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, path, cgroup2], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=clean_env())
    try:
        ok("cgroup", "attach", *SEVEN_ARGS, path)
        (entry,) = json.loads(ok("cgroup", "show", "--json", path))
        assert holder.stdout is not None
        assert holder.stdout.readline().strip().isdigit()
        os.rmdir(path)
        entries = [e for e in json.loads(ok("cgroup", "show", "--json")) if e["id"] == entry["id"]]
        del entry["decides"]
        assert entries == [{**entry, "cgroup": None}]
        lines = [line for line in ok("cgroup", "show").splitlines()
                 if f"(id {entry['id']})" in line]
        assert len(lines) == 1
        assert lines[0].startswith("(a removed cgroup): kp_keepalive")
        assert "still loaded" in lines[0]
    finally:
        holder.kill()
        holder.communicate(timeout=TIMEOUT)
        if os.path.isdir(path):
            for prog_id in attached_ids(path):
                detach_id(path, prog_id)
            os.rmdir(path)


# --- values from the configuration file, and --existing -------------------------------------

def test_values_from_the_configuration_file(cgroup: Cgroup, tmp_path: Path) -> None:
    """The command line's values over the file's over the built-in defaults;
    the file's problems as warnings with their lines."""
    conf = tmp_path / "keepalive-preload.conf"
    conf.write_text("TCP_KEEPIDLE=11\nTCP_KEEPCNT=2\nKP_NO_SUCH_OPTION=1\n")
    result = cli("cgroup", "attach", "--config", str(conf), "--interval", "4", cgroup.path)
    assert result.returncode == 0, result
    assert f"warning: {conf}:3: " in result.stderr, result.stderr
    (entry,) = json.loads(ok("cgroup", "show", "--json", cgroup.path))
    assert {k: entry["values"][k] for k in ("idle", "interval", "count", "user_timeout")} == \
        {"idle": 11, "interval": 4, "count": 2, "user_timeout": 19000}
    ok("cgroup", "attach", "--no-config", cgroup.path)
    (entry,) = json.loads(ok("cgroup", "show", "--json", cgroup.path))
    assert entry["values"]["idle"] == 15


def test_existing_connections(cgroup: Cgroup, static_peer: str) -> None:
    """--existing: the connections the cgroup's processes hold already get the values."""
    if importlib.util.find_spec("keepalive_preload.live.show") is None:
        pytest.skip("keepalive_preload.live.apply.apply_pids and live.show (the live "
                    "helper's) are not in this build yet")
    need_tool("ss")
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        assert connect(cgroup, static_peer, port)["SO_KEEPALIVE"] == 0  # before attaching
        pid = cgroup.procs[-1].pid
        result = cli("cgroup", "attach", "--existing", *SEVEN_ARGS, cgroup.path)
        assert result.returncode == 0, result
        assert str(pid) in result.stdout
        assert keepalive_timer_on(f"dport = :{port}")


def _our_programs() -> set[int] | None:
    """The IDs of the loaded BPF programs named like ours, or None when they
    cannot be listed (not root, no bpftool)."""
    bpftool = shutil.which("bpftool")
    if os.geteuid() != 0 or bpftool is None:
        return None
    listed = subprocess.run([bpftool, "-j", "prog", "show"], capture_output=True, text=True,
                            timeout=TIMEOUT)
    if listed.returncode != 0:
        return None
    return {p["id"] for p in json.loads(listed.stdout or "[]") if p.get("name") == "kp_keepalive"}


@pytest.fixture(scope="module", autouse=True)
def programs_before() -> set[int] | None:
    """Our programs loaded before this file's first test (a deployment's stay)."""
    return _our_programs()


def test_nothing_left_behind(cgroup2: str, programs_before: set[int] | None) -> None:
    """Runs last in this file: no cgroup of ours and none of our programs remain
    (none loaded that was not loaded before the first test)."""
    leftover = [d for d in os.listdir(cgroup2) if d.startswith(f"kp-test-{os.getpid()}-")]
    assert leftover == []
    if programs_before is None:
        unavailable("bpftool (as root) is needed to list the loaded BPF programs")
    # A cgroup removed with a program still attached releases it later, from a
    # kernel work queue.
    deadline = time.monotonic() + 15
    while (left := (_our_programs() or set()) - programs_before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == set()
