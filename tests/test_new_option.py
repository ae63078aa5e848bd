"""A row added to the option table reaches every way in, or is refused by it in
one line; none drops it (DESIGN.md, "Layout": the option table).

In a scratch copy of the source tree, src/c/options.def gets two more rows
(TCP_LINGER2 and TCP_NOTSENT_LOWAT, as a contributor would add them: the rows
and nothing else). CMake builds the libraries and writes the Python table;
the package of the copy, with those, then runs in a child interpreter
(PYTHONPATH) against:

- the libraries: a preloaded process reads each option back with getsockopt;
- ``environ()``, ``run`` and ``env``: the variable is set;
- ``apply --dry-run``: the plan sets it on the socket states the row's
  ``live`` names, or says why not on the others;
- ``cgroup attach``: TCP_LINGER2's ``bpf_at`` is none (bpf_setsockopt does
  not take it): refused in one line, before any bpf(2); TCP_NOTSENT_LOWAT's
  is the established callback: a connection made in the cgroup has it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cgroup import Cgroup, cgroup, cgroup2, in_cgroup  # noqa: F401 - fixtures by name

from support import ROOT, TIMEOUT, c_compiler, clean_env, need_tool, one_line_error, unavailable

NAME, VARIABLE, FLAG = "linger2", "TCP_LINGER2", "--linger2"
#: The row, as a contributor adds it. bpf_at NONE: bpf_setsockopt refuses it.
#: live: listeners and connections in progress only (the kernel would take it
#: on any socket; narrower here so that `apply` must both set it and say why not).
ROW = (f'KP_OPTION(LINGER2, "{NAME}", "{VARIABLE}", NULL, 1, 120, 0, 0, "seconds", TCP_LINGER2, '
       "KP_ON_ALL, KP_UNRULED, KP_LIVE(LISTEN) | KP_LIVE(CONNECTING), "
       'KP_BPF_NONE, NULL, "how long an orphaned socket stays in FIN-WAIT-2")')
#: A second row, which bpf_setsockopt takes (Linux 6.0: "bpf: Add a few
#: optnames to bpf_setsockopt"): the cgroup program must set it.
LOWAT, LOWAT_VARIABLE, LOWAT_FLAG, LOWAT_VALUE = ("notsent_lowat", "TCP_NOTSENT_LOWAT",
                                                  "--notsent-lowat", 12345)
LOWAT_ROW = (f'KP_OPTION(NOTSENT_LOWAT, "{LOWAT}", "{LOWAT_VARIABLE}", NULL, 1, INT_MAX, 0, 0, '
             '"bytes", TCP_NOTSENT_LOWAT, KP_ON_ALL, KP_UNRULED, KP_LIVE(LISTEN) | '
             'KP_LIVE(CONNECTING) | KP_LIVE(CONNECTED), KP_BPF_ESTABLISHED, "6.0", '
             '"unsent bytes in the send queue above which the socket is not writable")')
#: The socket states of ``ss``/``status`` by the table's words for them.
STATES = {"LISTEN": "listen", "SYN-SENT": "connecting", "ESTABLISHED": "connected",
          "SYN-RECV": "connected"}
#: A value no socket has by default (net.ipv4.tcp_fin_timeout is 60).
VALUE = 37


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The copy's package, built: the environment that imports it."""
    if not (ROOT / "src" / "c" / "options.def").exists():
        unavailable("runs from a source checkout (src/c/options.def)")
    cmake = need_tool("cmake")
    top = tmp_path_factory.mktemp("new-option")
    tree = top / "tree"
    tree.mkdir()
    for part in ("src", "man"):
        shutil.copytree(ROOT / part, tree / part,
                        ignore=shutil.ignore_patterns("__pycache__", "_version.py", "_table.py"))
    shutil.copy(ROOT / "CMakeLists.txt", tree)
    table = tree / "src" / "c" / "options.def"
    rows = table.read_text().splitlines(keepends=True)
    last = max(i for i, line in enumerate(rows) if line.startswith("KP_OPTION("))
    rows[last + 1:last + 1] = [ROW + "\n", LOWAT_ROW + "\n"]
    table.write_text("".join(rows))
    build = top / "build"
    env = clean_env(CC=c_compiler())
    for argv in ([cmake, "-S", str(tree), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                  "-DKEEPALIVE_WERROR=ON"],
                 [cmake, "--build", str(build), "-j", str(os.cpu_count() or 1)]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    package = top / "site" / "keepalive_preload"
    shutil.copytree(tree / "src" / "python" / "keepalive_preload", package,
                    ignore=shutil.ignore_patterns("*.in", "*.pyi"))
    shutil.copy(build / "_table.py", package / "_table.py")
    (package / "_version.py").write_text('__version__ = "0+new-option"\n')
    (package / "lib").mkdir()
    for library in build.glob("*.so"):
        shutil.copy(library, package / "lib")
    return {**clean_env(), "PYTHONPATH": str(package.parent)}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keepalive_preload", *args],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env)


def python(env: dict[str, str], code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_table_has_the_row(scratch: dict[str, str]) -> None:
    """The copy's package is the one imported, and its table has the row."""
    row = json.loads(python(scratch, (
        "import json, keepalive_preload, keepalive_preload._options as o\n"
        "assert keepalive_preload.__version__ == '0+new-option', keepalive_preload.__file__\n"
        f"x = o.BY_NAME[{NAME!r}]\n"
        "print(json.dumps([x.variable, x.live, x.bpf_at, x.bpf_since, x.ruled, x.variants]))")))
    assert row == [VARIABLE, ["listen", "connecting"], None, None, False,
                   ["connect", "listen", "socket"]]
    lowat = json.loads(python(scratch, (
        "import json, keepalive_preload._options as o\n"
        f"x = o.BY_NAME[{LOWAT!r}]\n"
        "print(json.dumps([x.bpf_at, x.bpf_since]))")))
    assert lowat == ["established", [6, 0]]


#: Run preloaded: connect to the listener on port argv[1], print option argv[2].
_READ_BACK = ("import socket, sys\n"
              "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
              "print(s.getsockopt(socket.IPPROTO_TCP, getattr(socket, sys.argv[2])))\n")


@pytest.mark.parametrize(("variant", "flag", "variable", "value"), [
    ("client", FLAG, VARIABLE, VALUE), ("all", FLAG, VARIABLE, VALUE),
    ("all", LOWAT_FLAG, LOWAT_VARIABLE, LOWAT_VALUE)])
def test_the_libraries_set_it(scratch: dict[str, str], listener: int, variant: str, flag: str,
                              variable: str, value: int) -> None:
    """``run --VARIANT --FLAG VALUE``: the environment carries the variable
    and the library sets it on the process's connection (getsockopt)."""
    default = subprocess.run([sys.executable, "-c", _READ_BACK, str(listener), variable],
                             capture_output=True, text=True, timeout=TIMEOUT, check=True)
    assert int(default.stdout) != value
    result = cli(scratch, "run", f"--{variant}", flag, str(value), "--", sys.executable, "-c",
                 _READ_BACK, str(listener), variable)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == value


def test_environ_and_env_set_the_variable(scratch: dict[str, str]) -> None:
    got = python(scratch, "import keepalive_preload\n"
                 f"env = keepalive_preload.environ('socket', {NAME}={VALUE}, base={{}})\n"
                 f"print(env[{VARIABLE!r}])\n"
                 "try:\n"
                 f"    keepalive_preload.environ('socket', {NAME}=121)\n"
                 "except ValueError as exc:\n"
                 "    print(exc)\n")
    assert got.splitlines() == [str(VALUE), f"{NAME} ({VARIABLE}) must be 0 (system default) "
                                "or 1..120 seconds, not 121"]
    result = cli(scratch, "env", FLAG, str(VALUE))
    assert result.returncode == 0, result.stderr
    assert f"export {VARIABLE}={VALUE}\n" in result.stdout
    one_line_error(cli(scratch, "env", FLAG, "121"), 2, FLAG, "1..120")


def test_apply_plans_it_on_its_live_states(scratch: dict[str, str], listener: int) -> None:
    """``apply --dry-run``: the plan sets the option on the sockets whose
    state is in the row's ``live`` (the listener) and says why not on the
    others (the established connection)."""
    if os.geteuid() != 0:
        unavailable("apply reads another process's sockets: root (or ptrace rights)")
    with subprocess.Popen(
            [sys.executable, "-c", "import socket, sys\n"
             "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
             "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n"
             "print('ready', flush=True); sys.stdin.read()\n", str(listener)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_env()) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "ready\n"
            result = cli(scratch, "apply", "--dry-run", "--json", FLAG, str(VALUE),
                         str(holder.pid))
        finally:
            holder.kill()
    assert result.returncode == 0, result.stderr
    (report,) = json.loads(result.stdout)
    states = {}
    for sock in report["sockets"]:
        state = STATES[sock["state"]]
        states[state] = sock
        if state in ("listen", "connecting"):
            assert sock["set"].get(NAME) == VALUE, sock
            assert NAME not in sock.get("not_set", {}), sock
        else:
            assert NAME not in sock["set"], sock
            assert sock["not_set"][NAME], sock  # the reason, in words
    assert set(states) == {"listen", "connected"}


def test_cgroup_attach_refuses_it_in_one_line(scratch: dict[str, str], tmp_path: Path) -> None:
    """bpf_at NONE: refused with one line before any bpf(2) call (no root
    needed; the cgroup named does not even exist)."""
    result = cli(scratch, "cgroup", "attach", FLAG, str(VALUE), str(tmp_path / "kp-none"))
    one_line_error(result, 2, FLAG, VARIABLE)


def test_cgroup_attach_sets_it_at_its_callback(scratch: dict[str, str], cgroup: Cgroup,  # noqa: F811
                                                listener: int) -> None:
    """bpf_at established: a connection made from inside the cgroup has the
    option once established (the cgroup fixture detaches and removes it)."""
    attached = cli(scratch, "cgroup", "attach", LOWAT_FLAG, str(LOWAT_VALUE), cgroup.path)
    assert attached.returncode == 0, attached.stderr
    read = subprocess.run(in_cgroup(cgroup.path, [sys.executable, "-c", _READ_BACK,
                                                  str(listener), LOWAT_VARIABLE]),
                          capture_output=True, text=True, timeout=TIMEOUT, env=clean_env())
    assert read.returncode == 0, read.stderr
    assert int(read.stdout) == LOWAT_VALUE
