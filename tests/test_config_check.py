"""`keepalive-preload config --check [FILE]` and keepalive_preload.hostconfig:
a configuration file judged by the libraries' own parser (a library loaded
into /bin/true in a child), every problem with its line, exit 0/1, usage
errors 2; what another user wrote never reaches the terminal raw."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from keepalive_preload import hostconfig
from keepalive_preload._options import OPTIONS
from support import clean_env, cli, one_line_error

BAD = ("# a comment\n"
       "TCP_KEEPIDLE=30\n"
       "FOO=1\n"
       "TCP_KEEPCNT=abc\n"
       "no equals sign\n"
       "\n"
       "KEEPALIVE=maybe\n"
       "TCP_KEEPINTVL=10\n")
#: The lines of BAD the libraries complain about, and a word of each complaint.
BAD_LINES = {3: "FOO", 4: "TCP_KEEPCNT", 5: "NAME=VALUE", 7: "KEEPALIVE"}


def conf(tmp_path: Path, text: str | bytes, mode: int = 0o644,
         name: str = "keepalive-preload.conf") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(mode)
    return path


def test_every_problem_with_its_line(tmp_path: Path) -> None:
    path = conf(tmp_path, BAD)
    result = cli("config", "--check", str(path))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    problems = [line for line in lines if line.startswith(f"{path}:") and
                line.split(":")[1].isdigit()]
    assert [int(line.split(":")[1]) for line in problems] == list(BAD_LINES)
    for line, (number, word) in zip(problems, BAD_LINES.items()):
        assert line.startswith(f"{path}:{number}: ")
        assert word in line
    assert f"{path}: 4 problems" in lines
    assert result.stderr == ""


def test_a_clean_file(tmp_path: Path) -> None:
    path = conf(tmp_path, "# values\nTCP_KEEPIDLE=30\nKEEPIDLE=40\nKEEPALIVE=force\n")
    result = cli("config", "--check", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == f"{path}: no problems"


def test_the_file_as_a_whole(tmp_path: Path) -> None:
    """Problems that have no line: the file cannot be read, or is not trusted."""
    missing = tmp_path / "missing.conf"
    result = cli("config", "--check", str(missing))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith(f"{missing}: cannot read")
    writable = conf(tmp_path, "TCP_KEEPIDLE=30\n", mode=0o666)
    result = cli("config", "--check", str(writable))
    assert result.returncode == 1
    assert "writable by group or others" in result.stdout


def test_json(tmp_path: Path) -> None:
    path = conf(tmp_path, BAD)
    result = cli("config", "--check", "--json", str(path))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["path"] == str(path)
    assert [p["line"] for p in report["problems"]] == list(BAD_LINES)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    one_line_error(cli("config"), 2, "--check")
    one_line_error(cli("config", "--check", "a", "b"), 2, "unrecognized arguments")
    one_line_error(cli("config", "--check", ""), 2, "FILE is empty")


def test_escaped_output(tmp_path: Path) -> None:
    """A file name and a line that another user chose print escaped."""
    evil = "\x1b[2J\x1b[31mEVIL"
    path = conf(tmp_path, f"{evil}=1\nTCP_KEEPIDLE={evil}\n".encode(), name=f"x{evil}.conf")
    result = cli("config", "--check", str(path))
    assert result.returncode == 1
    assert "\x1b" not in result.stdout
    assert "\x1b" not in result.stderr
    assert "\\x1b[2J" in result.stdout  # the file name, escaped
    missing = cli("config", "--check", str(tmp_path / f"y{evil}"))
    assert missing.returncode == 1
    assert "\x1b" not in missing.stdout


def test_values_the_library_reads(tmp_path: Path) -> None:
    """The values part, from the libraries' configuration line: the file's
    values over the defaults, the environment of the caller playing no part."""
    path = conf(tmp_path, "TCP_KEEPIDLE=30\nKEEPINTVL=10\nKEEPALIVE=force\n")
    checked = hostconfig.read(str(path), strict=False)
    if not checked.reported:
        pytest.skip("this build's libraries print no configuration line with "
                    "LIBKEEPALIVE_DEBUG=1 (issue 20 adds it)")
    assert checked.mode == "force"
    defaults = {o.name: o.default for o in OPTIONS}
    assert checked.values == {**defaults, "idle": 30, "interval": 10}
    result = cli("config", "--check", str(path), env=clean_env(TCP_KEEPIDLE="5"))
    assert "in effect: KEEPALIVE=force TCP_KEEPIDLE=30 TCP_KEEPINTVL=10 " in result.stdout


def test_strict_read_needs_the_configuration_line(tmp_path: Path) -> None:
    path = conf(tmp_path, "TCP_KEEPIDLE=30\n")
    if hostconfig.read(str(path), strict=False).reported:
        assert hostconfig.read(str(path)).values["idle"] == 30
    else:
        with pytest.raises(hostconfig.HostConfigError, match="configuration line"):
            hostconfig.read(str(path))


# ---- the parser of the library's lines -------------------------------------

LINE = ("libkeepalive: configuration: KEEPALIVE=on " +
        " ".join(f"{o.variable}={o.default}" for o in OPTIONS))


def test_parse_the_configuration_line() -> None:
    problems, mode, values = hostconfig.parse(
        "libkeepalive: /etc/kp.conf:3: ignoring TCP_KEEPCNT='1:2: x'; using 9\n"
        "libkeepalive: ignoring the configuration file /etc/kp:1: x: writable by group\n"
        + LINE + "\n", "/etc/kp.conf")
    assert problems == [
        hostconfig.Problem(3, "ignoring TCP_KEEPCNT='1:2: x'; using 9"),
        hostconfig.Problem(None, "ignoring the configuration file /etc/kp:1: x: "
                                 "writable by group")]
    assert mode == "on"
    assert values == {o.name: o.default for o in OPTIONS}


@pytest.mark.parametrize("broken", [
    LINE.replace("KEEPALIVE=on", "KEEPALIVE=sometimes"),
    LINE.replace(f"{OPTIONS[0].variable}={OPTIONS[0].default}", ""),
    LINE.replace(f"{OPTIONS[0].variable}={OPTIONS[0].default}", f"{OPTIONS[0].variable}=x"),
])
def test_parse_refuses_a_broken_configuration_line(broken: str) -> None:
    with pytest.raises(hostconfig.HostConfigError):
        hostconfig.parse(broken + "\n")


def test_default_file_is_the_libraries_default() -> None:
    result = cli("config", "--check")
    assert result.returncode in (0, 1)
    assert result.stdout.startswith(hostconfig.DEFAULT_PATH)
    assert os.path.isabs(hostconfig.DEFAULT_PATH)
