"""The benchmark still runs and reports every figure (one quick round; the
figures themselves are for bench/run, not for a test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import unavailable

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench.py"


def test_benchmark_one_round() -> None:
    if not BENCH.exists():
        unavailable("runs from a source checkout (bench/)")
    result = subprocess.run([sys.executable, str(BENCH), "--rounds", "1"], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for label in ("TCP socket+connect+close", "UDP socket+connect+close",
                  "AF_UNIX socket+connect+close", "TCP connect+accept+close",
                  "process start-up (spawn /bin/true)"):
        assert out.count(label) == 2  # in the timing table and the syscall table
    assert "import keepalive_preload:" in out
    # the deterministic figures: exact syscall counts
    assert "- TCP, socket variant vs the floor: +0 syscalls per socket (target 0): met" in out
    assert "- udp, socket variant: +0 syscalls per socket (target <= 0): met" in out
