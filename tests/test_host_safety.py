"""The library never harms its host: a bad pointer gets EFAULT from the kernel
(never a crash), in every variant and mode; debug output never goes into a
socket that happens to be fd 2, nor into a closed fd 2."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import keepalive_preload
from support import TIMEOUT, preload_env

pytestmark = pytest.mark.socket_level

MODES = [{"KEEPALIVE": "on"}, {"KEEPALIVE": "force"}, {"LIBKEEPALIVE_DEBUG": "1"},
         {"KEEPALIVE": "force", "LIBKEEPALIVE_DEBUG": "1"}, {"KEEPALIVE": "off"}]

BAD_POINTERS = r"""
import ctypes, errno, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.setsockopt.argtypes = [ctypes.c_int] * 3 + [ctypes.c_void_p, ctypes.c_uint]
libc.connect.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]
port = int(sys.argv[1])
results = []
for level, name in ((socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                    (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)):
    for when in ("before", "after"):
        s = socket.socket()
        if when == "after":
            s.connect(("127.0.0.1", port))
        ret = libc.setsockopt(s.fileno(), level, name, 8, 4)
        results.append((ret, ctypes.get_errno()))
        s.close()
s = socket.socket()
ret = libc.connect(s.fileno(), 8, 16)
results.append((ret, ctypes.get_errno()))
print(results)
"""


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: "+".join(f"{k}={v}" for k, v in m.items()))
def test_bad_pointer_gets_efault(tmp_path: Path, listener: int, variant: str,
                                 mode: dict[str, str]) -> None:
    script = tmp_path / "bad.py"
    script.write_text(BAD_POINTERS)
    result = subprocess.run([sys.executable, str(script), str(listener)], capture_output=True,
                            text=True, timeout=TIMEOUT, env=preload_env(variant, **mode))
    assert result.returncode == 0, result.stderr
    efault = (-1, 14)
    assert result.stdout.strip() == str([efault] * 7), result.stderr


CLOSES_STDERR = r"""
import os, socket, sys, time
os.close(2)
s = socket.socket()          # fd 2: the lowest free descriptor
assert s.fileno() == 2, s.fileno()
s.connect(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5)
time.sleep(0.3)
print("alive")
"""


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
@pytest.mark.parametrize("mode", ["on", "force"])
def test_no_byte_into_a_socket_on_fd_2(tmp_path: Path, variant: str, mode: str) -> None:
    """A program that closed stderr and got fd 2 from socket(): its peer
    receives nothing from us, even with debug output on."""
    received = bytearray()
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(TIMEOUT)

        def serve() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                while chunk := conn.recv(4096):
                    received.extend(chunk)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        script = tmp_path / "fd2.py"
        script.write_text(CLOSES_STDERR)
        result = subprocess.run(
            [sys.executable, str(script), str(srv.getsockname()[1])], capture_output=True,
            text=True, timeout=TIMEOUT,
            env=preload_env(variant, LIBKEEPALIVE_DEBUG="1", KEEPALIVE=mode))
        thread.join(TIMEOUT)
    assert result.stdout == "alive\n", result
    assert bytes(received) == b""


@pytest.mark.parametrize("variant", keepalive_preload.VARIANTS)
def test_closed_stderr(tmp_path: Path, listener: int, variant: str) -> None:
    """With fd 2 closed (and nothing reopened there) debug output is dropped
    and the program runs on."""
    script = tmp_path / "closed.py"
    script.write_text("import socket, sys\n"
                      "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
                      "print(s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))\n")
    result = subprocess.run(f"exec {sys.executable} {script} {listener} 2>&-", shell=True,
                            capture_output=True, text=True, timeout=TIMEOUT,
                            env=preload_env(variant, LIBKEEPALIVE_DEBUG="1"))
    on = "0" if variant == "listen" else "1"  # the listen variant leaves clients alone
    assert (result.returncode, result.stdout) == (0, f"{on}\n"), result
