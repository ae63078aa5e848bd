"""What ``keepalive-preload run`` checks before it replaces itself with COMMAND."""

from __future__ import annotations

import os
import stat
import struct

PT_INTERP = 3


class CommandError(Exception):
    """COMMAND cannot be run; ``status`` is the shell's exit code for it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def resolve(command: str, search_path: str | None) -> str:
    """The file ``command`` names, found on ``search_path`` as a shell would.

    Raises ``CommandError`` with status 127 (not found) or 126 (not executable).
    """
    if "/" in command:
        candidates = [command]
    else:
        candidates = [os.path.join(d or ".", command)
                      for d in (search_path or os.defpath).split(os.pathsep)]
    denied = None
    for candidate in candidates:
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = denied or candidate
        elif os.path.isdir(candidate) and "/" in command:
            raise CommandError(f"{command}: is a directory", 126)
    if denied is not None:
        raise CommandError(f"{denied}: permission denied", 126)
    if "/" in command:
        raise CommandError(f"{command}: no such file or directory", 127)
    raise CommandError(f"{command}: command not found", 127)


def is_static_elf(path: str) -> bool:
    """True for an ELF executable with no program interpreter (statically
    linked): the dynamic loader never runs, so LD_PRELOAD cannot reach it."""
    try:
        with open(path, "rb") as f:
            ident = f.read(64)
            if len(ident) < 64 or ident[:4] != b"\x7fELF":
                return False  # a script, or not an executable we understand
            order = "<" if ident[5] == 1 else ">"
            if ident[4] == 2:  # 64-bit
                phoff, = struct.unpack_from(order + "Q", ident, 32)
                phentsize, phnum = struct.unpack_from(order + "HH", ident, 54)
            else:
                phoff, = struct.unpack_from(order + "I", ident, 28)
                phentsize, phnum = struct.unpack_from(order + "HH", ident, 42)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    types = [struct.unpack_from(order + "I", table, i * phentsize)[0]
             for i in range(len(table) // phentsize if phentsize else 0)]
    return PT_INTERP not in types


def privilege_change(path: str) -> str | None:
    """Why running ``path`` would put the process in secure-execution mode, or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if st.st_mode & stat.S_ISUID and st.st_uid != os.geteuid():
        return "set-user-ID"
    if st.st_mode & stat.S_ISGID and st.st_gid != os.getegid():
        return "set-group-ID"
    if os.geteuid() != 0:
        try:
            os.getxattr(path, "security.capability")
            return "given file capabilities"
        except OSError:
            pass
    return None
