"""The raw system calls the package makes that the standard library does not
wrap: ``pidfd_open(2)``, ``pidfd_getfd(2)`` and ``bpf(2)``, through ctypes.

Each function is the call and nothing more: its arguments are the kernel's, it
returns the kernel's result, and a failure raises ``SyscallError`` (an
``OSError`` with ``errno`` and the call's name). What a failure *means* (no
such process, permission denied, an old kernel, a verifier log) is for the
caller to say in its own words: ``live.pidfd`` and ``cgroup.bpf``.

ctypes and libc are loaded on the first call, so importing this module is
cheap.
"""

from __future__ import annotations

import errno
import os
import platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    from collections.abc import Callable

__all__ = ["SyscallError", "bpf", "numbers", "pidfd_getfd", "pidfd_open", "setns"]


class SyscallError(OSError):
    """A system call failed: ``errno``, ``strerror`` and ``call`` (its name)."""

    def __init__(self, code: int, call: str) -> None:
        super().__init__(code, os.strerror(code))
        self.call = call

    def __str__(self) -> str:
        return f"{self.call}: {self.strerror}"


# The generic syscall table (include/uapi/asm-generic/unistd.h) and x86_64, i386,
# arm, aarch64, riscv, powerpc, s390 and loongarch all number pidfd_open and
# pidfd_getfd 434 and 438 (they were added to every table at once); alpha
# adds 110, mips its ABI's base. bpf(2) predates that and differs per table.
_PIDFD = {"alpha": (544, 548)}
_MIPS_BASE = {"n64": 5000, "o32": 4000}
_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "armv6l": 386, "armv8l": 386,
        "i686": 357, "i586": 357, "i386": 357, "ppc64le": 361, "ppc64": 361, "s390x": 351,
        "riscv64": 280, "loongarch64": 280}


def numbers(machine: str | None = None, bits: str | None = None) -> dict[str, int | None]:
    """The numbers of the calls on ``machine`` (default: this one), by name;
    None where this module does not know it (the call then fails with ENOSYS)."""
    machine = platform.machine() if machine is None else machine
    bits = platform.architecture()[0] if bits is None else bits
    if machine.startswith("alpha"):
        pidfd_open, pidfd_getfd = _PIDFD["alpha"]
    elif machine.startswith("mips"):  # o32 on 32-bit userspace, n64 on 64-bit
        base = _MIPS_BASE["n64" if bits == "64bit" else "o32"]
        pidfd_open, pidfd_getfd = base + 434, base + 438
    else:
        pidfd_open, pidfd_getfd = 434, 438
    return {"pidfd_open": pidfd_open, "pidfd_getfd": pidfd_getfd, "bpf": _BPF.get(machine)}


_NUMBERS: dict[str, int | None] = {}
_syscall: Callable[..., int] | None = None


def _call(name: str, *args: ctypes.c_int | ctypes.c_uint | ctypes.c_void_p) -> int:
    """``syscall(NR_name, *args)``: the result, or ``SyscallError``."""
    import ctypes

    global _syscall
    if not _NUMBERS:
        _NUMBERS.update(numbers())
    number = _NUMBERS[name]
    if number is None:
        raise SyscallError(errno.ENOSYS, name)
    if _syscall is None:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.syscall
        function.restype = ctypes.c_long
        _syscall = function
    result = int(_syscall(ctypes.c_long(number), *args))
    if result < 0:
        raise SyscallError(ctypes.get_errno(), name)
    return result


def pidfd_open(pid: int, flags: int = 0) -> int:
    """``pidfd_open(pid, flags)`` (Linux 5.3): a pidfd, to close with ``os.close``."""
    import ctypes

    return _call("pidfd_open", ctypes.c_int(pid), ctypes.c_uint(flags))


def pidfd_getfd(pidfd: int, targetfd: int, flags: int = 0) -> int:
    """``pidfd_getfd(pidfd, targetfd, flags)`` (Linux 5.6): a duplicate, in this
    process, of descriptor ``targetfd`` of the process behind ``pidfd``."""
    import ctypes

    return _call("pidfd_getfd", ctypes.c_int(pidfd), ctypes.c_int(targetfd),
                 ctypes.c_uint(flags))


def bpf(cmd: int, attr: ctypes.Array[ctypes.c_char] | ctypes.Structure,
        size: int | None = None) -> int:
    """``bpf(cmd, &attr, size)``: ``attr`` is the ``union bpf_attr`` member
    for ``cmd``, as a ``ctypes.Structure`` or a byte buffer; ``size`` defaults
    to ``ctypes.sizeof(attr)``. Returns the kernel's result (a new fd for the
    commands that make one, else 0)."""
    import ctypes

    length = ctypes.sizeof(attr) if size is None else size
    return _call("bpf", ctypes.c_int(cmd), ctypes.c_void_p(ctypes.addressof(attr)),
                 ctypes.c_uint(length))


def setns(fd: int, nstype: int = 0) -> None:
    """``setns(fd, nstype)``: move the calling *thread* into the namespace ``fd``
    refers to (``os.setns`` from Python 3.12 on)."""
    import ctypes

    mover = getattr(os, "setns", None)
    if mover is not None:
        try:
            mover(fd, nstype)
        except OSError as exc:
            raise SyscallError(exc.errno or errno.EINVAL, "setns") from None
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) < 0:
        raise SyscallError(ctypes.get_errno(), "setns")
