"""One end of an idle TCP connection that sets its own keepalive after the
connection exists (SO_KEEPALIVE 1 and the given idle/interval/count, as
redis, Node's setKeepAlive or Go do), blocks in recv(), and reports how it ends.

    own_timers_peer.py connect|listen HOST PORT IDLE INTERVAL COUNT

Prints JSON lines: {"event": "listening"}, {"event": "connected", ...options
read back}, {"event": "closed", "errno": ..., "elapsed": seconds since the
options were set}.
"""

import errno
import json
import socket
import sys
import time


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    role, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    idle, interval, count = (int(arg) for arg in sys.argv[4:7])
    if role == "listen":
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen(1)
        say(event="listening")
        conn, _ = srv.accept()
    else:
        conn = socket.create_connection((host, port))
    tcp = socket.IPPROTO_TCP
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    conn.setsockopt(tcp, socket.TCP_KEEPIDLE, idle)
    conn.setsockopt(tcp, socket.TCP_KEEPINTVL, interval)
    conn.setsockopt(tcp, socket.TCP_KEEPCNT, count)
    start = time.monotonic()
    say(event="connected", **{name: conn.getsockopt(tcp, getattr(socket, name)) for name in
                              ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT",
                               "TCP_USER_TIMEOUT")})
    try:
        while conn.recv(4096):
            pass
        say(event="closed", errno="EOF", elapsed=round(time.monotonic() - start, 3))
    except OSError as exc:
        say(event="closed", errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
            elapsed=round(time.monotonic() - start, 3))


if __name__ == "__main__":
    main()
