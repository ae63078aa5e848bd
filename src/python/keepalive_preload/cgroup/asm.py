"""A tiny eBPF instruction builder: named registers, opcodes and kernel helpers,
one instruction per line, and a listing a reviewer can read.

Only what the cgroup program needs (64-bit moves and adds, 32-bit loads and
stores, the map-fd load, conditional jumps to labels, helper calls, exit). See
``include/uapi/linux/bpf.h`` and ``bpf_common.h`` for the encoding; the style
follows cilium/ebpf's ``asm`` package (``asm.Mov.Reg(asm.R6, asm.R1)``).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = [
    "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10",
    "Fn", "Insn", "Reg", "add_imm", "assemble", "call", "exit_", "ja", "jeq_imm", "jne_imm",
    "listing", "load_map_fd", "load_u32", "mov_imm", "mov_reg", "store_imm_u32", "store_u32",
]


class Reg(enum.IntEnum):
    """The registers: r0 result, r1..r5 arguments (clobbered by calls), r6..r9
    kept across calls, r10 the read-only frame pointer."""

    R0 = 0
    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5
    R6 = 6
    R7 = 7
    R8 = 8
    R9 = 9
    R10 = 10


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = Reg


class Fn(enum.IntEnum):
    """The kernel helpers the program calls (``enum bpf_func_id``)."""

    bpf_map_lookup_elem = 1
    bpf_setsockopt = 49
    bpf_getsockopt = 57


# Instruction classes (the low 3 bits of the opcode).
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
# Sizes, for the load/store classes.
SIZE_W, SIZE_H, SIZE_B, SIZE_DW = 0x00, 0x08, 0x10, 0x18
# Modes, for the load/store classes.
MODE_IMM, MODE_MEM = 0x00, 0x60
# Operand source, for ALU and jumps: the immediate (K) or the source register (X).
SRC_K, SRC_X = 0x00, 0x08
# ALU operations.
OP_ADD, OP_MOV = 0x00, 0xB0
# Jump operations.
OP_JA, OP_JEQ, OP_JNE, OP_CALL, OP_EXIT = 0x00, 0x10, 0x50, 0x80, 0x90
#: ``src`` of the 64-bit immediate load: the immediate is a map fd.
PSEUDO_MAP_FD = 1

_ENCODING = struct.Struct("<BBhi")  # struct bpf_insn: code, dst:4 | src:4, off, imm


@dataclass
class Insn:
    """One eBPF instruction. ``target``: the label a jump goes to (resolved by
    ``assemble``); ``label``: the name jumps use for this one; ``note``: a
    comment for the listing."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    target: str | None = None
    label: str | None = None
    note: str = ""

    def at(self, label: str) -> Insn:
        """Mark this instruction as the place ``label`` jumps to."""
        self.label = label
        return self

    def says(self, note: str) -> Insn:
        """Add a comment for the listing."""
        self.note = note
        return self

    def encode(self) -> bytes:
        return _ENCODING.pack(self.code, self.dst | self.src << 4, self.off, self.imm)


def mov_imm(dst: Reg, imm: int) -> Insn:
    """``dst = imm`` (64-bit)."""
    return Insn(ALU64 | OP_MOV | SRC_K, dst, imm=imm)


def mov_reg(dst: Reg, src: Reg) -> Insn:
    """``dst = src``."""
    return Insn(ALU64 | OP_MOV | SRC_X, dst, src)


def add_imm(dst: Reg, imm: int) -> Insn:
    """``dst += imm``."""
    return Insn(ALU64 | OP_ADD | SRC_K, dst, imm=imm)


def load_u32(dst: Reg, src: Reg, off: int) -> Insn:
    """``dst = *(u32 *)(src + off)``."""
    return Insn(LDX | SIZE_W | MODE_MEM, dst, src, off)


def store_imm_u32(dst: Reg, off: int, imm: int) -> Insn:
    """``*(u32 *)(dst + off) = imm`` (not into the context: the verifier refuses it)."""
    return Insn(ST | SIZE_W | MODE_MEM, dst, off=off, imm=imm)


def store_u32(dst: Reg, off: int, src: Reg) -> Insn:
    """``*(u32 *)(dst + off) = src``."""
    return Insn(STX | SIZE_W | MODE_MEM, dst, src, off)


def load_map_fd(dst: Reg, fd: int) -> list[Insn]:
    """``dst = map`` (the two-slot 64-bit load the kernel turns into the map's address)."""
    return [Insn(LD | SIZE_DW | MODE_IMM, dst, PSEUDO_MAP_FD, imm=fd), Insn(0)]


def jeq_imm(dst: Reg, imm: int, label: str) -> Insn:
    """``if dst == imm goto label``."""
    return Insn(JMP | OP_JEQ | SRC_K, dst, imm=imm, target=label)


def jne_imm(dst: Reg, imm: int, label: str) -> Insn:
    """``if dst != imm goto label``."""
    return Insn(JMP | OP_JNE | SRC_K, dst, imm=imm, target=label)


def ja(label: str) -> Insn:
    """``goto label``."""
    return Insn(JMP | OP_JA, target=label)


def call(helper: Fn) -> Insn:
    """Call a kernel helper: arguments in r1..r5, result in r0."""
    return Insn(JMP | OP_CALL, imm=helper)


def exit_() -> Insn:
    """Return r0."""
    return Insn(JMP | OP_EXIT)


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


def _text(insn: Insn) -> str:
    cls, op = insn.code & 0x07, insn.code & 0xF0
    if insn.code == LD | SIZE_DW | MODE_IMM:
        return f"r{insn.dst} = map fd {insn.imm} ll"
    if cls == ALU64:
        operand = f"r{insn.src}" if insn.code & SRC_X else str(insn.imm)
        return f"r{insn.dst} {'=' if op == OP_MOV else '+='} {operand}"
    if cls == LDX:
        return f"r{insn.dst} = *(u32 *)(r{insn.src} {insn.off:+d})"
    if cls == ST:
        return f"*(u32 *)(r{insn.dst} {insn.off:+d}) = {insn.imm}"
    if cls == STX:
        return f"*(u32 *)(r{insn.dst} {insn.off:+d}) = r{insn.src}"
    if op == OP_CALL:
        return f"call {Fn(insn.imm).name}"
    if op == OP_EXIT:
        return "exit"
    if op == OP_JA:
        return f"goto {insn.target}"
    return f"if r{insn.dst} {'==' if op == OP_JEQ else '!='} {insn.imm} goto {insn.target}"


def listing(program: list[Insn]) -> str:
    """The program as text, one instruction per line (the slot number, a label
    if any, the instruction, its comment), for --debug and reviews."""
    lines = []
    for i, insn in enumerate(program):
        if insn.code == 0:  # the second slot of a 64-bit load
            continue
        label = f"{insn.label}:" if insn.label else ""
        note = f"  ; {insn.note}" if insn.note else ""
        lines.append(f"{i:3d} {label:<13}{_text(insn)}{note}")
    return "\n".join(lines)
