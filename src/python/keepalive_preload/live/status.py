"""``keepalive-preload status``: the TCP sockets of running processes, with the
timer the kernel has armed on each, the keepalive options really set on it,
and where they come from.

Sockets are found the way psutil and ``ss -p`` find them: ``/proc/PID/fd``
gives the inode of each socket a process holds, its network namespace's TCP
table (``sockdiag``: read once per namespace per command) the state,
addresses and timer of each inode. The option values are read from the socket
itself, duplicated into this process through one pidfd per process
(``pidfd``); where that is not allowed the timer view remains and the report
says why. A process that cannot be read is an error, never an empty list.
Formatting is ``show``'s; this module only reads.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os

from .._options import effective
from . import proc
from .errors import (
    AccessDenied,
    KernelTooOld,
    LiveError,
    NoSuchProcess,
    NotAProcess,
    ReadError,
    ZombieProcess,
)
from .pidfd import Closed, Remote, read_options
from .records import CgroupProgram, Library, ProcessStatus, Socket, Unreadable
from .sockdiag import Table, Tables

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Protocol

    class _Attached(Protocol):
        cgroup: str
        prog_id: int
        values: dict[str, int]
        scope: str
        force: bool
        effective: bool
        decides: tuple[str, ...]

#: The options whose values tell whose keepalive a socket has.
KEEPALIVE_OPTIONS = ("idle", "interval", "count", "user_timeout")
#: The directions of connections the cgroup program tells apart.
DIRECTIONS = ("outbound", "accepted")


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def listening_ports(sockets: Sequence[Socket]) -> set[int]:
    return {_port(s.endpoint.local) for s in sockets if s.state == "LISTEN"}


def role(sock: Socket, listening: set[int]) -> str:
    """``listener``, ``accepted`` (an established socket on a port the process
    listens on) or ``outbound``."""
    if sock.state == "LISTEN":
        return "listener"
    return "accepted" if _port(sock.endpoint.local) in listening else "outbound"


def direction(role: str) -> str:
    """The cgroup program's direction of a socket of ``role`` (a listener's
    values go to the connections it accepts)."""
    return "outbound" if role == "outbound" else "accepted"


def _covering() -> Callable[[str], Sequence[_Attached]] | None:
    """``keepalive_preload.cgroup.covering`` (the cgroup helper's interface),
    or None in a build without it: the cgroup program is then "unknown"."""
    try:
        module = importlib.import_module("keepalive_preload.cgroup")
    except ImportError:
        return None
    found: Callable[[str], Sequence[_Attached]] | None = getattr(module, "covering", None)
    return found


class Reader:
    """What one command reads once and shares between processes: each network
    namespace's TCP table, the cgroup programs on each cgroup."""

    def __init__(self) -> None:
        self.tables = Tables()
        self._mount = proc.cgroup_mount()
        self._programs: dict[str, tuple[list[CgroupProgram] | None, str | None]] = {}
        self._covering = _covering()
        self._cgroup_failure: str | None = None

    def cgroup(self, pid: int) -> str | None:
        if self._mount is None:
            return None
        try:
            return proc.cgroup(pid, self._mount)
        except LiveError:
            return None

    def programs(self, cgroup: str | None) -> tuple[list[CgroupProgram] | None, str | None]:
        """Our cgroup programs on ``cgroup`` and its ancestors (None and why
        when that cannot be told)."""
        if cgroup is None:
            return None, "no cgroup v2"
        if self._covering is None:
            return None, "this build cannot read cgroup programs"
        if self._cgroup_failure is not None:  # not root: same answer for every cgroup
            return None, self._cgroup_failure
        known = self._programs.get(cgroup)
        if known is not None:
            return known
        try:
            found = [CgroupProgram(str(a.cgroup), int(a.prog_id), dict(a.values),
                                   str(a.scope), bool(a.force), bool(a.effective),
                                   tuple(getattr(a, "decides", DIRECTIONS if a.effective
                                                 else ())))
                     for a in self._covering(cgroup)]
            result: tuple[list[CgroupProgram] | None, str | None] = (found, None)
        except PermissionError as exc:
            self._cgroup_failure = f"cannot read cgroup programs: {exc.strerror or exc}"
            return None, self._cgroup_failure
        except (OSError, ValueError) as exc:
            result = (None, f"cannot read cgroup programs: {exc}")
        self._programs[cgroup] = result
        return result


def _matches(options: dict[str, int], values: dict[str, int]) -> bool:
    wanted = effective({name: values.get(name) for name in KEEPALIVE_OPTIONS})
    return all(options.get(name) == wanted[name] for name in KEEPALIVE_OPTIONS
               if wanted[name])


def deciding(programs: list[CgroupProgram] | None, way: str) -> CgroupProgram | None:
    """Our cgroup program whose values a connection of direction ``way`` gets."""
    return next((p for p in programs or () if way in p.decides), None)


def source(options: dict[str, int] | None, libraries: list[Library] | None,
           programs: list[CgroupProgram] | None, way: str = "outbound") -> str:
    """Where the keepalive of a socket of direction ``way`` comes from, as far
    as can be told (see ``records.SOURCES``)."""
    if options is None:
        return "unknown"
    if not options["keepalive"]:
        return "none"
    chosen = deciding(programs, way)
    if chosen is not None and _matches(options, chosen.values):
        return "cgroup"
    if libraries:
        return "library"
    if libraries is None:
        return "unknown"
    return "program"


def sockets_of(inodes: dict[int, int], table: Table) -> list[Socket]:
    """The process's TCP sockets (``inodes``: inode -> fd), by fd."""
    found = []
    for inode, fd in inodes.items():
        endpoint = table.get(inode)
        if endpoint is not None:
            found.append(Socket(fd, endpoint))
    found.sort(key=lambda s: s.fd)
    return found


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic garbage collector off while tens of thousands of records
    (none in a cycle) are made: its passes over them cost more than the walk."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_options(report: ProcessStatus) -> None:
    """The options of each socket, read through one pidfd; where the process
    may not be read (or the kernel is too old), the reason instead."""
    try:
        with Remote(report.pid) as remote:
            for sock in report.sockets:
                try:
                    with remote.socket(sock.fd, sock.endpoint.inode) as dup:
                        sock.options = read_options(dup)
                except Closed:
                    sock.options = None
    except (AccessDenied, KernelTooOld) as exc:
        report.options_error = str(exc)
        for sock in report.sockets:
            sock.options = None


def inspect(pid: int, reader: Reader | None = None, *, listed: bool = False) -> ProcessStatus:
    """One process: its TCP sockets (state, addresses, timer, options read
    from the socket, their source), our libraries it has mapped, our cgroup
    programs over it, and why anything could not be read. ``listed``: the PID
    comes from /proc's listing (a process, not a thread ID)."""
    reader = reader or Reader()
    info = proc.stat(pid) if listed else proc.process(pid)
    if listed:
        if info.state == "Z":
            raise ZombieProcess(pid, f"PID {pid} is a zombie")
        if info.kernel_thread:
            raise NotAProcess(pid, f"PID {pid} is a kernel thread")
    report = ProcessStatus(pid, info.command)
    inodes = proc.socket_inodes(pid)
    try:
        report.libraries = proc.mapped_libraries(pid)
    except (AccessDenied, ReadError) as exc:
        report.libraries_error = str(exc)
    if inodes:
        report.sockets = sockets_of(inodes, reader.tables.for_process(pid, proc.netns(pid)))
    if report.sockets:
        report.cgroup = reader.cgroup(pid)
        report.cgroup_programs, report.cgroup_error = reader.programs(report.cgroup)
        _read_options(report)
        listening = listening_ports(report.sockets)
        for sock in report.sockets:
            sock.source = source(sock.options, report.libraries, report.cgroup_programs,
                                 direction(role(sock, listening)))
    # What was read is only true if the process did not exit meanwhile: an
    # exiting process closes its descriptors one by one.
    proc.still_there(pid)
    return report


def inspect_all(include_loopback: bool = True,
                ) -> tuple[list[ProcessStatus | Unreadable], Reader]:
    """Every process with TCP sockets, and every process that could not be
    read; zombies, kernel threads and processes that exit meanwhile are left
    out. Sorted: most connections without keepalive first, then the
    unreadable ones, then the rest, each by PID."""
    reader = Reader()
    reports: list[ProcessStatus | Unreadable] = []
    me = os.getpid()
    with no_gc():
        _walk(reader, reports, me)

    def order(r: ProcessStatus | Unreadable) -> tuple[int, bool, int]:
        if isinstance(r, Unreadable):
            return (0, False, r.pid)
        return (-r.without_keepalive(include_loopback), True, r.pid)

    reports.sort(key=order)
    return reports, reader


def _walk(reader: Reader, reports: list[ProcessStatus | Unreadable], me: int) -> None:
    for pid in proc.pids():
        if pid == me:
            continue
        try:
            report = inspect(pid, reader, listed=True)
        except (NoSuchProcess, ZombieProcess, NotAProcess):
            continue
        except LiveError as exc:
            try:
                info = proc.stat(pid)
            except LiveError:
                continue
            if info.kernel_thread or info.state == "Z":
                continue
            reports.append(Unreadable(pid, info.command, str(exc)))
            continue
        if report.sockets:
            reports.append(report)
