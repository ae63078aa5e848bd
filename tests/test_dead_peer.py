"""A dead peer is detected within the configured bound, on a real link.

Two hosts in network namespaces; one end of an idle connection blocks in
recv(); the other host's link goes down. With the preload the blocked end
gets ETIMEDOUT after idle + interval * count seconds; without it, it stays
blocked. Run as root (CI); elsewhere skipped with the reason.
"""

from __future__ import annotations

import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netns import BOUND, BOUND_VALUES, PEER, PORT, SLACK, Hosts, read_event, start_pair
from support import HELPERS, need_tool, preload_env, stop


@pytest.mark.parametrize(("blocked", "variant"), [("client", "connect"), ("client", "socket"),
                                                  ("server", "listen"), ("server", "socket")])
def test_dead_peer_detected_within_bound(hosts: Hosts, blocked: str, variant: str) -> None:
    end, _ = start_pair(hosts, blocked, variant, **BOUND_VALUES)
    # The other host vanishes: its link goes down, nothing is sent, no FIN, no RST.
    hosts.link("b" if blocked == "client" else "a", up=False)
    event = read_event(end, BOUND + SLACK + 5)
    assert event is not None, "still blocked: the dead peer was not detected"
    assert event["errno"] == "ETIMEDOUT"
    print(f"\n{blocked} ({variant}): bound {BOUND:g} s, detected after {event['elapsed']:.2f} s")
    assert BOUND - SLACK <= event["elapsed"] <= BOUND + SLACK, event


@pytest.mark.parametrize("blocked", ["client", "server"])
def test_without_preload_still_blocked(hosts: Hosts, blocked: str) -> None:
    end, _ = start_pair(hosts, blocked, None, **BOUND_VALUES)
    hosts.link("b" if blocked == "client" else "a", up=False)
    # Well past the bound: nothing happens (the system default is 2 hours idle).
    assert read_event(end, BOUND * 2 + SLACK) is None
    assert end.poll() is None


@pytest.mark.parametrize("variant", ["connect", None])
def test_user_timeout_ends_connection_with_pending_data(hosts: Hosts,
                                                        variant: str | None) -> None:
    # Keepalive would take a minute; TCP_USER_TIMEOUT bounds unacknowledged data to 2 s.
    client, _ = start_pair(hosts, "client", variant, TCP_KEEPIDLE="60",
                           TCP_USER_TIMEOUT="2000")
    hosts.link("b", up=False)
    assert client.stdin is not None
    client.stdin.write("send\n")
    client.stdin.flush()
    event = read_event(client, 2 + SLACK + 3)
    if variant is None:
        assert event is None  # retransmits for about 15 minutes by default
        return
    assert event is not None, "still blocked with unacknowledged data"
    assert event["errno"] == "ETIMEDOUT"
    print(f"\npending data: TCP_USER_TIMEOUT 2 s, ended after {event['elapsed']:.2f} s")
    assert 2 - SLACK / 2 <= event["elapsed"] <= 2 + SLACK, event


def test_detection_times_for_the_readme(hosts: Hosts) -> None:
    """Measured detection time against the bound, printed for the README
    (pytest -s shows it); asserted like the test above."""
    end, _ = start_pair(hosts, "client", "socket", TCP_KEEPIDLE="2", TCP_KEEPINTVL="1",
                        TCP_KEEPCNT="3")
    hosts.link("b", up=False)
    started = time.monotonic()
    event = read_event(end, 10)
    assert event is not None
    print(f"\nconfigured bound 2 + 1 * 3 = 5 s; detected after {event['elapsed']:.2f} s "
          f"({time.monotonic() - started:.2f} s after the link went down)")
    assert 4.0 <= event["elapsed"] <= 6.0


# A program with its own short keepalive, set after connect/accept: 2 s idle,
# then 2 probes 1 s apart (4 s). With the library (default mode) it must see
# the dead peer no later than without it: no stale user timeout derived from
# our 15/15/9 timers (150 s) may stay beside its own timers.
OWN = ("2", "1", "2")
OWN_BOUND = 2 + 1 * 2
OWN_PEER = [sys.executable, str(HELPERS / "own_timers_peer.py")]


def own_end(hosts: Hosts, host: str, role: str, port: int,
            variant: str | None) -> subprocess.Popen[str]:
    proc = hosts.start(host, [*OWN_PEER, role, hosts.addr["b"], str(port), *OWN],
                       preload_env(variant), stdout=subprocess.PIPE)
    return proc


def plain_end(hosts: Hosts, host: str, role: str, port: int) -> subprocess.Popen[str]:
    return hosts.start(host, [*PEER, role, hosts.addr["b"], str(port)], preload_env(None),
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def closed_after(proc: subprocess.Popen[str], timeout: float) -> float:
    event = read_event(proc, timeout)
    assert event is not None, "still blocked: the dead peer was not detected in time"
    assert event["event"] == "closed"
    assert event["errno"] == "ETIMEDOUT", event
    return float(event["elapsed"])


def test_own_keepalive_clients_no_later_than_without(hosts: Hosts) -> None:
    """Clients (no library, connect and socket variants) with their own 2/1/2
    after connect, all against one server whose host then vanishes."""
    clients = {}
    for k, variant in enumerate((None, "connect", "socket")):
        server = plain_end(hosts, "b", "listen", PORT + k)
        assert read_event(server, 10) == {"event": "listening"}
        clients[variant] = own_end(hosts, "a", "connect", PORT + k, variant)
        connected = read_event(clients[variant], 10)
        assert connected is not None
        assert connected["event"] == "connected"
        assert connected["TCP_KEEPIDLE"] == 2
    hosts.link("b", up=False)
    elapsed = {variant: closed_after(proc, OWN_BOUND + SLACK + 5)
               for variant, proc in clients.items()}
    print(f"\nown 2/1/2 after connect, detected after: {elapsed}")
    assert OWN_BOUND - SLACK <= elapsed[None] <= OWN_BOUND + SLACK
    for variant in ("connect", "socket"):
        assert elapsed[variant] <= elapsed[None] + SLACK, elapsed


@pytest.mark.parametrize("variant", [None, "listen", "socket"])
def test_own_keepalive_server_no_later_than_without(hosts: Hosts, variant: str | None) -> None:
    """A server with its own 2/1/2 on the accepted socket; its client's host vanishes."""
    server = own_end(hosts, "b", "listen", PORT, variant)
    assert read_event(server, 10) == {"event": "listening"}
    client = plain_end(hosts, "a", "connect", PORT)
    assert (read_event(client, 10) or {}).get("event") == "connected"
    assert (read_event(server, 10) or {}).get("event") == "connected"
    hosts.link("a", up=False)
    elapsed = closed_after(server, OWN_BOUND + SLACK + 5)
    print(f"\nserver, own 2/1/2 ({variant}): detected after {elapsed:.2f} s")
    assert elapsed <= OWN_BOUND + SLACK


def test_redis_cli_subscribe_no_later_than_without(hosts: Hosts, tmp_path: Path) -> None:
    """redis-cli in subscribe mode sets its own keepalive (15 s idle, 5 s
    interval, 3 probes: 30 s): with each variant in its environment it ends
    no later than without it (the issue: 151 s with a stale user timeout)."""
    server_bin, cli_bin = need_tool("redis-server"), need_tool("redis-cli")
    server = hosts.start("b", [server_bin, "--port", str(PORT), "--bind", hosts.addr["b"],
                               "--save", "", "--appendonly", "no", "--protected-mode", "no",
                               "--dir", str(tmp_path)],
                         preload_env(None), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    clients: dict[str | None, subprocess.Popen[str]] = {}
    for variant in (None, "connect", "socket"):
        while True:
            proc = hosts.start("a", [cli_bin, "-h", hosts.addr["b"], "-p", str(PORT),
                                     "subscribe", "kp"], preload_env(variant),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert proc.stdout is not None
            first = read_line(proc, 5)
            if first is not None and "subscribe" in first:
                clients[variant] = proc
                break
            stop(proc)
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.2)
    assert server.poll() is None
    hosts.link("b", up=False)
    started = time.monotonic()
    ended: dict[str | None, float] = {}
    while len(ended) < len(clients) and time.monotonic() - started < 30 + 20:
        for variant, proc in clients.items():
            if variant not in ended and proc.poll() is not None:
                ended[variant] = time.monotonic() - started
        time.sleep(0.2)
    print(f"\nredis-cli subscribe, dead peer seen after: {ended}")
    assert None in ended, "redis-cli without the library never noticed"
    for variant in ("connect", "socket"):
        assert variant in ended, f"{variant}: still blocked"
        assert ended[variant] <= ended[None] + 2, ended


def read_line(proc: subprocess.Popen[str], timeout: float) -> str | None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else None
