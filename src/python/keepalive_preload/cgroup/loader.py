"""The ``bpf(2)`` commands the cgroup mode uses, with the kernel's structs as
``ctypes.Structure`` (the ``union bpf_attr`` member of each command,
``struct bpf_prog_info``, ``struct bpf_map_info``), from
``include/uapi/linux/bpf.h``. The kernel takes a shorter struct than its own
(the rest counts as zero), so each holds only the members used here.

Every failure is a ``BPFError`` naming the operation once, with the verifier's
log for a refused program. What an errno *means* here (not root, a foreign
exclusive program, the 64-program limit) is ``attach``'s to say.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass

from .._syscalls import SyscallError
from .._syscalls import bpf as _bpf

# enum bpf_cmd
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16

# enum bpf_map_type, enum bpf_prog_type, enum bpf_attach_type
BPF_MAP_TYPE_ARRAY = 2
BPF_PROG_TYPE_SOCK_OPS = 13
BPF_CGROUP_SOCK_OPS = 3

# BPF_PROG_ATTACH flags. None of them: exclusive (no other program may be attached
# beside it, nor below it in the hierarchy).
BPF_F_ALLOW_OVERRIDE = 1 << 0
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2

#: BPF_CGROUP_MAX_PROGS (kernel/bpf/cgroup.c): programs of one type on one cgroup.
MAX_PROGS = 64
#: The operation BPF_PROG_ATTACH is named by in errors.
ATTACHING = "attaching the program"
#: The size of the verifier log buffer (bytes).
LOG_SIZE = 1 << 16


class BPFError(OSError):
    """A ``bpf(2)`` command failed. ``operation``: what was being done, in words
    ("loading the program"); ``log``: the verifier's log, for a refused program."""

    def __init__(self, err: int, operation: str, log: str = "") -> None:
        super().__init__(err, os.strerror(err))
        self.operation = operation
        self.log = log

    def __str__(self) -> str:
        return f"{self.operation}: {self.strerror}"


# --- union bpf_attr, one member per command ---------------------------------------------------

class MapCreateAttr(ctypes.Structure):
    """BPF_MAP_CREATE."""

    _fields_ = (("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
                ("map_flags", ctypes.c_uint32), ("inner_map_fd", ctypes.c_uint32),
                ("numa_node", ctypes.c_uint32), ("map_name", ctypes.c_char * 16))


class MapElemAttr(ctypes.Structure):
    """BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM."""

    _fields_ = (("map_fd", ctypes.c_uint32), ("_pad", ctypes.c_uint32),
                ("key", ctypes.c_uint64), ("value", ctypes.c_uint64),
                ("flags", ctypes.c_uint64))


class ProgLoadAttr(ctypes.Structure):
    """BPF_PROG_LOAD."""

    _fields_ = (("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * 16),
                ("prog_ifindex", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32))


class ProgAttachAttr(ctypes.Structure):
    """BPF_PROG_ATTACH, BPF_PROG_DETACH."""

    _fields_ = (("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32),
                ("replace_bpf_fd", ctypes.c_uint32))


class GetIdAttr(ctypes.Structure):
    """BPF_PROG_GET_NEXT_ID (``id`` is start_id), BPF_*_GET_FD_BY_ID (prog_id, map_id)."""

    _fields_ = (("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32),
                ("open_flags", ctypes.c_uint32))


class InfoAttr(ctypes.Structure):
    """BPF_OBJ_GET_INFO_BY_FD."""

    _fields_ = (("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32),
                ("info", ctypes.c_uint64))


class QueryAttr(ctypes.Structure):
    """BPF_PROG_QUERY."""

    _fields_ = (("target_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("query_flags", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32),
                ("prog_ids", ctypes.c_uint64), ("prog_cnt", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32))


# --- the info structs -------------------------------------------------------------------------

class ProgInfo(ctypes.Structure):
    """struct bpf_prog_info, up to ``name``."""

    _fields_ = (("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("tag", ctypes.c_uint8 * 8), ("jited_prog_len", ctypes.c_uint32),
                ("xlated_prog_len", ctypes.c_uint32), ("jited_prog_insns", ctypes.c_uint64),
                ("xlated_prog_insns", ctypes.c_uint64), ("load_time", ctypes.c_uint64),
                ("created_by_uid", ctypes.c_uint32), ("nr_map_ids", ctypes.c_uint32),
                ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * 16))


class MapInfo(ctypes.Structure):
    """struct bpf_map_info, up to ``name``."""

    _fields_ = (("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * 16))


def _call(cmd: int, attr: ctypes.Structure, operation: str) -> int:
    try:
        return _bpf(cmd, attr)
    except SyscallError as exc:
        raise BPFError(exc.errno or errno.EIO, operation) from None


def _address(obj: ctypes.Array[ctypes.c_char] | ctypes.Array[ctypes.c_uint32]
             | ctypes.Structure) -> int:
    return ctypes.addressof(obj)


# --- maps -------------------------------------------------------------------------------------

def create_map(name: str, value: bytes) -> int:
    """A one-entry array map named ``name`` holding ``value``; its fd."""
    attr = MapCreateAttr(map_type=BPF_MAP_TYPE_ARRAY, key_size=4, value_size=len(value),
                         max_entries=1, map_name=name.encode())
    fd = _call(BPF_MAP_CREATE, attr, "creating the map")
    try:
        key = ctypes.c_uint32(0)
        data = ctypes.create_string_buffer(value, len(value))
        _call(BPF_MAP_UPDATE_ELEM, MapElemAttr(map_fd=fd, key=ctypes.addressof(key),
                                               value=_address(data)), "writing the map")
    except BaseException:
        os.close(fd)
        raise
    return fd


def map_info(fd: int) -> MapInfo:
    info = MapInfo()
    _call(BPF_OBJ_GET_INFO_BY_FD, InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info),
                                           info=_address(info)), "reading a map's information")
    return info


def read_map(map_id: int, name: str) -> bytes | None:
    """Entry 0 of the array map ``map_id`` if it is named ``name``, else None."""
    fd = _call(BPF_MAP_GET_FD_BY_ID, GetIdAttr(id=map_id), f"opening map {map_id}")
    try:
        info = map_info(fd)
        if info.name.decode(errors="replace") != name or info.type != BPF_MAP_TYPE_ARRAY:
            return None
        key = ctypes.c_uint32(0)
        value = ctypes.create_string_buffer(info.value_size)
        _call(BPF_MAP_LOOKUP_ELEM, MapElemAttr(map_fd=fd, key=ctypes.addressof(key),
                                               value=_address(value)), "reading the map")
        return value.raw
    finally:
        os.close(fd)


# --- programs ---------------------------------------------------------------------------------

def load(code: bytes, name: str) -> int:
    """Load a sock_ops program (``code``: encoded instructions); its fd. A
    refusal carries the verifier's log."""
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(LOG_SIZE)
    attr = ProgLoadAttr(prog_type=BPF_PROG_TYPE_SOCK_OPS, insn_cnt=len(code) // 8,
                        insns=_address(insns), license=_address(license_), log_level=1,
                        log_size=LOG_SIZE, log_buf=_address(log), prog_name=name.encode(),
                        expected_attach_type=BPF_CGROUP_SOCK_OPS)
    try:
        return _call(BPF_PROG_LOAD, attr, "loading the program")
    except BPFError as exc:
        exc.log = log.value.decode(errors="replace").strip()
        raise


@dataclass(frozen=True)
class Program:
    """A loaded program, as ``BPF_OBJ_GET_INFO_BY_FD`` describes it."""

    id: int
    type: int
    name: str
    map_ids: tuple[int, ...]


def prog_info(fd: int) -> Program:
    """What the kernel says of the program behind ``fd``."""
    info = ProgInfo()
    attr = InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=_address(info))
    _call(BPF_OBJ_GET_INFO_BY_FD, attr, "reading a program's information")
    maps = (ctypes.c_uint32 * info.nr_map_ids)()
    if info.nr_map_ids:
        again = ProgInfo(nr_map_ids=info.nr_map_ids, map_ids=_address(maps))
        _call(BPF_OBJ_GET_INFO_BY_FD, InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(again),
                                               info=_address(again)),
              "reading a program's information")
    return Program(info.id, info.type, info.name.decode(errors="replace"), tuple(maps))


def prog_fd_by_id(prog_id: int) -> int:
    """An fd on program ``prog_id`` (CAP_SYS_ADMIN); ENOENT once it is freed."""
    return _call(BPF_PROG_GET_FD_BY_ID, GetIdAttr(id=prog_id), f"opening program {prog_id}")


def prog_ids() -> list[int]:
    """The ids of every program loaded in the kernel (CAP_SYS_ADMIN), in order."""
    found: list[int] = []
    start = 0
    while True:
        attr = GetIdAttr(id=start)
        try:
            _call(BPF_PROG_GET_NEXT_ID, attr, "listing the loaded programs")
        except BPFError as exc:
            if exc.errno == errno.ENOENT:  # the last one
                return found
            raise
        found.append(attr.next_id)
        start = attr.next_id


# --- cgroups ----------------------------------------------------------------------------------

def attach(cgroup_fd: int, prog_fd: int, *, replace_fd: int | None = None,
           flags: int = BPF_F_ALLOW_MULTI) -> None:
    """Attach the program to the cgroup with ``flags`` (default: next to any
    others, BPF_F_ALLOW_MULTI); atomically in place of ``replace_fd`` when given
    (BPF_F_REPLACE)."""
    if replace_fd is not None:
        flags |= BPF_F_REPLACE
    attr = ProgAttachAttr(target_fd=cgroup_fd, attach_bpf_fd=prog_fd,
                          attach_type=BPF_CGROUP_SOCK_OPS, attach_flags=flags,
                          replace_bpf_fd=replace_fd or 0)
    _call(BPF_PROG_ATTACH, attr, ATTACHING)


def detach(cgroup_fd: int, prog_fd: int) -> None:
    """Detach this one program from the cgroup."""
    attr = ProgAttachAttr(target_fd=cgroup_fd, attach_bpf_fd=prog_fd,
                          attach_type=BPF_CGROUP_SOCK_OPS)
    _call(BPF_PROG_DETACH, attr, "detaching the program")


@dataclass(frozen=True)
class Query:
    """The sock_ops programs attached to one cgroup itself (not inherited), and
    the flags they were attached with (0: exclusive)."""

    prog_ids: tuple[int, ...]
    attach_flags: int


def query(cgroup_fd: int) -> Query:
    """``BPF_PROG_QUERY`` for the sock_ops programs attached to the cgroup."""
    room = MAX_PROGS
    for _ in range(3):  # the count can grow between two calls; bounded
        ids = (ctypes.c_uint32 * room)()
        attr = QueryAttr(target_fd=cgroup_fd, attach_type=BPF_CGROUP_SOCK_OPS,
                         prog_ids=_address(ids), prog_cnt=room)
        try:
            _call(BPF_PROG_QUERY, attr, "querying the cgroup")
        except BPFError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            room = attr.prog_cnt  # the kernel says how many there are
            continue
        return Query(tuple(ids[:attr.prog_cnt]), attr.attach_flags)
    raise BPFError(errno.ENOSPC, "querying the cgroup")
