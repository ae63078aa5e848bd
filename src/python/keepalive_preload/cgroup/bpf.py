"""The cgroup mode's kernel side: the ``bpf(2)`` system call through ctypes, a
tiny eBPF assembler, and the ``BPF_PROG_TYPE_SOCK_OPS`` program that sets the
keepalive options on every TCP connection of a cgroup.

No libbpf, no compiler: the program is a list of instructions built here from
the option values, one instruction per line, and checked by the kernel's
verifier at load (its log is part of the error when it refuses).

The values live in a one-entry array map named like the program
(``kp_keepalive``), so ``cgroup show`` and ``bpftool map dump`` can read them
back; the program reads them from there at each callback.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

from .._options import BY_NAME, OPTIONS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

#: The name of our program and of its map: how detach and show recognise ours.
NAME = "kp_keepalive"

# --- uapi constants (include/uapi/linux/bpf.h) ---------------------------------------------

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "armv6l": 386, "i686": 357,
            "i386": 357, "ppc64le": 361, "s390x": 351, "riscv64": 280, "loongarch64": 280}

BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16

BPF_MAP_TYPE_ARRAY = 2
BPF_PROG_TYPE_SOCK_OPS = 13
BPF_CGROUP_SOCK_OPS = 3  # attach type
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2
BPF_PSEUDO_MAP_FD = 1

# enum bpf_sock_ops op values: the callbacks we use.
BPF_SOCK_OPS_TCP_CONNECT_CB = 3
BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB = 4
BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB = 5

# Helper function numbers (enum bpf_func_id).
FN_MAP_LOOKUP_ELEM = 1
FN_SETSOCKOPT = 49
FN_GETSOCKOPT = 57

# Socket option levels (asm-generic/socket.h, linux/in.h); the TCP options'
# numbers come from the option table (Option.optname).
SOL_SOCKET = 1
SO_KEEPALIVE = 9
IPPROTO_TCP = 6

#: Offset of ``op`` in ``struct bpf_sock_ops`` (the first member).
SOCK_OPS_OP = 0

# --- the assembler (cilium/ebpf style: named registers and opcodes) --------------------------

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)

# instruction classes
_LD, _LDX, _ST, _STX, _ALU, _JMP, _JMP32, _ALU64 = range(8)
# sizes
_W, _H, _B, _DW = 0x00, 0x08, 0x10, 0x18
# modes
_IMM, _MEM = 0x00, 0x60
# sources
_K, _X = 0x00, 0x08
# ALU and jump operations
_ADD, _MOV = 0x00, 0xB0
_JA, _JEQ, _JNE, _CALL, _EXIT = 0x00, 0x10, 0x50, 0x80, 0x90

_INSN = struct.Struct("<BBhi")  # struct bpf_insn: code, dst:4|src:4, off, imm


class Insn:
    """One eBPF instruction; ``target`` is a label a jump still has to be resolved to."""

    __slots__ = ("code", "dst", "imm", "label", "note", "off", "src", "target")

    def __init__(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0,
                 target: str | None = None) -> None:
        self.code, self.dst, self.src, self.off, self.imm = code, dst, src, off, imm
        self.target = target
        self.label: str | None = None
        self.note = ""

    def at(self, label: str) -> Insn:
        """Mark this instruction as the place ``label`` jumps to."""
        self.label = label
        return self

    def says(self, note: str) -> Insn:
        """A comment for the listing."""
        self.note = note
        return self

    def encode(self) -> bytes:
        return _INSN.pack(self.code, self.dst | self.src << 4, self.off, self.imm)


def mov_imm(dst: int, imm: int) -> Insn:
    """``dst = imm`` (64-bit)."""
    return Insn(_ALU64 | _MOV | _K, dst, imm=imm)


def mov_reg(dst: int, src: int) -> Insn:
    """``dst = src``."""
    return Insn(_ALU64 | _MOV | _X, dst, src)


def add_imm(dst: int, imm: int) -> Insn:
    """``dst += imm``."""
    return Insn(_ALU64 | _ADD | _K, dst, imm=imm)


def load_u32(dst: int, src: int, off: int) -> Insn:
    """``dst = *(u32 *)(src + off)``."""
    return Insn(_LDX | _W | _MEM, dst, src, off)


def store_imm_u32(dst: int, off: int, imm: int) -> Insn:
    """``*(u32 *)(dst + off) = imm``."""
    return Insn(_ST | _W | _MEM, dst, off=off, imm=imm)


def store_u32(dst: int, off: int, src: int) -> Insn:
    """``*(u32 *)(dst + off) = src``."""
    return Insn(_STX | _W | _MEM, dst, src, off)


def load_map_fd(dst: int, fd: int) -> list[Insn]:
    """``dst = map`` (the two-slot 64-bit load the kernel turns into the map's address)."""
    return [Insn(_LD | _DW | _IMM, dst, BPF_PSEUDO_MAP_FD, imm=fd), Insn(0)]


def jeq_imm(dst: int, imm: int, label: str) -> Insn:
    """``if dst == imm goto label``."""
    return Insn(_JMP | _JEQ | _K, dst, imm=imm, target=label)


def jne_imm(dst: int, imm: int, label: str) -> Insn:
    """``if dst != imm goto label``."""
    return Insn(_JMP | _JNE | _K, dst, imm=imm, target=label)


def ja(label: str) -> Insn:
    """``goto label``."""
    return Insn(_JMP | _JA, target=label)


def call(helper: int) -> Insn:
    """Call a kernel helper: arguments in r1..r5, result in r0."""
    return Insn(_JMP | _CALL, imm=helper)


def exit_() -> Insn:
    """Return r0."""
    return Insn(_JMP | _EXIT)


def assemble(program: list[Insn]) -> bytes:
    """Resolve the labels into jump offsets and encode the instructions."""
    where = {insn.label: i for i, insn in enumerate(program) if insn.label is not None}
    out = []
    for i, insn in enumerate(program):
        if insn.target is not None:
            if insn.target not in where:
                raise ValueError(f"no instruction is labelled {insn.target!r}")
            insn.off = where[insn.target] - i - 1
        out.append(insn.encode())
    return b"".join(out)


# --- the program -------------------------------------------------------------------------

#: The map's value: one u32 per field, in this order. ``flags`` says what the
#: program was generated for (bit 0: client side, bit 1: server side, bit 2: force).
FIELDS = ("flags", "idle", "interval", "count", "user_timeout", "syn_count", "maxseg",
          "window_clamp")
FLAG_CLIENT, FLAG_SERVER, FLAG_FORCE = 1, 2, 4
_VALUE = struct.Struct("<" + "I" * len(FIELDS))

#: Where each option goes: (field, level, option name), in the order they are set.
_ESTABLISHED = tuple((name, IPPROTO_TCP, BY_NAME[name].optname)
                     for name in ("idle", "interval", "count", "user_timeout", "window_clamp"))
_CONNECT = tuple((name, IPPROTO_TCP, BY_NAME[name].optname) for name in ("syn_count", "maxseg"))

_OPTION_NAMES = {(SOL_SOCKET, SO_KEEPALIVE): "SO_KEEPALIVE",
                 **{(IPPROTO_TCP, option.optname): option.variable for option in OPTIONS}}

# Stack slots (below r10, the frame pointer).
_KEY = -4  # the map key, 0
_OPTVAL = -8  # the int that bpf_setsockopt/bpf_getsockopt reads or writes


def _setsockopt(level: int, name: int, value_from: int | None, field: int = 0) -> list[Insn]:
    """bpf_setsockopt(ctx, level, name, &int, 4): the int is 1 when ``value_from`` is
    None, else the map value's ``field`` (the value pointer in ``value_from``)."""
    if value_from is None:
        fill = [store_imm_u32(R10, _OPTVAL, 1)]
    else:
        fill = [load_u32(R1, value_from, 4 * field).says(f"values.{FIELDS[field]}"),
                store_u32(R10, _OPTVAL, R1)]
    return [
        *fill,
        mov_reg(R1, R6),                    # r1 = ctx
        mov_imm(R2, level),
        mov_imm(R3, name).says(_OPTION_NAMES[level, name]),
        mov_reg(R4, R10),
        add_imm(R4, _OPTVAL),               # r4 = &optval
        mov_imm(R5, 4),                     # optlen
        call(FN_SETSOCKOPT),                # errors are ignored: the connection goes on
    ]


def _lookup_values(map_fd: int) -> list[Insn]:
    """r7 = the map's value (key 0), or goto out when there is none."""
    return [
        store_imm_u32(R10, _KEY, 0),
        *load_map_fd(R1, map_fd),
        mov_reg(R2, R10),
        add_imm(R2, _KEY),                  # r2 = &key
        call(FN_MAP_LOOKUP_ELEM),
        jeq_imm(R0, 0, "out"),
        mov_reg(R7, R0),                    # r7 = values
    ]


def program(values: dict[str, int], map_fd: int) -> list[Insn]:
    """The sock_ops program for these map values (see FIELDS): which callbacks it
    handles and which options it sets follow from them; the numbers are read from
    the map at run time."""
    flags = values["flags"]
    connect = [f for f in _CONNECT if values[f[0]]] if flags & FLAG_CLIENT else []
    code: list[Insn] = [
        mov_reg(R6, R1),                    # r6 = ctx (struct bpf_sock_ops *)
        load_u32(R2, R6, SOCK_OPS_OP),      # r2 = ctx->op
    ]
    if connect:
        code.append(jeq_imm(R2, BPF_SOCK_OPS_TCP_CONNECT_CB, "connect")
                    .says("BPF_SOCK_OPS_TCP_CONNECT_CB"))
    if flags & FLAG_CLIENT:
        code.append(jeq_imm(R2, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, "established")
                    .says("BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB"))
    if flags & FLAG_SERVER:
        code.append(jeq_imm(R2, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, "established")
                    .says("BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB"))
    code.append(ja("out"))

    if connect:
        lookup = _lookup_values(map_fd)
        lookup[0].at("connect")
        code += lookup
        for field, level, name in connect:
            code += _setsockopt(level, name, R7, FIELDS.index(field))
        code.append(ja("out"))

    established: list[Insn] = []
    if not flags & FLAG_FORCE:
        # The program's own choice wins: leave a socket alone when it already has
        # SO_KEEPALIVE (set before connect, or inherited from the listener). On
        # kernels where bpf_getsockopt cannot read SOL_SOCKET options it fails, and
        # the socket is treated as not having it.
        established += [
            store_imm_u32(R10, _OPTVAL, 0),
            mov_reg(R1, R6),
            mov_imm(R2, SOL_SOCKET),
            mov_imm(R3, SO_KEEPALIVE).says("SO_KEEPALIVE"),
            mov_reg(R4, R10),
            add_imm(R4, _OPTVAL),
            mov_imm(R5, 4),
            call(FN_GETSOCKOPT),
            jne_imm(R0, 0, "set"),          # cannot tell: set ours
            load_u32(R1, R10, _OPTVAL),
            jne_imm(R1, 0, "out"),          # the program turned keepalive on: its choice
        ]
    lookup = _lookup_values(map_fd)
    established += [lookup[0].at("set"), *lookup[1:]]
    established += _setsockopt(SOL_SOCKET, SO_KEEPALIVE, None)
    for field, level, name in _ESTABLISHED:
        if values[field]:
            established += _setsockopt(level, name, R7, FIELDS.index(field))
    established[0].at("established")
    code += established
    code += [
        mov_imm(R0, 1).at("out"),           # 1: carry on (the reply is left alone)
        exit_(),
    ]
    return code


# --- bpf(2) --------------------------------------------------------------------------------

class BPFError(OSError):
    """A bpf(2) call failed; ``log`` holds the verifier's log for a refused program."""

    def __init__(self, err: int, what: str, log: str = "") -> None:
        super().__init__(err, f"{what}: {os.strerror(err)}")
        self.what = what
        self.log = log


_libc: ctypes.CDLL | None = None


def _sys_bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    global _libc
    number = _SYS_BPF.get(platform.machine())
    if number is None:
        raise BPFError(errno.ENOSYS, f"{what}: bpf(2) number unknown on {platform.machine()}")
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    result = int(_libc.syscall(ctypes.c_long(number), ctypes.c_int(cmd), attr,
                               ctypes.c_uint(len(attr))))
    if result < 0:
        raise BPFError(ctypes.get_errno(), what)
    return result


def _attr(layout: str, *values: int | bytes, size: int = 128) -> ctypes.Array[ctypes.c_char]:
    buffer = ctypes.create_string_buffer(size)
    struct.pack_into(layout, buffer, 0, *values)
    return buffer


def _address(buffer: ctypes.Array[ctypes.c_char]) -> int:
    return ctypes.addressof(buffer)


def create_map(values: dict[str, int]) -> int:
    """A one-entry array map named NAME holding ``values``; returns its fd."""
    attr = _attr("<IIIIIII16s", BPF_MAP_TYPE_ARRAY, 4, _VALUE.size, 1, 0, 0, 0,
                 NAME.encode())
    fd = _sys_bpf(BPF_MAP_CREATE, attr, "creating the map")
    try:
        key = ctypes.create_string_buffer(struct.pack("<I", 0), 4)
        value = ctypes.create_string_buffer(_VALUE.pack(*(values[f] for f in FIELDS)),
                                            _VALUE.size)
        _sys_bpf(2, _attr("<IIQQQ", fd, 0, _address(key), _address(value), 0),
                 "writing the map")  # BPF_MAP_UPDATE_ELEM
    except BaseException:
        os.close(fd)
        raise
    return fd


def load(code: bytes, name: str = NAME) -> int:
    """Load a sock_ops program; returns its fd. A refusal carries the verifier's log."""
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = _attr("<IIQQIIQII16sII", BPF_PROG_TYPE_SOCK_OPS, len(code) // 8, _address(insns),
                 _address(license_), 1, len(log), _address(log), 0, 0, name.encode(), 0,
                 BPF_CGROUP_SOCK_OPS)
    try:
        return _sys_bpf(BPF_PROG_LOAD, attr, "loading the program")
    except BPFError as exc:
        exc.log = log.value.decode(errors="replace").strip()
        raise


def attach(cgroup_fd: int, prog_fd: int, replace_fd: int | None = None) -> None:
    """Attach the program to the cgroup, next to any others (BPF_F_ALLOW_MULTI);
    atomically in place of ``replace_fd`` when given (BPF_F_REPLACE)."""
    flags = BPF_F_ALLOW_MULTI | (BPF_F_REPLACE if replace_fd is not None else 0)
    attr = _attr("<IIIII", cgroup_fd, prog_fd, BPF_CGROUP_SOCK_OPS, flags, replace_fd or 0)
    _sys_bpf(BPF_PROG_ATTACH, attr, "attaching the program")


def detach(cgroup_fd: int, prog_fd: int) -> None:
    """Detach this one program from the cgroup."""
    attr = _attr("<IIII", cgroup_fd, prog_fd, BPF_CGROUP_SOCK_OPS, 0)
    _sys_bpf(BPF_PROG_DETACH, attr, "detaching the program")


def query(cgroup_fd: int) -> list[int]:
    """The ids of the sock_ops programs attached to this cgroup itself (not inherited)."""
    room = 64
    for _ in range(3):  # the count can grow between two calls; bounded
        ids = (ctypes.c_uint32 * room)()
        attr = _attr("<IIIIQI", cgroup_fd, BPF_CGROUP_SOCK_OPS, 0, 0, ctypes.addressof(ids),
                     room)
        try:
            _sys_bpf(BPF_PROG_QUERY, attr, "querying the cgroup")
        except BPFError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            (room,) = struct.unpack_from("<I", attr, 24)  # the kernel says how many
            continue
        (count,) = struct.unpack_from("<I", attr, 24)
        return list(ids[:count])
    raise BPFError(errno.ENOSPC, "querying the cgroup")


def prog_fd_by_id(prog_id: int) -> int:
    return _sys_bpf(BPF_PROG_GET_FD_BY_ID, _attr("<I", prog_id), f"opening program {prog_id}")


def _info(fd: int, size: int = 256) -> ctypes.Array[ctypes.c_char]:
    info = ctypes.create_string_buffer(size)
    _sys_bpf(BPF_OBJ_GET_INFO_BY_FD, _attr("<IIQ", fd, size, _address(info)),
             "reading program information")
    return info


def prog_id(fd: int) -> int:
    """The id of the program behind ``fd``."""
    (number,) = struct.unpack_from("<I", _info(fd), 4)
    return int(number)


class Attached:
    """One program attached to a cgroup: its id and name, and for ours the values."""

    def __init__(self, prog_id: int, name: str, values: dict[str, int] | None) -> None:
        self.id = prog_id
        self.name = name
        self.values = values

    @property
    def ours(self) -> bool:
        return self.name == NAME


def _prog_name_and_maps(fd: int) -> tuple[str, list[int]]:
    info = _info(fd)
    (nr_maps,) = struct.unpack_from("<I", info, 52)
    name = info.raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
    if nr_maps == 0:
        return name, []
    ids = (ctypes.c_uint32 * nr_maps)()
    info = ctypes.create_string_buffer(256)
    struct.pack_into("<IQ", info, 52, nr_maps, ctypes.addressof(ids))
    _sys_bpf(BPF_OBJ_GET_INFO_BY_FD, _attr("<IIQ", fd, 256, _address(info)),
             "reading program information")
    return name, list(ids)


def _read_values(map_id: int) -> dict[str, int] | None:
    fd = _sys_bpf(BPF_MAP_GET_FD_BY_ID, _attr("<I", map_id), f"opening map {map_id}")
    try:
        info = _info(fd, 128)
        name = info.raw[24:40].split(b"\0", 1)[0].decode(errors="replace")
        (value_size,) = struct.unpack_from("<I", info, 12)
        if name != NAME or value_size != _VALUE.size:
            return None
        key = ctypes.create_string_buffer(struct.pack("<I", 0), 4)
        value = ctypes.create_string_buffer(_VALUE.size)
        _sys_bpf(BPF_MAP_LOOKUP_ELEM, _attr("<IIQQQ", fd, 0, _address(key), _address(value), 0),
                 "reading the map")
        return dict(zip(FIELDS, _VALUE.unpack(value.raw)))
    finally:
        os.close(fd)


def attached(cgroup_fd: int) -> Iterator[tuple[Attached, int]]:
    """Each sock_ops program attached to the cgroup, with an open fd on it that
    the caller closes."""
    for prog_id in query(cgroup_fd):
        try:
            fd = prog_fd_by_id(prog_id)
        except BPFError as exc:
            if exc.errno == errno.ENOENT:  # detached and freed meanwhile
                continue
            raise
        try:
            name, map_ids = _prog_name_and_maps(fd)
            values = None
            if name == NAME:
                for map_id in map_ids:
                    values = _read_values(map_id)
                    if values is not None:
                        break
        except BaseException:
            os.close(fd)
            raise
        yield Attached(prog_id, name, values), fd


def listing(code: list[Insn]) -> str:
    """The program as text, one instruction per line, for --debug and reviews."""
    names = {FN_MAP_LOOKUP_ELEM: "bpf_map_lookup_elem", FN_SETSOCKOPT: "bpf_setsockopt",
             FN_GETSOCKOPT: "bpf_getsockopt"}
    lines = []
    for i, insn in enumerate(code):
        label = f"{insn.label}:" if insn.label else ""
        cls, op = insn.code & 0x07, insn.code & 0xF0
        if insn.code == _LD | _DW | _IMM:
            text = f"r{insn.dst} = map fd {insn.imm} ll"
        elif insn.code == 0:
            continue
        elif cls == _ALU64:
            operand = f"r{insn.src}" if insn.code & _X else str(insn.imm)
            text = f"r{insn.dst} {'=' if op == _MOV else '+='} {operand}"
        elif cls == _LDX:
            text = f"r{insn.dst} = *(u32 *)(r{insn.src} {insn.off:+d})"
        elif cls == _ST:
            text = f"*(u32 *)(r{insn.dst} {insn.off:+d}) = {insn.imm}"
        elif cls == _STX:
            text = f"*(u32 *)(r{insn.dst} {insn.off:+d}) = r{insn.src}"
        elif op == _CALL:
            text = f"call {names.get(insn.imm, insn.imm)}"
        elif op == _EXIT:
            text = "exit"
        elif op == _JA:
            text = f"goto {insn.target}"
        else:
            text = (f"if r{insn.dst} {'==' if op == _JEQ else '!='} {insn.imm} "
                    f"goto {insn.target}")
        note = f"  ; {insn.note}" if insn.note else ""
        lines.append(f"{i:3d} {label:<13}{text}{note}")
    return "\n".join(lines)
