"""The installed package's imports: no cycle, no function-level import that
dodges one, and each subcommand imports only what it needs (DESIGN.md,
"Layout" and "Python package").

The walk is static (ast over every module of the installed package, the
package ``__init__`` modules included): an import that only runs in some
code path is still an edge.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import keepalive_preload

PACKAGE = "keepalive_preload"
PACKAGE_DIR = Path(keepalive_preload.__file__).resolve().parent

#: Modules a function may import on first use, and why: a heavy standard-library
#: module that most subcommands (and importers of the package) never need.
#: Never one of the package's own modules.
LAZY_ALLOWED = {
    "ctypes": "the raw system calls (bpf, pidfd): loads libffi; only status/apply/cgroup",
    "socket": "Option.optname: socket imports enum and selectors; only status/apply/cgroup",
}


def modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((PACKAGE, *parts))] = path
    return found


MODULES = modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class Imports(ast.NodeVisitor):
    """The imports of one module: at import time (``edges``: the package's
    modules it runs first), and inside functions (``lazy``: (line, module))."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.edges: set[str] = set()
        self.lazy: list[tuple[int, str]] = []
        self._depth = 0

    def _function(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if _type_checking_only(node):  # never runs: not an edge
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _add(self, target: str, *, names_from_it: bool, line: int) -> None:
        if self._depth:
            self.lazy.append((line, target))
            return
        if target.split(".")[0] != PACKAGE:
            return
        # Importing a.b.c runs a, a.b and a.b.c; the importer's own packages
        # are already being run (they come before it), so they count only
        # when it takes names from them (`from .. import environ`).
        mine = set(_ancestors(self.name))
        for module in [*_ancestors(target), target]:
            if module == self.name or module not in MODULES:
                continue
            if module not in mine or (module == target and names_from_it):
                self.edges.add(module)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, names_from_it=False, line=node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.name.split(".")
            if not _is_package(self.name):
                base = base[:-1]
            base = base[:len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if source == "__future__":
            return
        submodules = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in MODULES]
        names = len(submodules) < len(node.names)
        self._add(source, names_from_it=names, line=node.lineno)
        for module in submodules:
            self._add(module, names_from_it=False, line=node.lineno)


def graph() -> dict[str, Imports]:
    found = {}
    for name, path in MODULES.items():
        visitor = Imports(name)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        found[name] = visitor
    return found


GRAPH = graph()


def test_the_walk_sees_the_layout() -> None:
    """The walk finds the layout's modules and their imports (a walk that saw
    nothing would find no cycle)."""
    for name in ("keepalive_preload", "keepalive_preload._options", "keepalive_preload.cli",
                 "keepalive_preload.cli.args", "keepalive_preload.cli.run",
                 "keepalive_preload.preload.execute", "keepalive_preload.live",
                 "keepalive_preload.cgroup"):
        assert name in MODULES
    assert "keepalive_preload._options" in GRAPH["keepalive_preload"].edges
    assert "keepalive_preload._table" in GRAPH["keepalive_preload._options"].edges
    # `from .. import environ` takes a name from the package: an edge to it
    assert "keepalive_preload" in GRAPH["keepalive_preload.cli.args"].edges
    assert "keepalive_preload.cli.args" in GRAPH["keepalive_preload.cli.run"].edges
    assert "keepalive_preload.preload.execute" in GRAPH["keepalive_preload.cli.run"].edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``edges`` as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle() -> None:
    cycle = _cycle({name: imports.edges for name, imports in GRAPH.items()})
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_function_level_import(name: str) -> None:
    """A function imports no module of the package (an import deferred to
    dodge a cycle), and of the standard library only the heavy modules
    LAZY_ALLOWED names."""
    bad = [f"{MODULES[name]}:{line}: {module}" for line, module in GRAPH[name].lazy
           if module.split(".")[0] not in LAZY_ALLOWED]
    assert not bad, "function-level imports: " + ", ".join(bad)


# ---- what running a subcommand imports ---------------------------------------

#: Imported by no subcommand that does not use it (run, env, path, presets).
HEAVY = ("keepalive_preload.live", "keepalive_preload.cgroup", "json", "ctypes", "subprocess")


#: Runs the command line in a bare interpreter (-I -S: no site, so nothing of the
#: environment is imported first) and writes on stderr the modules loaded when it
#: replaces itself with the command or exits; a subcommand's module is imported
#: by importlib, which -X importtime does not see, so sys.modules is what counts.
_DRIVER = """
import os, sys
sys.path.insert(0, sys.argv.pop(1))
def report(*_):
    sys.stderr.write("MODULES " + " ".join(sorted(sys.modules)) + "\\n")
    sys.stderr.flush()
execve = os.execve
def exec_and_report(*args):
    report()
    execve(*args)
os.execve = exec_and_report
before = set(sys.modules)
sys.stderr.write("BEFORE " + " ".join(sorted(before)) + "\\n")
import atexit
atexit.register(report)
from keepalive_preload.cli import main
sys.exit(main(sys.argv[1:]))
"""


def imported(*command: str) -> tuple[set[str], set[str]]:
    """The modules loaded before the package and those loaded once ``command``
    (the words after ``keepalive-preload``, or ``[]`` for importing the
    package only) has run."""
    code = _DRIVER if command else _DRIVER.replace("from keepalive_preload.cli import main\n"
                                                   "sys.exit(main(sys.argv[1:]))",
                                                   "import keepalive_preload")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(PACKAGE_DIR.parent),
                             *command], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stderr.splitlines()
                 if line.startswith(("BEFORE ", "MODULES ")))
    assert PACKAGE in lines["MODULES"].split(), result.stderr
    return set(lines["BEFORE"].split()), set(lines["MODULES"].split())


@pytest.mark.parametrize("command", [["path"], ["run", "--", "/bin/true"], ["env"],
                                     ["presets"]], ids=" ".join)
def test_subcommand_imports_only_what_it_needs(command: list[str]) -> None:
    _, names = imported(*command)
    assert f"{PACKAGE}.cli.{command[0]}" in names
    heavy = [n for n in names if n in HEAVY or n.startswith(tuple(h + "." for h in HEAVY))]
    assert not heavy, f"{' '.join(command)} imports {heavy}"
    if command[0] in ("run", "path"):  # in front of every program: not even these
        assert not {"typing", "shutil"} & names, sorted({"typing", "shutil"} & names)
    others = [n for n in names if n.startswith(f"{PACKAGE}.cli.")
              and n not in (f"{PACKAGE}.cli.{command[0]}", f"{PACKAGE}.cli.args")]
    assert not others, f"{' '.join(command)} imports other subcommands: {others}"


def test_importing_the_package_is_cheap() -> None:
    """``import keepalive_preload`` imports neither re nor typing (the bulk of
    its time before), nor anything of the command line or the live/cgroup
    modes."""
    before, after = imported()
    names = after - before
    assert "re" not in after, sorted(names)
    assert "typing" not in after, sorted(names)
    assert "re" in imported("path")[1]  # argparse's: the check sees it when it is there
    assert sorted(n for n in names if n.startswith(PACKAGE)) == [
        PACKAGE, f"{PACKAGE}._options", f"{PACKAGE}._table", f"{PACKAGE}._version"]
