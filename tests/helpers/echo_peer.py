"""One end of an idle TCP connection that can prove it still works (for `apply`).

    echo_peer.py serve HOST PORT      listen, accept one connection, echo what it reads
    echo_peer.py connect HOST PORT    connect; echo each stdin line through the server

Prints JSON lines: {"event": "listening", "port": N} (serve), {"event":
"connected", "fd": N, "pid": N, ...options read with getsockopt}, then for
each stdin line the client sends it and prints {"event": "echo", "data":
the reply}; a line "options" prints {"event": "options", ...} instead. When the
connection ends: {"event": "closed", "errno": "ETIMEDOUT" (or "EOF")}.
Never turns keepalive on itself.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import sys


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def options(conn: socket.socket) -> dict[str, int]:
    tcp = socket.IPPROTO_TCP
    return {"SO_KEEPALIVE": conn.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "TCP_KEEPIDLE": conn.getsockopt(tcp, socket.TCP_KEEPIDLE),
            "TCP_KEEPINTVL": conn.getsockopt(tcp, socket.TCP_KEEPINTVL),
            "TCP_KEEPCNT": conn.getsockopt(tcp, socket.TCP_KEEPCNT),
            "TCP_USER_TIMEOUT": conn.getsockopt(tcp, socket.TCP_USER_TIMEOUT)}


def closed(exc: OSError | None) -> None:
    name = "EOF" if exc is None else errno.errorcode.get(exc.errno or 0, str(exc.errno))
    say(event="closed", errno=name)


def receive(conn: socket.socket) -> bytes | None:
    """What the connection brings next, or None (said as "closed") when it ended."""
    try:
        data = conn.recv(4096)
    except OSError as exc:
        closed(exc)
        return None
    if not data:
        closed(None)
        return None
    return data


def serve(host: str, port: int) -> None:
    srv = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(1)
    say(event="listening", port=srv.getsockname()[1])
    conn, _ = srv.accept()
    say(event="connected", fd=conn.fileno(), pid=os.getpid(), **options(conn))
    while True:
        data = receive(conn)
        if data is None:
            return
        conn.sendall(data)


def connect(host: str, port: int) -> None:
    conn = socket.create_connection((host, port))
    say(event="connected", fd=conn.fileno(), pid=os.getpid(), **options(conn))
    while True:
        ready, _, _ = select.select([conn, sys.stdin], [], [])
        if conn in ready:
            data = receive(conn)
            if data is None:
                return
            say(event="unexpected", data=data.decode())
            continue
        line = sys.stdin.readline()
        if not line:
            return
        if line.strip() == "options":
            say(event="options", **options(conn))
            continue
        conn.sendall(line.encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = receive(conn)
            if chunk is None:
                return
            reply += chunk
        say(event="echo", data=reply.decode().rstrip("\n"))


if __name__ == "__main__":
    role, address, number = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if role == "serve":
        serve(address, number)
    else:
        connect(address, number)
