"""The systemd units the keepalive-preload packages ship (packaging/systemd/):
`systemd-analyze verify` finds nothing to say about them, and they run the
commands the design names. What they do under a real systemd (a service
restarted, a reboot, disable, purge) is proven in the VM matrix (tests/vm/);
verified again as installed by the .deb in test_packages.py."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import ROOT, SCRIPT, TIMEOUT, need_tool

UNITS = ROOT / "packaging" / "systemd"
NAMES = ["keepalive-preload-cgroup@.service", "keepalive-preload-metrics.service",
         "keepalive-preload-metrics.timer"]
COMMAND = "/usr/bin/keepalive-preload"
TEXTFILE = "/var/lib/prometheus/node-exporter/keepalive_preload.prom"


def unit(name: str) -> configparser.ConfigParser:
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.optionxform = str  # type: ignore[assignment,method-assign]
    parsed.read(UNITS / name)
    return parsed


@pytest.fixture
def scratch_root(tmp_path: Path) -> Path:
    """A root for `systemd-analyze verify --root`: the host's units (what ours
    order against), ours, and an executable /usr/bin/keepalive-preload."""
    need_tool("systemd-analyze")
    root = tmp_path / "root"
    system = root / "usr" / "lib" / "systemd" / "system"
    shutil.copytree("/usr/lib/systemd/system", system, symlinks=True)
    for name in NAMES:
        shutil.copy(UNITS / name, system / name)
    (root / "usr" / "bin").mkdir(parents=True)
    shutil.copy(SCRIPT or shutil.which("true") or "/bin/true", root / COMMAND.lstrip("/"))
    return root


def verify(root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", "--man=no",
                           *units], capture_output=True, text=True, timeout=TIMEOUT)


def test_exactly_the_shipped_units() -> None:
    assert sorted(p.name for p in UNITS.iterdir()) == sorted(NAMES)


def test_units_verify_clean(scratch_root: Path) -> None:
    result = verify(scratch_root, "keepalive-preload-cgroup@system.slice.service",
                    "keepalive-preload-metrics.service", "keepalive-preload-metrics.timer")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_catches_a_broken_unit(scratch_root: Path) -> None:
    """The check bites: a misspelt key and a missing command are reported."""
    system = scratch_root / "usr" / "lib" / "systemd" / "system"
    path = system / "keepalive-preload-metrics.service"
    path.write_text(path.read_text().replace("ExecStart=", "ExecStrat="))
    result = verify(scratch_root, "keepalive-preload-metrics.service")
    assert "ExecStrat" in result.stderr
    assert result.returncode != 0
    (scratch_root / COMMAND.lstrip("/")).unlink()
    result = verify(scratch_root, "keepalive-preload-cgroup@system.slice.service")
    assert f"Command {COMMAND} is not executable" in result.stderr
    assert result.returncode != 0


def test_cgroup_template() -> None:
    service = unit("keepalive-preload-cgroup@.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["RemainAfterExit"] == "yes"
    assert service["Service"]["ExecStart"] == f"{COMMAND} cgroup attach --existing %I"
    assert service["Service"]["ExecStopPost"] == f"{COMMAND} cgroup detach %I"
    assert "ExecStop" not in service["Service"]
    assert service["Install"]["WantedBy"] == "multi-user.target"
    assert "man:keepalive-preload(1)" in service["Unit"]["Documentation"]


@pytest.mark.parametrize(("cgroup", "instance"), [
    ("system.slice", "keepalive-preload-cgroup@system.slice.service"),
    ("system.slice/nginx.service", "keepalive-preload-cgroup@system.slice-nginx.service.service"),
])
def test_instance_names_the_cgroup(cgroup: str, instance: str) -> None:
    """%I, the unescaped instance, is the cgroup the template attaches to;
    the unit's comment shows how to name an instance."""
    escape = need_tool("systemd-escape")
    made = subprocess.run([escape, "--template", "keepalive-preload-cgroup@.service", cgroup],
                          capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    assert made.strip() == instance
    back = subprocess.run([escape, "--unescape", "--instance", instance], capture_output=True,
                          text=True, check=True, timeout=TIMEOUT).stdout
    assert back.strip() == cgroup
    assert "systemd-escape --template keepalive-preload-cgroup@.service" in \
        (UNITS / "keepalive-preload-cgroup@.service").read_text()


def test_metrics_service_and_timer() -> None:
    service = unit("keepalive-preload-metrics.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"] == f"{COMMAND} metrics --output {TEXTFILE}"
    # Writes nowhere but the textfile directory.
    assert service["Service"]["ProtectSystem"] == "strict"
    assert service["Service"]["ReadWritePaths"] == f"-{os.path.dirname(TEXTFILE)}"
    assert "Install" not in service  # started by the timer only
    timer = unit("keepalive-preload-metrics.timer")
    assert timer["Timer"]["OnUnitActiveSec"] == "1min"
    assert timer["Install"]["WantedBy"] == "timers.target"
