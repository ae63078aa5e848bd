"""``keepalive-preload apply``: set the options on the TCP sockets a running
process already holds, without stopping it.

Each socket is duplicated into this process with ``pidfd_getfd(2)``; options set
on the duplicate are set on the process's own socket. The option table, the
validation and the precedence rule are the libraries': values come from
``_options.effective`` (defaults filled in, TCP_USER_TIMEOUT derived), 0 leaves
the system default, and a socket on which keepalive is already on keeps the
program's settings unless ``--force``.

Which sockets: ``--client`` the outbound ones, ``--server`` listeners (sockets
accepted later inherit the options) and accepted ones, ``--all`` (default) both.
An established socket counts as accepted when the process holds a listening
socket on its local port, otherwise as outbound.
"""

from __future__ import annotations

import errno
import socket
import sys

from .pidfd import SOL_TCP, TCP_OPTIONS, PidfdError, Remote, read_options
from .status import PROG, StatusError, inspect

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: The keepalive options, in the order they are set.
KEEPALIVE = ("idle", "interval", "count", "user_timeout")
#: States whose sockets are changed; others (closing, closed) are left alone.
CONNECTED = ("ESTABLISHED", "SYN-SENT", "SYN-RECV")
#: Which roles each variant covers.
ROLES = {"connect": ("outbound",), "listen": ("listener", "accepted"),
         "socket": ("outbound", "listener", "accepted")}
WORDS = {"connect": "--client", "listen": "--server", "socket": "--all"}


class ApplyError(Exception):
    """The process cannot be changed; the message says why."""


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def role(sock: dict[str, Any], listening: set[int]) -> str:
    """``listener``, ``accepted`` (an established socket on a port the process
    listens on) or ``outbound``."""
    if sock["state"] == "LISTEN":
        return "listener"
    return "accepted" if _port(sock["local"]) in listening else "outbound"


def plan(sock: dict[str, Any], values: dict[str, int]) -> tuple[dict[str, int], dict[str, str]]:
    """What to set on one socket: option -> value, and option -> why not set
    (only for options the user asked for that do not apply to this socket)."""
    wanted = {name: value for name, value in values.items() if value}
    skipped: dict[str, str] = {}
    listener = sock["state"] == "LISTEN"
    connecting = sock["state"] == "SYN-SENT"
    if "syn_count" in wanted and not connecting:
        del wanted["syn_count"]
        skipped["syn_count"] = "only changes a connect(2) still in progress"
    if "defer_accept" in wanted and not listener:
        del wanted["defer_accept"]
        skipped["defer_accept"] = "only applies to listening sockets"
    if "maxseg" in wanted and not (listener or connecting):
        del wanted["maxseg"]
        skipped["maxseg"] = "the segment size was negotiated when the connection was set up"
    return wanted, skipped


def _set(sock: socket.socket, name: str, value: int) -> None:
    if name == "keepalive":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, value)
    else:
        sock.setsockopt(SOL_TCP, TCP_OPTIONS[name], value)


def apply(pid: int, variant: str, values: dict[str, int], force: bool = False,
          dry_run: bool = False, debug: bool = False) -> dict[str, Any]:
    """Apply ``values`` (as from ``effective``) to the sockets of ``pid`` that
    ``variant`` covers; return the per-socket report. Raises ``ApplyError``
    when the process cannot be read or its sockets cannot be taken."""
    try:
        report = inspect(pid)
    except StatusError as exc:
        raise ApplyError(str(exc)) from None
    if report["options_error"]:
        raise ApplyError(report["options_error"])
    listening = {_port(s["local"]) for s in report["sockets"] if s["state"] == "LISTEN"}
    covered = ROLES[variant]
    results = []
    try:
        remote = Remote(pid)
    except PidfdError as exc:
        raise ApplyError(str(exc)) from None
    with remote:
        for sock in report["sockets"]:
            entry: dict[str, Any] = {k: sock[k] for k in ("fd", "state", "local", "remote")}
            entry["role"] = role(sock, listening)
            entry["before"] = sock["options"]
            results.append(entry)
            if sock["state"] not in (*CONNECTED, "LISTEN"):
                entry.update(action="skipped", reason=f"state {sock['state']}")
                continue
            if entry["role"] not in covered:
                entry.update(action="skipped", reason=f"not covered by {WORDS[variant]}")
                continue
            if sock["options"] is None:
                entry.update(action="skipped", reason="closed meanwhile")
                continue
            if sock["options"]["keepalive"] and not force:
                kept = ", ".join(f"{n} {sock['options'][n]}" for n in KEEPALIVE
                                 if n in sock["options"])
                entry.update(action="kept the program's",
                             reason=f"keepalive was already on ({kept}); --force sets ours")
                continue
            wanted, skipped = plan(sock, values)
            entry["not_set"] = skipped
            entry["set"] = {"keepalive": 1, **wanted}
            if dry_run:
                entry["action"] = "would set"
                continue
            try:
                with remote.socket(sock["fd"], sock["inode"]) as dup:
                    failed = {}
                    for name, value in entry["set"].items():
                        try:
                            _set(dup, name, value)
                            if debug:
                                sys.stderr.write(f"{PROG}: PID {pid} fd {sock['fd']}: "
                                                 f"{name} = {value}\n")
                        except OSError as exc:
                            failed[name] = exc.strerror or str(exc)
                    entry["after"] = read_options(dup)
            except PidfdError as exc:
                if exc.errno != errno.EBADF:
                    raise ApplyError(str(exc)) from None
                entry.update(action="skipped", reason="closed meanwhile")
                continue
            if failed:
                entry.update(action="failed", errors=failed)
            else:
                entry["action"] = "set"
    return {"pid": pid, "command": report["command"], "sockets": results}


def _describe(entry: dict[str, Any]) -> str:
    where = entry["local"] if entry["state"] == "LISTEN" else (
        f"{entry['local']} -> {entry['remote']}")
    head = f"  fd {entry['fd']}  {entry['state']}  {where}  ({entry['role']}): {entry['action']}"
    if "reason" in entry:
        return f"{head}: {entry['reason']}"
    parts = []
    if "set" in entry:
        parts.append(" ".join(f"{n}={v}" for n, v in entry["set"].items()))
    for name, why in entry.get("not_set", {}).items():
        parts.append(f"{name} not set: {why}")
    for name, why in entry.get("errors", {}).items():
        parts.append(f"{name} failed: {why}")
    return f"{head} " + "; ".join(parts)


def format_apply(report: dict[str, Any]) -> str:
    lines = [f"PID {report['pid']} ({report['command']}):"]
    if not report["sockets"]:
        lines.append("  no TCP sockets")
    lines.extend(_describe(e) for e in report["sockets"])
    return "\n".join(lines)
