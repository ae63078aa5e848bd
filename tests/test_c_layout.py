"""The C core's shape (issue 19): the option table expanded once in the
libraries' sources, and no cycle between the C files (a file that calls a
function defined in another depends on it; the dependencies form no loop)."""

from __future__ import annotations

import re

from support import ROOT, unavailable

SOURCES = ROOT / "src" / "c"
DEFINITION = re.compile(r"^[A-Za-z_][\w \*]*?\b(kp_\w+)\([^;]*$", re.MULTILINE)
CALL = re.compile(r"\b(kp_\w+)\s*\(")


def sources() -> dict[str, str]:
    if not SOURCES.exists():
        unavailable("runs from a source checkout (src/c)")
    return {path.name: path.read_text() for path in sorted(SOURCES.glob("*.c"))}


def test_option_table_expanded_once() -> None:
    expanding = [name for name, text in sources().items() if '#include "options.def"' in text]
    assert expanding == ["options.c"]


def test_no_cycle_between_c_files() -> None:
    files = sources()
    defined = {function: name for name, text in files.items()
               for function in DEFINITION.findall(text)}
    assert {"kp_apply", "kp_config"} <= defined.keys(), defined
    needs = {name: {defined[f] for f in CALL.findall(text) if defined.get(f, name) != name}
             for name, text in files.items()}

    def visit(name: str, path: list[str]) -> None:
        assert name not in path, " -> ".join([*path, name])
        for other in needs[name]:
            visit(other, [*path, name])

    for name in files:
        visit(name, [])
