"""The TCP table of a network namespace, read once: the kernel's sock_diag
netlink interface (``NETLINK_SOCK_DIAG``, ``SOCK_DIAG_BY_FAMILY`` dumps of
``inet_diag``, as ``ss`` reads it), for TCP and MPTCP sockets, IPv4 and IPv6.

A netlink socket answers for the network namespace it was created in: for
another namespace the socket is created by a short-lived helper thread that
first joins it (``setns(2)`` moves only the calling thread). Where joining is
not allowed (not root), the namespace's ``/proc/PID/net/tcp{,6}`` is read
instead (MPTCP sockets are not in those files).

The kernel structs are ``ctypes.Structure``s (include/uapi/linux/netlink.h,
sock_diag.h, inet_diag.h).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
import sys
import threading

from .. import _syscalls
from .errors import AccessDenied, LiveError, NoSuchProcess, ReadError
from .records import Endpoint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

# include/net/tcp_states.h
STATES = {1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
          6: "TIME-WAIT", 7: "CLOSE", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN",
          11: "CLOSING", 12: "NEW-SYN-RECV"}
#: The states dumped: every one that a process's socket can be in (TIME-WAIT
#: and NEW-SYN-RECV are minisockets no process holds).
WANTED_STATES = sum(1 << n for n in STATES if n not in (6, 12))
# The timer codes of inet_diag_msg.idiag_timer and /proc/net/tcp's "tr".
TIMERS = {0: None, 1: "retransmit", 2: "keepalive", 3: "time-wait", 4: "zero-window-probe"}

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
INET_DIAG_REQ_PROTOCOL = 3
IPPROTO_MPTCP = 262
CLONE_NEWNET = 0x40000000


class NlMsgHdr(ctypes.Structure):
    _fields_ = (("nlmsg_len", ctypes.c_uint32), ("nlmsg_type", ctypes.c_uint16),
                ("nlmsg_flags", ctypes.c_uint16), ("nlmsg_seq", ctypes.c_uint32),
                ("nlmsg_pid", ctypes.c_uint32))


class NlAttr(ctypes.Structure):
    _fields_ = (("nla_len", ctypes.c_uint16), ("nla_type", ctypes.c_uint16))


class InetDiagSockId(ctypes.Structure):
    _fields_ = (("idiag_sport", ctypes.c_uint16),  # network byte order
                ("idiag_dport", ctypes.c_uint16),
                ("idiag_src", ctypes.c_uint8 * 16), ("idiag_dst", ctypes.c_uint8 * 16),
                ("idiag_if", ctypes.c_uint32), ("idiag_cookie", ctypes.c_uint32 * 2))


class InetDiagReqV2(ctypes.Structure):
    _fields_ = (("sdiag_family", ctypes.c_uint8), ("sdiag_protocol", ctypes.c_uint8),
                ("idiag_ext", ctypes.c_uint8), ("pad", ctypes.c_uint8),
                ("idiag_states", ctypes.c_uint32), ("id", InetDiagSockId))


class InetDiagMsg(ctypes.Structure):
    _fields_ = (("idiag_family", ctypes.c_uint8), ("idiag_state", ctypes.c_uint8),
                ("idiag_timer", ctypes.c_uint8), ("idiag_retrans", ctypes.c_uint8),
                ("id", InetDiagSockId), ("idiag_expires", ctypes.c_uint32),
                ("idiag_rqueue", ctypes.c_uint32), ("idiag_wqueue", ctypes.c_uint32),
                ("idiag_uid", ctypes.c_uint32), ("idiag_inode", ctypes.c_uint32))


class _ProtocolAttr(ctypes.Structure):
    _fields_ = (("nla", NlAttr), ("protocol", ctypes.c_uint32))


class _Request(ctypes.Structure):
    _fields_ = (("header", NlMsgHdr), ("req", InetDiagReqV2), ("attr", _ProtocolAttr))


_HEADER = ctypes.sizeof(NlMsgHdr)
_MSG = ctypes.sizeof(InetDiagMsg)
_INODE = InetDiagMsg.idiag_inode.offset
_V4_MAPPED = b"\0" * 10 + b"\xff\xff"


class Table:
    """inode -> ``Endpoint`` for the TCP sockets of one network namespace.
    sock_diag rows are kept as the kernel sent them and decoded when looked up
    (a ``status PID`` on a host with 40,000 sockets decodes only that
    process's)."""

    def __init__(self) -> None:
        self._raw: dict[int, tuple[bytes, str]] = {}
        self._decoded: dict[int, Endpoint] = {}

    def __len__(self) -> int:
        return len(self._raw) + len(self._decoded)

    def __contains__(self, inode: int) -> bool:
        return inode in self._raw or inode in self._decoded

    def add_raw(self, inode: int, msg: bytes, protocol: str) -> None:
        self._raw[inode] = (msg, protocol)

    def add(self, endpoint: Endpoint) -> None:
        self._decoded[endpoint.inode] = endpoint

    def get(self, inode: int) -> Endpoint | None:
        found = self._decoded.get(inode)
        if found is not None:
            return found
        raw = self._raw.get(inode)
        return None if raw is None else _decode(inode, *raw)

    def items(self) -> Iterator[tuple[int, Endpoint]]:
        for inode, (msg, protocol) in self._raw.items():
            yield inode, _decode(inode, msg, protocol)
        yield from self._decoded.items()


def _decode(inode: int, raw: bytes, protocol: str) -> Endpoint:
    msg = InetDiagMsg.from_buffer_copy(raw)
    ident = msg.id
    return _endpoint(inode, protocol, msg.idiag_family, msg.idiag_state, msg.idiag_timer,
                     msg.idiag_expires, bytes(ident.idiag_src),
                     socket.ntohs(ident.idiag_sport), bytes(ident.idiag_dst),
                     socket.ntohs(ident.idiag_dport))


def _is_loopback(family: int, raw: bytes) -> bool:
    if family == socket.AF_INET:
        return raw[0] == 127
    return raw == b"\0" * 15 + b"\1" or (raw[:12] == _V4_MAPPED and raw[12] == 127)


def _address(family: int, raw: bytes, port: int) -> str:
    if family == socket.AF_INET:
        return f"{socket.inet_ntop(socket.AF_INET, raw[:4])}:{port}"
    return f"[{socket.inet_ntop(socket.AF_INET6, raw)}]:{port}"


def _endpoint(inode: int, protocol: str, family: int, state: int, timer: int, expires_ms: float,
              src: bytes, sport: int, dst: bytes, dport: int) -> Endpoint:
    kind = TIMERS.get(timer, f"timer-{timer}")
    if family == socket.AF_INET:
        src, dst = src[:4], dst[:4]
    name = STATES.get(state, str(state))
    # A listener is loopback when bound to it; a connection when its peer is.
    loopback = _is_loopback(family, src if name == "LISTEN" else dst)
    return Endpoint(inode, protocol, name, _address(family, src, sport),
                    _address(family, dst, dport), kind,
                    round(expires_ms / 1000, 2) if kind else None, loopback)


def _dump(sock: socket.socket, family: int, protocol: int, into: Table) -> None:
    request = _Request()
    request.header.nlmsg_len = ctypes.sizeof(_Request) if protocol > 255 else (
        _HEADER + ctypes.sizeof(InetDiagReqV2))
    request.header.nlmsg_type = SOCK_DIAG_BY_FAMILY
    request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP
    request.header.nlmsg_seq = 1
    request.req.sdiag_family = family
    request.req.sdiag_protocol = protocol & 0xff
    request.req.idiag_states = WANTED_STATES
    request.attr.nla.nla_len = ctypes.sizeof(_ProtocolAttr)
    request.attr.nla.nla_type = INET_DIAG_REQ_PROTOCOL
    request.attr.protocol = protocol
    sock.sendto(bytes(request)[:request.header.nlmsg_len], (0, 0))
    name = "mptcp" if protocol == IPPROTO_MPTCP else "tcp"
    header = struct.Struct("=IHHII")
    inode_at = _HEADER + _INODE
    from_bytes = int.from_bytes
    order = sys.byteorder
    add = into.add_raw
    while True:
        data = sock.recv(1 << 16)
        offset = 0
        while offset + _HEADER <= len(data):
            length, kind, _, _, _ = header.unpack_from(data, offset)
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", data, offset + _HEADER)
                raise OSError(-code, os.strerror(-code))
            if length >= _HEADER + _MSG:
                inode = from_bytes(data[offset + inode_at:offset + inode_at + 4], order)
                if inode:  # 0: a socket no process holds (an MPTCP subflow)
                    add(inode, data[offset + _HEADER:offset + _HEADER + _MSG], name)
            offset += (length + 3) & ~3
        if not data:
            return


def _netlink_in(pid: int | None) -> socket.socket:
    """A sock_diag socket in the network namespace of ``pid`` (None: ours)."""
    if pid is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             NETLINK_SOCK_DIAG)
    try:
        nsfd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        raise NoSuchProcess(pid) from None
    except PermissionError:
        raise PermissionError(f"cannot open /proc/{pid}/ns/net") from None
    made: list[socket.socket] = []
    failed: list[OSError] = []

    def join() -> None:  # in a thread of its own: setns moves only this thread
        try:
            _syscalls.setns(nsfd, CLONE_NEWNET)
            made.append(_netlink_in(None))
        except OSError as exc:
            failed.append(exc)

    try:
        helper = threading.Thread(target=join, name="kp-netns")
        helper.start()
        helper.join()
    finally:
        os.close(nsfd)
    if failed:
        raise failed[0]
    return made[0]


def sock_diag(pid: int | None = None) -> Table:
    """Every TCP and MPTCP socket (but TIME-WAIT) in the network namespace of
    ``pid`` (None: this process's)."""
    table = Table()
    with _netlink_in(pid) as sock:
        for family in (socket.AF_INET, socket.AF_INET6):
            _dump(sock, family, socket.IPPROTO_TCP, table)
        for family in (socket.AF_INET, socket.AF_INET6):
            # No MPTCP (or no mptcp_diag) in this kernel: none to list.
            with contextlib.suppress(OSError):
                _dump(sock, family, IPPROTO_MPTCP, table)
    return table


def _proc_address(text: str) -> tuple[int, bytes, int]:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    # The kernel prints each 32-bit word in host byte order.
    words = struct.unpack(f"={len(raw) // 4}I", raw)
    packed = struct.pack(f"!{len(words)}I", *words)
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return family, packed, int(port, 16)


def proc_tables(pid: int) -> Table:
    """The same from ``/proc/PID/net/tcp{,6}`` (TCP only): readable without
    joining the namespace."""
    hz = os.sysconf("SC_CLK_TCK")
    table = Table()
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                lines = f.readlines()[1:]
        except (FileNotFoundError, ProcessLookupError):
            if not os.path.exists(f"/proc/{pid}"):
                raise NoSuchProcess(pid) from None
            continue  # no IPv6 in this kernel
        except PermissionError:
            raise AccessDenied(pid, f"cannot read /proc/{pid}/net/{name}: permission "
                                    "denied") from None
        for line in lines:
            row = line.split()
            inode = int(row[9])
            state = int(row[3], 16)
            if not inode or not WANTED_STATES & (1 << state):
                continue
            family, src, sport = _proc_address(row[1])
            _, dst, dport = _proc_address(row[2])
            timer, when = row[5].split(":")
            table.add(_endpoint(inode, "tcp", family, state, int(timer, 16),
                                int(when, 16) * 1000 / hz, src, sport, dst, dport))
    return table


class Tables:
    """One read of each network namespace's table per command, whatever the
    number of processes asked about: ``for_process(pid)`` reads the table of
    the namespace of ``pid`` the first time one of its processes asks.
    ``reads`` counts the namespaces read (the benchmark and tests look)."""

    def __init__(self) -> None:
        self._by_netns: dict[int, Table] = {}
        self._own = os.stat("/proc/self/ns/net").st_ino
        self.reads = 0

    def for_process(self, pid: int, netns: int) -> Table:
        table = self._by_netns.get(netns)
        if table is None:
            table = self._read(pid, netns)
            self._by_netns[netns] = table
            self.reads += 1
        return table

    def all(self) -> list[Table]:
        return list(self._by_netns.values())

    def _read(self, pid: int, netns: int) -> Table:
        try:
            return sock_diag(None if netns == self._own else pid)
        except LiveError:
            raise
        except OSError as exc:
            # Not allowed to join the namespace (not root), or no sock_diag
            # (a kernel without CONFIG_INET_DIAG): the /proc tables.
            try:
                return proc_tables(pid)
            except LiveError:
                raise
            except OSError:
                raise ReadError(pid, f"cannot read the TCP table of PID {pid}'s network "
                                     f"namespace: {exc.strerror or exc}") from None
