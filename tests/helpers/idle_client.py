"""A client that connects, reports its socket options as one JSON line, then
stays connected and idle until its stdin closes (for `status` and `ss`)."""

import json
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
with socket.create_connection((host, port)) as conn:
    print(json.dumps({
        "SO_KEEPALIVE": conn.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "TCP_KEEPIDLE": conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "TCP_KEEPINTVL": conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        "TCP_KEEPCNT": conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        "fd": conn.fileno(),
    }), flush=True)
    sys.stdin.read()
