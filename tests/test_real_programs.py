"""Unmodified third-party programs from Debian's packages, under the preload.

For each: `ss -tno`, from outside, shows `timer:(keepalive,...)` on its socket
with the configured idle time; without the preload it shows none (so the
program does not turn keepalive on by itself); and its output and exit status
are the same with and without the preload.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, Optional, Tuple

import pytest

from support import (
    SCRIPT,
    TIMEOUT,
    HeldServer,
    clean_env,
    ending,
    free_port,
    keepalive_timer,
    need_tool,
    timer_of,
)

IDLE = 30
REQUEST = "GET / HTTP/1.0\r\n\r\n"
HTTP_CLIENT = """
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
conn.request("GET", "/")
response = conn.getresponse()
print(response.status, response.read().decode(), end="")
"""
CLIENTS: dict[str, tuple[str, Callable[[int], list[str]], bool]] = {
    # name: (Debian package, argv for a port, whether the request goes on stdin)
    "nc": ("netcat-openbsd", lambda port: ["nc", "-N", "127.0.0.1", str(port)], True),
    "socat": ("socat", lambda port: ["socat", "-", f"TCP:127.0.0.1:{port}"], True),
    "curl": ("curl", lambda port: ["curl", "-sS", "--no-keepalive",
                                   f"http://127.0.0.1:{port}/"], False),
    "python-http.client": ("python3", lambda port: [sys.executable, "-c", HTTP_CLIENT,
                                                     str(port)], False),
}


def run_client(name: str, preload: bool) -> tuple[str, int, tuple[str, float] | None]:
    _, argv_for, on_stdin = CLIENTS[name]
    server = HeldServer()
    try:
        argv = argv_for(server.port)
        need_tool(argv[0])
        if preload:
            argv = [SCRIPT or "keepalive-preload", "run", "--client", "--idle", str(IDLE),
                    "--", *argv]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=clean_env())
        with ending(proc):
            assert proc.stdin is not None
            if on_stdin:
                proc.stdin.write(REQUEST)
                proc.stdin.flush()
            # The connect variant sets the options just after the kernel accepted
            # the connect: with it, wait (bounded) for the keepalive timer.
            where = f"dport = :{server.port}"
            timer = ("keepalive", keepalive_timer(where)) if preload else timer_of(where)
            server.release.set()
            out, _ = proc.communicate(timeout=TIMEOUT)
        return out, proc.returncode, timer
    finally:
        server.close()


Outcome = Tuple[Any, int, Optional[Tuple[str, float]]]


def assert_only_keepalive_added(name: str, plain: Outcome, preloaded: Outcome) -> None:
    """Without the library no timer; with it a keepalive timer at IDLE; the
    program's output and exit status the same either way."""
    assert plain[2] is None, f"{name} turned keepalive on by itself: {plain[2]}"
    assert preloaded[2] is not None
    kind, seconds = preloaded[2]
    assert kind == "keepalive"
    assert IDLE - 5 <= seconds <= IDLE
    assert preloaded[:2] == plain[:2]


@pytest.mark.parametrize("name", CLIENTS)
def test_client_program(name: str) -> None:
    plain = run_client(name, preload=False)
    assert_only_keepalive_added(name, plain, run_client(name, preload=True))
    assert "hello" in plain[0]


def run_redis(preload: bool) -> tuple[bytes, int, tuple[str, float] | None]:
    """redis-server with its own keepalive off (--tcp-keepalive 0): the reply
    to PING, its exit status on SIGTERM, and the accepted socket's timer."""
    redis = need_tool("redis-server")
    port = free_port()
    argv = [redis, "--port", str(port), "--bind", "127.0.0.1", "--tcp-keepalive", "0",
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""]
    if preload:
        argv = [SCRIPT or "keepalive-preload", "run", "--server", "--idle", str(IDLE), "--",
                *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=clean_env(), cwd="/tmp")
    with ending(proc):
        for _ in range(100):  # bounded: up to 10 s for it to listen
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        else:
            raise AssertionError("redis-server did not start")
        with conn:
            conn.sendall(b"PING\r\n")
            reply = conn.recv(100)
            timer = timer_of(f"sport = :{port}")
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=TIMEOUT)
    return reply, status, timer


def test_server_program_redis() -> None:
    plain = run_redis(preload=False)
    assert_only_keepalive_added("redis-server", plain, run_redis(preload=True))
    assert plain[:2] == (b"+PONG\r\n", 0)
