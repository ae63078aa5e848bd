"""``keepalive-preload cgroup attach|detach|show``: the cgroup mode's command line.

Everything option-specific derives from the option table: the flags (shared
with ``run``), which of them the program sets and where (``Option.bpf_at``),
what it refuses (not taken by ``bpf_setsockopt``, or not by this kernel, or
only on outbound connections), and what ``show`` prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from .._options import BY_NAME, OPTIONS, WORDS, Option, effective
from ..cgroup.attach import (
    PRECEDENCE_KERNEL,
    Attached,
    CgroupError,
    Ours,
    Stranded,
    attach,
    check_kernel,
    covering,
    detach,
    everywhere,
    explained,
    kernel,
    processes,
    resolve,
)
from ..cgroup.program import NAME, SCOPE, SETTABLE, Flag, map_values
from ..live.apply import apply_pids
from ..live.show import format_apply
from .args import (
    COMMANDS,
    FAILURE,
    OK,
    PROG,
    add_preload_options,
    check_variant_options,
    chosen_values,
)
from .hostfile import ConfigUnreadable, host_config

EXAMPLES = f"""\
examples:
  {PROG} cgroup attach --idle 30 /sys/fs/cgroup/unified/batch   every process in that cgroup
  {PROG} cgroup attach --client nginx.service                   the unit's outbound connections
  {PROG} cgroup attach --existing system.slice                  also the connections open now
  {PROG} cgroup show --json                                     all of ours on this host
  {PROG} cgroup detach nginx.service
"""

#: The nested-cgroup rule, as show says it.
NESTED_RULE = ("where ours is attached to a cgroup and to one above it, a connection gets the "
               "values of the nearest one handling its direction (outbound or accepted); "
               "the ones above leave it alone")

_UNITS = {"seconds": " s", "ms": " ms", "probes": "", "retries": "", "bytes": " bytes"}


def _refusal(option: Option, variant: str) -> str | None:
    """Why the cgroup mode cannot set ``option`` (asked for with a value other
    than 0) for this variant on this kernel, or None when it can."""
    if option.bpf_at is None:
        return (f"{option.flag} is not available in cgroup mode: the kernel's bpf_setsockopt "
                f"does not accept {option.variable}")
    version = kernel()
    if option.bpf_since is not None and version is not None and version < option.bpf_since:
        since = ".".join(str(n) for n in option.bpf_since)
        return (f"{option.flag} needs Linux {since} or later in cgroup mode (this kernel is "
                f"{'.'.join(str(n) for n in version)}): before it, the kernel's bpf_setsockopt "
                f"does not accept {option.variable}")
    if option.bpf_at == "connect" and not SCOPE[variant] & Flag.CLIENT:
        return (f"{option.flag} applies to outbound connections only in cgroup mode (set at "
                "the connect callback, before the handshake); an accepted connection's "
                f"{option.variable} is settled when the program sees it")
    return None


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``cgroup`` and its subcommands on the top-level subparsers."""
    cgroup = commands.add_parser(
        "cgroup", help=COMMANDS["cgroup"],
        description="Set the keepalive options on every TCP connection of every process in a "
        "cgroup v2, with an eBPF sock_ops program (root, Linux >= 5.9): reaches statically "
        "linked programs, raw system calls, io_uring and inherited sockets, which LD_PRELOAD "
        "cannot.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = cgroup.add_subparsers(dest="cgroup_command", metavar="ACTION")
    actions.required = True
    where = ("a cgroup v2 directory (absolute, or relative to the cgroup2 mount; / is its "
             "root) or a systemd unit name")

    attach_ = actions.add_parser(
        "attach", help="attach (or replace) our program on CGROUP",
        description="Attach the program to CGROUP; it stays attached after this command "
        "exits, next to any other sock_ops programs there, and replaces ours if already "
        "attached. --client sets the options on outbound connections, --server on accepted "
        "ones, --all (the default) on both. Values: the command line's, over the host "
        "configuration file's (/etc/keepalive-preload.conf), over the built-in defaults. "
        "A socket on which the program turned SO_KEEPALIVE on itself is left alone unless "
        f"--force. Nested cgroups: {NESTED_RULE}.")
    add_preload_options(attach_)
    # The flags are run's; what some of them mean differs here.
    helps = {"--client": "outbound connections only",
             "--server": "accepted connections only",
             "--all": "outbound and accepted connections (the default)",
             "--debug": "print the program, one instruction per line, to stderr"}
    for action in attach_._actions:
        flag = action.option_strings[0] if action.option_strings else ""
        if flag in helps:
            action.help = helps[flag]
        elif action.dest in BY_NAME and BY_NAME[action.dest].bpf_at is None:
            action.help = "not available in cgroup mode (bpf_setsockopt refuses it)"
    attach_.add_argument("--force", action="store_true",
                         help="set our values also on sockets that already have SO_KEEPALIVE "
                         "[KEEPALIVE=force]")
    attach_.add_argument("--existing", action="store_true",
                         help="also set the values on the connections the processes of CGROUP "
                         "and of the cgroups below it hold now (as apply does)")
    config = attach_.add_mutually_exclusive_group()
    config.add_argument("--config", metavar="FILE",
                        help="the configuration file to take values from (default: "
                        "/etc/keepalive-preload.conf, as the libraries read it)")
    config.add_argument("--no-config", action="store_true",
                        help="ignore the configuration file: the command line's values over "
                        "the built-in defaults")
    attach_.add_argument("cgroup", metavar="CGROUP", help=where)

    detach_ = actions.add_parser("detach", help="detach our program from CGROUP",
                                 description="Detach our program from CGROUP (others stay).")
    detach_.add_argument("cgroup", metavar="CGROUP", help=where)

    show = actions.add_parser(
        "show", help="show our programs and their values",
        description="Show our programs: with CGROUP, the one on it and those it inherits "
        "from the cgroups above, and which one its connections get; without, every one of "
        "ours loaded on this host, also those whose cgroup was removed while sockets made "
        f"in it live on. {NESTED_RULE[0].upper()}{NESTED_RULE[1:]}.")
    show.add_argument("cgroup", metavar="CGROUP", nargs="?", help=where)
    show.add_argument("--json", action="store_true", help="machine-readable output")


@dataclass(frozen=True)
class Chosen:
    """What attach sets: the option values (name -> value, as the libraries
    would), the map fields, and where the values came from."""

    values: dict[str, int]
    flags: Flag
    problems: tuple[str, ...]
    #: The values before the user timeout is derived (-1 kept), as apply takes them.
    configured: dict[str, int]


def _chosen(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Chosen:
    """The values ``attach`` sets, or a one-line error: exit 2 for the command
    line's, CgroupError (exit 1) for the configuration file's and the defaults."""
    if args.variant not in SCOPE:
        parser.error(f"cgroup attach: --{WORDS[args.variant]} is not available in cgroup mode: "
                     "the program sees outbound and accepted connections (--client, --server, "
                     "--all)")
    check_variant_options(args, parser)
    given = chosen_values(args)
    for name, value in given.items():
        option = BY_NAME[name]
        if value and args.variant in option.variants:
            refused = _refusal(option, args.variant)
            if refused is not None:
                parser.error(f"cgroup attach: {refused}")
    try:
        file_values, mode, problems = host_config(args)
    except ConfigUnreadable as exc:
        raise CgroupError(str(exc)) from None
    merged = {name: value if value is not None else file_values.get(name)
              for name, value in given.items()}
    values = effective(merged)
    for option in OPTIONS:
        value = values[option.name]
        if given[option.name] is None and value and args.variant in option.variants:
            refused = _refusal(option, args.variant)
            if refused is not None:
                origin = "the configuration file" if option.name in file_values and \
                    file_values[option.name] != option.default else "the default"
                raise CgroupError(f"{refused} ({option.variable}={value} is {origin}'s; "
                                  f"{option.flag} 0 to attach without it)")
    if mode == "off":
        problems.append("the configuration file says KEEPALIVE=off (the libraries set "
                        "nothing); attaching anyway, as asked")
    flags = SCOPE[args.variant] | (Flag.FORCE if args.force or mode == "force" else Flag(0))
    configured = {o.name: o.default if merged[o.name] is None else int(merged[o.name] or 0)
                  for o in OPTIONS}
    return Chosen(values, flags, tuple(problems), configured)


def _value_words(entry: Ours) -> str:
    values = entry.values
    words = []
    for option in SETTABLE:
        value = values.get(option.name, 0)
        if option.ruled or value:
            amount = "system default" if value == 0 else f"{value}{_UNITS[option.unit]}"
            words.append(f"{option.name.replace('_', ' ')} {amount}")
    return ", ".join(words)


def describe(entry: Ours) -> str:
    """``kp_keepalive (id N): SO_KEEPALIVE on ...; idle 7 s, ...``."""
    if entry.fields is None:
        return f"{NAME} (id {entry.prog_id}): values unreadable (another version's map)"
    scope = {"client": "outbound connections", "server": "accepted connections",
             "all": "outbound and accepted connections"}[entry.scope]
    force = "; forced over the program's own keepalive" if entry.force else ""
    return f"{NAME} (id {entry.prog_id}): SO_KEEPALIVE on {scope}{force}; {_value_words(entry)}"


def _json(entry: Ours) -> dict[str, object]:
    values: dict[str, object] | None = None
    if entry.fields is not None:
        values = {"scope": entry.scope, "force": entry.force, **entry.values}
    cgroup = entry.cgroup if isinstance(entry, Attached) else None
    return {"cgroup": cgroup, "id": entry.prog_id, "name": NAME, "values": values}


def _show_one(directory: str, as_json: bool) -> None:
    found = covering(directory)
    if as_json:
        out = []
        for entry in found:
            item = _json(entry)
            if entry.cgroup != directory:
                item["inherited_by"] = directory
            item["decides"] = list(entry.decides)
            out.append(item)
        print(json.dumps(out, indent=2))
        return
    if not found:
        print(f"no keepalive program of ours attached to {directory} or above it")
        return
    for entry in found:
        inherited = f" (inherited by {directory})" if entry.cgroup != directory else ""
        if entry.decides:
            verdict = (f"{directory}'s {' and '.join(entry.decides)} connections get these "
                       "values")
        else:
            verdict = f"not used for {directory}'s connections: a nearer one of ours decides"
        print(f"{entry.cgroup}{inherited}: {describe(entry)} -- {verdict}")
    if len(found) > 1:
        print(f"({NESTED_RULE})")


def _show_all(as_json: bool) -> None:
    attached, stranded = everywhere()
    entries: list[Attached | Stranded] = [*attached, *stranded]
    if as_json:
        print(json.dumps([_json(e) for e in entries], indent=2))
        return
    if not entries:
        print("no keepalive program of ours loaded")
        return
    for entry in attached:
        print(f"{entry.cgroup}: {describe(entry)}")
    for lost in stranded:
        print(f"(a removed cgroup): {describe(lost)} -- still loaded: sockets made in that "
              "cgroup hold it, and connections accepted on its listeners still get it")
    if len(attached) > 1:
        print(f"({NESTED_RULE})")


def _existing(directory: str, chosen: Chosen, variant: str) -> int:
    """``--existing``: apply the values to the connections the cgroup's processes
    hold now, reporting per process as apply does; the exit status. A process
    that exits before it is read is no failure: its connections went with it."""
    pids = processes(directory)
    if not pids:
        print(f"no process in {directory} or below it: nothing open to apply to")
        return OK
    reports = apply_pids(pids, variant, chosen.configured,
                         force=bool(chosen.flags & Flag.FORCE), gone_ok=True)
    if reports:
        print("\n".join(format_apply(report) for report in reports))
    if len(reports) < len(pids):
        print(f"({len(pids) - len(reports)} of the {len(pids)} processes exited before "
              "their sockets were read)")
    return FAILURE if any(report.failed for report in reports) else OK


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``cgroup attach|detach|show``; errors are one line on stderr, exit 1."""
    action = args.cgroup_command
    try:
        check_kernel()
        if action == "attach":
            return _attach(args, parser)
        if action == "detach":
            directory = resolve(args.cgroup)
            count = detach(directory)
            print(f"detached ours from {directory}" if count
                  else f"nothing of ours attached to {directory}")
        elif args.cgroup is None:
            with explained():
                _show_all(args.json)
        else:
            _show_one(resolve(args.cgroup), args.json)
    except CgroupError as exc:
        sys.stderr.write(f"{PROG}: cgroup {action}: {exc}\n")
        return FAILURE
    except OSError as exc:
        if exc.filename is None:  # writing the output: the top level's to say
            raise
        sys.stderr.write(f"{PROG}: cgroup {action}: {exc.filename}: {exc.strerror}\n")
        return FAILURE
    return OK


def _print_listing(text: str) -> None:
    sys.stderr.write(text + "\n")


def _attach(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    chosen = _chosen(args, parser)
    for problem in chosen.problems:
        sys.stderr.write(f"{PROG}: warning: {problem}\n")
    directory = resolve(args.cgroup)
    fields = map_values(chosen.flags, chosen.values)
    done = attach(directory, fields, _print_listing if args.debug else None)
    verb = "replaced ours on" if done.replaced else "attached to"
    print(f"{verb} {directory}: {describe(done.attached)}")
    version = kernel()
    if not chosen.flags & Flag.FORCE and version is not None and version < PRECEDENCE_KERNEL:
        sys.stderr.write(f"{PROG}: warning: Linux before 6.1 cannot tell a socket on which the "
                         "program turned keepalive on itself: ours are set on it too, as with "
                         "--force\n")
    if args.existing:
        return _existing(directory, chosen, args.variant)
    return OK

