"""Another process's sockets, in this one: ``pidfd_open(2)`` and ``pidfd_getfd(2)``.

``pidfd_getfd`` (Linux >= 5.6) duplicates a file descriptor out of another
process when the caller may ptrace it (``PTRACE_MODE_ATTACH_REALCREDS``: the
same user and no Yama restriction, or ``CAP_SYS_PTRACE``). The duplicate refers
to the *same* socket, so ``getsockopt`` and ``setsockopt`` on it read and change
the socket the process holds; closing the duplicate leaves the process's own
descriptor alone.

ctypes is imported on first use only, so that importing the package stays cheap.
"""

from __future__ import annotations

import errno
import os
import platform
import socket

from .._options import OPTIONS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The generic syscall table (include/uapi/asm-generic/unistd.h) and x86_64,
# i386, arm, aarch64, riscv, powerpc, s390, mips (o32/n32/n64 offsets apart)
# all number them 434 and 438; alpha alone adds 110.
_NUMBERS = {"alpha": (544, 548)}
_MIPS_BASE = {"n64": 5000, "n32": 6000, "o32": 4000}

# The options we read and set, by our option name (the option table's).
SOL_TCP = socket.IPPROTO_TCP
TCP_OPTIONS = {option.name: option.optname for option in OPTIONS}


class PidfdError(OSError):
    """A pidfd call failed; ``str()`` says why in words, ``errno`` is kept."""

    def __str__(self) -> str:
        return str(self.strerror)


def _syscall_numbers() -> tuple[int, int]:
    machine = platform.machine()
    if machine.startswith("alpha"):
        return _NUMBERS["alpha"]
    if machine.startswith("mips"):  # o32 on 32-bit userspace, n64 on 64-bit
        base = _MIPS_BASE["n64" if platform.architecture()[0] == "64bit" else "o32"]
        return base + 434, base + 438
    return 434, 438


_libc: Any = None


def _call(number: int, *args: int) -> int:
    """``syscall(number, *args)``; raises ``OSError`` with errno on failure."""
    import ctypes

    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    result = int(_libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args)))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _explain(exc: OSError, pid: int, what: str, call: str = "pidfd_getfd",
             linux: str = "5.6") -> PidfdError:
    code = exc.errno or 0
    if code == errno.ESRCH:
        text = f"no process with PID {pid}"
    elif code == errno.ENOSYS:
        text = f"cannot {what}: the kernel is too old ({call} needs Linux {linux} or later)"
    elif code in (errno.EPERM, errno.EACCES):
        text = (f"cannot {what} of PID {pid}: permission denied (it needs the right to ptrace "
                "the process: run as root with CAP_SYS_PTRACE, or as its user where "
                "kernel.yama.ptrace_scope allows it)")
    else:
        text = f"cannot {what} of PID {pid}: {os.strerror(code)}"
    return PidfdError(code, text)


def pidfd_open(pid: int) -> int:
    """A pidfd for ``pid`` (close it with ``os.close``); ``PidfdError`` says why not."""
    try:
        opener = getattr(os, "pidfd_open", None)  # Python 3.9+
        if opener is not None:
            return int(opener(pid, 0))
        return _call(_syscall_numbers()[0], pid, 0)
    except OSError as exc:
        raise _explain(exc, pid, "open a pidfd", "pidfd_open", "5.3") from None


def pidfd_getfd(pidfd: int, pid: int, fd: int) -> int:
    """Duplicate descriptor ``fd`` of the process behind ``pidfd`` (PID ``pid``,
    for the messages) into this process."""
    try:
        return _call(_syscall_numbers()[1], pidfd, fd, 0)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise PidfdError(errno.EBADF, f"PID {pid} closed fd {fd} meanwhile") from None
        raise _explain(exc, pid, "duplicate the sockets") from None


class Remote:
    """The sockets of process ``pid``, taken one at a time; a context manager."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd = pidfd_open(pid)

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def socket(self, fd: int, inode: int) -> socket.socket:
        """The process's ``fd`` as a socket of ours (close it after use). Raises
        ``PidfdError`` if the fd no longer is the socket with ``inode``."""
        dup = pidfd_getfd(self.pidfd, self.pid, fd)
        if os.fstat(dup).st_ino != inode:
            os.close(dup)
            raise PidfdError(errno.EBADF, f"PID {self.pid} reused fd {fd} meanwhile")
        return socket.socket(fileno=dup)


def read_options(sock: socket.socket) -> dict[str, int]:
    """``keepalive`` (SO_KEEPALIVE, 0/1) and every TCP option we set, by our
    option name, read back with getsockopt."""
    values = {"keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)}
    for name, number in TCP_OPTIONS.items():
        try:
            values[name] = sock.getsockopt(SOL_TCP, number)
        except OSError:  # e.g. TCP_MAXSEG on a socket in a state without one
            continue
    return values
