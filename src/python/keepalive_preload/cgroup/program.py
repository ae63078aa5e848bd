"""The ``BPF_PROG_TYPE_SOCK_OPS`` program of the cgroup mode, generated from the
option table.

Its values live in a one-entry array map named like the program
(``kp_keepalive``), one u32 per field of ``FIELDS``: ``flags`` (``Flag``), then
one per option the kernel's ``bpf_setsockopt`` takes (``Option.bpf_at`` not
None), in table order. ``cgroup show`` and ``bpftool map dump`` read them back.

Per callback (``enum bpf_sock_ops_cb``), for a cgroup attached ``--client``
(outbound), ``--server`` (accepted) or ``--all``:

- ``BPF_SOCK_OPS_TCP_CONNECT_CB`` (outbound): the options whose ``bpf_at`` is
  "connect" (TCP_SYNCNT, TCP_MAXSEG: they matter before the handshake);
- ``BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB`` (outbound) and
  ``BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB`` (accepted): ``SO_KEEPALIVE`` and the
  options whose ``bpf_at`` is "established". Without ``--force`` a socket the
  program already turned ``SO_KEEPALIVE`` on for (before connect, or on its
  listener) is left alone: its keepalive is the program's. Linux < 6.1's
  ``bpf_getsockopt`` cannot read ``SO_KEEPALIVE``; there the check fails and
  ours are set.

Nested cgroups: the kernel runs the programs of a socket's cgroup and of each
ancestor, the nearest first, at every callback, on one shared context. The
first of ours that handles the callback decides and marks the context's
``reply`` (which the kernel ignores at these three callbacks) with ``MARK``;
ours on the cgroups further up see the mark and leave the socket alone. So the
nearest cgroup's values, scope and ``--force`` win, cleanly, on every kernel
from 5.9 (no per-socket storage needed). A nearer program of ours that does
not handle the callback (``--server`` below, an outbound connection) leaves
the decision to the next one up.
"""

from __future__ import annotations

import enum
import struct

from .._options import OPTIONS, VARIANTS, WORDS, Option
from .asm import (
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R10,
    Fn,
    Insn,
    add_imm,
    call,
    exit_,
    ja,
    jeq_imm,
    jne_imm,
    load_map_fd,
    load_u32,
    mov_imm,
    mov_reg,
    store_imm_u32,
    store_u32,
)

#: The name of our program and of its map: how detach and show recognise ours.
NAME = "kp_keepalive"


class Flag(enum.IntFlag):
    """Bits of the map's ``flags`` field: what the program was generated for."""

    CLIENT = 1  # outbound connections (--client, --all)
    SERVER = 2  # accepted connections (--server, --all)
    FORCE = 4  # ours also over a program's own SO_KEEPALIVE (--force)


#: The scope's word, as the command line (--client, --server, --all), ``cgroup show``
#: and ``covering()`` say it.
SCOPE_WORDS = {Flag.CLIENT: "client", Flag.SERVER: "server", Flag.CLIENT | Flag.SERVER: "all"}
#: The cgroup mode's scope for each variant, by the variant's word (variants.def); a
#: variant whose word is not one of these has no scope here (cgroup attach refuses it).
SCOPE = {variant: flags for variant in VARIANTS for flags, word in SCOPE_WORDS.items()
         if WORDS[variant] == word}

#: The options the program can set (bpf_setsockopt takes them), in table order.
SETTABLE: tuple[Option, ...] = tuple(o for o in OPTIONS if o.bpf_at is not None)
#: The map's value: one u32 per field, in this order.
FIELDS: tuple[str, ...] = ("flags", *(o.name for o in SETTABLE))
VALUE = struct.Struct("<" + "I" * len(FIELDS))

#: Written to ``ctx->reply`` by the first of ours that handles a callback ("kpka").
MARK = int.from_bytes(b"kpka", "big")

# enum bpf_sock_ops_cb: the callbacks the program handles.
BPF_SOCK_OPS_TCP_CONNECT_CB = 3
BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB = 4
BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB = 5

# struct bpf_sock_ops: the members the program reads or writes.
SOCK_OPS_OP = 0  # __u32 op
SOCK_OPS_REPLY = 4  # union { __u32 args[4]; __u32 reply; __u32 replylong[4]; }

# Socket option levels and SO_KEEPALIVE (asm-generic/socket.h, linux/in.h).
SOL_SOCKET = 1
SO_KEEPALIVE = 9
IPPROTO_TCP = 6

# Stack slots, below r10 (the frame pointer).
_KEY = -4  # the map key, 0
_OPTVAL = -8  # the int bpf_setsockopt and bpf_getsockopt read or write

#: The callback at which each value of Option.bpf_at is set.
CALLBACKS = ("connect", "established")


def map_values(flags: Flag, values: dict[str, int]) -> dict[str, int]:
    """The map's fields for these flags and option values (option name -> value,
    as ``_options.effective`` returns them)."""
    return {"flags": int(flags), **{o.name: values[o.name] for o in SETTABLE}}


def encode(fields: dict[str, int]) -> bytes:
    """The map value for ``map_values``' fields."""
    return VALUE.pack(*(fields[f] for f in FIELDS))


def decode(raw: bytes) -> dict[str, int] | None:
    """The fields of a map value, or None when it has another layout (another
    version of this program)."""
    if len(raw) != VALUE.size:
        return None
    return dict(zip(FIELDS, VALUE.unpack(raw)))


def _setsockopt(level: int, name: int, note: str, field: str | None) -> list[Insn]:
    """bpf_setsockopt(ctx, level, name, &int, 4): the int is 1 when ``field`` is
    None, else that field of the map value (pointed to by r7)."""
    if field is None:
        fill = [store_imm_u32(R10, _OPTVAL, 1)]
    else:
        fill = [load_u32(R1, R7, 4 * FIELDS.index(field)).says(f"values.{field}"),
                store_u32(R10, _OPTVAL, R1)]
    return [
        *fill,
        mov_reg(R1, R6),                    # r1 = ctx
        mov_imm(R2, level),
        mov_imm(R3, name).says(note),
        mov_reg(R4, R10),
        add_imm(R4, _OPTVAL),               # r4 = &optval
        mov_imm(R5, 4),                     # optlen
        call(Fn.bpf_setsockopt),            # a refusal is ignored: the connection goes on
    ]


def _lookup_values(map_fd: int, label: str) -> list[Insn]:
    """r7 = the map's value (key 0), or goto out when there is none."""
    return [
        store_imm_u32(R10, _KEY, 0).at(label),
        *load_map_fd(R1, map_fd),
        mov_reg(R2, R10),
        add_imm(R2, _KEY),                  # r2 = &key
        call(Fn.bpf_map_lookup_elem),
        jeq_imm(R0, 0, "out"),
        mov_reg(R7, R0),                    # r7 = values
    ]


def _decide(label: str) -> list[Insn]:
    """The nearest of ours decides: leave when ctx->reply carries the mark,
    else put it there."""
    return [
        load_u32(R1, R6, SOCK_OPS_REPLY).at(label).says("ctx->reply"),
        jeq_imm(R1, MARK, "out").says("a nearer cgroup's program of ours decided"),
        mov_imm(R1, MARK),
        store_u32(R6, SOCK_OPS_REPLY, R1).says("ours decides: the ones above leave it"),
    ]


def _own_keepalive() -> list[Insn]:
    """goto out when the socket already has SO_KEEPALIVE (the program's choice);
    when bpf_getsockopt cannot tell (Linux < 6.1), carry on."""
    return [
        store_imm_u32(R10, _OPTVAL, 0),
        mov_reg(R1, R6),
        mov_imm(R2, SOL_SOCKET),
        mov_imm(R3, SO_KEEPALIVE).says("SO_KEEPALIVE"),
        mov_reg(R4, R10),
        add_imm(R4, _OPTVAL),
        mov_imm(R5, 4),
        call(Fn.bpf_getsockopt),
        jne_imm(R0, 0, "set").says("cannot tell: ours"),
        load_u32(R1, R10, _OPTVAL),
        jne_imm(R1, 0, "out").says("the program turned keepalive on: its choice"),
    ]


def setsockopts(fields: dict[str, int], callback: str) -> list[Option]:
    """The options the program sets at ``callback`` ("connect", "established")
    for these map fields: those set there whose value is not 0 (0: the
    system's default is left alone)."""
    return [o for o in SETTABLE if o.bpf_at == callback and fields[o.name]]


def program(fields: dict[str, int], map_fd: int) -> list[Insn]:
    """The sock_ops program for these map fields (see ``FIELDS``): which
    callbacks it handles and which options it sets follow from them; the
    numbers themselves are read from the map at each callback."""
    flags = Flag(fields["flags"])
    code: list[Insn] = [
        mov_reg(R6, R1).says("ctx (struct bpf_sock_ops *)"),
        load_u32(R2, R6, SOCK_OPS_OP).says("ctx->op"),
    ]
    if flags & Flag.CLIENT:
        code += [jeq_imm(R2, BPF_SOCK_OPS_TCP_CONNECT_CB, "connect")
                 .says("BPF_SOCK_OPS_TCP_CONNECT_CB"),
                 jeq_imm(R2, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, "established")
                 .says("BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB")]
    if flags & Flag.SERVER:
        code.append(jeq_imm(R2, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, "established")
                    .says("BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB"))
    code.append(ja("out"))

    if flags & Flag.CLIENT:
        # Handled even with nothing to set, so that ours above leave the
        # connection to this one at the connect callback too.
        code += _decide("connect")
        at_connect = setsockopts(fields, "connect")
        if at_connect:
            code += _lookup_values(map_fd, "lookup")
            for option in at_connect:
                code += _setsockopt(IPPROTO_TCP, option.optname, option.variable, option.name)
        code.append(ja("out"))

    code += _decide("established")
    if not flags & Flag.FORCE:
        code += _own_keepalive()
    code += _lookup_values(map_fd, "set")
    code += _setsockopt(SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", None)
    for option in setsockopts(fields, "established"):
        code += _setsockopt(IPPROTO_TCP, option.optname, option.variable, option.name)
    code += [
        mov_imm(R0, 1).at("out"),           # 1: carry on
        exit_(),
    ]
    return code

