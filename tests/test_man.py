"""The man pages: clean for groff, complete for the command and the libraries,
and found by ``man`` in the installed venv (the wheel ships them)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keepalive_preload import cli as _cli
from keepalive_preload._options import OPTIONS
from support import ROOT, TIMEOUT, need_tool

PAGES = {1: ROOT / "man" / "keepalive-preload.1", 7: ROOT / "man" / "keepalive-preload.7"}


@pytest.mark.parametrize("section", PAGES)
def test_groff_has_no_warnings(section: int) -> None:
    groff = need_tool("groff")
    result = subprocess.run([groff, "-ww", "-z", "-t", "-mandoc", str(PAGES[section])],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("section", PAGES)
def test_man_warnings(section: int) -> None:
    man = need_tool("man")
    result = subprocess.run([man, "--warnings", "-l", str(PAGES[section])], capture_output=True,
                            text=True, timeout=TIMEOUT,
                            env={"PATH": os.environ.get("PATH", ""), "MANWIDTH": "80",
                                 "MANPAGER": "cat", "LC_ALL": "C.UTF-8"})
    assert result.returncode == 0
    assert result.stderr == ""
    assert "keepalive-preload" in result.stdout


def subcommands() -> list[str]:
    parser = _cli.parser()
    (action,) = [a for a in parser._actions if a.dest == "subcommand"]
    assert action.choices is not None
    return list(action.choices)


def test_section_1_has_every_subcommand_and_exit_status() -> None:
    page = PAGES[1].read_text()
    for name in subcommands():
        assert f"\n.SS {name}\n" in page, name
        assert re.search(rf"^\.B keepalive-preload {name}\b", page, re.MULTILINE), name
    for status in ("0", "1", "2", "126", "127"):
        assert f"\n.B {status}\n" in page
    assert ".SH EXAMPLES" in page


def test_section_1_documents_every_option_with_its_range() -> None:
    page = PAGES[1].read_text().replace("\\-", "-")
    for option in OPTIONS:
        entry = page.split(f".BI {option.flag} ")[1].split(".TP")[0]
        assert f"{option.minimum}..{option.maximum}" in entry, option.flag
        assert option.variable in entry, option.flag
    for flag in ("--preset", "--debug", "--format", "--library"):
        assert flag in page


def test_section_7_gives_every_range_and_a_daemon_example() -> None:
    page = PAGES[7].read_text()
    for option in OPTIONS:
        entry = re.split(rf"\.TP\n\.BR? {option.variable}\b", page)[1].split(".TP")[0]
        assert f"{option.minimum}..{option.maximum}" in entry, option.variable
    example = page.split("# systemctl edit myservice")[1].split(".fi")[0]
    assert "LD_PRELOAD=libkeepalive_socket.so" in example
    assert "LD_PRELOAD=libkeepalive.so" not in example


def test_wheel_installs_the_pages_where_man_finds_them() -> None:
    """man-db looks beside each PATH entry: <venv>/bin -> <venv>/share/man."""
    man = need_tool("man")
    bindir = os.path.dirname(sys.executable)
    prefix = Path(sys.prefix)
    for section in PAGES:
        page = prefix / "share" / "man" / f"man{section}" / f"keepalive-preload.{section}"
        assert page.read_bytes() == PAGES[section].read_bytes()
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/nonexistent"}
    for args, section in ((["keepalive-preload"], 1), (["1", "keepalive-preload"], 1),
                          (["7", "keepalive-preload"], 7)):
        found = subprocess.run([man, "-w", *args], capture_output=True, text=True,
                               timeout=TIMEOUT, env=env, cwd="/")
        assert found.returncode == 0, found.stderr
        assert Path(found.stdout.strip()) == \
            prefix / "share" / "man" / f"man{section}" / f"keepalive-preload.{section}"
    shown = subprocess.run([man, "1", "keepalive-preload"], capture_output=True, text=True,
                           timeout=TIMEOUT, cwd="/",
                           env={**env, "MANPAGER": "cat", "MANWIDTH": "80"})
    assert shown.returncode == 0
    assert "presets" in shown.stdout
