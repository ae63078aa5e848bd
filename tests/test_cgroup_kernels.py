"""The cgroup mode's kernel-dependent branches, on the kernel this runs on.

No release string is faked here: the VM matrix (tests/vm/run) boots Debian's 5.10,
6.1 and 6.12 kernels and runs these tests on each, so every branch runs on a kernel
where it applies (test_ccgroup.py's test_old_kernel keeps the faked-release unit
tests, e.g. for the 5.9 minimum, which no kernel of the matrix is below).

- ``TCP_WINDOW_CLAMP`` from 5.11: before it, ``attach --window-clamp`` is refused
  (exit 2, the 5.11 message) and nothing is attached; from it, a connection made in
  the cgroup has the clamp.
- ``SO_KEEPALIVE`` read back from 6.1: before it, attach warns, and a program that
  turned keepalive on itself gets ours too (as with ``--force``); from it, the
  program's own settings are kept, without the warning.
"""

from __future__ import annotations

import os
import re

from test_cgroup import (  # noqa: F401 - the fixtures are used by name
    SEVEN,
    SEVEN_ARGS,
    Cgroup,
    cgroup,
    cgroup2,
    connect,
    port,
    static_peer,
)

from support import cli, one_line_error, subset

_RELEASE = re.match(r"(\d+)\.(\d+)", os.uname().release)
KERNEL = (int(_RELEASE.group(1)), int(_RELEASE.group(2))) if _RELEASE else (0, 0)


def test_window_clamp_on_this_kernel(cgroup: Cgroup, static_probe: str,  # noqa: F811
                                     port: int) -> None:  # noqa: F811
    result = cli("cgroup", "attach", "--client", "--window-clamp", "20000", cgroup.path)
    (report,) = cgroup.run([static_probe, "connect4", str(port)])
    if KERNEL < (5, 11):
        one_line_error(result, 2, "--window-clamp needs Linux 5.11")
        assert report["TCP_WINDOW_CLAMP"] != 20000, report
        assert report["TCP_USER_TIMEOUT"] == 0, "something was attached after all"
    else:
        assert result.returncode == 0, result
        assert report["TCP_WINDOW_CLAMP"] == 20000, report


def test_program_own_keepalive_on_this_kernel(cgroup: Cgroup, static_peer: str,  # noqa: F811
                                              port: int) -> None:  # noqa: F811
    result = cli("cgroup", "attach", *SEVEN_ARGS, cgroup.path)
    assert result.returncode == 0, result
    event = connect(cgroup, static_peer, port, "own")  # SO_KEEPALIVE, idle 100, before connect
    if KERNEL < (6, 1):
        assert "6.1" in result.stderr, result.stderr
        assert subset(event, SEVEN) == SEVEN, event
    else:
        assert "6.1" not in result.stderr, result.stderr
        assert (event["SO_KEEPALIVE"], event["TCP_KEEPIDLE"], event["TCP_USER_TIMEOUT"]) == \
            (1, 100, 0), event
