#!/usr/bin/python3
"""holder.py connect HOST PORT | listen HOST PORT | activated:
hold TCP connections open (a client, a listener, or a socket-activated server on fd 3)."""
import socket
import sys
import time

mode = sys.argv[1]
if mode == "connect":
    conn = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=10)
    time.sleep(3600)
else:
    if mode == "activated":
        srv = socket.socket(fileno=3)
    else:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((sys.argv[2], int(sys.argv[3])))
        srv.listen(64)
    held = []
    while True:
        held.append(srv.accept()[0])
