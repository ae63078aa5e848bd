"""The cost of interposition, measured against the floor.

Run by bench/run (which builds and installs the package first). Prints a
Markdown table: nanoseconds per operation (the median iteration of each run,
then the median over alternating rounds),
without the library, with each variant, and (TCP) with the same setsockopt
calls made by hand; syscalls per operation counted exactly with strace; the
load cost of the shipped builds (--shipped NAME=DIR: the libraries of a .deb
or a wheel) beside the source build and an empty library, in the same rounds;
the import time of keepalive_preload; and the targets, met or missed. Then, as
root with cgroup v2, the per-connection cost of the cgroup mode (eBPF) next to
the preload's, in the same run (otherwise one "skipped: reason" line).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

import keepalive_preload

HERE = os.path.dirname(os.path.abspath(__file__))
OPS = {  # op: (label, iterations per run)
    "tcp": ("TCP socket+connect+close", 2000),
    "tcp-own": ("TCP, the program sets its own keepalive after connect", 2000),
    "udp": ("UDP socket+connect+close", 5000),
    "unix": ("AF_UNIX socket+connect+close", 5000),
    "accept": ("TCP connect+accept+close", 2000),
    "spawn": ("process start-up (spawn /bin/true)", 400),
    "nodelay": ("setsockopt(TCP_NODELAY), pass-through", 20000),
    "keepidle": ("setsockopt(TCP_KEEPIDLE), program's own", 20000),
}
CONFIGS = ("none", "connect", "listen", "socket")
#: The floors: the same setsockopt calls made by hand (TCP), and an empty
#: preload library (process start-up: what loading any library costs).
FLOORS = {"tcp": "manual", "spawn": "empty"}
EMPTY_LIBRARY = ""
#: Other builds of the libraries (name: directory), timed at process start-up.
SHIPPED: dict[str, str] = {}


def build(workdir: str) -> str:
    global EMPTY_LIBRARY
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("bench: no C compiler")
    out = os.path.join(workdir, "bench")
    subprocess.run([cc, "-O2", "-pthread", "-o", out, os.path.join(HERE, "bench.c")],
                   check=True)
    EMPTY_LIBRARY = os.path.join(workdir, "libempty.so")
    source = os.path.join(workdir, "empty.c")
    with open(source, "w") as f:
        f.write("int kp_bench_empty;\n")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", EMPTY_LIBRARY, source], check=True)
    return out


def env_for(config: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if config == "empty":
        env["LD_PRELOAD"] = EMPTY_LIBRARY
    elif config in SHIPPED:
        env["LD_PRELOAD"] = library(config)
    elif config not in ("none", "manual"):
        env["LD_PRELOAD"] = keepalive_preload.path(config)
    return env


def library(config: str) -> str:
    """The connect variant's library of a configuration: shipped or installed."""
    installed = keepalive_preload.path("connect")
    if config in SHIPPED:
        return os.path.join(SHIPPED[config], os.path.basename(installed))
    return installed


def needed(path: str) -> str:
    readelf = shutil.which("readelf")
    if readelf is None:
        return "?"
    out = subprocess.run([readelf, "-d", path], capture_output=True, text=True,
                         check=True).stdout
    return ", ".join(re.findall(r"\(NEEDED\).*\[(.+?)\]", out)) or "none"


def time_op(bench: str, op: str, config: str, n: int) -> int:
    argv = [bench, "tcp-manual" if config == "manual" else op, str(n)]
    out = subprocess.run(argv, env=env_for(config), capture_output=True, text=True,
                         check=True, timeout=600).stdout
    return int(out)


def syscalls(bench: str, op: str, config: str, workdir: str) -> dict[str, float]:
    """Exact syscalls per op: (count at 2n - count at n) / n, from strace -f -c's
    per-call totals (every thread's calls, none lost to interleaved lines)."""
    strace = shutil.which("strace")
    if strace is None:
        return {}
    counts = []
    n = 50 if op == "spawn" else 200
    for iterations in (n, 2 * n):
        summary = os.path.join(workdir, "summary")
        argv = [bench, "tcp-manual" if config == "manual" else op, str(iterations)]
        subprocess.run([strace, "-f", "-qq", "-c", "-o", summary, *argv], env=env_for(config),
                       check=True, capture_output=True, timeout=600)
        calls: dict[str, int] = {}
        with open(summary) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
                    calls[fields[-1]] = calls.get(fields[-1], 0) + int(fields[3])
        counts.append({"total": sum(calls.values()),
                       "sockopt": sum(v for k, v in calls.items() if k.endswith("sockopt"))})
    return {key: (counts[1][key] - counts[0][key]) / n for key in counts[0]}


def import_ms(rounds: int) -> float:
    times = []
    for _ in range(rounds):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c",
                              "import keepalive_preload"], capture_output=True, text=True,
                             check=True).stderr
        for line in err.splitlines():
            fields = [part.strip() for part in line.split("|")]
            if len(fields) == 3 and fields[2] == "keepalive_preload":
                times.append(int(fields[1]) / 1000)
    return statistics.median(times)


def _cgroup_skip_reason() -> str | None:
    from keepalive_preload.cgroup.attach import MINIMUM_KERNEL, cgroup2_mounts

    if os.geteuid() != 0:
        return "needs root"
    release = re.match(r"(\d+)\.(\d+)", os.uname().release)
    if release and (int(release.group(1)), int(release.group(2))) < MINIMUM_KERNEL:
        return f"needs Linux >= 5.9, not {os.uname().release}"
    if not cgroup2_mounts():
        return "no cgroup v2 mount"
    return None


def cgroup_section(bench: str, rounds: int) -> None:
    """TCP socket+connect+close on loopback, from inside a cgroup: without anything,
    with the preload (connect variant), and in a cgroup with our program attached
    (--client, the defaults); alternating rounds, one run."""
    n = OPS["tcp"][1]
    print("\ncgroup mode (eBPF sock_ops) next to the preload: a TCP socket, connect and close "
          f"on loopback, ns per operation, median of {rounds} alternating rounds\n")
    reason = _cgroup_skip_reason()
    if reason is not None:
        print(f"skipped: {reason}")
        return
    from keepalive_preload._options import effective
    from keepalive_preload.cgroup import attach as _cgroup
    from keepalive_preload.cgroup.program import Flag, map_values

    mount = _cgroup.cgroup2_mounts()[0]
    groups = {name: os.path.join(mount, f"kp-bench-{os.getpid()}-{name}")
              for name in ("plain", "bpf")}
    try:
        for directory in groups.values():
            os.mkdir(directory)
        _cgroup.attach(groups["bpf"], map_values(Flag.CLIENT, effective({})))
        configs = {"none": ("plain", "none"), "preload": ("plain", "connect"),
                   "cgroup": ("bpf", "none")}
        samples: dict[str, list[int]] = {c: [] for c in configs}
        for round_ in range(rounds):
            order = list(configs) if round_ % 2 == 0 else list(reversed(configs))
            for config in order:
                group, library = configs[config]
                argv = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"',
                        groups[group], bench, "tcp", str(n)]
                out = subprocess.run(argv, env=env_for(library), capture_output=True,
                                     text=True, check=True, timeout=600).stdout
                samples[config].append(int(out))
    finally:
        for directory in groups.values():
            if os.path.isdir(directory):
                if directory == groups["bpf"]:
                    _cgroup.detach(directory)
                os.rmdir(directory)
    medians = {c: statistics.median(v) for c, v in samples.items()}
    base = medians["none"]
    print("| configuration | ns | ratio to nothing |")
    print("|---|---|---|")
    for config, text in (("none", "nothing (in a cgroup, no program, no library)"),
                         ("preload", "preload, connect variant (LD_PRELOAD)"),
                         ("cgroup", "cgroup mode, attach --client (eBPF)")):
        print(f"| {text} | {medians[config]:,.0f} | {medians[config] / base:.2f}x |")
    print(f"\n- cgroup mode vs the preload, per TCP connection: "
          f"{medians['cgroup'] / medians['preload']:.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description="keepalive-preload benchmark")
    parser.add_argument("--rounds", type=int, default=9,
                        help="alternating rounds per measurement (median taken)")
    parser.add_argument("--cgroup-only", action="store_true",
                        help="only the cgroup mode section")
    parser.add_argument("--shipped", action="append", default=[], metavar="NAME=DIR",
                        help="another build's library directory, timed at start-up "
                             "(repeatable; bench/run passes the .deb's and the wheel's)")
    args = parser.parse_args()
    for item in args.shipped:
        name, _, directory = item.partition("=")
        SHIPPED[name] = directory
    workdir = tempfile.mkdtemp(prefix="kp-bench-")
    try:
        bench = build(workdir)
        if args.cgroup_only:
            cgroup_section(bench, args.rounds)
            return
        rows = []
        for op, (label, n) in OPS.items():
            configs = (*CONFIGS, FLOORS[op]) if op in FLOORS else CONFIGS
            if op == "spawn":
                configs = (*configs, *SHIPPED)
            samples: dict[str, list[int]] = {c: [] for c in configs}
            for round_ in range(args.rounds):
                order = configs if round_ % 2 == 0 else tuple(reversed(configs))
                for config in order:
                    samples[config].append(time_op(bench, op, config, n))
            medians = {c: statistics.median(v) for c, v in samples.items()}
            calls = {c: syscalls(bench, op, c, workdir) for c in configs}
            rows.append((op, label, medians, calls))
        report(rows, import_ms(max(args.rounds, 15)), args.rounds)
        cgroup_section(bench, args.rounds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report(rows: list[tuple[str, str, dict[str, float], dict[str, dict[str, float]]]],
           import_time: float, rounds: int) -> None:
    print(f"keepalive-preload {keepalive_preload.__version__} benchmark: ns per operation, "
          f"median iteration, median of {rounds} alternating rounds (ratio to no library)\n")
    header = ["operation", "no library", "connect", "listen", "socket", "floor"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for _, label, medians, _ in rows:
        base = medians["none"]
        cells = [label, f"{base:,.0f}"]
        for config in ("connect", "listen", "socket", "floor"):
            value = medians.get(config) or medians.get("manual") or medians.get("empty") \
                if config == "floor" else medians[config]
            cells.append(f"{value:,.0f} ({value / base:.2f}x)" if value else "—")
        print("| " + " | ".join(cells) + " |")
    print("\nfloor: TCP, the same setsockopt calls made by hand; start-up, an empty "
          "preload library")
    print("\nsystem calls per operation (of which setsockopt/getsockopt), strace -f:\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for _, label, _, calls in rows:
        cells = [label]
        for config in ("none", "connect", "listen", "socket", "floor"):
            c = calls.get(config)
            if config == "floor":
                c = calls.get("manual") or calls.get("empty")
            cells.append(f"{c['total']:g} ({c['sockopt']:g})" if c else "—")
        print("| " + " | ".join(cells) + " |")

    by_op = {op: (medians, calls) for op, _, medians, calls in rows}
    tcp, tcp_calls = by_op["tcp"]
    print("\ntargets (per socket or call: the setsockopt/getsockopt calls, which are all the\n"
          "library adds there; exact, unlike the totals, which the acceptor thread blurs):")
    for variant in ("connect", "socket"):
        ratio = tcp[variant] / tcp["manual"]
        verdict = "met" if ratio <= 1.10 else "MISSED"
        print(f"- TCP socket, {variant} variant vs the hand-made floor: {ratio:.3f}x "
              f"(target <= 1.10x): {verdict}")
    for op in ("udp", "unix"):
        _, calls = by_op[op]
        if not calls.get("none"):
            print(f"- {op}: syscalls not counted (no strace)")
            continue
        # Contract: none in the socket variant (socket()'s arguments say TCP) nor
        # in the listen variant (no listen); connect: nothing on AF_UNIX (the
        # address family says so), one getsockopt(SO_PROTOCOL) on UDP.
        for variant, allowed in (("socket", 0), ("connect", 1 if op == "udp" else 0),
                                 ("listen", 0)):
            extra = calls[variant]["sockopt"] - calls["none"]["sockopt"]
            verdict = "met" if extra <= allowed else "MISSED"
            print(f"- {op}, {variant} variant: {extra:+g} syscalls per socket "
                  f"(target <= {allowed}): {verdict}")
    if tcp_calls.get("none"):
        # Contract: at most one getsockopt beyond the floor (connect: SO_PROTOCOL;
        # a program that never set a keepalive option has nothing to ask about);
        # none after socket().
        for variant, allowed in (("connect", 1), ("socket", 0)):
            extra = tcp_calls[variant]["sockopt"] - tcp_calls["manual"]["sockopt"]
            target = "target 0" if allowed == 0 else f"target <= {allowed}"
            print(f"- TCP, {variant} variant vs the floor: {extra:+g} syscalls per socket "
                  f"({target}): {'met' if extra <= allowed else 'MISSED'}")
    own, own_calls = by_op["tcp-own"]
    if own_calls.get("none"):
        # A program that sets its own timers after connect: each timer change
        # reads the user timeout and the timers (4 getsockopt) and sets the
        # derived user timeout that follows them (1 setsockopt).
        for variant in ("connect", "socket"):
            extra = own_calls[variant]["sockopt"] - own_calls["none"]["sockopt"]
            print(f"- TCP, program sets its own timers, {variant} variant: {extra:+g} syscalls "
                  f"per socket (connect: ours 5, SO_PROTOCOL and the 4 ruled options read, as the "
                  f"process has set its own before; socket: ours 5; then for each of its 3 "
                  f"timers 4 read + 1 set for the derived user timeout to follow), "
                  f"{own[variant] / own['none']:.3f}x the time without")
    keepidle, keepidle_calls = by_op["keepidle"]
    if keepidle_calls.get("none"):
        extra = max(keepidle_calls[v]["sockopt"] - keepidle_calls["none"]["sockopt"]
                    for v in ("connect", "listen", "socket"))
        worst = max(keepidle[v] / keepidle["none"] for v in ("connect", "listen", "socket"))
        print(f"- {OPS['keepidle'][0]}: {extra:+g} syscalls per call (target <= 4: the user "
              f"timeout and the timers read, for the derived user timeout to follow), "
              f"{worst:.3f}x the time without: {'met' if extra <= 4 else 'MISSED'}")
    for op in ("nodelay",):
        timing, calls = by_op[op]
        worst = max(timing[v] / timing["none"] for v in ("connect", "listen", "socket"))
        print(f"- {OPS[op][0]}: {worst:.3f}x the time without (worst variant; "
              f"target <= 1.10x): {'met' if worst <= 1.10 else 'MISSED'}")
        if calls.get("none"):
            extra = max(calls[v]["sockopt"] - calls["none"]["sockopt"]
                        for v in ("connect", "listen", "socket"))
            print(f"- {OPS[op][0]}: {extra:+g} syscalls per call (target 0): "
                  f"{'met' if extra == 0 else 'MISSED'}")
    spawn, spawn_calls = by_op["spawn"]
    worst = max(spawn[v] / spawn["none"] for v in ("connect", "listen", "socket"))
    print(f"- process start-up with the library loaded: {worst:.3f}x the time without "
          f"(worst variant; target < 1.05x): {'met' if worst < 1.05 else 'MISSED'}; "
          f"an empty preload library: {spawn['empty'] / spawn['none']:.3f}x")
    if spawn_calls.get("none"):
        extra = spawn_calls["socket"]["total"] - spawn_calls["empty"]["total"]
        # Contract: an absent configuration file costs one failed open, nothing else.
        print(f"- start-up syscalls beyond loading an empty library: {extra:+g} per process "
              f"(target <= 1, the configuration file's open): {'met' if extra <= 1 else 'MISSED'}")
    if SHIPPED:
        report_shipped(spawn, spawn_calls)
    print(f"- import keepalive_preload: {import_time:.2f} ms (median of -X importtime; "
          f"target < 20 ms): {'met' if import_time < 20 else 'MISSED'}")



def report_shipped(spawn: dict[str, float], calls: dict[str, dict[str, float]]) -> None:
    """The load cost of each build of libkeepalive.so, from the start-up rounds."""
    print("\nloading libkeepalive.so, per process start-up (spawn /bin/true), beyond no "
          "library, same rounds:\n")
    print("| preloaded | extra µs per exec | extra syscalls per exec | DT_NEEDED |")
    print("|---|---|---|---|")
    rows = [("empty library", "empty", EMPTY_LIBRARY), ("source build", "connect",
            library("connect")), *((name, name, library(name)) for name in SHIPPED)]
    for label, config, path in rows:
        extra = (spawn[config] - spawn["none"]) / 1000
        syscalls = (f"{calls[config]['total'] - calls['none']['total']:+g}"
                    if calls.get("none") else "—")
        print(f"| {label} | {extra:+.0f} | {syscalls} | {needed(path)} |")
    print("\ntargets, shipped builds against the source build:")
    source = spawn["connect"] - spawn["none"]
    for name in SHIPPED:
        ratio = (spawn[name] - spawn["none"]) / source if source > 0 else float("inf")
        verdict = "met" if ratio <= 1.10 else "MISSED"
        print(f"- {name}: {ratio:.2f}x the source build's extra start-up time "
              f"(target <= 1.10x): {verdict}")
        if calls.get("none"):
            extra = calls[name]["total"] - calls["connect"]["total"]
            print(f"- {name}: {extra:+g} syscalls per start-up beyond the source build "
                  f"(target 0): {'met' if extra == 0 else 'MISSED'}")


if __name__ == "__main__":
    main()
