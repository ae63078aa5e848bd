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

from netns import BOUND, SLACK, Hosts, read_event
from support import (
    ENTRY_POINTS,
    HELPERS,
    TIMEOUT,
    clean_env,
    cli,
    cli_for_nobody,
    compile_helper,
    need_tool,
    one_line_error,
    reports,
    run_as_nobody,
    serve_one,
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



def subset(report: dict[str, Any], expected: dict[str, int]) -> dict[str, Any]:
    return {key: report.get(key) for key in expected}


def in_cgroup(directory: str, argv: list[str]) -> list[str]:
    """argv, started as a member of the cgroup: the shell writes its own PID to
    cgroup.procs, then execs argv in place."""
    return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', directory, *argv]


# --- fixtures ------------------------------------------------------------------------------

def _cgroup2_mounts() -> list[str]:
    from keepalive_preload._cgroup import cgroup2_mounts

    return cgroup2_mounts()


@pytest.fixture(scope="session")
def cgroup2() -> Iterator[str]:
    """The cgroup2 mount; when the host has none, one on a private temporary
    directory, unmounted afterwards."""
    if os.geteuid() != 0:
        unavailable("the cgroup mode needs root")
    release = re.match(r"(\d+)\.(\d+)", os.uname().release)
    if release and (int(release.group(1)), int(release.group(2))) < (5, 9):
        unavailable(f"the cgroup mode needs Linux >= 5.9, not {os.uname().release}")
    mounts = _cgroup2_mounts()
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
        from keepalive_preload import _bpf

        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=TIMEOUT)
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for prog, prog_fd in _bpf.attached(fd):
                with contextlib.closing(_Fd(prog_fd)):
                    if prog.ours:
                        _bpf.detach(fd, prog_fd)
        finally:
            os.close(fd)
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


class _Fd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)


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
    return _static(tmp_path_factory, "static_peer.c")


@pytest.fixture(scope="module")
def static_probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/helpers/probe.c, linked statically."""
    return _static(tmp_path_factory, "probe.c")


def _static(tmp_path_factory: pytest.TempPathFactory, source: str) -> str:
    try:
        return compile_helper(tmp_path_factory, source, "-static")
    except subprocess.CalledProcessError as exc:
        unavailable(f"cannot link {source} statically (libc6-dev's libc.a missing?): {exc}")


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
    everywhere = json.loads(ok("cgroup", "show", "--json"))
    assert entry in everywhere
    text = ok("cgroup", "show", cgroup.path)
    assert "idle 7 s, interval 3 s, count 4, user timeout 19000 ms" in text
    # relative to the mount, as the command line accepts it
    relative = os.path.relpath(cgroup.path, cgroup.mount)
    assert json.loads(ok("cgroup", "show", "--json", relative)) == [entry]


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
        assert other in _attached_ids(cgroup)  # someone else's program stays
    finally:
        _detach_by_id(cgroup, other)


def _attached_ids(group: Cgroup) -> list[int]:
    from keepalive_preload import _bpf

    fd = os.open(group.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ids = []
        for prog, prog_fd in _bpf.attached(fd):
            os.close(prog_fd)
            ids.append(prog.id)
        return ids
    finally:
        os.close(fd)


def _detach_by_id(group: Cgroup, prog_id: int) -> None:
    from keepalive_preload import _bpf

    cgroup_fd = os.open(group.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        prog_fd = _bpf.prog_fd_by_id(prog_id)
        try:
            _bpf.detach(cgroup_fd, prog_fd)
        finally:
            os.close(prog_fd)
    finally:
        os.close(cgroup_fd)


def _foreign_program(group: Cgroup) -> int:
    """Attach a program that is not ours (another name, does nothing); its id."""
    from keepalive_preload import _bpf

    prog_fd = _bpf.load(_bpf.assemble([_bpf.mov_imm(_bpf.R0, 1), _bpf.exit_()]),
                        name="kp_test_other")
    cgroup_fd = os.open(group.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _bpf.attach(cgroup_fd, prog_fd)
        return _bpf.prog_id(prog_fd)
    finally:
        os.close(cgroup_fd)
        os.close(prog_fd)


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
    from keepalive_preload import _bpf

    if os.geteuid() != 0:
        unavailable("loading BPF programs needs root")
    with pytest.raises(_bpf.BPFError) as refused:
        _bpf.load(_bpf.assemble([_bpf.exit_()]), name="kp_test_bad")  # r0 never set
    assert "R0" in refused.value.log


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


def test_no_such_cgroup(cgroup2: str) -> None:
    one_line_error(cli("cgroup", "attach", "kp-no-such-cgroup"), 1, "no such cgroup")
    one_line_error(cli("cgroup", "show", "/nonexistent/kp"), 1, "no such cgroup")


def test_unit_without_systemctl(cgroup2: str, tmp_path: Path) -> None:
    one_line_error(cli("cgroup", "attach", "demo.service", env=clean_env(PATH=str(tmp_path))),
                   1, "demo.service", "no systemctl")


def test_not_a_cgroup2_directory(cgroup2: str, tmp_path: Path) -> None:
    one_line_error(cli("cgroup", "attach", str(tmp_path)), 1, "not a cgroup v2 directory")


@pytest.mark.parametrize(("args", "words"), [
    (["--defer-accept", "5"], ["--defer-accept", "TCP_DEFER_ACCEPT"]),
    (["--server", "--syn-count", "3"],
     ["--syn-count has no effect with --server; it applies to --client and --all"]),
    (["--server", "--maxseg", "1000"], ["--maxseg", "outbound"]),
    (["--idle", "0x10"], ["--idle"]),
    (["--client", "--server"], ["not allowed"]),
])
def test_bad_arguments(args: list[str], words: list[str]) -> None:
    one_line_error(cli("cgroup", "attach", *args, "/sys/fs/cgroup"), 2, *words)


def test_missing_action() -> None:
    assert cli("cgroup").returncode == 2


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


class _Uname:
    def __init__(self, release: str) -> None:
        self.release = release


@pytest.mark.parametrize(("release", "args", "status", "words"), [
    ("5.4.0-150-generic", ["show"], 1, "Linux 5.9 or later is needed"),
    ("5.8.18", ["attach", "/sys/fs/cgroup"], 1, "this kernel is 5.8.18"),
    ("5.10.0-28-amd64", ["attach", "--window-clamp", "9000", "/sys/fs/cgroup"], 2,
     "--window-clamp needs Linux 5.11"),
])
def test_old_kernel(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                    release: str, args: list[str], status: int, words: str) -> None:
    """Checked before any bpf(2) call: a kernel that is too old is named (the
    release faked, in-process)."""
    from keepalive_preload import _cli

    monkeypatch.setattr(os, "uname", lambda: _Uname(release))
    try:
        code = _cli.main(["cgroup", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == status
    (line,) = capsys.readouterr().err.splitlines()
    assert words in line


def test_run_points_to_cgroup_mode_for_static(static_probe: str) -> None:
    result = cli("run", "--", static_probe, "socket")
    assert "cgroup attach" in result.stderr
    assert "statically linked" in result.stderr


def test_nothing_left_behind(cgroup2: str) -> None:
    """Runs last in this file: no cgroup of ours and none of our programs remain."""
    leftover = [d for d in os.listdir(cgroup2) if d.startswith(f"kp-test-{os.getpid()}-")]
    assert leftover == []
