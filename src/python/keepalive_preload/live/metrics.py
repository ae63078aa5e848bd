"""``keepalive-preload metrics``: the host's TCP sockets in the Prometheus
text exposition format, for node_exporter's textfile collector.

Counts by protocol, state, keepalive (on, off, unknown), where the keepalive
comes from (``records.SOURCES``) and loopback (true/false): every label is
bounded, none names an address or a process. ``write`` replaces a file
atomically (a temporary file in the same directory, renamed over it), as the
textfile collector requires.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

from .records import ProcessStatus, Unreadable
from .status import inspect_all

PREFIX = "keepalive_preload"


@dataclass
class Snapshot:
    """What ``metrics`` counts, from one ``status --all`` walk."""

    sockets: Counter[tuple[str, str, str, str, str]] = field(default_factory=Counter)
    unreadable: int = 0
    namespaces: int = 0
    duration: float = 0.0
    timestamp: float = 0.0

    def without_keepalive(self, loopback: str) -> int:
        return sum(n for (_, state, keepalive, _, lo), n in self.sockets.items()
                   if state == "established" and keepalive == "off" and lo == loopback)


def collect() -> Snapshot:
    """Walk the host once: every process's TCP sockets (``status --all``);
    the sockets of the namespaces read that no readable process holds count
    with the keepalive their timer shows and source "unknown"."""
    started = time.monotonic()
    reports, reader = inspect_all()
    # This namespace's table also when no process here could be read.
    me = os.getpid()
    reader.tables.for_process(me, os.stat(f"/proc/{me}/ns/net").st_ino)
    snap = Snapshot(timestamp=time.time())
    seen: set[int] = set()
    for report in reports:
        if isinstance(report, Unreadable):
            snap.unreadable += 1
            continue
        assert isinstance(report, ProcessStatus)
        for sock in report.sockets:
            if sock.endpoint.inode in seen:
                continue  # shared by several processes (fork): one socket
            seen.add(sock.endpoint.inode)
            on = sock.keepalive
            e = sock.endpoint
            snap.sockets[(e.protocol, e.state.lower(),
                          "unknown" if on is None else ("on" if on else "off"),
                          sock.source, "true" if e.loopback else "false")] += 1
    for table in reader.tables.all():
        for inode, e in table.items():
            if inode in seen:
                continue
            if e.timer == "keepalive":
                judged = "on"
            elif e.timer is None and e.state == "ESTABLISHED":
                judged = "off"
            else:
                judged = "unknown"
            snap.sockets[(e.protocol, e.state.lower(), judged, "unknown",
                          "true" if e.loopback else "false")] += 1
    snap.namespaces = reader.tables.reads
    snap.duration = time.monotonic() - started
    return snap


def _metric(lines: list[str], name: str, kind: str, help: str) -> None:
    lines.append(f"# HELP {PREFIX}_{name} {help}")
    lines.append(f"# TYPE {PREFIX}_{name} {kind}")


def exposition(snap: Snapshot) -> str:
    """The Prometheus text format: each metric's # HELP and # TYPE once, then
    its samples."""
    lines: list[str] = []
    _metric(lines, "tcp_sockets", "gauge", "TCP sockets held by processes, by protocol, "
            "state, keepalive (on/off/unknown), where the keepalive comes from "
            "(program/library/cgroup/none/unknown) and loopback.")
    for (protocol, state, keepalive, source, loopback), count in sorted(snap.sockets.items()):
        lines.append(f'{PREFIX}_tcp_sockets{{protocol="{protocol}",state="{state}",'
                     f'keepalive="{keepalive}",source="{source}",loopback="{loopback}"}} '
                     f"{count}")
    _metric(lines, "established_without_keepalive", "gauge", "Established TCP connections "
            "without keepalive; loopback=\"false\" are those that cross a network.")
    for loopback in ("false", "true"):
        lines.append(f'{PREFIX}_established_without_keepalive{{loopback="{loopback}"}} '
                     f"{snap.without_keepalive(loopback)}")
    _metric(lines, "unreadable_processes", "gauge",
            "Processes whose sockets could not be read (their connections are not counted).")
    lines.append(f"{PREFIX}_unreadable_processes {snap.unreadable}")
    _metric(lines, "network_namespaces", "gauge", "Network namespaces whose TCP table was read.")
    lines.append(f"{PREFIX}_network_namespaces {snap.namespaces}")
    _metric(lines, "collect_duration_seconds", "gauge", "How long the collection took.")
    lines.append(f"{PREFIX}_collect_duration_seconds {snap.duration:.6f}")
    _metric(lines, "collect_timestamp_seconds", "gauge",
            "When the collection ran (Unix time): how fresh the file is.")
    lines.append(f"{PREFIX}_collect_timestamp_seconds {snap.timestamp:.3f}")
    return "\n".join(lines) + "\n"


def write(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, mode 0644: a reader (the
    textfile collector) sees the old file or the new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                                     suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.rename(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
