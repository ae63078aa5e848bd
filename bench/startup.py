"""Start-up of the command line beside a bare interpreter, measured in the same run.

`keepalive-preload run` sits in front of every program it starts, so `run`
and `path` must start in at most twice the time of `python3 -c pass` (the
same interpreter, the one the command's script runs on). Each round starts
every command once, in turn, so that a busy machine slows them alike; the
figure is the median wall time from spawn to exit (the CPU time beside it).

    python bench/startup.py [--rounds N] [--command PATH]

--command defaults to the keepalive-preload script beside this interpreter
(a virtual environment's bin/). Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

#: The ratio to a bare interpreter that run and path must stay within.
TARGET = 2.0


def measure(argv: list[str]) -> tuple[float, float]:
    """The wall time and the CPU time (user + system) of one run of ``argv``,
    in milliseconds; its output is discarded."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = (time.perf_counter() - start) * 1000
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if child.returncode != 0:
        raise SystemExit(f"startup.py: {' '.join(argv)} failed ({child.returncode})")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="rounds (default 40)")
    parser.add_argument("--command", default=os.path.join(os.path.dirname(sys.executable),
                                                          "keepalive-preload"),
                        help="the keepalive-preload script (default: beside this python)")
    args = parser.parse_args()
    python = sys.executable
    cases = {
        "python3 -c pass": [python, "-c", "pass"],
        "keepalive-preload path": [args.command, "path"],
        "keepalive-preload run -- /bin/true": [args.command, "run", "--", "/bin/true"],
        "/bin/true": ["/bin/true"],
    }
    for argv in cases.values():  # warm the page cache, and fail early
        measure(argv)
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, argv in cases.items():
            took, used = measure(argv)
            wall[name].append(took)
            cpu[name].append(used)
    median = {name: statistics.median(xs) for name, xs in wall.items()}
    median_cpu = {name: statistics.median(xs) for name, xs in cpu.items()}
    base, base_cpu = median["python3 -c pass"], median_cpu["python3 -c pass"]
    print(f"start-up from spawn to exit, median of {args.rounds} interleaved rounds "
          f"(python {sys.version.split()[0]}, {python}):\n")
    print("| command | wall ms | ratio | CPU ms (user+sys) | ratio |")
    print("|---|---|---|---|---|")
    for name in cases:
        print(f"| {name} | {median[name]:.1f} | {median[name] / base:.2f}x "
              f"| {median_cpu[name]:.1f} | {median_cpu[name] / base_cpu:.2f}x |")
    print("\ntargets (the wall time; the CPU time beside it does not count the waits of a "
          "busy machine):")
    missed = 0
    for name in ("keepalive-preload run -- /bin/true", "keepalive-preload path"):
        ratio = median[name] / base
        verdict = "met" if ratio <= TARGET else "MISSED"
        missed += ratio > TARGET
        print(f"- {name}: {ratio:.2f}x a bare python3 -c pass (CPU time "
              f"{median_cpu[name] / base_cpu:.2f}x; target <= {TARGET:g}x): {verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
