"""``keepalive-preload cgroup``: keepalive for every TCP connection of a cgroup v2,
set by an eBPF sock_ops program, for programs LD_PRELOAD cannot reach
(static binaries, raw system calls, inherited sockets).

The kernel side is in ``_bpf`` (imported only when this command runs); here:
finding the cgroup2 mount, resolving a path or a systemd unit to a cgroup
directory, and the ``attach``/``detach``/``show`` subcommands.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

from ._options import BY_NAME, effective

PROG = "keepalive-preload"
#: The first kernel whose bpf_setsockopt accepts SO_KEEPALIVE and the TCP_KEEP* options.
MINIMUM_KERNEL = (5, 9)
#: Before this kernel bpf_getsockopt cannot read SO_KEEPALIVE, so the program
#: cannot tell a socket the program turned keepalive on itself (see _bpf.program).
PRECEDENCE_KERNEL = (6, 1)
#: Options bpf_setsockopt refuses at any sock_ops callback (net/core/filter.c does not
#: accept the name); asking for them is an error, never silently dropped.
UNSUPPORTED = {"defer_accept": "TCP_DEFER_ACCEPT"}
#: bpf_setsockopt accepts TCP_WINDOW_CLAMP from this kernel on ("bpf: Adds support for
#: setting window clamp"); before it, asking for it is an error.
WINDOW_CLAMP_KERNEL = (5, 11)
_UNIT_SUFFIX = re.compile(r"\.(service|scope|slice|socket|mount|swap|target|timer)\Z")
_MAX_WALK = 100_000  # cgroup directories visited by `show` with no CGROUP

EXAMPLES = f"""\
examples:
  {PROG} cgroup attach --idle 30 /sys/fs/cgroup/unified/batch   every process in that cgroup
  {PROG} cgroup attach --client nginx.service                   the unit's outbound connections
  {PROG} cgroup show --json                                     all of ours on this host
  {PROG} cgroup detach nginx.service
"""


class CgroupError(Exception):
    """A one-line reason the command cannot do what was asked (exit status 1)."""


def cgroup2_mounts() -> list[str]:
    """The cgroup2 mount points in /proc/self/mountinfo, in mount order."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mountinfo:
        for line in mountinfo:
            before, _, after = line.partition(" - ")
            fields = before.split()
            if after.split()[:1] == ["cgroup2"] and len(fields) > 4:
                found.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)),
                                    fields[4]))
    return found


def _mount() -> str:
    mounts = cgroup2_mounts()
    if not mounts:
        raise CgroupError("no cgroup v2 mount (no cgroup2 in /proc/self/mountinfo); mount one, "
                          "e.g. mount -t cgroup2 none /sys/fs/cgroup/unified")
    return mounts[0]


def _is_cgroup2(directory: str) -> bool:
    # cgroup.controllers exists in every cgroup v2 directory and in no v1 one.
    return os.path.isfile(os.path.join(directory, "cgroup.controllers"))


def _unit_cgroup(unit: str) -> str:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise CgroupError(f"{unit}: looks like a systemd unit, but there is no systemctl to "
                          "resolve it; give the cgroup directory instead")
    try:
        done = subprocess.run([systemctl, "show", "-p", "ControlGroup", "--value", unit],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CgroupError(f"{unit}: systemctl failed: {exc}") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
        raise CgroupError(f"{unit}: systemctl show failed: {reason}")
    group = done.stdout.strip()
    if not group:
        raise CgroupError(f"{unit}: the unit has no cgroup (is it loaded and running?)")
    return group


def resolve(name: str) -> str:
    """The cgroup v2 directory ``name`` stands for: an absolute directory, a path
    relative to the cgroup2 mount, or a systemd unit (``foo.service``)."""
    if not name:
        raise CgroupError("empty cgroup name")
    if os.path.isabs(name) and os.path.isdir(name):
        if not _is_cgroup2(name):
            raise CgroupError(f"{name}: not a cgroup v2 directory")
        return os.path.normpath(name)
    mount = _mount()
    if "/" not in name and _UNIT_SUFFIX.search(name) and not os.path.isdir(
            os.path.join(mount, name)):
        name = _unit_cgroup(name)
    directory = os.path.normpath(os.path.join(mount, name.lstrip("/")))
    if not os.path.isdir(directory) or not _is_cgroup2(directory):
        raise CgroupError(f"{name}: no such cgroup (looked for {directory})")
    return directory


def _kernel() -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _check_kernel() -> None:
    release = os.uname().release
    version = _kernel()
    if version is not None and version < MINIMUM_KERNEL:
        raise CgroupError(f"Linux {MINIMUM_KERNEL[0]}.{MINIMUM_KERNEL[1]} or later is needed "
                          f"(bpf_setsockopt with SO_KEEPALIVE); this kernel is {release}")


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``cgroup`` and its subcommands on the top-level subparsers."""
    from ._cli import _add_preload_options

    cgroup = commands.add_parser(
        "cgroup", help="keepalive for every process of a cgroup (eBPF; static binaries too)",
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
    _add_preload_options(attach)
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
    from ._cli import check_variant_options, chosen_values

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


def _describe(values: dict[str, int]) -> dict[str, object]:
    flags = values["flags"]
    scope = {1: "client", 2: "server", 3: "all"}.get(flags & 3, "none")
    return {"scope": scope, "force": bool(flags & 4),
            **{name: values.get(name, 0) for name in ("idle", "interval", "count",
                                                      "user_timeout", "syn_count", "maxseg",
                                                      "window_clamp")}}


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


def _open(directory: str) -> int:
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise CgroupError(f"{directory}: {exc.strerror}") from None


def _ours(directory: str, vanish_ok: bool = False) -> list[dict[str, object]]:
    from . import _bpf as bpf

    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        if vanish_ok:  # removed while we walked the tree
            return []
        raise CgroupError(f"{directory}: no such cgroup") from None
    try:
        found = []
        for prog, prog_fd in bpf.attached(fd):
            os.close(prog_fd)
            if prog.ours:
                found.append({"cgroup": directory, "id": prog.id, "name": prog.name,
                              "values": None if prog.values is None
                              else _describe(prog.values)})
        return found
    finally:
        os.close(fd)


def _attach(directory: str, values: dict[str, int], debug: bool) -> str:
    from . import _bpf as bpf

    map_fd = bpf.create_map(values)
    try:
        code = bpf.program(values, map_fd)
        if debug:
            sys.stderr.write(bpf.listing(code) + "\n")
        prog_fd = bpf.load(bpf.assemble(code))
    finally:
        os.close(map_fd)  # the program holds the map from here on
    cgroup_fd = _open(directory)
    try:
        old = [(p, f) for p, f in bpf.attached(cgroup_fd)]
        mine = [(p, f) for p, f in old if p.ours]
        try:
            # Never two of ours: replace one atomically, detach any others.
            bpf.attach(cgroup_fd, prog_fd, mine[0][1] if mine else None)
            for _, extra in mine[1:]:
                bpf.detach(cgroup_fd, extra)
        finally:
            for _, f in old:
                os.close(f)
        prog_id = bpf.prog_id(prog_fd)
    finally:
        os.close(cgroup_fd)
        os.close(prog_fd)
    verb = "replaced ours on" if mine else "attached to"
    return _text({"cgroup": f"{verb} {directory}", "id": prog_id, "name": bpf.NAME,
                  "values": _describe(values)})


def _detach(directory: str) -> int:
    from . import _bpf as bpf

    cgroup_fd = _open(directory)
    count = 0
    try:
        for prog, prog_fd in bpf.attached(cgroup_fd):
            try:
                if prog.ours:
                    bpf.detach(cgroup_fd, prog_fd)
                    count += 1
            finally:
                os.close(prog_fd)
    finally:
        os.close(cgroup_fd)
    return count


def _ancestors(directory: str) -> list[str]:
    """The cgroup directories above ``directory``, nearest first, up to its mount's root."""
    found = []
    parent = os.path.dirname(directory)
    for _ in range(256):  # bounded: cgroup trees are nowhere near this deep
        if parent == directory or not _is_cgroup2(parent):
            break
        found.append(parent)
        directory, parent = parent, os.path.dirname(parent)
    return found


def _walk(mount: str) -> list[str]:
    """Every cgroup directory under the mount, the mount first (bounded)."""
    found = [mount]
    for i, (top, dirs, _files) in enumerate(os.walk(mount)):
        if i > _MAX_WALK:
            raise CgroupError(f"{mount}: more than {_MAX_WALK} cgroups; name one")
        dirs.sort()
        found.extend(os.path.join(top, d) for d in dirs)
    return found


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
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
            print(_attach(directories[0], values, args.debug))
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
    import errno

    what = getattr(exc, "what", None) or exc.filename or "bpf"
    if exc.errno == errno.EPERM:
        return (f"{what}: operation not permitted: the cgroup mode needs root "
                "(CAP_BPF and CAP_NET_ADMIN)")
    log = getattr(exc, "log", "")
    if log:
        return f"{what}: {exc.strerror}; the kernel's verifier says: " + " | ".join(
            line for line in log.splitlines()[-20:] if line.strip())
    return f"{what}: {exc.strerror}"
