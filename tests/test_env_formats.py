"""env --format: each output read back the way its consumer reads it, and the
variables it carries really configure a socket.

- sh: eval in sh;
- systemd: ``systemd-analyze verify`` on a unit that uses the drop-in, and the
  Environment= lines parsed by the rules of systemd.syntax(7)/systemd.exec(5);
- docker: Dockerfile ENV lines parsed by the Dockerfile reference's rules;
- dotenv: parsed by the rules ``docker run --env-file`` documents.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

import keepalive_preload
from support import SCRIPT, TIMEOUT, clean_env, cli, need_tool, one_line_error, reports

ARGS = ["--client", "--preset", "aws-nlb", "--count", "3"]
EXPECTED = {"TCP_KEEPIDLE": "240", "TCP_KEEPINTVL": "20", "TCP_KEEPCNT": "3"}
# A library path that needs quoting in every format that can carry it.
ODD = '/opt/50%$HOME"\\x/libkeepalive.so'


# ---- parsers written from each consumer's documentation -------------------

def parse_systemd(text: str) -> dict[str, str]:
    """Environment= lines of a [Service] section: specifiers (%% is %), then
    words split on whitespace, double-quoted parts unquoted with C escapes."""
    env: dict[str, str] = {}
    section = None
    for line in text.splitlines():
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        assert section == "[Service]", line
        assert key == "Environment", line
        assert not re.search(r"%[^%]", value.replace("%%", "")), line  # no other specifier
        value = value.replace("%%", "\0")
        words, word, quoted, i = [], "", False, 0
        while i < len(value):
            ch = value[i]
            if ch == "\\" and quoted:
                i += 1
                word += {"n": "\n", "t": "\t"}.get(value[i], value[i])
            elif ch == '"':
                quoted = not quoted
            elif ch in " \t" and not quoted:
                if word:
                    words.append(word)
                word = ""
            else:
                word += ch
            i += 1
        assert not quoted, line
        words.append(word)
        for assignment in words:
            name, _, val = assignment.replace("\0", "%").partition("=")
            env[name] = val
    return env


def parse_dockerfile_env(text: str) -> dict[str, str]:
    """ENV key="value" instructions: double quotes removed, a backslash escapes
    the next character, and an unescaped $ would be substituted (refused here)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        assert instruction == "ENV", line
        name, _, raw = rest.partition("=")
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), line
        assert raw.startswith('"'), line
        assert raw.endswith('"'), line
        value, i = "", 1
        while i < len(raw) - 1:
            ch = raw[i]
            if ch == "\\":
                i += 1
                value += raw[i]
            else:
                assert ch not in '"$', f"unescaped {ch} in {line}"
                value += ch
            i += 1
        env[name] = value
    return env


def parse_env_file(text: str) -> dict[str, str]:
    """docker run --env-file: VAR=value lines taken literally (no quote
    removal); lines starting with # are comments; blank lines ignored."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, line
        assert not re.search(r"\s", name), line
        env[name] = value
    return env


def rendered(fmt: str, *args: str) -> str:
    result = cli("env", "--format", fmt, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def check_socket(env: dict[str, str], probe: str, listener: int) -> None:
    """The variables, as the consumer would pass them, configure a real socket."""
    result = subprocess.run([probe, "connect4", str(listener)], env=clean_env(**env),
                            capture_output=True, text=True, timeout=TIMEOUT)
    (report,) = reports(result.stdout)
    assert (report["SO_KEEPALIVE"], report["TCP_KEEPIDLE"], report["TCP_KEEPINTVL"],
            report["TCP_KEEPCNT"]) == (1, 240, 20, 3)


# ---- each format ----------------------------------------------------------

def test_sh_is_the_default_and_evals() -> None:
    assert rendered("sh", *ARGS) == cli("env", *ARGS).stdout
    shell = (f'eval "$({SCRIPT} env --format sh {" ".join(ARGS)})" && '
             'echo "$LD_PRELOAD $TCP_KEEPIDLE $TCP_KEEPINTVL $TCP_KEEPCNT"')
    out = subprocess.run(["sh", "-c", shell], env=clean_env(), capture_output=True, text=True,
                         timeout=TIMEOUT, check=True).stdout
    assert out == f"{keepalive_preload.path('connect')} 240 20 3\n"


def test_systemd_drop_in_verifies_and_parses(tmp_path: Path, probe: str, listener: int) -> None:
    analyze = need_tool("systemd-analyze")
    text = rendered("systemd", *ARGS)
    unit = tmp_path / "kp-test.service"
    unit.write_text(f"[Unit]\nDescription=test\n[Service]\nExecStart={probe} connect4 1\n")
    (tmp_path / "kp-test.service.d").mkdir()
    dropin = tmp_path / "kp-test.service.d" / "keepalive.conf"

    def verify(content: str) -> subprocess.CompletedProcess[str]:
        dropin.write_text(content)
        return subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)

    # The check is real: systemd-analyze reads the drop-in and complains.
    assert "kp-test.service.d/keepalive.conf" in verify('[Service]\nEnvironment="A=b\n').stderr
    result = verify(text)
    assert (result.returncode, result.stderr) == (0, "")
    env = parse_systemd(text)
    assert env == {"LD_PRELOAD": keepalive_preload.path("connect"), **EXPECTED}
    check_socket(env, probe, listener)


def test_systemd_quoting(tmp_path: Path) -> None:
    text = rendered("systemd", "--client", "--library", ODD)
    assert parse_systemd(text)["LD_PRELOAD"] == ODD


def test_docker_env_lines_parse(probe: str, listener: int) -> None:
    env = parse_dockerfile_env(rendered("docker", *ARGS))
    assert env == {"LD_PRELOAD": keepalive_preload.path("connect"), **EXPECTED}
    check_socket(env, probe, listener)
    assert parse_dockerfile_env(rendered("docker", "--client", "--library", ODD)) == {
        "LD_PRELOAD": ODD}


def test_dotenv_parses_as_docker_env_file(probe: str, listener: int) -> None:
    env = parse_env_file(rendered("dotenv", *ARGS))
    assert env == {"LD_PRELOAD": keepalive_preload.path("connect"), **EXPECTED}
    check_socket(env, probe, listener)


def test_dotenv_refuses_a_value_it_cannot_carry() -> None:
    one_line_error(cli("env", "--format", "dotenv", "--client", "--library", ODD), 2,
                   "--env-file cannot carry")


@pytest.mark.parametrize("fmt", ["systemd", "docker", "dotenv"])
def test_files_do_not_inherit_this_shells_preload(fmt: str) -> None:
    result = cli("env", "--format", fmt, env=clean_env(LD_PRELOAD="/opt/x/libfoo.so"))
    assert "libfoo" not in result.stdout
    assert result.stdout.count("LD_PRELOAD=") == 1


@pytest.mark.parametrize("fmt", ["systemd", "docker", "dotenv", "sh"])
def test_library_bare_name_for_the_packages(fmt: str) -> None:
    out = rendered(fmt, "--server", "--library", "libkeepalive_listen.so")
    assert re.search(r'LD_PRELOAD=("|\')?libkeepalive_listen\.so\b', out), out


def test_library_must_match_the_variant() -> None:
    one_line_error(cli("env", "--client", "--library", "/usr/lib/libkeepalive_socket.so"), 2,
                   "--library", "libkeepalive.so", "--client")


def test_python_version_path_is_pointed_out() -> None:
    if "/python3." not in keepalive_preload.path("socket"):
        pytest.skip("this installation's path has no Python version in it")
    result = cli("env", "--format", "systemd")
    assert result.returncode == 0
    (line,) = result.stderr.splitlines()
    assert "changes when Python is upgraded" in line
    assert "--library" in line
    assert cli("env", "--format", "systemd", "--library",
               "libkeepalive_socket.so").stderr == ""
    assert cli("env").stderr == ""  # sh: for this shell, now


# ---- the deploying guide's recipes are what the command prints -------------

README = Path(__file__).resolve().parent.parent / "docs" / "deploying.md"


def normalized(text: str) -> list[str]:
    return [re.sub(r"keepalive-preload \d[^:]*: ", "keepalive-preload VERSION: ", line)
            for line in text.splitlines()]


def test_readme_console_blocks_are_the_commands_output() -> None:
    blocks = re.findall(r"```console\n\$ keepalive-preload (env [^\n]*)\n(.*?)```",
                        README.read_text(), re.DOTALL)
    assert blocks
    for command, shown in blocks:
        result = cli(*shlex.split(command))
        assert result.returncode == 0, result.stderr
        assert normalized(result.stdout) == normalized(shown), command


def test_readme_dockerfile_env_lines_are_the_commands_output() -> None:
    (dockerfile,) = re.findall(r"```dockerfile\n(.*?)```", README.read_text(), re.DOTALL)
    (command,) = re.findall(r"^# from: keepalive-preload (env .*)$", dockerfile, re.MULTILINE)
    env_lines = [line for line in dockerfile.splitlines() if line.startswith("ENV ")]
    printed = cli(*shlex.split(command)).stdout
    assert env_lines == [line for line in printed.splitlines() if line.startswith("ENV ")]
