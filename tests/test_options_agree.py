"""The C libraries and the Python package hold the same option table.

Read from the source (src/c/options.def) and checked against behaviour: each
boundary the Python table names is accepted or refused by the real library.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from keepalive_preload import _options
from support import Client

OPTIONS_DEF = Path(__file__).resolve().parent.parent / "src" / "c" / "options.def"
ROW = re.compile(r'^KP_OPTION\((\w+), "(\w+)", (?:"(\w+)"|NULL), (\w+), (\w+), (-?\d+), ')


def c_table() -> dict[str, tuple[int, int, int]]:
    if not OPTIONS_DEF.exists():
        pytest.skip("runs from a source checkout (src/c/options.def)")
    table = {}
    for line in OPTIONS_DEF.read_text().splitlines():
        match = ROW.match(line)
        if match:
            _, variable, _, low, high, default = match.groups()
            table[variable] = (int(low), 2**31 - 1 if high == "INT_MAX" else int(high),
                               int(default))
    return table


def test_same_variables_and_ranges() -> None:
    table = c_table()
    assert set(table) == {o.variable for o in _options.OPTIONS}
    for option in _options.OPTIONS:
        assert table[option.variable][:2] == (option.minimum, option.maximum), option.variable


@pytest.mark.parametrize("option", _options.OPTIONS, ids=lambda o: o.variable)
def test_library_accepts_exactly_what_python_accepts(client: Client, option: _options.Option,
                                                     listener: int) -> None:
    candidates = [option.minimum - 1, option.minimum, option.maximum, option.maximum + 1, -1, 0]
    for value in candidates:
        try:
            option.check(value)
            python_accepts = True
        except ValueError:
            python_accepts = False
        _, stderr = client("socket", "socket", **{option.variable: str(value)})
        assert (stderr == "") == python_accepts, (option.variable, value, stderr)
