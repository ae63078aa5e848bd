"""``keepalive-preload status PID``: the TCP sockets of a running process and
their timers, read from /proc (the same data ``ss -tnop`` shows)."""

from __future__ import annotations

import os
import socket
import struct

from . import LIBRARIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# include/net/tcp_states.h
STATES = {1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
          6: "TIME-WAIT", 7: "CLOSE", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN",
          11: "CLOSING", 12: "NEW-SYN-RECV"}
# The "tr" column of /proc/net/tcp (net/ipv4/tcp_ipv4.c, get_tcp4_sock).
TIMERS = {0: None, 1: "retransmit", 2: "keepalive", 3: "time-wait", 4: "zero-window-probe"}


class StatusError(Exception):
    """The process cannot be inspected; the message says why."""


def _address(text: str) -> str:
    """Decode ``0100007F:1F90`` (or the 32-digit IPv6 form) to ``127.0.0.1:8080``."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    # The kernel prints each 32-bit word in host byte order.
    words = struct.unpack(f"={len(raw) // 4}I", raw)
    packed = struct.pack(f"!{len(words)}I", *words)
    if len(packed) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, packed)}:{int(port, 16)}"
    return f"[{socket.inet_ntop(socket.AF_INET6, packed)}]:{int(port, 16)}"


def _socket_inodes(pid: int) -> dict[int, int]:
    """inode -> fd for every socket the process holds."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except FileNotFoundError:
        raise StatusError(f"no process with PID {pid}") from None
    except PermissionError:
        raise StatusError(f"cannot read the file descriptors of PID {pid}: permission denied "
                          "(run as the process's user or as root)") from None
    inodes = {}
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes[int(target[8:-1])] = int(name)
    return inodes


def _tcp_table(pid: int) -> list[list[str]]:
    rows: list[list[str]] = []
    # /proc/PID/net/* is the process's own network namespace.
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows.extend(line.split() for line in f.readlines()[1:])
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}"):
                raise StatusError(f"no process with PID {pid}") from None
        except PermissionError:
            raise StatusError(f"cannot read /proc/{pid}/net/{table}: permission denied") from None
    return rows


def _preloaded(pid: int) -> list[str] | None:
    """Which of our libraries are mapped into the process (None: unreadable)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            mapped = {line.split()[-1] for line in f if line.rstrip().endswith(".so")}
    except OSError:
        return None
    return sorted({os.path.basename(p) for p in mapped} & set(LIBRARIES.values()))


def status(pid: int) -> dict[str, Any]:
    """The process's TCP sockets with state, addresses and the armed timer."""
    inodes = _socket_inodes(pid)
    hz = os.sysconf("SC_CLK_TCK")
    sockets: list[dict[str, Any]] = []
    for row in _tcp_table(pid):
        inode = int(row[9])
        if inode not in inodes:
            continue
        timer, when = row[5].split(":")
        kind = TIMERS.get(int(timer, 16), f"timer-{timer}")
        sockets.append({
            "fd": inodes[inode],
            "state": STATES.get(int(row[3], 16), row[3]),
            "local": _address(row[1]),
            "remote": _address(row[2]),
            "timer": kind,
            "expires_in": round(int(when, 16) / hz, 2) if kind else None,
        })
    sockets.sort(key=lambda s: s["fd"])
    return {"pid": pid, "preloaded": _preloaded(pid), "sockets": sockets}


def format_status(report: dict[str, Any]) -> str:
    lines = []
    preloaded = report["preloaded"]
    if preloaded is None:
        lines.append(f"PID {report['pid']}: cannot tell which libraries are loaded")
    else:
        lines.append(f"PID {report['pid']}: preloaded: {', '.join(preloaded) or 'none of ours'}")
    if not report["sockets"]:
        lines.append("no TCP sockets")
        return "\n".join(lines)
    rows = [("FD", "STATE", "LOCAL", "REMOTE", "TIMER")]
    for s in report["sockets"]:
        timer = f"{s['timer']} {s['expires_in']:g}s" if s["timer"] else "-"
        rows.append((str(s["fd"]), s["state"], s["local"], s["remote"], timer))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
    return "\n".join(lines)
