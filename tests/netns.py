"""Two test hosts in network namespaces, joined through a switch (10.200.N.0/24).

    host a (10.200.N.1, kpa) --veth-- [bridge in namespace "sw"] --veth-- host b (10.200.N.2, kpb)

The switch matters: when host b's link goes down, host a's own link stays up
and its packets simply vanish, as when a peer dies behind a network. (Joined
by one veth pair, host a would see its carrier drop and its sends fail
locally, which is not the case under test.)

Used by the tests that need a real link to take down. Everything created here
is removed by ``Hosts.close()``, which the fixtures call even on failure;
processes are started and ended by PID.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import subprocess
import sys
from typing import Any

from support import HELPERS, preload_env, stop, unavailable

_counter = itertools.count()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Hosts:
    """Host "a" (10.200.N.1, device kpa) and host "b" (10.200.N.2, device kpb)
    on one switch."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            unavailable("network namespaces need root")
        n = (os.getpid() + next(_counter)) % 250 + 1
        tag = f"{os.getpid()}-{n}"
        self.ns = {"a": f"kp-a-{tag}", "b": f"kp-b-{tag}", "sw": f"kp-sw-{tag}"}
        self.addr = {"a": f"10.200.{n}.1", "b": f"10.200.{n}.2"}
        self.dev = {"a": "kpa", "b": "kpb"}
        self.procs: list[subprocess.Popen[str]] = []
        try:
            for name in self.ns.values():
                _ip("netns", "add", name)
            sw = self.ns["sw"]
            _ip("-n", sw, "link", "add", "name", "kpbr", "type", "bridge")
            _ip("-n", sw, "link", "set", "kpbr", "up")
            for host in ("a", "b"):
                port = "sw" + host
                _ip("link", "add", self.dev[host], "netns", self.ns[host], "type", "veth",
                    "peer", "name", port, "netns", sw)
                _ip("-n", sw, "link", "set", port, "master", "kpbr")
                _ip("-n", sw, "link", "set", port, "up")
                _ip("-n", self.ns[host], "addr", "add", self.addr[host] + "/24",
                    "dev", self.dev[host])
                _ip("-n", self.ns[host], "link", "set", "lo", "up")
                _ip("-n", self.ns[host], "link", "set", self.dev[host], "up")
        except (OSError, subprocess.CalledProcessError) as exc:
            self.close()
            unavailable(f"cannot create network namespaces: {exc}")

    def link(self, host: str, up: bool) -> None:
        _ip("-n", self.ns[host], "link", "set", self.dev[host], "up" if up else "down")

    def start(self, host: str, argv: list[str], env: dict[str, str],
              **kwargs: Any) -> subprocess.Popen[str]:
        """Start argv inside the host's namespace; ended by PID in close()."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[host], *argv], env=env,
                                text=True, **kwargs)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            stop(proc)
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


PEER = [sys.executable, str(HELPERS / "blocked_peer.py")]
PORT = 5001
# 1 s idle, then 2 probes 1 s apart: the bound is 1 + 1 * 2 = 3 s.
BOUND_VALUES = {"TCP_KEEPIDLE": "1", "TCP_KEEPINTVL": "1", "TCP_KEEPCNT": "2"}
BOUND = 3.0
SLACK = 1.0


def read_event(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any] | None:
    """The next JSON line of proc, or None if none comes within timeout."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        return None
    line = proc.stdout.readline()
    return json.loads(line) if line else None


def start_pair(hosts: Hosts, blocked: str, variant: str | None,
               **extra: str) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    """Server on host b, client on host a; the ``blocked`` end (client or
    server) runs with the variant; returns (blocked end, other end), both
    connected."""
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
    server_env = preload_env(variant if blocked == "server" else None, **extra)
    server = hosts.start("b", [*PEER, "listen", hosts.addr["b"], str(PORT)], server_env,
                         **pipes)
    assert read_event(server, 10) == {"event": "listening"}
    client_env = preload_env(variant if blocked == "client" else None, **extra)
    client = hosts.start("a", [*PEER, "connect", hosts.addr["b"], str(PORT)], client_env,
                         **pipes)
    for end in (client, server):
        event = read_event(end, 10)
        assert event is not None
        assert event["event"] == "connected"
    return (client, server) if blocked == "client" else (server, client)
