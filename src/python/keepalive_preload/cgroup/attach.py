"""The cgroup mode's operations: find the cgroup2 mount, resolve a path or a
systemd unit to a cgroup directory, attach, detach and show our program, and
say which of ours covers a cgroup (``covering``).

Attach and detach on one cgroup are serialised by an exclusive ``flock`` on
the cgroup directory itself (cgroupfs takes it; the lock goes with the open
file, so a killed command leaves none behind): there is never more than one of
ours on a cgroup. Every ``bpf(2)`` failure becomes a ``CgroupError`` that says
the real cause, naming the operation once.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import loader
from .asm import R0, assemble, exit_, listing, mov_imm
from .loader import BPFError
from .program import FIELDS, NAME, SCOPE_WORDS, SETTABLE, Flag, decode, encode, program

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: The first kernel whose bpf_setsockopt accepts SO_KEEPALIVE and the TCP_KEEP* options.
MINIMUM_KERNEL = (5, 9)
#: Before this kernel bpf_getsockopt cannot read SO_KEEPALIVE, so the program
#: cannot tell a socket the program turned keepalive on itself (see program.py).
PRECEDENCE_KERNEL = (6, 1)
#: How long attach/detach wait for another one on the same cgroup (seconds).
LOCK_WAIT = 30.0
#: Test-only: seconds attach sleeps between reading what is attached and
#: attaching, holding the lock, so a test can prove concurrent runs serialise.
#: Read only when set; never set it in production.
TEST_PAUSE = "KEEPALIVE_PRELOAD_TEST_ATTACH_PAUSE"
#: The directions of a connection a program of ours can decide for.
DIRECTIONS = {"outbound": Flag.CLIENT, "accepted": Flag.SERVER}

_UNIT_SUFFIX = re.compile(r"\.(service|scope|slice|socket|mount|swap|target|timer)\Z")
_MAX_WALK = 100_000  # cgroup directories visited by `show` with no CGROUP
# linux/capability.h: the capabilities the cgroup mode needs.
_CAPABILITIES = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_BPF": 39}


class CgroupError(OSError):
    """A one-line reason the command cannot do what was asked (exit status 1):
    ``str()`` is the line. ``errno``: the system's error behind it, if any;
    ``log``: the verifier's log when it refused the program. An OSError, so
    that callers of ``covering`` handle it with the other system errors."""

    def __init__(self, message: str, log: str = "", code: int = 0) -> None:
        super().__init__(code, message)
        self.message = message
        self.log = log

    def __str__(self) -> str:
        return self.message


class CgroupPermissionError(CgroupError, PermissionError):
    """EPERM: not root, or a foreign program the kernel will not attach beside."""


# --- records ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ours:
    """One program of ours: its id and the fields of its map (None when they
    cannot be read: another version's layout)."""

    prog_id: int
    fields: dict[str, int] | None

    @property
    def values(self) -> dict[str, int]:
        """Option name -> the value it sets (0: the system's default); {} if unreadable."""
        if self.fields is None:
            return {}
        return {name: self.fields[name] for name in FIELDS[1:]}

    @property
    def flags(self) -> Flag:
        return Flag(0) if self.fields is None else Flag(self.fields["flags"])

    @property
    def scope(self) -> str:
        """"client", "server", "all", or "unknown" (values unreadable)."""
        return SCOPE_WORDS.get(self.flags & (Flag.CLIENT | Flag.SERVER), "unknown")

    @property
    def force(self) -> bool:
        return bool(self.flags & Flag.FORCE)


@dataclass(frozen=True)
class Attached(Ours):
    """Ours, attached to ``cgroup``. From ``covering``: ``decides``, the
    directions ("outbound", "accepted") of the connections in the cgroup asked
    about for which this one is the nearest of ours, so its values are the
    ones they get."""

    cgroup: str = ""
    decides: tuple[str, ...] = field(default=())

    @property
    def effective(self) -> bool:
        """A connection of the cgroup asked about gets this one's values (for
        the directions in ``decides``)."""
        return bool(self.decides)


@dataclass(frozen=True)
class Stranded(Ours):
    """Ours, loaded but attached to no cgroup that still exists: its cgroup was
    removed while sockets made in it are open (they hold it, and connections
    accepted on its listeners still get its values)."""


# --- finding the cgroup -----------------------------------------------------------------------

def cgroup2_mounts() -> list[str]:
    """The cgroup2 mount points in /proc/self/mountinfo, in mount order."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mountinfo:
        for line in mountinfo:
            before, _, after = line.partition(" - ")
            fields = before.split()
            if after.split()[:1] == ["cgroup2"] and len(fields) > 4:
                found.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)),
                                    fields[4]))
    return found


def mount() -> str:
    """The first cgroup2 mount, or a CgroupError saying there is none."""
    mounts = cgroup2_mounts()
    if not mounts:
        raise CgroupError("no cgroup v2 mount (no cgroup2 in /proc/self/mountinfo); mount one, "
                          "e.g. mount -t cgroup2 none /sys/fs/cgroup/unified")
    return mounts[0]


def is_cgroup2(directory: str) -> bool:
    """cgroup.controllers exists in every cgroup v2 directory and in no v1 one."""
    return os.path.isfile(os.path.join(directory, "cgroup.controllers"))


def _unit_cgroup(unit: str) -> str:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise CgroupError(f"{unit}: looks like a systemd unit, but there is no systemctl to "
                          "resolve it; give the cgroup directory instead")
    try:
        done = subprocess.run([systemctl, "show", "-p", "ControlGroup", "--value", unit],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CgroupError(f"{unit}: systemctl failed: {exc}") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
        raise CgroupError(f"{unit}: systemctl show failed: {reason}")
    group = done.stdout.strip()
    if not group:
        raise CgroupError(f"{unit}: the unit has no cgroup (is it loaded and running?)")
    return group


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def resolve(name: str) -> str:
    """The cgroup v2 directory ``name`` stands for: a directory under a cgroup2
    mount; a path relative to the (first) cgroup2 mount, with or without a
    leading "/", as /proc/PID/cgroup gives it ("/" is the root cgroup); or a
    systemd unit (``foo.service``). Errors name ``name`` as given."""
    if not name:
        raise CgroupError("empty cgroup name")
    if os.path.isabs(name) and any(_under(os.path.normpath(name), m)
                                   for m in cgroup2_mounts()):
        if not os.path.isdir(name):
            raise CgroupError(f"{name}: no such cgroup")
        if not is_cgroup2(name):
            raise CgroupError(f"{name}: not a cgroup v2 directory")
        return os.path.normpath(name)
    top = mount()
    asked = name
    if "/" not in name and _UNIT_SUFFIX.search(name) and not os.path.isdir(
            os.path.join(top, name)):
        name = _unit_cgroup(name)
    directory = os.path.normpath(os.path.join(top, name.lstrip("/")))
    if is_cgroup2(directory) and _under(directory, top):
        return directory
    if os.path.isabs(asked) and os.path.isdir(asked):
        raise CgroupError(f"{asked}: not a cgroup v2 directory (nor a cgroup under {top})")
    where = f" (its cgroup {name})" if name != asked else ""
    raise CgroupError(f"{asked}{where}: no such cgroup under {top}")


def ancestors(directory: str) -> list[str]:
    """The cgroup directories above ``directory``, nearest first, up to its mount's root."""
    found = []
    parent = os.path.dirname(directory)
    for _ in range(256):  # bounded: cgroup trees are nowhere near this deep
        if parent == directory or not is_cgroup2(parent):
            break
        found.append(parent)
        directory, parent = parent, os.path.dirname(parent)
    return found


def walk(top: str) -> list[str]:
    """Every cgroup directory under ``top``, ``top`` first, parents before
    children (bounded)."""
    found = [top]
    for i, (here, dirs, _files) in enumerate(os.walk(top)):
        if i > _MAX_WALK:
            raise CgroupError(f"{top}: more than {_MAX_WALK} cgroups; name one")
        dirs.sort()
        found.extend(os.path.join(here, d) for d in dirs)
    return found


def processes(directory: str) -> list[int]:
    """The PIDs in the cgroup and in every cgroup below it (cgroup.procs)."""
    pids: list[int] = []
    for group in walk(directory):
        try:
            with open(os.path.join(group, "cgroup.procs"), encoding="ascii") as procs:
                pids.extend(int(line) for line in procs if line.strip())
        except FileNotFoundError:  # removed meanwhile
            continue
    return sorted(set(pids))


# --- the kernel -------------------------------------------------------------------------------

def kernel() -> tuple[int, int] | None:
    """The running kernel's (major, minor), from uname."""
    match = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_kernel() -> None:
    """A CgroupError naming the kernel when it is older than the cgroup mode needs."""
    version = kernel()
    if version is not None and version < MINIMUM_KERNEL:
        raise CgroupError(f"Linux {MINIMUM_KERNEL[0]}.{MINIMUM_KERNEL[1]} or later is needed "
                          f"(bpf_setsockopt with SO_KEEPALIVE); this kernel is "
                          f"{os.uname().release}")


def _missing_capabilities() -> list[str]:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            line = next(x for x in status if x.startswith("CapEff:"))
    except (OSError, StopIteration):
        return []
    have = int(line.split()[1], 16)
    missing = [name for name, bit in _CAPABILITIES.items() if not have >> bit & 1]
    if "CAP_BPF" in missing and (kernel() or (0, 0)) < (5, 8):
        missing.remove("CAP_BPF")  # CAP_SYS_ADMIN stands for it before 5.8
    return missing


def _exclusive(directory: str) -> str | None:
    """Who makes the kernel refuse a multi-attach on ``directory``: a program
    attached there, or on an ancestor, without BPF_F_ALLOW_MULTI."""
    for where in [directory, *ancestors(directory)]:
        try:
            fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            found = loader.query(fd)
        except BPFError:
            continue
        finally:
            os.close(fd)
        if found.prog_ids and not found.attach_flags & loader.BPF_F_ALLOW_MULTI:
            how = ("with BPF_F_ALLOW_OVERRIDE" if found.attach_flags
                   & loader.BPF_F_ALLOW_OVERRIDE else "exclusively (no flags)")
            ids = ", ".join(str(i) for i in found.prog_ids)
            if where == directory:
                return (f"program {ids} is attached to {where} {how}, and the kernel allows "
                        "no other sock_ops program beside it; detach it first "
                        f"(bpftool cgroup detach {where} sock_ops id {found.prog_ids[0]})")
            if not found.attach_flags & loader.BPF_F_ALLOW_OVERRIDE:
                return (f"program {ids} is attached exclusively (no flags) to {where}, above "
                        f"{directory}, and the kernel allows no sock_ops program below it")
            return None
    return None


def explain(exc: BPFError, directory: str | None = None) -> CgroupError:
    """The real cause of a bpf(2) failure, in one line, the operation named once."""
    what = exc.operation
    if exc.errno == errno.EPERM:
        missing = _missing_capabilities()
        if missing:
            return CgroupPermissionError(
                f"{what}: operation not permitted: the cgroup mode needs root (CAP_BPF and "
                "CAP_NET_ADMIN; CAP_SYS_ADMIN to read programs back); this process lacks "
                f"{', '.join(missing)}", code=errno.EPERM)
        if what == loader.ATTACHING and directory is not None:
            cause = _exclusive(directory)
            if cause is not None:
                return CgroupPermissionError(f"{what}: operation not permitted: {cause}",
                                             code=errno.EPERM)
        return CgroupPermissionError(
            f"{what}: operation not permitted, although this process has the capabilities "
            "(kernel lockdown, an LSM policy or a seccomp filter forbidding bpf(2)?)",
            code=errno.EPERM)
    if exc.errno == errno.E2BIG and what == loader.ATTACHING:
        return CgroupError(f"{what}: {directory} already has {loader.MAX_PROGS} sock_ops "
                           "programs attached, the kernel's limit per cgroup "
                           "(BPF_CGROUP_MAX_PROGS)", code=exc.errno)
    if exc.log:
        said = " | ".join(line for line in exc.log.splitlines()[-20:] if line.strip())
        return CgroupError(f"{what}: {exc.strerror}; the kernel's verifier says: {said}",
                           exc.log, exc.errno or 0)
    return CgroupError(f"{what}: {exc.strerror}", code=exc.errno or 0)


@contextmanager
def explained(directory: str | None = None) -> Iterator[None]:
    """Turn a BPFError inside into the CgroupError that explains it."""
    try:
        yield
    except BPFError as exc:
        raise explain(exc, directory) from None


# --- reading what is attached -----------------------------------------------------------------

_PROGRAMS: dict[int, Ours | None] = {}  # prog id -> ours (None: not ours); ids are never reused
_ON: dict[str, tuple[int, ...]] = {}  # cgroup directory -> ours attached there, by id


def clear_cache() -> None:
    """Forget what was read (``covering`` caches it for the life of the process)."""
    _PROGRAMS.clear()
    _ON.clear()


def _read_ours(prog_id: int, fd: int) -> Ours | None:
    info = loader.prog_info(fd)
    if info.name != NAME or info.type != loader.BPF_PROG_TYPE_SOCK_OPS:
        return None
    fields = None
    for map_id in info.map_ids:
        raw = loader.read_map(map_id, NAME)
        if raw is not None:
            fields = decode(raw)
            break
    return Ours(prog_id, fields)


def _program(prog_id: int) -> Ours | None:
    """Ours with this id, or None (not ours, or gone)."""
    if prog_id not in _PROGRAMS:
        try:
            fd = loader.prog_fd_by_id(prog_id)
        except BPFError as exc:
            if exc.errno == errno.ENOENT:  # freed meanwhile
                return None
            raise
        try:
            _PROGRAMS[prog_id] = _read_ours(prog_id, fd)
        finally:
            os.close(fd)
    return _PROGRAMS[prog_id]


def _open(directory: str, vanish_ok: bool = False) -> int | None:
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        if vanish_ok:  # removed while we walked the tree
            return None
        raise CgroupError(f"{directory}: no such cgroup") from None
    except OSError as exc:
        raise CgroupError(f"{directory}: {exc.strerror}") from None


def ours_on(directory: str, vanish_ok: bool = False) -> list[Attached]:
    """Ours attached to the cgroup itself (not inherited)."""
    if directory not in _ON:
        fd = _open(directory, vanish_ok)
        if fd is None:
            return []
        try:
            _ON[directory] = loader.query(fd).prog_ids
        finally:
            os.close(fd)
    found = []
    for prog_id in _ON[directory]:
        ours = _program(prog_id)
        if ours is not None:
            found.append(Attached(ours.prog_id, ours.fields, cgroup=directory))
    return found


def covering(directory: str) -> list[Attached]:
    """Ours on the cgroup ``directory`` (under the cgroup2 mount) and on its
    ancestors, nearest first: each an ``Attached`` with ``.cgroup``,
    ``.prog_id``, ``.values`` (option name -> value; 0 leaves the system's
    default), ``.scope`` ("client", "server", "all"), ``.force``, and
    ``.decides``/``.effective``: the directions ("outbound", "accepted") of
    the cgroup's connections for which it is the nearest of ours, whose values
    they get (see program.py). Read once per cgroup and cached for the life of
    the process (``clear_cache``). Raises CgroupError (reading programs needs
    root: CAP_SYS_ADMIN)."""
    with explained(directory):
        found = [a for d in [directory, *ancestors(directory)] for a in ours_on(d)]
    out = []
    left = dict(DIRECTIONS)
    for entry in found:
        decides = tuple(d for d, flag in left.items() if entry.flags & flag)
        for direction in decides:
            del left[direction]
        out.append(Attached(entry.prog_id, entry.fields, cgroup=entry.cgroup, decides=decides))
    return out


def everywhere() -> tuple[list[Attached], list[Stranded]]:
    """Every program of ours loaded in the kernel: those attached to a cgroup
    (found by walking the cgroup2 mount), and those whose cgroup is gone."""
    loaded = [p for p in (_program(i) for i in loader.prog_ids()) if p is not None]
    attached = [a for d in walk(mount()) for a in ours_on(d, vanish_ok=True)]
    seen = {a.prog_id for a in attached}
    return attached, [Stranded(p.prog_id, p.fields) for p in loaded if p.prog_id not in seen]


# --- attach and detach ------------------------------------------------------------------------

@contextmanager
def _locked(directory: str) -> Iterator[int]:
    """An fd on the cgroup directory, with an exclusive flock on it (bounded wait)."""
    fd = _open(directory)
    assert fd is not None
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CgroupError(f"{directory}: another keepalive-preload has been "
                                      f"attaching or detaching there for {LOCK_WAIT:g} s") \
                        from None
                time.sleep(0.05)
        yield fd
    finally:
        os.close(fd)  # releases the lock


def _ours_with_fds(cgroup_fd: int) -> list[tuple[int, int]]:
    """(id, open fd) of each of ours attached to the cgroup; the caller closes the fds."""
    found = []
    try:
        for prog_id in loader.query(cgroup_fd).prog_ids:
            try:
                fd = loader.prog_fd_by_id(prog_id)
            except BPFError as exc:
                if exc.errno == errno.ENOENT:
                    continue
                raise
            found.append((prog_id, fd))
            info = loader.prog_info(fd)
            if info.name != NAME or info.type != loader.BPF_PROG_TYPE_SOCK_OPS:
                os.close(found.pop()[1])
    except BaseException:
        for _, fd in found:
            os.close(fd)
        raise
    return found


def _test_pause() -> None:
    pause = os.environ.get(TEST_PAUSE)
    if pause:
        time.sleep(float(pause))


@dataclass(frozen=True)
class AttachResult:
    """What ``attach`` did: ours now on the cgroup, and whether it replaced ours."""

    attached: Attached
    replaced: bool


def attach(directory: str, fields: dict[str, int],
           show_listing: Callable[[str], None] | None = None) -> AttachResult:
    """Load the program for these map fields (program.FIELDS) and attach it to
    the cgroup, in place of ours if there (never two of ours)."""
    with explained(directory):
        map_fd = loader.create_map(NAME, encode(fields))
        try:
            code = program(fields, map_fd)
            if show_listing is not None:
                show_listing(listing(code))
            prog_fd = loader.load(assemble(code), NAME)
        finally:
            os.close(map_fd)  # the program holds the map from here on
        try:
            with _locked(directory) as cgroup_fd:
                mine = _ours_with_fds(cgroup_fd)
                try:
                    _test_pause()
                    loader.attach(cgroup_fd, prog_fd, replace_fd=mine[0][1] if mine else None)
                    for _, extra in mine[1:]:
                        loader.detach(cgroup_fd, extra)
                finally:
                    for _, fd in mine:
                        os.close(fd)
            prog_id = loader.prog_info(prog_fd).id
        finally:
            os.close(prog_fd)
    _ON.pop(directory, None)
    return AttachResult(Attached(prog_id, dict(fields), cgroup=directory), bool(mine))


def detach(directory: str) -> int:
    """Detach ours from the cgroup; how many were there."""
    with explained(directory), _locked(directory) as cgroup_fd:
        mine = _ours_with_fds(cgroup_fd)
        try:
            for _, fd in mine:
                loader.detach(cgroup_fd, fd)
        finally:
            for _, fd in mine:
                os.close(fd)
    _ON.pop(directory, None)
    return len(mine)


def foreign_program(directory: str, name: str, flags: int) -> int:
    """Attach a program that is not ours (``name``; it does nothing) with
    ``flags`` (0: exclusive); its id. For tests and for reproducing a conflict."""
    with explained(directory):
        prog_fd = loader.load(assemble([mov_imm(R0, 1), exit_()]), name)
        try:
            fd = _open(directory)
            assert fd is not None
            try:
                loader.attach(fd, prog_fd, flags=flags)
            finally:
                os.close(fd)
            return loader.prog_info(prog_fd).id
        finally:
            os.close(prog_fd)


def detach_id(directory: str, prog_id: int) -> None:
    """Detach program ``prog_id`` (anyone's) from the cgroup."""
    with explained(directory):
        fd = _open(directory)
        assert fd is not None
        try:
            prog_fd = loader.prog_fd_by_id(prog_id)
            try:
                loader.detach(fd, prog_fd)
            finally:
                os.close(prog_fd)
        finally:
            os.close(fd)


__all__ = ["DIRECTIONS", "FIELDS", "MINIMUM_KERNEL", "NAME", "PRECEDENCE_KERNEL", "SETTABLE",
           "AttachResult", "Attached", "CgroupError", "CgroupPermissionError", "Ours", "Stranded",
           "ancestors", "attach", "cgroup2_mounts", "check_kernel", "covering", "detach",
           "everywhere", "explain", "kernel", "mount", "processes", "resolve", "walk"]
