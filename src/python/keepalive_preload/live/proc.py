"""What ``/proc`` says about a process: its state and name, whether it is a
process at all (not a thread ID, not a kernel thread), the sockets among its
file descriptors, our libraries in its memory map, its cgroup and its network
namespace. Each failure is a typed error (``errors``); nothing here prints."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .._options import LIBRARIES
from .errors import (
    AccessDenied,
    LiveError,
    NoSuchProcess,
    NotAProcess,
    ProcessExiting,
    ReadError,
    ZombieProcess,
)
from .records import Library

# include/linux/sched.h
PF_EXITING = 0x00000004
PF_KTHREAD = 0x00200000

_LIBRARY_NAMES = frozenset(LIBRARIES.values())


@dataclass
class Stat:
    """The fields of /proc/PID/stat this package uses."""

    pid: int
    command: str  # comm, as the process set it (prctl PR_SET_NAME): untrusted
    state: str
    ppid: int
    flags: int

    @property
    def kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)

    @property
    def exiting(self) -> bool:
        return bool(self.flags & PF_EXITING) or self.state in ("X", "x")


def denied(pid: int, what: str) -> AccessDenied:
    return AccessDenied(pid, f"cannot read {what} of PID {pid}: permission denied (it needs "
                             "the right to ptrace the process: its user, or root with "
                             "CAP_SYS_PTRACE in its user namespace)")


def _read(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise NoSuchProcess(pid) from None
    except PermissionError:
        raise denied(pid, f"/proc/{pid}/{name}") from None
    except OSError as exc:
        if exc.errno == 3:  # ESRCH: exited while read
            raise NoSuchProcess(pid) from None
        raise ReadError(pid, f"cannot read /proc/{pid}/{name}: {exc.strerror}") from None


def stat(pid: int) -> Stat:
    """/proc/PID/stat; ``NoSuchProcess`` if there is none."""
    raw = _read(pid, "stat")
    # comm may hold any byte but NUL, ")" and spaces included: it ends at the last ")".
    command = raw[raw.find(b"(") + 1:raw.rfind(b")")].decode("utf-8", "surrogateescape")
    fields = raw[raw.rfind(b")") + 2:].split()
    if len(fields) < 7:
        raise ReadError(pid, f"cannot read /proc/{pid}/stat: unexpected contents")
    return Stat(pid, command, fields[0].decode(), int(fields[1]), int(fields[6]))


def tgid(pid: int) -> int:
    """The process (thread group) the task ``pid`` belongs to."""
    for line in _read(pid, "status").splitlines():
        if line.startswith(b"Tgid:"):
            return int(line.split()[1])
    raise ReadError(pid, f"cannot read /proc/{pid}/status: no Tgid line")


def process(pid: int) -> Stat:
    """The process ``pid``, if it is one that can hold sockets: else
    ``NoSuchProcess``, ``ZombieProcess``, ``ProcessExiting`` or ``NotAProcess``
    (a thread ID of another process, or a kernel thread)."""
    info = stat(pid)
    if info.state == "Z":
        raise ZombieProcess(pid, f"PID {pid} ({escape(info.command)}) is a zombie: it has "
                                 "exited and holds no sockets (its parent, PID "
                                 f"{info.ppid}, has not reaped it yet)")
    if info.exiting:
        raise ProcessExiting(pid)
    if info.kernel_thread:
        raise NotAProcess(pid, f"PID {pid} ({escape(info.command)}) is a kernel thread: it "
                               "holds no sockets of a process")
    group = tgid(pid)
    if group != pid:
        raise NotAProcess(pid, f"{pid} is a thread ID of process {group}, not a process; "
                               f"give PID {group}")
    return info


def still_there(pid: int) -> None:
    """After reading a process: raise if it exited or began to exit meanwhile,
    since what was read of it (its descriptors close one by one as it exits)
    would under-report."""
    info = stat(pid)
    if info.state == "Z":
        raise NoSuchProcess(pid, f"PID {pid} exited while it was read")
    if info.exiting:
        raise ProcessExiting(pid)


def socket_inodes(pid: int) -> dict[int, int]:
    """inode -> fd for every socket the process holds. A descriptor that
    closes while we read is skipped (``still_there`` afterwards tells a
    process that exits from one that closes a socket)."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except (FileNotFoundError, ProcessLookupError):
        raise NoSuchProcess(pid) from None
    except PermissionError:
        raise denied(pid, "the file descriptors") from None
    inodes = {}
    readlink = os.readlink
    for name in names:
        try:
            target = readlink(f"{fd_dir}/{name}")
        except FileNotFoundError:  # closed meanwhile (or the process exited)
            continue
        except PermissionError:
            raise denied(pid, "the file descriptors") from None
        except OSError as exc:
            raise ReadError(pid, f"cannot read {fd_dir}/{name}: {exc.strerror}") from None
        if target.startswith("socket:["):
            inodes[int(target[8:-1])] = int(name)
    return inodes


def mapped_libraries(pid: int) -> list[Library]:
    """Our libraries mapped into the process, and whether the file was
    replaced or deleted since it was mapped.

    Upgrades (pip, dpkg, rpm) write the new file and rename it over the old one,
    which unlinks the mapped file: the kernel then marks the path " (deleted)".
    Inode numbers are not compared with the file now at that path: in a
    container (another mount namespace, overlayfs) they differ without any
    upgrade."""
    found: dict[str, Library] = {}
    for raw in _read(pid, "maps").splitlines():
        # address perms offset dev inode pathname; the pathname may contain spaces
        # and ends in " (deleted)" once the file was unlinked.
        fields = raw.split(None, 5)
        if len(fields) < 6 or not fields[5].endswith((b".so", b".so (deleted)")):
            continue
        path = fields[5].decode("utf-8", "surrogateescape")
        deleted = path.endswith(" (deleted)")
        if deleted:
            path = path[:-len(" (deleted)")]
        name = os.path.basename(path)
        if name in _LIBRARY_NAMES and path not in found:
            found[path] = Library(name, path, deleted)
    return sorted(found.values(), key=lambda lib: (lib.name, lib.path))


def netns(pid: int) -> int:
    """The inode of the process's network namespace (its identity)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except (FileNotFoundError, ProcessLookupError):
        raise NoSuchProcess(pid) from None
    except PermissionError:
        raise denied(pid, "the network namespace") from None
    except OSError as exc:
        raise ReadError(pid, f"cannot read /proc/{pid}/ns/net: {exc.strerror}") from None


def cgroup_mount() -> str | None:
    """Where the cgroup2 hierarchy is mounted (None: not mounted)."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "cgroup2":
                    return fields[1]
    except OSError:
        return None
    return None


def cgroup(pid: int, mount: str) -> str:
    """The process's cgroup v2 directory under ``mount``."""
    for line in _read(pid, "cgroup").splitlines():
        if line.startswith(b"0::"):
            path = line[3:].decode("utf-8", "surrogateescape")
            return mount.rstrip("/") + (path if path != "/" else "")
    raise ReadError(pid, f"PID {pid} is in no cgroup v2 (no 0:: line in /proc/{pid}/cgroup)")


def pids() -> list[int]:
    """Every process ID in /proc (ASCII digits only), ascending."""
    return sorted(int(name) for name in os.listdir("/proc") if name.isascii() and name.isdigit())


def escape(text: str) -> str:
    """``text`` with every character that is not printable (terminal control
    bytes, other Unicode controls, undecodable bytes) and the backslash
    written as a backslash escape: what another user controls never reaches
    a terminal raw."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        elif "\udc80" <= char <= "\udcff":  # an undecodable byte (surrogateescape)
            out.append(f"\\x{ord(char) - 0xdc00:02x}")
        elif ord(char) < 0x100:
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char, f"\\x{ord(char):02x}"))
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
    return "".join(out)


__all__ = ["LiveError", "Stat", "cgroup", "cgroup_mount", "escape", "mapped_libraries", "netns",
           "parse_pid", "pids", "process", "socket_inodes", "stat", "still_there", "tgid"]


def parse_pid(text: str) -> int:
    """A PID as the command line gives it: ASCII decimal digits only (no sign,
    space or other script's digits), 1 or more; else ``ValueError``."""
    if not (text.isascii() and text.isdigit()) or int(text) == 0 or int(text) > 2**31 - 1:
        raise ValueError(f"{text!r} is not a process ID (decimal digits, 1 or more)")
    return int(text)
