"""The plain forms of ``run`` and ``path`` that the command reads without
argparse (keepalive_preload.cli.console) mean exactly what the full command
line (cli.dispatch) reads from the same words; every other form goes to the
full command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from keepalive_preload._options import OPTIONS, VARIANTS, WORDS
from keepalive_preload.cli import plain_run
from keepalive_preload.cli.args import chosen_values
from keepalive_preload.cli.dispatch import parser
from support import cli

PLAIN = [
    ["--", "/bin/true"],
    ["/bin/true", "--idle", "5"],
    ["--idle", "30", "--", "cmd", "--count", "2"],
    ["--idle=30", "--interval", "5", "--count=4", "cmd"],
    ["--user-timeout", "-1", "cmd"],
    ["--user-timeout", "0", "--idle", "7", "--idle", "8", "cmd"],
    ["--client", "--syn-count", "3", "--", "-x"],
    ["--server", "--defer-accept", "5", "cmd"],
    ["--client", "--client", "--debug", "cmd"],
    ["--keep-program-settings", "--all", "--maxseg", "1400", "cmd", "a", "b"],
    *([f"--{WORDS[v]}", "cmd"] for v in VARIANTS),
    *([o.flag, str(o.default if o.default > 0 else o.minimum), "cmd"] for o in OPTIONS),
]

FULL = [
    [],                                        # missing COMMAND: argparse's error
    ["--"],
    ["--preset", "aws-nlb", "cmd"],            # a preset
    ["--help"],
    ["--idl", "30", "cmd"],                    # an abbreviation argparse accepts
    ["--idle", "0x10", "cmd"],                 # not a number
    ["--idle", "99999", "cmd"],                # out of range
    ["--idle"],                                # no value
    ["--server", "--syn-count", "3", "cmd"],   # the variant does not apply it
    ["--client", "--server", "cmd"],           # two variants
    ["-", "cmd"],
]


@pytest.mark.parametrize("words", PLAIN, ids=" ".join)
def test_plain_run_reads_what_the_parser_reads(words: list[str]) -> None:
    plain = plain_run(words)
    assert plain is not None
    args = parser("run").parse_args(["run", *words])
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    assert plain.variant == args.variant
    assert plain.values == {k: v for k, v in chosen_values(args).items() if v is not None}
    assert (plain.debug, plain.keep) == (args.debug, args.keep_program_settings)
    assert plain.command == command


@pytest.mark.parametrize("words", FULL, ids=" ".join)
def test_other_forms_go_to_the_full_command_line(words: list[str]) -> None:
    assert plain_run(words) is None


@pytest.mark.parametrize("words", [["path"], *(["path", w] for v in VARIANTS
                                              for w in (v, WORDS[v]))], ids=" ".join)
def test_plain_path_prints_what_the_full_command_line_prints(words: list[str]) -> None:
    full = subprocess.run([sys.executable, "-c", "import sys\n"
                           "from keepalive_preload.cli.dispatch import main\n"
                           "sys.exit(main(sys.argv[1:]))", *words],
                          capture_output=True, text=True, timeout=60)
    plain = cli(*words)
    assert (plain.returncode, plain.stdout, plain.stderr) == (0, full.stdout, "")
    assert full.returncode == 0


def test_plain_forms_with_errors_say_what_the_full_command_line_says() -> None:
    for words in (["path", "nope"], ["run", "--idle", "99999", "cmd"], ["run"]):
        result = cli(*words)
        assert result.returncode == 2, words
        assert result.stderr.startswith("keepalive-preload: error: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
