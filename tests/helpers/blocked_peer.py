"""One end of an idle TCP connection that blocks in recv() and reports how it ends.

    blocked_peer.py connect HOST PORT      the client end
    blocked_peer.py listen HOST PORT       the server end (accepts one connection)

Prints JSON lines: {"event": "listening"}, {"event": "connected", ...options},
and finally {"event": "closed", "errno": "ETIMEDOUT", "elapsed": seconds since
the connection was established, or since the send below}. A line "send" on
stdin makes it send 4 KiB first (unacknowledged data when the peer is gone).
"""

import errno
import json
import select
import socket
import sys
import time


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def connection(role: str, host: str, port: int) -> socket.socket:
    """The connected socket: accepted on HOST:PORT after {"event": "listening"}
    (role "listen"), or connected to it (role "connect")."""
    if role != "listen":
        return socket.create_connection((host, port))
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(1)
    say(event="listening")
    conn, _ = srv.accept()
    return conn


def main() -> None:
    conn = connection(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    start = time.monotonic()
    say(event="connected",
        SO_KEEPALIVE=conn.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        TCP_KEEPIDLE=conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        TCP_USER_TIMEOUT=conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))
    while True:
        ready, _, _ = select.select([conn, sys.stdin], [], [])
        if sys.stdin in ready:
            if sys.stdin.readline().strip() == "send":
                conn.sendall(b"x" * 4096)
                start = time.monotonic()
            continue
        try:
            data = conn.recv(4096)
        except OSError as exc:
            say(event="closed", errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                elapsed=round(time.monotonic() - start, 3))
            return
        if not data:
            say(event="closed", errno="EOF", elapsed=round(time.monotonic() - start, 3))
            return


if __name__ == "__main__":
    main()
