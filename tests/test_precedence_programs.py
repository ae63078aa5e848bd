"""Whose settings win, with real programs that set their own keepalive: curl
(60 s), redis-cli (15 s, after connecting) and redis-server (`tcp-keepalive`,
on accepted connections). Seen from outside with `ss -tno`.

By default the program's choice wins in every variant; with KEEPALIVE=force,
or through `keepalive-preload run` with values, ours do — in every variant,
also one that does not otherwise cover the socket (the libraries' setsockopt
substitutes our value for the program's).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from support import (
    SCRIPT,
    TIMEOUT,
    HeldServer,
    clean_env,
    free_port,
    keepalive_timer,
    library,
    need_tool,
    unavailable,
)

CLI = SCRIPT or "keepalive-preload"
def near(value: float, idle: int) -> bool:
    """An armed keepalive timer counts down from idle: within 5 s below it."""
    return idle - 5 <= value <= idle


def preloaded(variant: str, **env: str) -> dict[str, str]:
    return clean_env(LD_PRELOAD=library(variant), **env)


def curl_timer(argv_prefix: list[str], env: dict[str, str]) -> float:
    """curl turns keepalive on itself (60 s) after socket(), before connect()."""
    curl = need_tool("curl")
    server = HeldServer()
    try:
        proc = subprocess.Popen([*argv_prefix, curl, "-sS", f"http://127.0.0.1:{server.port}/"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            timer = keepalive_timer(f"dport = :{server.port}")
            server.release.set()
            proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0
        return timer
    finally:
        server.close()


def test_curl_sets_its_own() -> None:
    assert near(curl_timer([], clean_env()), 60)


VARIANTS = ("connect", "listen", "socket")


@pytest.mark.parametrize("variant", VARIANTS)
def test_curl_keeps_its_own_by_default(variant: str) -> None:
    assert near(curl_timer([], preloaded(variant, TCP_KEEPIDLE="30")), 60)


@pytest.mark.parametrize("variant", VARIANTS)
def test_curl_forced(variant: str) -> None:
    env = preloaded(variant, TCP_KEEPIDLE="30", KEEPALIVE="force")
    assert near(curl_timer([], env), 30)


def test_run_values_win_over_curl() -> None:
    assert near(curl_timer([CLI, "run", "--idle", "30", "--"], clean_env()), 30)
    assert near(curl_timer([CLI, "run", "--client", "--idle", "30", "--"], clean_env()), 30)


def test_run_keep_program_settings() -> None:
    argv = [CLI, "run", "--idle", "30", "--keep-program-settings", "--"]
    assert near(curl_timer(argv, clean_env()), 60)


@contextlib.contextmanager
def redis_server(*options: str, prefix: list[str] | None = None,
                 env: dict[str, str] | None = None) -> Iterator[int]:
    """A redis-server on a free loopback port; yields the port; stopped after."""
    redis = need_tool("redis-server")
    port = free_port()
    argv = [*(prefix or []), redis, "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "", *options]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env or clean_env(), cwd="/tmp")
    try:
        for _ in range(100):  # bounded: up to 10 s for it to listen
            with contextlib.suppress(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
                break
            time.sleep(0.1)
        else:
            raise AssertionError("redis-server did not start")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def redis_cli_timer(prefix: list[str], env: dict[str, str]) -> float:
    """redis-cli sets its own 15 s keepalive after connecting; it blocks in
    BLPOP while the timer is read."""
    cli = need_tool("redis-cli")
    with redis_server("--tcp-keepalive", "0") as port:
        proc = subprocess.Popen([*prefix, cli, "-p", str(port), "BLPOP", "kp-none", "20"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            return keepalive_timer(f"dport = :{port}")
        finally:
            proc.kill()
            proc.wait()


def test_redis_cli_keeps_its_own_by_default() -> None:
    assert near(redis_cli_timer([], clean_env()), 15)
    for variant in VARIANTS:
        assert near(redis_cli_timer([], preloaded(variant, TCP_KEEPIDLE="60")), 15)


def test_redis_cli_forced() -> None:
    for variant in VARIANTS:
        env = preloaded(variant, TCP_KEEPIDLE="60", KEEPALIVE="force")
        assert near(redis_cli_timer([], env), 60)
    assert near(redis_cli_timer([CLI, "run", "--client", "--idle", "60", "--"], clean_env()), 60)


def redis_server_timer(prefix: list[str], env: dict[str, str]) -> float:
    """redis-server with `tcp-keepalive 300` sets it on each accepted socket."""
    with redis_server("--tcp-keepalive", "300", prefix=prefix, env=env) as port, \
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        conn.sendall(b"PING\r\n")
        assert conn.recv(100) == b"+PONG\r\n"
        return keepalive_timer(f"sport = :{port}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_redis_server_keeps_its_own_by_default(variant: str) -> None:
    assert near(redis_server_timer([], preloaded(variant, TCP_KEEPIDLE="20")), 300)


@pytest.mark.parametrize("variant", VARIANTS)
def test_redis_server_forced(variant: str) -> None:
    env = preloaded(variant, TCP_KEEPIDLE="20", KEEPALIVE="force")
    assert near(redis_server_timer([], env), 20)


def test_run_values_win_over_redis_server() -> None:
    assert near(redis_server_timer([CLI, "run", "--server", "--idle", "20", "--"],
                                   clean_env()), 20)


NODE_CLIENT = """
const net = require("net");
const s = net.connect(Number(process.argv[1]), "127.0.0.1", () => {
  s.setKeepAlive(true, 100000);
  console.log("ready");
});
setTimeout(() => s.destroy(), 20000);
"""


def node_timer(prefix: list[str], env: dict[str, str]) -> float:
    """Node's socket.setKeepAlive(true, 100000), after connecting: 100 s."""
    node = need_tool("node")
    server = HeldServer()
    try:
        proc = subprocess.Popen([*prefix, node, "-e", NODE_CLIENT, str(server.port)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=env)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            return keepalive_timer(f"dport = :{server.port}")
        finally:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    finally:
        server.close()


def test_node_keeps_its_own_by_default() -> None:
    assert near(node_timer([], clean_env()), 100)
    assert near(node_timer([], preloaded("connect", TCP_KEEPIDLE="12")), 100)


def test_run_values_win_over_node() -> None:
    assert near(node_timer([CLI, "run", "--client", "--idle", "12", "--"], clean_env()), 12)


# Programs that only turn SO_KEEPALIVE on (libpq, Java's setKeepAlive(true),
# Python's setsockopt(SO_KEEPALIVE)): they get our timers in the variants that
# cover their socket, the system's 7200 s otherwise.
def only_keepalive_expected(variant: str | None) -> int:
    return 7200 if variant in (None, "listen") else 30


def timer_as_expected(timer: float, variant: str | None) -> bool:
    """ss shows the system's 7200 s in whole minutes (119min)."""
    if only_keepalive_expected(variant) == 7200:
        return 7000 <= timer <= 7200
    return near(timer, 30)


JAVA_CLIENT = """
import java.net.Socket;
public class KpClient {
    public static void main(String[] args) throws Exception {
        Socket s = new Socket("127.0.0.1", Integer.parseInt(args[0]));
        s.setKeepAlive(true);
        System.out.println("ready");
        System.out.flush();
        s.getInputStream().read();
    }
}
"""


@pytest.fixture(scope="module")
def java_class(tmp_path_factory: pytest.TempPathFactory) -> str:
    javac = need_tool("javac")
    directory = tmp_path_factory.mktemp("java")
    (directory / "KpClient.java").write_text(JAVA_CLIENT)
    subprocess.run([javac, "KpClient.java"], cwd=directory, check=True, timeout=120,
                   capture_output=True)
    return str(directory)


@pytest.mark.parametrize("variant", [None, "connect", "listen", "socket"])
def test_java_set_keepalive_gets_our_timers(java_class: str, variant: str | None) -> None:
    java = need_tool("java")
    server = HeldServer()
    env = preloaded(variant, TCP_KEEPIDLE="30") if variant else clean_env()
    try:
        proc = subprocess.Popen([java, "-cp", java_class, "KpClient", str(server.port)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=env)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            timer = keepalive_timer(f"dport = :{server.port}")
        finally:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    finally:
        server.close()
    assert timer_as_expected(timer, variant), timer


@contextlib.contextmanager
def postgres() -> Iterator[int]:
    """A PostgreSQL cluster of our own, run as postgres in a temporary
    directory on a free port; stopped (pg_ctl, by its data directory) and
    removed after."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not bins:
        need_tool("pg_ctl")
    pg_ctl = bins[-1] if bins else "pg_ctl"
    initdb = os.path.join(os.path.dirname(pg_ctl), "initdb")
    if os.geteuid() != 0:
        unavailable("starting a postgres cluster as user postgres needs root")
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        unavailable("no postgres user (the postgresql package)")
    directory = tempfile.mkdtemp(prefix="kp-pg-", dir="/var/tmp")
    data = os.path.join(directory, "data")
    port = free_port()

    def as_postgres(*argv: str, check: bool = True) -> None:
        subprocess.run(list(argv), check=check, capture_output=True, timeout=120,
                       env=clean_env(), user=user.pw_uid, group=user.pw_gid, extra_groups=[])

    try:
        os.chown(directory, user.pw_uid, user.pw_gid)
        as_postgres(initdb, "-D", data, "-A", "trust", "-U", "postgres")
        as_postgres(pg_ctl, "-D", data, "-w", "-t", "60", "-l", os.path.join(directory, "log"),
                    "-o", f"-p {port} -k {directory} -c listen_addresses=127.0.0.1", "start")
        try:
            yield port
        finally:
            as_postgres(pg_ctl, "-D", data, "-m", "immediate", "stop", check=False)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_psql_gets_our_timers() -> None:
    """libpq turns SO_KEEPALIVE on with the system's timers: the README's
    `LD_PRELOAD=libkeepalive.so psql` gives it ours."""
    psql = need_tool("psql")
    with postgres() as port:
        for variant in (None, "connect", "listen", "socket"):
            env = preloaded(variant, TCP_KEEPIDLE="30") if variant else clean_env()
            proc = subprocess.Popen([psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                     "-c", "select pg_sleep(4)"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            try:
                timer = keepalive_timer(f"dport = :{port}")
            finally:
                proc.kill()
                proc.wait()
                if proc.stderr is not None:
                    proc.stderr.close()
            assert timer_as_expected(timer, variant), (variant, timer)


@pytest.mark.parametrize("variant", [None, "connect", "socket"])
def test_python_only_keepalive_gets_our_timers(variant: str | None) -> None:
    server = HeldServer()
    code = ("import socket, sys\n"
            "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)\n"
            "print('ready', flush=True)\n"
            "s.recv(1)\n")
    env = preloaded(variant, TCP_KEEPIDLE="30") if variant else clean_env()
    try:
        proc = subprocess.Popen(["python3", "-c", code, str(server.port)],
                                stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            timer = keepalive_timer(f"dport = :{server.port}")
        finally:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    finally:
        server.close()
    assert timer_as_expected(timer, variant), timer
