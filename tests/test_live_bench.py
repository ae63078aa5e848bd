"""bench/live.py still runs and reports every figure (a tiny host: 2
processes x 20 sockets, one round; the figures themselves are for bench/run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support import ENTRY_POINTS, TIMEOUT, unavailable

BENCH = Path(__file__).resolve().parent.parent / "bench" / "live.py"


def test_live_benchmark_reports_every_figure() -> None:
    if os.geteuid() != 0:
        unavailable("bench/live.py measures as root")
    result = subprocess.run([sys.executable, str(BENCH), "--processes", "2", "--sockets", "20",
                             "--rounds", "1", "--no-fail", "--kp", ENTRY_POINTS["script"][0]],
                            capture_output=True, text=True, timeout=TIMEOUT * 4)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2 processes x 20 loopback sockets (42 TCP sockets held" in out
    for name in ("ss -tanpe", "status --all", "status of the 2 PIDs", "apply of the 2 PIDs"):
        assert re.search(rf"^  {re.escape(name)} +\d+\.\d{{3}} s", out, re.MULTILINE), name
    assert re.search(r"status --all --json peak RSS +\d+\.\d MB +\(bound 100 MB: (ok|OVER)\)",
                     out)
