"""``keepalive-preload apply``: set the options on the TCP sockets a running
process already holds, without stopping it.

One pass over each process's sockets through one pidfd: each socket is
duplicated once (``pidfd_getfd(2)``), its options read, the plan made on what
it has now, the options set on the duplicate (so on the process's own socket)
and read back. The option table says on which socket states each option may
be set (``Option.live``) and which options the precedence rule covers
(``Option.ruled``): an option someone already set on the socket (a value
other than a fresh socket's) is kept unless ``force``, and the report says
who set it as far as can be told. What was changed is reported also when the
pass stops half way (the process exits, or can no longer be read).

Which sockets: ``connect`` (--client) the outbound ones, ``listen``
(--server) listeners (sockets accepted later inherit the options) and
accepted ones, ``socket`` (--all) both. An established socket counts as
accepted when the process holds a listening socket on its local port.
"""

from __future__ import annotations

import errno
import socket
import sys
from dataclasses import dataclass

from .._options import OPTIONS, WORDS, effective
from . import proc
from .errors import LiveError, NoSuchProcess, ZombieProcess
from .pidfd import SOL_TCP, TCP_OPTIONS, Closed, Remote, read_options
from .records import Applied, ApplyReport, Socket
from .sockdiag import Tables
from .status import (
    Reader,
    deciding,
    direction,
    listening_ports,
    no_gc,
    role,
    sockets_of,
    source,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .records import CgroupProgram, Library

#: The states of the table's ``live`` column, by socket state.
STATE_CLASS = {"LISTEN": "listen", "SYN-SENT": "connecting", "ESTABLISHED": "connected",
               "SYN-RECV": "connected"}
_STATE_WORDS = {"listen": "listening sockets", "connecting": "connections still connecting "
                "(SYN-SENT)", "connected": "established connections"}
#: Which roles each variant covers.
ROLES = {"connect": ("outbound",), "listen": ("listener", "accepted"),
         "socket": ("outbound", "listener", "accepted")}
#: The errors with which a kernel refuses an option on an MPTCP socket.
_REFUSED = (errno.EOPNOTSUPP, errno.ENOPROTOOPT, errno.EINVAL)
_KEEPALIVE = ("idle", "interval", "count")


_fresh: dict[str, int] = {}


def fresh_values() -> dict[str, int]:
    """What a fresh TCP socket has (this network namespace's sysctls): a value
    other than these was set by someone."""
    if not _fresh:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as fresh:
            _fresh.update(read_options(fresh))
    return _fresh


def who(libraries: list[Library] | None, programs: list[CgroupProgram] | None,
        options: dict[str, int], way: str) -> str:
    """Who set what a socket of direction ``way`` has, in words, as far as can
    be told."""
    found = source({**options, "keepalive": 1}, libraries, programs, way)
    chosen = deciding(programs, way)
    if found == "cgroup" and chosen is not None:
        return f"our cgroup program on {proc.escape(chosen.cgroup)}"
    if found == "library":
        names = ", ".join(sorted({lib.name for lib in libraries or ()}))
        return f"our library ({names} is mapped in the process)"
    if found == "program" and programs is not None:
        return "the program (or an earlier apply with other values)"
    if libraries is None:
        return "someone (who cannot be told: the process's libraries could not be read)"
    return "the program or our cgroup program (which cannot be told: the cgroup programs " \
        "could not be read)"


def plan(state: str, now: dict[str, int], values: dict[str, int], derive: bool,
         force: bool) -> tuple[dict[str, int], dict[str, int], dict[str, str]]:
    """What to set on one socket in ``state`` that has the options ``now``:
    option -> value to set, option -> value kept (set by someone else), and
    option -> why not set (an option this state does not take)."""
    fresh = fresh_values()
    live = STATE_CLASS.get(state)
    wanted: dict[str, int] = {}
    kept: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for option in OPTIONS:
        value = values.get(option.name, 0)
        if not value:
            continue  # 0: leave the system default
        if live not in option.live:
            skipped[option.name] = "applies only to " + " and ".join(
                _STATE_WORDS[s] for s in option.live)
            continue
        current = now.get(option.name)
        if current is None:
            continue  # the socket does not take it (MPTCP): skipped quietly
        if (option.ruled and not force and current != value
                and current != fresh.get(option.name)):
            kept[option.name] = current
            continue
        wanted[option.name] = value
    if derive and "user_timeout" in wanted and any(n in kept for n in _KEEPALIVE):
        # The derived user timeout follows the timers the socket ends up with.
        final = {n: kept.get(n, wanted.get(n, now.get(n, 0))) for n in _KEEPALIVE}
        wanted["user_timeout"] = effective({**final, "user_timeout": -1})["user_timeout"]
    if now.get("keepalive") and all(now.get(n) == v for n, v in wanted.items()):
        return {}, kept, skipped  # it has them all already
    return {"keepalive": 1, **wanted}, kept, skipped


def _set(sock: socket.socket, name: str, value: int) -> None:
    if name == "keepalive":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, value)
    else:
        sock.setsockopt(SOL_TCP, TCP_OPTIONS[name], value)


@dataclass
class Request:
    """What ``apply`` was asked: the variant, the values as the libraries set
    them (``derive``: the user timeout was -1, derived per socket), and how."""

    variant: str
    values: dict[str, int]
    derive: bool
    force: bool = False
    dry_run: bool = False
    debug: bool = False

    @classmethod
    def of(cls, variant: str, values: dict[str, int], force: bool = False,
           dry_run: bool = False, debug: bool = False) -> Request:
        return cls(variant, effective(dict(values)), values.get("user_timeout") == -1, force,
                   dry_run, debug)


class _Pass:
    """One pass over one process's sockets, through one pidfd."""

    def __init__(self, remote: Remote, request: Request, libraries: list[Library] | None,
                 programs: list[CgroupProgram] | None) -> None:
        self.remote = remote
        self.request = request
        self.libraries = libraries
        self.programs = programs

    def visit(self, sock: Socket, entry: Applied) -> None:
        """Plan, set and read back one socket; raises ``LiveError`` when the
        process cannot be read any more."""
        try:
            dup = self.remote.socket(sock.fd, sock.endpoint.inode)
        except Closed:
            entry.reason = "closed meanwhile"
            return
        with dup:
            now = read_options(dup)
            entry.before = now
            wanted = self._judge(sock, entry, now)
            if not wanted:
                return
            entry.set = dict(wanted)
            if self.request.dry_run:
                entry.action = "would set"
                return
            self._write(dup, sock, entry, wanted)
            entry.after = read_options(dup)
            entry.action = "failed" if entry.errors else "set"

    def _judge(self, sock: Socket, entry: Applied, now: dict[str, int]) -> dict[str, int]:
        """What to set; an empty plan says why on ``entry``."""
        r = self.request
        wanted, kept, entry.not_set = plan(sock.state, now, r.values, r.derive, r.force)
        by = who(self.libraries, self.programs, now, direction(entry.role))
        if kept:
            entry.kept, entry.by = kept, by
        if wanted:
            return wanted
        if kept:
            entry.action = "kept"
            entry.reason = f"already set by {by}; --force sets ours"
        else:
            # The values apply would set: an earlier apply's, as far as can be
            # told (our cgroup program may carry the same ones).
            entry.action = "unchanged"
            by = f"{by} or an earlier apply" if by.startswith("our cgroup") else (
                "an earlier apply")
            entry.reason = f"it already has these values, set by {by}"
        return {}

    def _write(self, dup: socket.socket, sock: Socket, entry: Applied,
               wanted: dict[str, int]) -> None:
        for name, value in wanted.items():
            try:
                _set(dup, name, value)
            except OSError as exc:
                if sock.endpoint.protocol == "mptcp" and exc.errno in _REFUSED:
                    entry.not_set[name] = "the kernel does not take it on MPTCP sockets"
                    entry.set.pop(name, None)
                else:
                    entry.errors[name] = exc.strerror or str(exc)
                continue
            if self.request.debug:
                sys.stderr.write(f"keepalive-preload: PID {self.remote.pid} fd {sock.fd}: "
                                 f"{name} = {value}\n")


def _target(pid: int, reader: Reader,
            ) -> tuple[list[Socket], list[Library] | None, list[CgroupProgram] | None]:
    """The process's TCP sockets, our libraries in it and our cgroup programs
    over it (it must not be exiting)."""
    inodes = proc.socket_inodes(pid)
    try:
        libraries: list[Library] | None = proc.mapped_libraries(pid)
    except LiveError:
        libraries = None
    sockets: list[Socket] = []
    if inodes:
        sockets = sockets_of(inodes, reader.tables.for_process(pid, proc.netns(pid)))
    proc.still_there(pid)
    programs = reader.programs(reader.cgroup(pid))[0] if sockets else None
    return sockets, libraries, programs


def apply(pid: int, variant: str, values: dict[str, int], force: bool = False,
          dry_run: bool = False, debug: bool = False, reader: Reader | None = None,
          ) -> ApplyReport:
    """Apply ``values`` (option name -> value as the user chose them, defaults
    filled in; user_timeout -1: derived) to the sockets of ``pid`` that
    ``variant`` covers, in one pass. Raises ``LiveError`` when the process
    cannot be read or changed at all; a pass that stops half way returns the
    report with ``error`` set and every socket it changed."""
    reader = reader or Reader()
    request = Request.of(variant, values, force, dry_run, debug)
    info = proc.process(pid)
    with Remote(pid) as remote:
        sockets, libraries, programs = _target(pid, reader)
        one = _Pass(remote, request, libraries, programs)
        report = ApplyReport(pid, info.command)
        listening = listening_ports(sockets)
        for sock in sockets:
            e = sock.endpoint
            entry = Applied(sock.fd, e.state, e.local, e.remote, role(sock, listening))
            if e.state not in STATE_CLASS:
                entry.reason = f"state {e.state}"
            elif entry.role not in ROLES[variant]:
                entry.reason = f"not covered by --{WORDS[variant]}"
            else:
                try:
                    one.visit(sock, entry)
                except LiveError as exc:
                    report.error = (f"stopped after {len(report.sockets)} of {len(sockets)} "
                                    f"sockets: {exc}")
                    break
            report.sockets.append(entry)
        if report.error is None:
            # An exiting process closes its descriptors one by one: sockets
            # "closed meanwhile" would hide that the pass did not reach them.
            try:
                proc.still_there(pid)
            except LiveError as exc:
                report.error = f"stopped: {exc}"
    return report


def apply_pids(pids: Sequence[int], variant: str, values: dict[str, int], force: bool = False,
               dry_run: bool = False, debug: bool = False,
               gone_ok: bool = False) -> list[ApplyReport]:
    """``apply`` for each PID, sharing one read of each network namespace's
    table; a PID that cannot be changed at all is a report with ``command``
    None and ``error`` (for ``cgroup attach --existing`` and the CLI).
    ``gone_ok``: a process that exits (or is a zombie) before it is read is
    left out, not an error: its connections went with it (``--existing``
    lists a cgroup's processes, which come and go, e.g. at boot)."""
    reader = Reader()
    reports = []
    with no_gc():
        for pid in pids:
            try:
                reports.append(apply(pid, variant, values, force, dry_run, debug, reader))
            except (NoSuchProcess, ZombieProcess) as exc:
                if not gone_ok:
                    reports.append(ApplyReport(pid, None, error=str(exc)))
            except LiveError as exc:
                reports.append(ApplyReport(pid, None, error=str(exc)))
    return reports


__all__ = ["Request", "Tables", "apply", "apply_pids", "plan", "role"]
