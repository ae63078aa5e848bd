"""The cgroup mode's program and command line as derived from the option
table, without the kernel: the map's fields, which options the program sets
at which callback, what ``cgroup attach`` refuses and why, what ``show``
says. A row added to options.def is set by the program or refused with one
line; never dropped (the scratch-row test drives the CLI with ``--debug``
and ``show --json``, which need the kernel: test_cgroup.py).
"""

from __future__ import annotations

import os

import pytest

from keepalive_preload import cgroup as cgroup_package
from keepalive_preload._options import OPTIONS, Option, effective
from keepalive_preload.cgroup.asm import assemble, listing
from keepalive_preload.cgroup.attach import Attached, covering
from keepalive_preload.cgroup.program import (
    FIELDS,
    MARK,
    SCOPE,
    SETTABLE,
    VALUE,
    Flag,
    decode,
    encode,
    map_values,
    program,
)
from keepalive_preload.cli import main
from keepalive_preload.cli.cgroup import describe
from support import ROOT, cli, one_line_error


def fields_for(variant: str = "socket", force: bool = False, **values: int) -> dict[str, int]:
    return fields_with(values, variant, force)


def fields_with(values: dict[str, int], variant: str = "socket",
                force: bool = False) -> dict[str, int]:
    """The map fields attach writes for these option values (the others: defaults)."""
    chosen = {o.name: values.get(o.name) for o in OPTIONS}
    return map_values(SCOPE[variant] | (Flag.FORCE if force else Flag(0)), effective(chosen))


def sections(text: str) -> dict[str, str]:
    """The listing cut at its labels: label -> the lines up to the next one."""
    out: dict[str, str] = {}
    label = "start"
    for line in text.splitlines():
        word = line[4:17].strip()
        if word.endswith(":"):
            label = word[:-1]
        out[label] = out.get(label, "") + line + "\n"
    return out


def test_map_fields_are_the_table_rows_bpf_can_set() -> None:
    assert ("flags", *(o.name for o in OPTIONS if o.bpf_at is not None)) == FIELDS
    assert VALUE.size == 4 * len(FIELDS)
    fields = fields_for(idle=7)
    assert decode(encode(fields)) == fields
    assert decode(b"\0" * (VALUE.size + 4)) is None  # another version's layout


@pytest.mark.parametrize("option", SETTABLE, ids=lambda o: o.name)
def test_each_settable_option_is_set_at_its_callback(option: Option) -> None:
    """Each row with a bpf_at is set at that callback when its value is not 0,
    and only there; 0 leaves the system default (no call)."""
    value = max(option.minimum, 1)
    with_it = sections(listing(program(fields_with({option.name: value}), map_fd=3)))
    label = "lookup" if option.bpf_at == "connect" else "set"
    assert f"; {option.variable}\n" in with_it[label], with_it
    others = "".join(text for name, text in with_it.items() if name != label)
    assert f"; {option.variable}\n" not in others
    if not option.ruled:  # the keepalive timers are always set (defaults); these only if asked
        without = listing(program(fields_for(), map_fd=3))
        assert f"; {option.variable}\n" not in without


def test_scope_picks_the_callbacks() -> None:
    client = listing(program(fields_for("connect"), map_fd=3))
    server = listing(program(fields_for("listen"), map_fd=3))
    both = listing(program(fields_for("socket"), map_fd=3))
    assert "ACTIVE_ESTABLISHED_CB" in client
    assert "PASSIVE" not in client
    assert "TCP_CONNECT_CB" in client  # handled even with nothing to set: ours decides
    assert "PASSIVE_ESTABLISHED_CB" in server
    assert "ACTIVE" not in server
    assert "CONNECT_CB" not in server
    assert all(cb in both for cb in ("TCP_CONNECT_CB", "ACTIVE_ESTABLISHED", "PASSIVE"))


def test_nearest_decides_mark_at_each_callback() -> None:
    """Each callback the program handles first checks and then sets the mark in
    ctx->reply, before setting anything."""
    parts = sections(listing(program(fields_for(syn_count=2), map_fd=3)))
    for label in ("connect", "established"):
        lines = parts[label].splitlines()
        assert "ctx->reply" in lines[0]
        assert f"== {MARK} goto out" in lines[1]
        assert f"= {MARK}" in lines[2]
        assert "+4) = r1" in lines[3]


@pytest.mark.parametrize("force", [False, True])
def test_force_drops_the_program_keepalive_check(force: bool) -> None:
    text = listing(program(fields_for(force=force), map_fd=3))
    assert ("call bpf_getsockopt" in text) is not force


def test_program_assembles() -> None:
    code = program(fields_for(syn_count=2, maxseg=1000, window_clamp=9000), map_fd=3)
    assert len(assemble(code)) == 8 * len(code)


@pytest.mark.parametrize(("args", "words"), [
    *[([o.flag, str(max(o.minimum, 1))], [o.flag, o.variable, "not available in cgroup mode"])
      for o in OPTIONS if o.bpf_at is None],
    *[(["--server", o.flag, str(max(o.minimum, 1))], [o.flag, "outbound"])
      for o in OPTIONS if o.bpf_at == "connect" and "listen" in o.variants],
    (["--server", "--syn-count", "3"],
     ["--syn-count has no effect with --server; it applies to --client and --all"]),
    (["--idle", "0x10"], ["--idle"]),
    (["--client", "--server"], ["not allowed"]),
    (["--config", "/x", "--no-config"], ["not allowed"]),
])
def test_bad_arguments(args: list[str], words: list[str]) -> None:
    """Refused in the words of the command line, exit 2, before any bpf(2) call."""
    one_line_error(cli("cgroup", "attach", *args, "/sys/fs/cgroup"), 2, *words)


def test_missing_action() -> None:
    one_line_error(cli("cgroup"), 2, "the following arguments are required: ACTION")


class _Uname:
    def __init__(self, release: str) -> None:
        self.release = release


@pytest.mark.parametrize(("release", "args", "status", "words"), [
    ("5.4.0-150-generic", ["show"], 1, "Linux 5.9 or later is needed"),
    ("5.8.18", ["attach", "/sys/fs/cgroup"], 1, "this kernel is 5.8.18"),
    *[("5.8.0", ["attach", o.flag, str(max(o.minimum, 1)), "/sys/fs/cgroup"], 1,
       "this kernel is 5.8.0") for o in SETTABLE],
    *[(f"{o.bpf_since[0]}.{o.bpf_since[1] - 1}.0-28-amd64",
       ["attach", o.flag, str(max(o.minimum, 1)), "/sys/fs/cgroup"], 2,
       f"{o.flag} needs Linux {o.bpf_since[0]}.{o.bpf_since[1]} or later in cgroup mode "
       f"(this kernel is {o.bpf_since[0]}.{o.bpf_since[1] - 1})")
      for o in SETTABLE if o.bpf_since is not None and o.bpf_since > (5, 9)],
])
def test_old_kernel(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                    release: str, args: list[str], status: int, words: str) -> None:
    """Checked before any bpf(2) call: a kernel that is too old is named (the
    release faked, in-process); an option the running kernel's bpf_setsockopt
    does not take yet (Option.bpf_since) is refused naming both kernels."""
    monkeypatch.setattr(os, "uname", lambda: _Uname(release))
    try:
        code = main(["cgroup", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == status
    (line,) = capsys.readouterr().err.splitlines()
    assert words in line


def test_show_text_from_the_table() -> None:
    """show names every ruled option, and the others when set, from the table."""
    fields = fields_for("connect", idle=7, maxseg=1000)
    text = describe(Attached(12, fields, cgroup="/x"))
    assert text.startswith("kp_keepalive (id 12): SO_KEEPALIVE on outbound connections; ")
    for option in SETTABLE:
        word = option.name.replace("_", " ")
        assert (f"{word} " in text) is bool(option.ruled or fields[option.name]), option.name
    assert "idle 7 s" in text
    assert "maxseg 1000 bytes" in text


def test_covering_is_exported() -> None:
    assert cgroup_package.covering is covering
    assert Attached(1, fields_for("listen"), cgroup="/x", decides=("accepted",)).effective
    entry = Attached(1, fields_for("socket", force=True, idle=9), cgroup="/x")
    assert (entry.scope, entry.force, entry.values["idle"], entry.effective) == \
        ("all", True, 9, False)


def test_docs_table_agrees_with_the_option_table() -> None:
    """docs/cgroup-mode.md's table of where each option is set follows bpf_at
    and bpf_since, and names every option."""
    text = (ROOT / "docs" / "cgroup-mode.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "--" in line]
    named = set()
    for row in rows:
        where, since = row.split("|")[2].strip(), row.split("|")[3].strip()
        for option in OPTIONS:
            if f"`{option.flag}`" not in row.split("|")[1]:
                continue
            named.add(option.name)
            if option.bpf_at is None:
                assert where.startswith("never"), row
            else:
                assert where.startswith(option.bpf_at), row
                assert since == ".".join(str(n) for n in option.bpf_since or ()), row
    assert named == {o.name for o in OPTIONS}
