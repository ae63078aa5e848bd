"""Helpers for the tests of `status` and `apply` on live processes
(tests/test_status.py, tests/test_apply.py): echo pairs on loopback, the
command's JSON, processes that cannot be read.

Every process started here is ended by PID when its context exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from netns import read_event
from support import (
    ENTRY_POINTS,
    HELPERS,
    TIMEOUT,
    clean_env,
    cli,
    cli_for_nobody,
    run_as_nobody,
    stop,
    unavailable,
)

#: A command prefix that runs the command as nobody.
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
ECHO = [sys.executable, str(HELPERS / "echo_peer.py")]
#: The names the helpers report under, by the names status uses.
NAMES = {"keepalive": "SO_KEEPALIVE", "idle": "TCP_KEEPIDLE", "interval": "TCP_KEEPINTVL",
         "count": "TCP_KEEPCNT", "user_timeout": "TCP_USER_TIMEOUT"}


def event(proc: subprocess.Popen[str], name: str) -> dict[str, Any]:
    got = read_event(proc, TIMEOUT)
    assert got is not None, f"no {name!r} event from {proc.args!r}"
    assert got["event"] == name, got
    return got


@contextlib.contextmanager
def echo_pair(server_env: dict[str, str] | None = None,
              client_env: dict[str, str] | None = None,
              ) -> Iterator[tuple[subprocess.Popen[str], subprocess.Popen[str],
                                  dict[str, Any], dict[str, Any]]]:
    """An echo server and a client connected to it on loopback (tests/helpers/
    echo_peer.py); yields (server, client, server's "connected" event, client's)."""
    pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE,
                             "text": True}
    server = subprocess.Popen([*ECHO, "serve", "127.0.0.1", "0"],
                              env=server_env or clean_env(), **pipes)
    procs = [server]
    try:
        port = event(server, "listening")["port"]
        client = subprocess.Popen([*ECHO, "connect", "127.0.0.1", str(port)],
                                  env=client_env or clean_env(), **pipes)
        procs.append(client)
        client_event = event(client, "connected")
        yield server, client, event(server, "connected"), client_event
    finally:
        stop(*procs)


def echo(client: subprocess.Popen[str], text: str) -> None:
    """The connection still works: a line goes through the server and back."""
    assert client.stdin is not None
    client.stdin.write(text + "\n")
    client.stdin.flush()
    assert event(client, "echo")["data"] == text


def status(*pids: int, extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    result = cli("status", "--json", *extra, *map(str, pids))
    assert result.returncode == 0, result.stderr
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data


def sock(report: dict[str, Any], fd: int) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in report["sockets"] if s["fd"] == fd]
    assert len(found) == 1, report
    return found[0]


def as_reported(options: dict[str, int]) -> dict[str, int]:
    """status's option values under the names the helpers print."""
    return {NAMES[k]: v for k, v in options.items() if k in NAMES}


def no_ptrace() -> list[str]:
    """A command prefix: root without CAP_SYS_PTRACE (Docker's default)."""
    if os.geteuid() != 0:
        unavailable("needs root to drop CAP_SYS_PTRACE")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        unavailable("setpriv (util-linux) is not installed")
    return [setpriv, "--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace"]


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """The command run as nobody (support.cli_for_nobody: from a copy nobody
    can read, whatever directory the test venv is in)."""
    with cli_for_nobody() as (argv, env):
        return run_as_nobody([*argv, *args], **env)


def as_root_without_ptrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*no_ptrace(), *ENTRY_POINTS["module"], *args], capture_output=True,
                          text=True, timeout=TIMEOUT, env=clean_env())


@contextlib.contextmanager
def zombie() -> Iterator[int]:
    """A child of this process that has exited and is not reaped yet."""
    proc = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            with open(f"/proc/{proc.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.02)
        else:
            raise AssertionError("the child did not exit")
        yield proc.pid
    finally:
        proc.wait(timeout=TIMEOUT)


def missing_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=TIMEOUT)
    return proc.pid


#: A process holding ``n`` loopback connections (both ends) and their
#: listener, optionally MPTCP, renamed (prctl PR_SET_NAME) and with a second
#: thread; it prints {"pid", "tid", "port", "sockets"} and waits for stdin to close.
HOLDER = r"""
import ctypes, json, resource, socket, sys, threading
n, proto, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode().decode("unicode_escape")
want = 2 * n + 64
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
if name:
    ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name.encode("latin-1")), 0, 0, 0)
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
server.bind(("127.0.0.1", 0))
server.listen(4096)
port = server.getsockname()[1]
held = []
for _ in range(n):
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    client.connect(("127.0.0.1", port))
    held += [client, server.accept()[0]]
done = threading.Event()
worker = threading.Thread(target=done.wait)
worker.start()
tid = worker.native_id
print(json.dumps({"pid": __import__("os").getpid(), "tid": tid, "port": port,
                  "sockets": 1 + 2 * n}), flush=True)
sys.stdin.read()
done.set()
"""


@contextlib.contextmanager
def holder(n: int, *, proto: int = 6, name: str = "", user: int | None = None,
           cgroup: str | None = None,
           ) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """A process holding ``n`` loopback connections (see HOLDER), run as
    ``user`` if given (root only), in the cgroup directory ``cgroup`` if given
    (it joins before it connects); yields it and what it printed."""
    if user is not None and os.geteuid() != 0:
        unavailable("needs root to start a process as another user")
    extra: dict[str, Any] = {} if user is None else {"user": user, "group": user,
                                                      "extra_groups": []}
    # Another user may not reach the test venv's interpreter: the system's then.
    python = sys.executable if user is None else shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        unavailable("no python3 in /usr/bin for another user")
    argv = [python, "-c", HOLDER, str(n), str(proto), name]
    if cgroup is not None:
        argv = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, *argv]
    proc = subprocess.Popen(argv,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=clean_env(), **extra)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"the holder did not start (exit status {proc.wait(TIMEOUT)})"
        yield proc, json.loads(line)
    finally:
        stop(proc)
