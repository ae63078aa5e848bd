"""Why a process cannot be read or changed, as types (as psutil's
``NoSuchProcess``, ``ZombieProcess`` and ``AccessDenied``): callers decide by
class, never by the words; ``str()`` is the one line the command prints."""

from __future__ import annotations


class LiveError(Exception):
    """A process cannot be read or changed; ``pid`` is the one asked about."""

    def __init__(self, pid: int, message: str) -> None:
        super().__init__(message)
        self.pid = pid


class NoSuchProcess(LiveError):
    """No process with this PID (it never existed, or it exited)."""

    def __init__(self, pid: int, message: str | None = None) -> None:
        super().__init__(pid, message or f"no process with PID {pid}")


class ProcessExiting(NoSuchProcess):
    """The process is exiting: its descriptors are being closed, what was
    read of them is not what it held."""

    def __init__(self, pid: int) -> None:
        super().__init__(pid, f"PID {pid} is exiting (its file descriptors are being "
                              "closed); nothing read from it can be trusted")


class ZombieProcess(LiveError):
    """The process has exited and its parent has not reaped it: no sockets."""


class NotAProcess(LiveError):
    """The PID names a thread of another process (a thread ID), or a kernel
    thread: not a process with sockets of its own."""


class AccessDenied(LiveError):
    """The caller may not read (or change) what was asked."""


class KernelTooOld(LiveError):
    """A system call this needs is missing (ENOSYS)."""


class ReadError(LiveError):
    """Anything else the kernel refused; the message says what and why."""
