"""``keepalive-preload cgroup``: keepalive for every TCP connection of a cgroup v2,
set by an eBPF sock_ops program, for programs LD_PRELOAD cannot reach
(static binaries, raw system calls, inherited sockets).

The kernel side is in ``_bpf`` (imported only when this command runs); here:
finding the cgroup2 mount, resolving a path or a systemd unit to a cgroup
directory, and the ``attach``/``detach``/``show`` subcommands.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from . import bpf

PROG = "keepalive-preload"
#: The first kernel whose bpf_setsockopt accepts SO_KEEPALIVE and the TCP_KEEP* options.
MINIMUM_KERNEL = (5, 9)
#: Before this kernel bpf_getsockopt cannot read SO_KEEPALIVE, so the program
#: cannot tell a socket the program turned keepalive on itself (see _bpf.program).
PRECEDENCE_KERNEL = (6, 1)
#: Options bpf_setsockopt refuses at any sock_ops callback (net/core/filter.c does not
#: accept the name); asking for them is an error, never silently dropped.
UNSUPPORTED = {"defer_accept": "TCP_DEFER_ACCEPT"}
#: bpf_setsockopt accepts TCP_WINDOW_CLAMP from this kernel on ("bpf: Adds support for
#: setting window clamp"); before it, asking for it is an error.
WINDOW_CLAMP_KERNEL = (5, 11)
_UNIT_SUFFIX = re.compile(r"\.(service|scope|slice|socket|mount|swap|target|timer)\Z")
_MAX_WALK = 100_000  # cgroup directories visited by `show` with no CGROUP

class CgroupError(Exception):
    """A one-line reason the command cannot do what was asked (exit status 1)."""


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


def _mount() -> str:
    mounts = cgroup2_mounts()
    if not mounts:
        raise CgroupError("no cgroup v2 mount (no cgroup2 in /proc/self/mountinfo); mount one, "
                          "e.g. mount -t cgroup2 none /sys/fs/cgroup/unified")
    return mounts[0]


def _is_cgroup2(directory: str) -> bool:
    # cgroup.controllers exists in every cgroup v2 directory and in no v1 one.
    return os.path.isfile(os.path.join(directory, "cgroup.controllers"))


def _unit_cgroup(unit: str) -> str:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise CgroupError(f"{unit}: looks like a systemd unit, but there is no systemctl to "
                          "resolve it; give the cgroup directory instead")
    try:
        done = subprocess.run([systemctl, "show", "-p", "ControlGroup", "--value", unit],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CgroupError(f"{unit}: systemctl failed: {exc}") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
        raise CgroupError(f"{unit}: systemctl show failed: {reason}")
    group = done.stdout.strip()
    if not group:
        raise CgroupError(f"{unit}: the unit has no cgroup (is it loaded and running?)")
    return group


def resolve(name: str) -> str:
    """The cgroup v2 directory ``name`` stands for: an absolute directory, a path
    relative to the cgroup2 mount, or a systemd unit (``foo.service``)."""
    if not name:
        raise CgroupError("empty cgroup name")
    if os.path.isabs(name) and os.path.isdir(name):
        if not _is_cgroup2(name):
            raise CgroupError(f"{name}: not a cgroup v2 directory")
        return os.path.normpath(name)
    mount = _mount()
    if "/" not in name and _UNIT_SUFFIX.search(name) and not os.path.isdir(
            os.path.join(mount, name)):
        name = _unit_cgroup(name)
    directory = os.path.normpath(os.path.join(mount, name.lstrip("/")))
    if not os.path.isdir(directory) or not _is_cgroup2(directory):
        raise CgroupError(f"{name}: no such cgroup (looked for {directory})")
    return directory


def _kernel() -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _check_kernel() -> None:
    release = os.uname().release
    version = _kernel()
    if version is not None and version < MINIMUM_KERNEL:
        raise CgroupError(f"Linux {MINIMUM_KERNEL[0]}.{MINIMUM_KERNEL[1]} or later is needed "
                          f"(bpf_setsockopt with SO_KEEPALIVE); this kernel is {release}")


def _describe(values: dict[str, int]) -> dict[str, object]:
    flags = values["flags"]
    scope = {1: "client", 2: "server", 3: "all"}.get(flags & 3, "none")
    return {"scope": scope, "force": bool(flags & 4),
            **{name: values.get(name, 0) for name in ("idle", "interval", "count",
                                                      "user_timeout", "syn_count", "maxseg",
                                                      "window_clamp")}}


def _open(directory: str) -> int:
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise CgroupError(f"{directory}: {exc.strerror}") from None


def _ours(directory: str, vanish_ok: bool = False) -> list[dict[str, object]]:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        if vanish_ok:  # removed while we walked the tree
            return []
        raise CgroupError(f"{directory}: no such cgroup") from None
    try:
        found = []
        for prog, prog_fd in bpf.attached(fd):
            os.close(prog_fd)
            if prog.ours:
                found.append({"cgroup": directory, "id": prog.id, "name": prog.name,
                              "values": None if prog.values is None
                              else _describe(prog.values)})
        return found
    finally:
        os.close(fd)


def _attach(directory: str, values: dict[str, int], debug: bool) -> dict[str, object]:
    map_fd = bpf.create_map(values)
    try:
        code = bpf.program(values, map_fd)
        if debug:
            sys.stderr.write(bpf.listing(code) + "\n")
        prog_fd = bpf.load(bpf.assemble(code))
    finally:
        os.close(map_fd)  # the program holds the map from here on
    cgroup_fd = _open(directory)
    try:
        old = [(p, f) for p, f in bpf.attached(cgroup_fd)]
        mine = [(p, f) for p, f in old if p.ours]
        try:
            # Never two of ours: replace one atomically, detach any others.
            bpf.attach(cgroup_fd, prog_fd, mine[0][1] if mine else None)
            for _, extra in mine[1:]:
                bpf.detach(cgroup_fd, extra)
        finally:
            for _, f in old:
                os.close(f)
        prog_id = bpf.prog_id(prog_fd)
    finally:
        os.close(cgroup_fd)
        os.close(prog_fd)
    verb = "replaced ours on" if mine else "attached to"
    return {"cgroup": f"{verb} {directory}", "id": prog_id, "name": bpf.NAME,
            "values": _describe(values)}


def _detach(directory: str) -> int:
    cgroup_fd = _open(directory)
    count = 0
    try:
        for prog, prog_fd in bpf.attached(cgroup_fd):
            try:
                if prog.ours:
                    bpf.detach(cgroup_fd, prog_fd)
                    count += 1
            finally:
                os.close(prog_fd)
    finally:
        os.close(cgroup_fd)
    return count


def _ancestors(directory: str) -> list[str]:
    """The cgroup directories above ``directory``, nearest first, up to its mount's root."""
    found = []
    parent = os.path.dirname(directory)
    for _ in range(256):  # bounded: cgroup trees are nowhere near this deep
        if parent == directory or not _is_cgroup2(parent):
            break
        found.append(parent)
        directory, parent = parent, os.path.dirname(parent)
    return found


def _walk(mount: str) -> list[str]:
    """Every cgroup directory under the mount, the mount first (bounded)."""
    found = [mount]
    for i, (top, dirs, _files) in enumerate(os.walk(mount)):
        if i > _MAX_WALK:
            raise CgroupError(f"{mount}: more than {_MAX_WALK} cgroups; name one")
        dirs.sort()
        found.extend(os.path.join(top, d) for d in dirs)
    return found
