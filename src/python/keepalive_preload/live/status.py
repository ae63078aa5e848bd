"""``keepalive-preload status``: the TCP sockets of running processes, with the
timer the kernel has armed on each and the keepalive options really set on it.

Sockets are found the way psutil and ``ss -p`` find them: ``/proc/PID/fd``
gives the inode of each socket the process holds, ``/proc/PID/net/tcp{,6}``
(the process's own network namespace) the state, addresses and timer of each
inode. The option values are read from the socket itself, duplicated into this
process with ``pidfd_getfd(2)`` (see ``_pidfd``); where that is not allowed the
timer view remains and the report says why. A process that cannot be read is
an error, never an empty list.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import sys

from .._options import LIBRARIES
from .pidfd import PidfdError, Remote, read_options

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

PROG = "keepalive-preload"

# include/net/tcp_states.h
STATES = {1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
          6: "TIME-WAIT", 7: "CLOSE", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN",
          11: "CLOSING", 12: "NEW-SYN-RECV"}
# The "tr" column of /proc/net/tcp (net/ipv4/tcp_ipv4.c, get_tcp4_sock).
TIMERS = {0: None, 1: "retransmit", 2: "keepalive", 3: "time-wait", 4: "zero-window-probe"}

#: ``status --all --check`` exit status when nothing readable lacks keepalive but
#: some processes could not be read (the answer is unknown; Nagios's UNKNOWN).
UNKNOWN = 3


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


def _denied(pid: int, what: str) -> StatusError:
    return StatusError(
        f"cannot read {what} of PID {pid}: permission denied (it needs the right to ptrace "
        "the process: its user, or root with CAP_SYS_PTRACE in its user namespace)")


def process_info(pid: int) -> tuple[str, str]:
    """(state letter, command name) from /proc/PID/stat; ``StatusError`` for a
    PID that does not exist or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError):
        raise StatusError(f"no process with PID {pid}") from None
    except OSError as exc:
        raise StatusError(f"cannot read /proc/{pid}/stat: {exc.strerror}") from None
    command = stat[stat.find("(") + 1:stat.rfind(")")]
    fields = stat[stat.rfind(")") + 2:].split()
    state = fields[0] if fields else "?"
    if state in ("Z", "X"):
        raise StatusError(f"PID {pid} ({command}) is a zombie: it has exited and holds no "
                          f"sockets (its parent, PID {fields[1]}, has not reaped it yet)")
    return state, command


def socket_inodes(pid: int) -> dict[int, int]:
    """inode -> fd for every socket the process holds. A descriptor that closes
    while we read is skipped; any other error is a ``StatusError``."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except FileNotFoundError:
        raise StatusError(f"no process with PID {pid}") from None
    except PermissionError:
        raise _denied(pid, "the file descriptors") from None
    inodes = {}
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except FileNotFoundError:  # closed meanwhile (or the process exited)
            continue
        except PermissionError:
            raise _denied(pid, "the file descriptors") from None
        except OSError as exc:
            raise StatusError(f"cannot read {fd_dir}/{name}: {exc.strerror}") from None
        if target.startswith("socket:["):
            inodes[int(target[8:-1])] = int(name)
    if not names and not os.path.exists(f"/proc/{pid}"):
        raise StatusError(f"no process with PID {pid}")
    return inodes


def _tcp_table(pid: int) -> dict[int, dict[str, Any]]:
    """inode -> state, addresses and timer of every TCP socket in the
    process's network namespace."""
    hz = os.sysconf("SC_CLK_TCK")
    rows: dict[int, dict[str, Any]] = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}"):
                raise StatusError(f"no process with PID {pid}") from None
            continue  # no IPv6 in this kernel
        except PermissionError:
            raise _denied(pid, f"/proc/{pid}/net/{table}") from None
        for line in lines:
            row = line.split()
            timer, when = row[5].split(":")
            kind = TIMERS.get(int(timer, 16), f"timer-{timer}")
            rows[int(row[9])] = {
                "state": STATES.get(int(row[3], 16), row[3]),
                "local": _address(row[1]),
                "remote": _address(row[2]),
                "timer": kind,
                "expires_in": round(int(when, 16) / hz, 2) if kind else None,
            }
    return rows


def mapped_libraries(pid: int) -> list[dict[str, Any]]:
    """Our libraries mapped into the process: name, path, and whether the file
    was replaced or deleted since it was mapped. ``StatusError`` if unreadable.

    Upgrades (pip, dpkg, rpm) write the new file and rename it over the old one,
    which unlinks the mapped file: the kernel then marks the path " (deleted)".
    Inode numbers are not compared with the file now at that path: in a
    container (another mount namespace, overlayfs) they differ without any
    upgrade."""
    ours = set(LIBRARIES.values())
    found: dict[str, dict[str, Any]] = {}
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.readlines()
    except FileNotFoundError:
        raise StatusError(f"no process with PID {pid}") from None
    except OSError as exc:
        raise StatusError(f"cannot read /proc/{pid}/maps: {exc.strerror}") from None
    for line in lines:
        # address perms offset dev inode pathname; the pathname may contain spaces
        # and ends in " (deleted)" once the file was unlinked (replaced by an upgrade).
        fields = line.rstrip("\n").split(None, 5)
        if len(fields) < 6:
            continue
        path = fields[5]
        deleted = path.endswith(" (deleted)")
        if deleted:
            path = path[:-len(" (deleted)")]
        name = os.path.basename(path)
        if name not in ours or path in found:
            continue
        found[path] = {"name": name, "path": path, "replaced": deleted}
    return sorted(found.values(), key=lambda m: (m["name"], m["path"]))


def lacks_keepalive(sock: dict[str, Any]) -> bool:
    """An established connection without keepalive: from the value read from
    the socket, else from the timer (idle with keepalive on, the keepalive
    timer is armed; with data in flight the retransmit timer is, so only "no
    timer at all" counts)."""
    if sock["state"] != "ESTABLISHED":
        return False
    if sock.get("options"):
        return not sock["options"]["keepalive"]
    return sock["timer"] is None


def inspect(pid: int, tables: dict[int, dict[int, dict[str, Any]]] | None = None,
            ) -> dict[str, Any]:
    """One process: its TCP sockets (state, addresses, timer, options read from
    the socket), our libraries it has mapped, and why anything could not be
    read. ``tables`` caches /proc/net/tcp per network namespace."""

    _, command = process_info(pid)
    inodes = socket_inodes(pid)
    report: dict[str, Any] = {"pid": pid, "command": command, "libraries_error": None}
    try:
        libraries = mapped_libraries(pid)
        report["preloaded"] = sorted({m["name"] for m in libraries})
        report["libraries"] = libraries
    except StatusError as exc:
        report["preloaded"] = None
        report["libraries"] = None
        report["libraries_error"] = str(exc)
    table: dict[int, dict[str, Any]] = {}
    if inodes:
        try:
            key = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            key = -pid
        # One read per namespace: --all is a snapshot, as ss is; a socket made
        # after its namespace's table was read is not listed.
        cached = tables.get(key) if tables is not None else None
        if cached is not None:
            table = cached
        else:
            table = _tcp_table(pid)
            if tables is not None:
                tables[key] = table
    sockets = [{"fd": fd, **table[inode], "inode": inode}
               for inode, fd in inodes.items() if inode in table]
    sockets.sort(key=lambda s: s["fd"])
    report["options_error"] = None
    if sockets:
        try:
            with Remote(pid) as remote:
                for sock in sockets:
                    try:
                        with remote.socket(sock["fd"], sock["inode"]) as dup:
                            sock["options"] = read_options(dup)
                    except PidfdError as exc:
                        if exc.errno != errno.EBADF:
                            raise
                        sock["options"] = None  # closed meanwhile
        except PidfdError as exc:
            if exc.errno == errno.ESRCH:
                raise StatusError(str(exc)) from None
            report["options_error"] = str(exc)
            for sock in sockets:
                sock["options"] = None
    report["sockets"] = sockets
    report["without_keepalive"] = sum(lacks_keepalive(s) for s in sockets)
    return report


def inspect_all() -> list[dict[str, Any]]:
    """Every process with TCP sockets, and every process that could not be read
    (with ``error``); zombies and processes that exit meanwhile are left out.
    Sorted: most connections without keepalive first, then the unreadable ones,
    then the rest, each by PID."""
    tables: dict[int, dict[int, dict[str, Any]]] = {}
    reports: list[dict[str, Any]] = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        try:
            report = inspect(pid, tables)
        except StatusError as exc:
            if not os.path.exists(f"/proc/{pid}") or "zombie" in str(exc):
                continue
            command = "?"
            try:
                command = process_info(pid)[1]
            except StatusError:
                continue
            reports.append({"pid": pid, "command": command, "error": str(exc)})
            continue
        if report["sockets"]:
            reports.append(report)
    reports.sort(key=lambda r: (-int(r.get("without_keepalive", 0)), "error" not in r,
                                int(r["pid"])))
    return reports


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _libraries_line(report: dict[str, Any]) -> str:
    if report["libraries"] is None:
        return f"preloaded: cannot tell ({report['libraries_error']})"
    if not report["libraries"]:
        return "preloaded: none of ours"
    words = []
    for lib in report["libraries"]:
        if lib["replaced"]:
            words.append(f"{lib['name']} (file replaced or deleted since it was loaded: "
                         f"{lib['path']}; the process still runs the old one)")
        else:
            words.append(lib["name"])
    return "preloaded: " + ", ".join(words)


def _timer(sock: dict[str, Any]) -> str:
    return f"{sock['timer']}:{sock['expires_in']:g}s" if sock["timer"] else "-"


def format_status(report: dict[str, Any]) -> str:
    """The text ``status PID`` prints for one process."""
    lines = [f"PID {report['pid']} ({report['command']}): {_libraries_line(report)}"]
    if report["options_error"]:
        lines.append(f"options not read: {report['options_error']}; showing the timers only")
    if not report["sockets"]:
        lines.append("no TCP sockets")
        return "\n".join(lines)
    with_options = report["options_error"] is None
    head: tuple[str, ...] = ("FD", "STATE", "LOCAL", "REMOTE", "TIMER")
    if with_options:
        head += ("KEEPALIVE", "IDLE(s)", "INTVL(s)", "CNT", "USER_TIMEOUT(ms)")
    rows: list[tuple[str, ...]] = [head]
    for s in report["sockets"]:
        remote = "*" if s["state"] == "LISTEN" else s["remote"]
        row: tuple[str, ...] = (str(s["fd"]), s["state"], s["local"], remote, _timer(s))
        if with_options:
            o = s["options"]
            if o is None:
                row += ("?",) * 5
            else:
                row += ("on" if o["keepalive"] else "off", str(o.get("idle", "?")),
                        str(o.get("interval", "?")), str(o.get("count", "?")),
                        str(o.get("user_timeout", "?")))
        rows.append(row)
    lines.extend(_table(rows))
    return "\n".join(lines)


def format_all(reports: list[dict[str, Any]]) -> str:
    """The text ``status --all`` prints."""
    if not reports:
        return "no process holds a TCP socket"
    rows: list[tuple[str, ...]] = [("PID", "COMMAND", "ESTABLISHED", "WITHOUT_KEEPALIVE")]
    details: dict[int, list[str]] = {}
    for r in reports:
        if "error" in r:
            rows.append((str(r["pid"]), r["command"], "?", f"? {r['error']}"))
            continue
        established = sum(s["state"] == "ESTABLISHED" for s in r["sockets"])
        rows.append((str(r["pid"]), r["command"], str(established), str(r["without_keepalive"])))
        details[len(rows) - 1] = [f"    fd {s['fd']}  {s['local']} -> {s['remote']}"
                                  for s in r["sockets"] if lacks_keepalive(s)]
    lines = []
    for i, line in enumerate(_table(rows)):
        lines.append(line)
        lines.extend(details.get(i, []))
    return "\n".join(lines)


def _public(report: dict[str, Any]) -> dict[str, Any]:
    out = dict(report)
    if "sockets" in out:
        out["sockets"] = [{k: v for k, v in s.items() if k != "inode"} for s in out["sockets"]]
    return out


def report_each(pids: Sequence[int], read: Callable[[int], dict[str, Any]],
                error: type[Exception], show: Callable[[dict[str, Any]], str], as_json: bool, *,
                public: Callable[[dict[str, Any]], dict[str, Any]] = lambda report: report,
                separator: str = "\n") -> tuple[bool, list[dict[str, Any]]]:
    """read(pid) for each PID, then print every report: as text (show), or as
    one JSON list (public) in which a PID that raised ``error`` is
    ``{"pid", "error"}``, its message also a line on stderr. Returns whether
    any PID failed, and the reports read. For status and apply."""
    failed = False
    reports: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for pid in pids:
        try:
            report = read(pid)
        except error as exc:
            failed = True
            sys.stderr.write(f"{PROG}: {exc}\n")
            results.append({"pid": pid, "error": str(exc)})
            continue
        reports.append(report)
        results.append(public(report))
    if as_json:
        print(json.dumps(results, indent=2))
    elif reports:
        print(separator.join(show(report) for report in reports))
    return failed, reports
