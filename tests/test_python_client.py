"""The issue's acceptance check: a Python client under LD_PRELOAD=path()."""

from __future__ import annotations

import sys

import pytest

import keepalive_preload
from support import clean_env, preload_env, run

# Rerun against other builds of the libraries (support.rerun_socket_level_tests).
pytestmark = pytest.mark.socket_level

CLIENT = """
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as s:
    print(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
          s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))
"""


@pytest.mark.parametrize(("env", "idle"), [({}, 15), ({"TCP_KEEPIDLE": "7"}, 7),
                                           ({"KEEPIDLE": "7"}, 7)])
def test_python_client(listener: int, env: dict[str, str], idle: int) -> None:
    result = run([sys.executable, "-c", CLIENT, str(listener)],
                 preload_env("connect", **env))
    assert result.stdout.split() == [str(idle), "1"]


def test_environ_drives_a_real_process(listener: int) -> None:
    env = keepalive_preload.environ("socket", idle=9, base=clean_env())
    result = run([sys.executable, "-c", CLIENT, str(listener)], env)
    assert result.stdout.split() == ["9", "1"]
