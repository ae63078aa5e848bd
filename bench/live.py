#!/usr/bin/env python3
"""Benchmark of the live-process commands (issue 21): a host with 50
processes each holding 800 loopback TCP sockets (400 connections, both ends,
and a listener: 40,050 sockets in all), measured against `ss -tanpe` over
the same host in the same run:

- `status --all` and `status PID...` of the 50 PIDs: each within 2x ss;
- `apply PID...` of the 50 PIDs (setting the options on every socket): within 4x;
- peak memory (maximum RSS) of `status --all --json`: at most 100 MB.

Each time is the best of --rounds runs (the machine is shared); every wait is
bounded. Prints the figures, the ratios and whether each is within its bound;
exits 1 if one is not (--no-fail: always 0). Every process it starts is
ended by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

PROCESSES, SOCKETS = 50, 800
HOLDER = r"""
import json, os, resource, socket, sys
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < n + 64:
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64, max(n + 64, hard)))
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(n)
held = []
for _ in range(n // 2):
    held.append(socket.create_connection(server.getsockname()))
    held.append(server.accept()[0])
print(json.dumps({"pid": os.getpid(), "sockets": len(held) + 1}), flush=True)
sys.stdin.read()
"""
TIMEOUT = 120


def best(argv: list[str], rounds: int, vary: list[list[str]] | None = None) -> float:
    times = []
    for i in range(rounds):
        args = argv if vary is None else [*argv, *vary[i % len(vary)]]
        started = time.perf_counter()
        done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=TIMEOUT)
        times.append(time.perf_counter() - started)
        if done.returncode not in (0, 3):  # 3: --all found processes it cannot read
            sys.exit(f"bench/live.py: {' '.join(args[:3])}... exited {done.returncode}: "
                     f"{done.stderr.decode(errors='replace')[-500:]}")
    return min(times)


def peak_rss_mb(argv: list[str]) -> float:
    """Maximum RSS of ``argv``, run as the only child of a fresh interpreter."""
    probe = ("import resource, subprocess, sys; "
             "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, timeout=120); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                         timeout=TIMEOUT, check=True).stdout
    return int(out) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=PROCESSES)
    parser.add_argument("--sockets", type=int, default=SOCKETS, help="per process")
    parser.add_argument("--kp", default=shutil.which("keepalive-preload",
                                                     path=os.path.dirname(sys.executable)),
                        help="the keepalive-preload command to measure")
    parser.add_argument("--no-fail", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/live.py: skipped (needs root to read every process's sockets)")
        return 0
    ss = shutil.which("ss")
    if ss is None or args.kp is None:
        print("bench/live.py: skipped (needs ss from iproute2 and keepalive-preload)")
        return 0
    kp = [args.kp]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:  # the commands hold one duplicate at a time; room for the rest
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, max(4096, hard)))
    holders: list[subprocess.Popen[str]] = []
    try:
        started = time.perf_counter()
        for _ in range(args.processes):
            holders.append(subprocess.Popen([sys.executable, "-c", HOLDER, str(args.sockets)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            text=True))
        pids, total = [], 0
        for proc in holders:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                sys.exit("bench/live.py: a holder process did not start")
            info = json.loads(line)
            pids.append(str(info["pid"]))
            total += info["sockets"]
        print(f"live processes: {args.processes} processes x {args.sockets} loopback sockets "
              f"({total} TCP sockets held, set up in {time.perf_counter() - started:.1f} s); "
              f"best of {args.rounds}")
        base = best([ss, "-tanpe"], args.rounds)
        figures = {
            "status --all": (best([*kp, "status", "--all"], args.rounds), 2.0),
            f"status of the {len(pids)} PIDs": (best([*kp, "status", *pids], args.rounds), 2.0),
            f"apply of the {len(pids)} PIDs": (
                best([*kp, "apply", "--force", "--no-config", *pids], args.rounds,
                     vary=[["--idle", str(30 + i)] for i in range(args.rounds)]), 4.0),
        }
        rss = peak_rss_mb([*kp, "status", "--all", "--json"])
    finally:
        for proc in holders:
            proc.kill()
        for proc in holders:
            proc.wait(timeout=TIMEOUT)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
    ok = True
    print(f"  {'ss -tanpe':34} {base:7.3f} s")
    for name, (seconds, bound) in figures.items():
        ratio = seconds / base
        within = ratio <= bound
        ok &= within
        print(f"  {name:34} {seconds:7.3f} s  {ratio:4.2f}x ss  (bound {bound:g}x: "
              f"{'ok' if within else 'OVER'})")
    within = rss <= 100
    ok &= within
    print(f"  {'status --all --json peak RSS':34} {rss:7.1f} MB  (bound 100 MB: "
          f"{'ok' if within else 'OVER'})")
    return 0 if ok or args.no_fail else 1


if __name__ == "__main__":
    sys.exit(main())
