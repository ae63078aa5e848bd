"""Composition: our libraries together, with an unrelated preload library,
and across fork and exec."""

from __future__ import annotations

import json
import sys

import pytest

from support import clean_env, compile_helper, library, preload, run

# Rerun against other builds of the libraries (support.rerun_socket_level_tests).
pytestmark = pytest.mark.socket_level

OPTIONS = """
import json, socket
def opts(s):
    return [s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)]
"""

BOTH_ENDS = OPTIONS + """
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
cli = socket.create_connection(srv.getsockname())
conn, _ = srv.accept()
print(json.dumps({"client": opts(cli), "accepted": opts(conn)}))
"""

FAMILY = OPTIONS + """
import os, subprocess, sys
port = int(sys.argv[1])
def connect():
    with socket.create_connection(("127.0.0.1", port)) as s:
        return opts(s)
report = {"parent": connect()}
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, json.dumps(connect()).encode())
    os._exit(0)
os.waitpid(pid, 0)
report["forked"] = json.loads(os.read(read, 100))
code = "import socket, json, sys; s = socket.create_connection(('127.0.0.1', %d)); " \\
       "print(json.dumps([s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), " \\
       "s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)]))" % port
report["exec"] = json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                           capture_output=True, text=True).stdout)
off = dict(os.environ, KEEPALIVE="off")
report["exec_off"] = json.loads(subprocess.run([sys.executable, "-c", code], env=off,
                                               check=True, capture_output=True,
                                               text=True).stdout)
report["parent_after"] = connect()
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def count_connect(tmp_path_factory: pytest.TempPathFactory) -> str:
    return compile_helper(tmp_path_factory, "count_connect.c", "-shared", "-fPIC")


@pytest.mark.parametrize("libs", [("connect", "listen"), ("listen", "connect"),
                                  ("connect", "socket"), ("socket", "listen")])
def test_two_of_ours(libs: tuple[str, str]) -> None:
    env = clean_env(LD_PRELOAD=preload(*(library(v) for v in libs)), TCP_KEEPIDLE="9")
    result = run([sys.executable, "-c", BOTH_ENDS], env)
    assert json.loads(result.stdout) == {"client": [1, 9], "accepted": [1, 9]}
    assert result.stderr == ""


def test_connect_alone_leaves_accepted_socket() -> None:
    env = clean_env(LD_PRELOAD=preload(library("connect")), TCP_KEEPIDLE="9")
    report = json.loads(run([sys.executable, "-c", BOTH_ENDS], env).stdout)
    assert report["client"] == [1, 9]
    assert report["accepted"][0] == 0


@pytest.mark.parametrize("ours_first", [True, False])
def test_with_unrelated_preload(count_connect: str, listener: int, ours_first: bool) -> None:
    ours = library("connect")
    libs = [ours, count_connect] if ours_first else [count_connect, ours]
    code = OPTIONS + f"print(json.dumps(opts(socket.create_connection(('127.0.0.1', {listener})))))"
    result = run([sys.executable, "-c", code], clean_env(LD_PRELOAD=preload(*libs),
                                                         TCP_KEEPIDLE="9"))
    assert json.loads(result.stdout) == [1, 9]
    assert result.stderr == "count_connect: 1\n"  # the call went through both


def test_fork_exec_and_opt_out_in_a_child(listener: int) -> None:
    env = clean_env(LD_PRELOAD=preload(library("socket")), TCP_KEEPIDLE="9")
    report = json.loads(run([sys.executable, "-c", FAMILY, str(listener)], env).stdout)
    assert report["parent"] == [1, 9]
    assert report["forked"] == [1, 9]  # fork: the library is already loaded
    assert report["exec"] == [1, 9]  # exec: LD_PRELOAD is inherited
    assert report["exec_off"][0] == 0  # KEEPALIVE=off in that child only
    assert report["parent_after"] == [1, 9]
