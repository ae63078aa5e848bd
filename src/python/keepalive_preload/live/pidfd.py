"""Another process's sockets, in this one: ``pidfd_open(2)`` and ``pidfd_getfd(2)``.

``pidfd_getfd`` (Linux >= 5.6) duplicates a file descriptor out of another
process when the caller may ptrace it (``PTRACE_MODE_ATTACH_REALCREDS``: the
same user and no Yama restriction, or ``CAP_SYS_PTRACE``). The duplicate refers
to the *same* socket, so ``getsockopt`` and ``setsockopt`` on it read and change
the socket the process holds; closing the duplicate leaves the process's own
descriptor alone. One pidfd per process: ``Remote`` holds it.
"""

from __future__ import annotations

import errno
import os
import socket

from .. import _syscalls
from .._options import OPTIONS
from .errors import AccessDenied, KernelTooOld, LiveError, NoSuchProcess, ReadError

SOL_TCP = socket.IPPROTO_TCP
#: The TCP options we read and set, by our option name (the option table's).
TCP_OPTIONS = {option.name: option.optname for option in OPTIONS}


class Closed(Exception):
    """The descriptor was closed (or reused for something else) meanwhile."""


def explain(exc: OSError, pid: int, what: str) -> LiveError:
    """The typed error for a failed pidfd call on ``pid``."""
    code = exc.errno or 0
    call = exc.call if isinstance(exc, _syscalls.SyscallError) else "pidfd_getfd"
    if code == errno.ESRCH:
        return NoSuchProcess(pid)
    if code == errno.ENOSYS:
        linux = "5.3" if call == "pidfd_open" else "5.6"
        return KernelTooOld(pid, f"cannot {what}: the kernel is too old ({call} needs Linux "
                                 f"{linux} or later)")
    if code in (errno.EPERM, errno.EACCES):
        return AccessDenied(pid, f"cannot {what} of PID {pid}: permission denied (it needs the "
                                 "right to ptrace the process: run as root with "
                                 "CAP_SYS_PTRACE, or as its user where "
                                 "kernel.yama.ptrace_scope allows it)")
    return ReadError(pid, f"cannot {what} of PID {pid}: {os.strerror(code)}")


def pidfd_open(pid: int) -> int:
    """A pidfd for ``pid`` (close it with ``os.close``); a ``LiveError`` says why not."""
    try:
        opener = getattr(os, "pidfd_open", None)  # Python 3.9+
        if opener is not None:
            try:
                return int(opener(pid, 0))
            except OSError as exc:
                raise _syscalls.SyscallError(exc.errno or errno.EINVAL, "pidfd_open") from None
        return _syscalls.pidfd_open(pid)
    except OSError as exc:
        raise explain(exc, pid, "open a pidfd") from None


class Remote:
    """The sockets of process ``pid`` through one pidfd; a context manager."""

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
        """The process's ``fd`` as a socket of ours (close it after use).
        ``Closed`` if the fd no longer is the socket with ``inode``; a
        ``LiveError`` if the process cannot be read (any more)."""
        try:
            dup = _syscalls.pidfd_getfd(self.pidfd, fd)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise Closed(fd) from None
            raise explain(exc, self.pid, "duplicate the sockets") from None
        try:
            if os.fstat(dup).st_ino != inode:
                raise Closed(fd)
            # Family and type given: Python then asks the kernel nothing more
            # (getsockopt at SOL_SOCKET and SOL_TCP works whatever they are).
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fileno=dup)
        except BaseException:
            os.close(dup)
            raise


def read_options(sock: socket.socket) -> dict[str, int]:
    """``keepalive`` (SO_KEEPALIVE, 0/1) and every TCP option of the table, by
    option name, read back with getsockopt (an option the socket refuses, as
    MPTCP may, is left out)."""
    values = {"keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)}
    for name, number in TCP_OPTIONS.items():
        try:
            values[name] = sock.getsockopt(SOL_TCP, number)
        except OSError:  # e.g. an option MPTCP does not pass on
            continue
    return values
