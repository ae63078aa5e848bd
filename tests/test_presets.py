"""--preset and the presets subcommand: the values are safe for each middlebox,
explicit options win, every command with the preload options takes it, and
the docs' table, the man page and the command say what the package's table
says, each preset with its source."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time

import pytest

from keepalive_preload._options import BY_NAME
from keepalive_preload.cli import args as args_module
from keepalive_preload.presets import PRESETS, Preset
from support import HELPERS, ROOT, SCRIPT, TIMEOUT, clean_env, cli, ending, one_line_error, reports

#: The middleboxes the issues name and their documented idle timeouts, seconds.
REQUIRED = {"aws-nlb": 350, "aws-gwlb": 350, "aws-nat": 350, "aws-conntrack": 350,
            "azure-lb": 240, "azure-nat": 240, "gcp-nat": 1200, "gcp-firewall": 600,
            "ipvs": 900, "docker-overlay": 900, "oracle-nlb": 360}
NAMES = [p.name for p in PRESETS]


def test_required_presets_and_their_timeouts() -> None:
    assert {p.name: p.timeout for p in PRESETS if p.name in REQUIRED} == REQUIRED


@pytest.mark.parametrize("preset", PRESETS, ids=NAMES)
def test_values_are_safely_below_the_timeout(preset: Preset) -> None:
    # On a live connection probes come every max(idle, interval), and after a
    # lost probe the next follows `interval` later: idle + interval must fit.
    assert max(preset.idle, preset.interval) < preset.timeout
    assert preset.idle + preset.interval <= preset.timeout * 3 // 4
    assert preset.interval < preset.idle
    assert 3 <= preset.count <= 9
    for name, value in preset.values().items():
        BY_NAME[name].check(value)
    assert preset.source.count("https://") == 1


@pytest.mark.parametrize("preset", PRESETS, ids=NAMES)
def test_env_preset_sets_the_values(preset: Preset) -> None:
    shell = (f'eval "$({SCRIPT} env --preset {preset.name})" && '
             'echo "$TCP_KEEPIDLE $TCP_KEEPINTVL $TCP_KEEPCNT ${TCP_USER_TIMEOUT-unset}"')
    out = subprocess.run(["sh", "-c", shell], env=clean_env(), capture_output=True, text=True,
                         timeout=TIMEOUT, check=True).stdout
    assert out == f"{preset.idle} {preset.interval} {preset.count} unset\n"


def test_explicit_options_win_over_the_preset() -> None:
    out = cli("env", "--preset", "aws-nlb", "--idle", "100", "--count", "3").stdout
    assert "export TCP_KEEPIDLE=100\n" in out
    assert "export TCP_KEEPINTVL=20\n" in out
    assert "export TCP_KEEPCNT=3\n" in out


def test_run_preset_on_a_real_socket(probe: str, listener: int) -> None:
    result = cli("run", "--client", "--preset", "azure-lb", "--", probe, "connect4",
                 str(listener))
    assert result.returncode == 0, result.stderr
    (report,) = reports(result.stdout)
    assert (report["SO_KEEPALIVE"], report["TCP_KEEPIDLE"], report["TCP_KEEPINTVL"],
            report["TCP_KEEPCNT"]) == (1, 150, 20, 5)
    # The user timeout is derived from the preset's values: (150 + 20 * 5) s.
    assert report["TCP_USER_TIMEOUT"] == 250_000


def test_unknown_preset_one_line_exit_2() -> None:
    one_line_error(cli("run", "--preset", "aws", "--", "true"), 2, "--preset",
                   "unknown preset 'aws'", "aws-nlb")


def test_every_preload_parser_takes_preset() -> None:
    # apply and cgroup attach build on _add_preload_options: the preset's values
    # are in the namespace like options given, explicit ones win in either order.
    parser = argparse.ArgumentParser()
    args_module.add_preload_options(parser)
    for argv in (["--preset", "gcp-nat", "--interval", "45"],
                 ["--interval", "45", "--preset", "gcp-nat"]):
        args = parser.parse_args(argv)
        assert (args.idle, args.interval, args.count, args.user_timeout) == (800, 45, 5, None)
        assert args_module.chosen_values(args)["interval"] == 45
    assert parser.parse_args([]).idle is None


def test_preset_twice_is_an_error() -> None:
    one_line_error(cli("env", "--preset", "ipvs", "--preset", "aws-nat"), 2,
                   "--preset given twice")


def test_env_file_header_names_explicit_options_only() -> None:
    out = cli("env", "--format", "dotenv", "--preset", "ipvs", "--count", "3").stdout
    assert out.splitlines()[0].endswith("env --format dotenv --all --preset ipvs --count 3")


def test_presets_subcommand_lists_every_preset() -> None:
    result = cli("presets")
    assert result.returncode == 0
    rows = {line.split()[0]: line.split()[1:6] for line in result.stdout.splitlines()[1:]
            if line and line.split()[0] in NAMES}
    assert rows == {p.name: [f"{p.timeout}s", f"{p.idle}s", f"{p.interval}s", str(p.count),
                             f"{p.idle + p.interval * p.count}s"] for p in PRESETS}
    # Each with its source: the page's title and address.
    sources = result.stdout.split("Sources of the timeouts:\n")[1].splitlines()
    assert sources == [f"  {p.name}: {p.source}" for p in PRESETS]
    for p in PRESETS:
        assert re.search(r'"[^"]+"', p.source) or "ip_vs_proto_tcp.c" in p.source, p.name


def test_former_name_still_accepted() -> None:
    out = cli("env", "--preset", "gce-firewall").stdout
    assert "export TCP_KEEPIDLE=400\n" in out
    assert "gce-firewall" not in cli("presets").stdout


def docs_table() -> list[tuple[str, ...]]:
    """The presets table rows of the documentation (README.md or docs/)."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    rows: list[tuple[str, ...]] = []
    for path in texts:
        if path.exists():
            rows += re.findall(r"^\| `([a-z-]+)` \| (\d+) s \| (\d+) \| (\d+) \| (\d+) \| "
                               r"(\d+) s \| (.+) \|$", path.read_text(), re.MULTILINE)
    return rows


def test_docs_table_matches_the_package() -> None:
    rows = docs_table()
    assert {r[0]: tuple(int(v) for v in r[1:6]) for r in rows} == {
        p.name: (p.timeout, p.idle, p.interval, p.count, p.idle + p.interval * p.count)
        for p in PRESETS}
    for row in rows:  # each row cites its source page
        assert "https://" + PRESETS_BY_NAME[row[0]].source.split("https://")[1] in row[6]


def test_man_page_lists_every_preset() -> None:
    page = (ROOT / "man" / "keepalive-preload.1").read_text()
    for p in PRESETS:
        assert re.search(rf"^\.B {re.escape(p.name)}\n.*{p.timeout} s.*idle {p.idle}, "
                         rf"interval {p.interval}, count {p.count}", page, re.MULTILINE), p.name
        url = p.source.split("https://")[1].replace("-", "\\-")
        assert f"https://{url}" in page, p.name


PRESETS_BY_NAME = {p.name: p for p in PRESETS}


def test_probes_on_a_live_connection_come_every_max_idle_interval(listener: int) -> None:
    """The rule the presets rest on: after the first probe (at idle = 1 s) is
    answered, the next comes `interval` (3 s) later, not `idle` later — the
    armed timer still has more than idle to run 1.8 s in."""
    proc = subprocess.Popen(
        [SCRIPT or "keepalive-preload", "run", "--idle", "1", "--interval", "3", "--",
         sys.executable, str(HELPERS / "idle_client.py"), "127.0.0.1", str(listener)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_env())
    with ending(proc):
        assert proc.stdout is not None
        fd = json.loads(proc.stdout.readline())["fd"]
        time.sleep(1.8)  # the first probe went out at ~1 s and was answered
        (data,) = json.loads(cli("status", "--json", str(proc.pid)).stdout)
        (sock,) = [s for s in data["sockets"] if s["fd"] == fd]
        assert sock["timer"] == "keepalive"
        assert 1.3 < sock["expires_in"] <= 3.0, sock
