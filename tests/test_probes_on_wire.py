"""Keepalive probes seen on the wire (tcpdump on host a's link).

An idle connection whose peer answers: a probe every `idle` seconds, each
answered, and the connection stays up (the NAT case: the probes keep the
middlebox's state fresh). A peer that is gone: the first probe after `idle`,
then one every `interval`, unanswered, until the connection is dropped.
"""

from __future__ import annotations

import re
import subprocess
import time

from netns import PORT, Hosts, read_event, start_pair
from support import clean_env, need_tool

TOLERANCE = 0.2  # ±20 %
LINE = re.compile(r"^(\d+\.\d+) IP (\S+)\.(\d+) > (\S+)\.(\d+): Flags \[([^\]]*)\].* length (\d+)")


def start_capture(hosts: Hosts) -> subprocess.Popen[str]:
    tcpdump = need_tool("tcpdump")
    proc = hosts.start("a", [tcpdump, "-i", hosts.dev["a"], "-n", "-tt", "-l", "-S",
                             "tcp", "port", str(PORT)], clean_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # "listening on kpa, ..." once it captures
        if "listening on" in proc.stderr.readline():
            return proc
    raise AssertionError("tcpdump did not start")


def stop_capture(proc: subprocess.Popen[str]) -> list[tuple[float, str, str, int]]:
    """(time, source, flags, length) of each captured packet."""
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    packets = []
    for line in out.splitlines():
        match = LINE.match(line)
        if match:
            packets.append((float(match.group(1)), match.group(2), match.group(6),
                            int(match.group(7))))
    return packets


def probes(packets: list[tuple[float, str, str, int]], source: str) -> list[float]:
    """Times of the pure ACKs `source` sent after the handshake's (which comes
    first): on an idle connection, these are the keepalive probes."""
    acks = [t for t, src, flags, length in packets if src == source and flags == "." and
            length == 0]
    return acks


def within(value: float, target: float) -> bool:
    return abs(value - target) <= TOLERANCE * target


def captured_client(hosts: Hosts) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    """A capture on host a, then a client there (idle 2 s, interval 1 s, 3
    probes) connected to a server on host b: (capture, client)."""
    capture = start_capture(hosts)
    client, _ = start_pair(hosts, "client", "socket", TCP_KEEPIDLE="2", TCP_KEEPINTVL="1",
                           TCP_KEEPCNT="3")
    return capture, client


def gaps_between(handshake: float, keepalives: list[float]) -> list[float]:
    return [later - earlier for earlier, later in zip([handshake, *keepalives], keepalives)]


def test_answered_probes_keep_the_connection_up(hosts: Hosts) -> None:
    capture, client = captured_client(hosts)
    # ~7 s of idleness: probes at 2, 4 and 6 s, each answered.
    assert read_event(client, 7.0) is None  # still connected, nothing happened
    packets = stop_capture(capture)
    a, b = hosts.addr["a"], hosts.addr["b"]
    sent = probes(packets, a)
    assert len(sent) >= 4, packets  # the handshake's ACK and three probes
    handshake, keepalives = sent[0], sent[1:4]
    gaps = gaps_between(handshake, keepalives)
    print(f"\nanswered probes every {', '.join(f'{g:.2f}' for g in gaps)} s (idle 2 s)")
    assert all(within(gap, 2.0) for gap in gaps), gaps
    replies = [t for t, src, flags, length in packets if src == b and flags == "."]
    for probe in keepalives:
        assert any(0 <= reply - probe < 0.5 for reply in replies), (probe, packets)
    assert client.poll() is None


def test_unanswered_probes_every_interval(hosts: Hosts) -> None:
    capture, client = captured_client(hosts)
    hosts.link("b", up=False)
    event = read_event(client, 10)
    packets = stop_capture(capture)
    assert event is not None
    assert event["errno"] == "ETIMEDOUT"
    sent = probes(packets, hosts.addr["a"])
    handshake, keepalives = sent[0], sent[1:]
    gaps = gaps_between(handshake, keepalives)
    print(f"\nunanswered probes after {', '.join(f'{g:.2f}' for g in gaps)} s "
          f"(idle 2 s, then interval 1 s); dropped after {event['elapsed']:.2f} s")
    assert len(keepalives) >= 3, packets
    assert within(gaps[0], 2.0), gaps
    assert all(within(gap, 1.0) for gap in gaps[1:3]), gaps
    assert not [p for p in packets if p[1] == hosts.addr["b"] and p[0] > keepalives[0]]
