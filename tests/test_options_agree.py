"""The option table (src/c/options.def, written into the package as _table.py)
is what the libraries, the API and the command line all do.

Each row is checked against the real library: every boundary is accepted or
refused as the table says, the alias is read, and exactly the variants the
row names apply it; environ() takes exactly the table's options.
"""

from __future__ import annotations

import inspect

import pytest

import keepalive_preload
from keepalive_preload import _options
from support import Client, Server

pytestmark = pytest.mark.socket_level

OPTIONS = _options.OPTIONS


def test_environ_keywords_are_the_table() -> None:
    """environ() takes each row of the table by its name (and nothing else
    besides debug, force and base); its docstring lists them."""
    parameters = inspect.signature(keepalive_preload.environ).parameters.values()
    keywords = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]
    assert keywords == ["debug", "force", "base"]
    assert [p.kind for p in parameters][-1] is inspect.Parameter.VAR_KEYWORD
    for option in OPTIONS:
        value = option.minimum if option.default <= 0 else option.default
        env = keepalive_preload.environ("socket", debug=False, force=False, base={},
                                        **{option.name: value})
        assert env[option.variable] == str(value)
    with pytest.raises(TypeError, match="unexpected keyword argument 'idel'"):
        keepalive_preload.environ(idel=30)
    for option in OPTIONS:
        assert f"``{option.name}`` (``{option.variable}``" in (keepalive_preload.environ.__doc__
                                                                or "")


def test_variants_are_the_table() -> None:
    assert tuple(_options.LIBRARIES) == keepalive_preload.VARIANTS
    assert set(_options.WORDS.values()) == {"client", "server", "all"}
    for variant, word in _options.WORDS.items():
        assert keepalive_preload.path(word) == keepalive_preload.path(variant)


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.variable)
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


def a_value(option: _options.Option) -> int:
    """A valid value that no default and no system default is likely to equal."""
    return {"bytes": 1000 if option.maximum <= 32767 else 20000}.get(
        option.unit, min(option.maximum, option.minimum + 6))


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.variable)
@pytest.mark.parametrize("variant", _options.VARIANTS)
def test_variants_apply_exactly_their_options(client: Client, server: Server,
                                              option: _options.Option, variant: str,
                                              listener: int) -> None:
    value = a_value(option)
    env = {option.variable: str(value), "LIBKEEPALIVE_DEBUG": "1"}
    if variant == "listen":
        _, _, stderr = server(variant, **env)
    else:
        _, stderr = client(variant, "connect4", str(listener), **env)
    # What the library set on the socket: its per-socket lines (the
    # configuration line at load names every variable, applied or not).
    applied = [line for line in stderr.splitlines()
               if ": configuration: " not in line]
    said = any(f"{option.variable}={value}" in line.split() for line in applied)
    assert said == (variant in option.variants), stderr


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.alias], ids=lambda o: o.alias)
def test_alias_is_read_and_loses_to_the_name(client: Client, option: _options.Option,
                                             listener: int) -> None:
    assert option.alias is not None
    report, _ = client("socket", "connect4", str(listener), **{option.alias: "7"})
    assert report[option.variable] == 7
    report, _ = client("socket", "connect4", str(listener),
                       **{option.alias: "7", option.variable: "8"})
    assert report[option.variable] == 8
