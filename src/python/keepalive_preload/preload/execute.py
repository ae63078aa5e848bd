"""What ``keepalive-preload run`` checks before it replaces itself with COMMAND."""

from __future__ import annotations

import errno
import os
import stat
import struct

PT_INTERP = 3
PT_NOTE = 4
#: What runs a file that has no #! line, as in a shell.
SHELL = "/bin/sh"


class CommandError(Exception):
    """COMMAND cannot be run: ``found`` tells a command that was not found (a
    shell's 127) from one found but not executable (126); the statuses are
    the command line's (cli.args)."""

    def __init__(self, message: str, *, found: bool) -> None:
        super().__init__(message)
        self.found = found


def resolve(command: str, search_path: str | None) -> str:
    """The file ``command`` names, found on ``search_path`` as a shell would.

    Raises ``CommandError`` (not found, or found but not executable).
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
            raise CommandError(f"{command}: is a directory", found=True)
    if denied is not None:
        raise CommandError(f"{denied}: permission denied", found=True)
    if "/" in command:
        raise CommandError(f"{command}: no such file or directory", found=False)
    raise CommandError(f"{command}: command not found", found=False)


def _program_headers(path: str) -> tuple[str, list[tuple[int, int, int]]] | None:
    """The byte order and the (type, offset, size) of each program header of
    the ELF file ``path``; None for anything else (a script, unreadable)."""
    try:
        with open(path, "rb") as f:
            ident = f.read(64)
            if len(ident) < 64 or ident[:4] != b"\x7fELF":
                return None
            order = "<" if ident[5] == 1 else ">"
            if ident[4] == 2:  # 64-bit: p_type, p_flags, p_offset, ..., p_filesz at 32
                phoff, = struct.unpack_from(order + "Q", ident, 32)
                phentsize, phnum = struct.unpack_from(order + "HH", ident, 54)
                layout = (order + "I", 8, order + "Q", 32, order + "Q")
            else:  # 32-bit: p_type, p_offset at 4, ..., p_filesz at 16
                phoff, = struct.unpack_from(order + "I", ident, 28)
                phentsize, phnum = struct.unpack_from(order + "HH", ident, 42)
                layout = (order + "I", 4, order + "I", 16, order + "I")
            f.seek(phoff)
            table = f.read(phentsize * min(phnum, 256))
    except OSError:
        return None
    kind, off_at, off_fmt, size_at, size_fmt = layout
    headers = []
    for start in range(0, len(table) - phentsize + 1 if phentsize else 0, phentsize or 1):
        headers.append((struct.unpack_from(kind, table, start)[0],
                        struct.unpack_from(off_fmt, table, start + off_at)[0],
                        struct.unpack_from(size_fmt, table, start + size_at)[0]))
    return order, headers


def is_static_elf(path: str) -> bool:
    """True for an ELF executable with no program interpreter (statically
    linked): the dynamic loader never runs, so LD_PRELOAD cannot reach it."""
    found = _program_headers(path)
    return found is not None and PT_INTERP not in [kind for kind, _, _ in found[1]]


def is_go_elf(path: str) -> bool:
    """True for an ELF file built by Go: a PT_NOTE segment holds a note owned by
    "Go" (the build ID, section .note.go.buildid). Go makes its socket system
    calls directly, so LD_PRELOAD does not reach them even when it is dynamically
    linked (cgo)."""
    found = _program_headers(path)
    if found is None:
        return False
    order, headers = found
    try:
        with open(path, "rb") as f:
            for kind, offset, size in headers:
                if kind != PT_NOTE:
                    continue
                f.seek(offset)
                notes = f.read(min(size, 1 << 16))
                at = 0
                while at + 12 <= len(notes):  # each note: namesz, descsz, type, name, desc
                    namesz, descsz, _ = struct.unpack_from(order + "III", notes, at)
                    name = notes[at + 12:at + 12 + namesz]
                    if name.rstrip(b"\0") == b"Go":
                        return True
                    at += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    except OSError:
        return False
    return False


def interpreter(path: str) -> str | None:
    """The interpreter a ``#!`` line of ``path`` names, or None."""
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].split()
    return os.fsdecode(words[0]) if words else None


def looks_binary(path: str) -> bool:
    """What a shell checks before running a file the kernel refused (ENOEXEC)
    as a script: a NUL byte in its first line (of at most 80 bytes) makes it
    a binary it will not run."""
    try:
        with open(path, "rb") as f:
            head = f.read(80)
    except OSError:
        return True
    return b"\0" in head.split(b"\n", 1)[0]


def execute(program: str, argv: list[str], env: dict[str, str]) -> CommandError:
    """Replace this process with ``program`` as a shell would; return only on
    failure, with the shell's message: a file without ``#!`` that the kernel
    does not run is run by /bin/sh; a missing interpreter counts as not
    found, one that cannot be executed as not executable."""
    try:
        os.execve(program, argv, env)
    except OSError as exc:
        failure = exc
    if failure.errno == errno.ENOEXEC:
        if looks_binary(program):
            return CommandError(f"{argv[0]}: cannot execute binary file: Exec format error",
                                found=True)
        try:
            os.execve(SHELL, ["sh", program, *argv[1:]], env)
        except OSError as exc:
            return CommandError(f"{SHELL}: {exc.strerror}", found=True)
    interp = interpreter(program)
    found = failure.errno != errno.ENOENT
    if interp is not None and failure.errno in (errno.ENOENT, errno.EACCES, errno.ENOEXEC):
        return CommandError(f"{argv[0]}: bad interpreter {interp}: {failure.strerror}",
                            found=found)
    return CommandError(f"{argv[0]}: {failure.strerror}", found=found)


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
