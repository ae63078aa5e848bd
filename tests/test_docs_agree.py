"""The prose docs repeat the option table where a reader needs it (the
README's Configuration table, keepalive-preload(7)); they must say what the
table in src/c/options.def says: names, aliases, ranges, defaults, variants."""

from __future__ import annotations

import re

import pytest

from keepalive_preload import _options
from support import ROOT

OPTIONS = _options.OPTIONS


def source(relative: str) -> str:
    path = ROOT / relative
    if not path.exists():
        pytest.skip(f"runs from a source checkout ({relative})")
    return path.read_text()


def readme_rows() -> dict[str, list[str]]:
    text = source("README.md")
    section = text[text.index("## Configuration"):]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 6:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.variable)
def test_readme_table(option: _options.Option) -> None:
    alias, _unit, default, allowed, applied = readme_rows()[option.variable]
    assert alias == (option.alias or "")
    assert default == str(option.default)
    assert f"{option.minimum}..{option.maximum}" in allowed
    expected = ("all" if set(option.variants) == set(_options.VARIANTS)
                else ", ".join(option.variants))
    assert applied == expected


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.variable)
def test_man_page_entry(option: _options.Option) -> None:
    page = source("man/keepalive-preload.7")
    head = (rf'\.BR {option.variable} " \(alias " {option.alias} \)' if option.alias
            else rf"\.B {option.variable}")
    match = re.search(rf"^\.TP\n{head}\n(.*?)(?=^\.TP|^\.PP|^\.SH)", page, re.M | re.S)
    assert match, option.variable
    entry = " ".join(match.group(1).split())
    assert f"{option.minimum}..{option.maximum}" in entry
    assert f"default {option.default}" in entry or (
        option.default == -1 and r"default, \-1" in entry)
    for variant in set(_options.VARIANTS) - set(option.variants):
        assert _options.LIBRARIES[variant] not in entry
