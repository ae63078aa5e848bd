"""``keepalive-preload cgroup attach|detach|show``: the cgroup mode's command line."""

from __future__ import annotations

import argparse
import errno
import json
import sys

from .._options import BY_NAME, effective
from ..cgroup.attach import (
    PRECEDENCE_KERNEL,
    UNSUPPORTED,
    WINDOW_CLAMP_KERNEL,
    CgroupError,
    _ancestors,
    _attach,
    _check_kernel,
    _detach,
    _kernel,
    _mount,
    _ours,
    _walk,
    resolve,
)
from .args import COMMANDS, PROG, add_preload_options, check_variant_options, chosen_values

EXAMPLES = f"""\
examples:
  {PROG} cgroup attach --idle 30 /sys/fs/cgroup/unified/batch   every process in that cgroup
  {PROG} cgroup attach --client nginx.service                   the unit's outbound connections
  {PROG} cgroup show --json                                     all of ours on this host
  {PROG} cgroup detach nginx.service
"""


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``cgroup`` and its subcommands on the top-level subparsers."""
    cgroup = commands.add_parser(
        "cgroup", help=COMMANDS["cgroup"],
        description="Set the keepalive options on every TCP connection of every process in a "
        "cgroup v2, with an eBPF sock_ops program (root, Linux >= 5.9): reaches statically "
        "linked programs, raw system calls and inherited sockets, which LD_PRELOAD cannot.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = cgroup.add_subparsers(dest="cgroup_command", metavar="ACTION")
    actions.required = True
    where = ("a cgroup v2 directory (absolute, or relative to the cgroup2 mount) "
             "or a systemd unit name")

    attach = actions.add_parser(
        "attach", help="attach (or replace) our program on CGROUP",
        description="Attach the program to CGROUP; it stays attached after this command "
        "exits, next to any other sock_ops programs there, and replaces ours if already "
        "attached. --client sets the options on outbound connections, --server on accepted "
        "ones, --all (the default) on both. A socket on which the program turned "
        "SO_KEEPALIVE on itself is left alone unless --force.")
    add_preload_options(attach)
    # The flags are run's; what some of them mean differs here.
    helps = {"--client": "outbound connections only (set once established)",
             "--server": "accepted connections only (set once established)",
             "--all": "outbound and accepted connections (the default)",
             "--debug": "print the program, one instruction per line, to stderr"}
    for action in attach._actions:
        flag = action.option_strings[0] if action.option_strings else ""
        if flag in helps:
            action.help = helps[flag]
        elif action.dest in UNSUPPORTED:
            action.help = "not available in cgroup mode (bpf_setsockopt refuses it)"
    attach.add_argument("--force", action="store_true",
                        help="set our values also on sockets that already have SO_KEEPALIVE "
                        "[KEEPALIVE=force]")
    attach.add_argument("cgroup", metavar="CGROUP", help=where)

    detach = actions.add_parser("detach", help="detach our program from CGROUP",
                                description="Detach our program from CGROUP (others stay).")
    detach.add_argument("cgroup", metavar="CGROUP", help=where)

    show = actions.add_parser("show", help="show our programs and their values",
                              description="Show our program on CGROUP, or on every cgroup of "
                              "the host when none is named, with the values it sets.")
    show.add_argument("cgroup", metavar="CGROUP", nargs="?", help=where)
    show.add_argument("--json", action="store_true", help="machine-readable output")


def _values(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, int]:
    """The map values for ``attach`` (see ``_bpf.FIELDS``), or a parser error."""
    for name, variable in UNSUPPORTED.items():
        if getattr(args, name) not in (None, 0):
            parser.error(f"cgroup attach: {BY_NAME[name].flag} is not available in cgroup "
                         f"mode: the kernel's bpf_setsockopt does not accept {variable}")
    check_variant_options(args, parser)
    if args.variant == "listen" and args.maxseg not in (None, 0):
        parser.error("cgroup attach: --maxseg applies to outbound connections only in cgroup "
                     "mode (set at the connect callback); an accepted connection's MSS is "
                     "already negotiated when the program sees it")
    version = _kernel()
    if args.window_clamp not in (None, 0) and version is not None \
            and version < WINDOW_CLAMP_KERNEL:
        parser.error("cgroup attach: --window-clamp needs Linux 5.11 or later in cgroup mode: "
                     "before it, the kernel's bpf_setsockopt does not accept TCP_WINDOW_CLAMP")
    values = effective(chosen_values(args))
    flags = {"connect": 1, "listen": 2, "socket": 3}[args.variant] | (4 if args.force else 0)
    return {"flags": flags, "idle": values["idle"], "interval": values["interval"],
            "count": values["count"], "user_timeout": values["user_timeout"],
            "syn_count": values["syn_count"], "maxseg": values["maxseg"],
            "window_clamp": values["window_clamp"]}


def _text(entry: dict[str, object]) -> str:
    if entry.get("values") is None:
        return f"{entry['cgroup']}: {entry['name']} (id {entry['id']}): values unreadable"
    v: dict[str, object] = entry["values"]  # type: ignore[assignment]

    def opt(name: str, unit: str) -> str:
        return "system default" if v[name] == 0 else f"{v[name]}{unit}"

    words = [f"idle {opt('idle', ' s')}", f"interval {opt('interval', ' s')}",
             f"count {opt('count', '')}", f"user timeout {opt('user_timeout', ' ms')}"]
    if v["syn_count"]:
        words.append(f"syn count {v['syn_count']}")
    if v["maxseg"]:
        words.append(f"maxseg {v['maxseg']}")
    if v["window_clamp"]:
        words.append(f"window clamp {v['window_clamp']}")
    scope = {"client": "outbound connections", "server": "accepted connections",
             "all": "outbound and accepted connections"}.get(str(v["scope"]), "nothing")
    force = "; forced over the program's own keepalive" if v["force"] else ""
    inherited = f" (inherited by {entry['inherited_by']})" if "inherited_by" in entry else ""
    return (f"{entry['cgroup']}{inherited}: {entry['name']} (id {entry['id']}): SO_KEEPALIVE "
            f"on {scope}{force}; " + ", ".join(words))


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``cgroup attach|detach|show``; errors are one line on stderr, exit 1."""
    action = args.cgroup_command
    values = _values(args, parser) if action == "attach" else None
    try:
        _check_kernel()
        if action == "show" and args.cgroup is None:
            directories = _walk(_mount())
        else:
            directories = [resolve(args.cgroup)]
        if action == "attach":
            assert values is not None
            print(_text(_attach(directories[0], values, args.debug)))
            version = _kernel()
            if not args.force and version is not None and version < PRECEDENCE_KERNEL:
                sys.stderr.write(f"{PROG}: warning: Linux before 6.1 cannot tell a socket on "
                                 "which the program turned keepalive on itself: ours are set "
                                 "on it too, as with --force\n")
        elif action == "detach":
            count = _detach(directories[0])
            print(f"detached ours from {directories[0]}" if count
                  else f"nothing of ours attached to {directories[0]}")
        else:
            walking = args.cgroup is None
            entries = [e for d in directories for e in _ours(d, vanish_ok=walking)]
            if not walking:  # what the cgroup inherits from above also applies to it
                for parent in _ancestors(directories[0]):
                    for entry in _ours(parent):
                        entry["inherited_by"] = directories[0]
                        entries.append(entry)
            if args.json:
                print(json.dumps(entries, indent=2))
            elif entries:
                print("\n".join(_text(e) for e in entries))
            else:
                print("no keepalive program of ours attached to "
                      f"{directories[0] if args.cgroup else 'any cgroup'}")
    except CgroupError as exc:
        sys.stderr.write(f"{PROG}: cgroup {action}: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"{PROG}: cgroup {action}: {_explain(exc)}\n")
        return 1
    return 0


def _explain(exc: OSError) -> str:
    what = getattr(exc, "what", None) or exc.filename or "bpf"
    if exc.errno == errno.EPERM:
        return (f"{what}: operation not permitted: the cgroup mode needs root "
                "(CAP_BPF and CAP_NET_ADMIN)")
    log = getattr(exc, "log", "")
    if log:
        return f"{what}: {exc.strerror}; the kernel's verifier says: " + " | ".join(
            line for line in log.splitlines()[-20:] if line.strip())
    return f"{what}: {exc.strerror}"
