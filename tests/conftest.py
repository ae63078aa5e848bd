"""Fixtures shared by the test files; the helpers they use are in support.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from support import (
    ENTRY_POINTS,
    HELPERS,
    Client,
    Release,
    Server,
    clean_env,
    compile_helper,
    static_helper,
    stop,
    unavailable,
)

if TYPE_CHECKING:
    from netns import Hosts

#: The markers of whole test modules, in one place (pyproject.toml registers
#: them): a fast local run is `pytest -m "not release and not slow"`.
#: release: builds or needs the release artefacts; slow: over ~20 s on its own.
MODULE_MARKERS = {
    "test_release": ("release", "slow"),
    "test_packages": ("release", "slow", "root"),
    "test_upgrade_0_3": ("release", "slow", "root"),
    "test_sanitizers": ("slow",),
    "test_source_build": ("slow",),
    "test_fuzz": ("slow",),
    "test_benchmark": ("slow",),
    "test_dead_peer": ("slow", "kernel"),
    "test_secure_mode": ("root",),
    # kernel: rerun on every kernel of the VM matrix (tests/vm/run, tests/vm/README.md)
    "test_cgroup": ("kernel",),
    "test_cgroup_kernels": ("kernel",),
    "test_status": ("kernel",),
    "test_apply": ("kernel",),
    "test_options": ("kernel",),
    "test_precedence": ("kernel",),
}
#: Markers that follow from the fixtures a test uses.
FIXTURE_MARKERS = {
    "hosts": ("netns", "root"),
    "cgroup2": ("root",),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test as MODULE_MARKERS and FIXTURE_MARKERS say."""
    for item in items:
        names = set(MODULE_MARKERS.get(item.path.stem, ()))
        for fixture in getattr(item, "fixturenames", ()):
            names.update(FIXTURE_MARKERS.get(fixture, ()))
        for name in sorted(names):
            item.add_marker(name)

@pytest.fixture(scope="session")
def probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/helpers/probe.c: one socket call, reported as JSON."""
    return compile_helper(tmp_path_factory, "probe.c")


@pytest.fixture(scope="session")
def static_probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/helpers/probe.c, linked statically: LD_PRELOAD cannot reach it."""
    return static_helper(tmp_path_factory, "probe.c")


@pytest.fixture(scope="session")
def own_keepalive(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/helpers/own_keepalive.c: a program that sets its own keepalive."""
    return compile_helper(tmp_path_factory, "own_keepalive.c")


@pytest.fixture(scope="session")
def failsockopt(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/helpers/failsockopt.c: a preload shim whose setsockopt fails."""
    return compile_helper(tmp_path_factory, "failsockopt.c", "-shared", "-fPIC")


@pytest.fixture
def listener() -> Iterator[int]:
    """A loopback TCP listener in this (unpreloaded) process; yields its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(64)
        yield srv.getsockname()[1]


@pytest.fixture
def listener6() -> Iterator[int]:
    if not socket.has_ipv6:
        unavailable("no IPv6 on this machine")
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as srv:
        try:
            srv.bind(("::1", 0))
        except OSError as exc:
            unavailable(f"cannot bind [::1]: {exc}")
        srv.listen(64)
        yield srv.getsockname()[1]


@pytest.fixture
def client(probe: str) -> Client:
    return Client(probe)


@pytest.fixture
def server(probe: str) -> Server:
    return Server(probe)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    """Two test hosts in network namespaces behind a switch (tests/netns.py);
    torn down after the test, whatever happens."""
    from netns import Hosts

    net = Hosts()
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    return Release(tmp_path_factory.mktemp("release"))


@pytest.fixture
def idle_client(listener: int) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """A client started by `keepalive-preload run --idle 5 --interval 2`, connected
    to the listener and idle; yields it and what it read back on its socket."""
    proc = subprocess.Popen(
        [*ENTRY_POINTS["script"], "run", "--idle", "5", "--interval", "2", "--", sys.executable,
         str(HELPERS / "idle_client.py"), "127.0.0.1", str(listener)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        assert proc.stdout is not None
        yield proc, json.loads(proc.stdout.readline())
    finally:
        stop(proc)
