"""deploy/kubernetes/: the DaemonSet and what it needs, validated against the
Kubernetes API schemas (kubernetes-validate, a dev dependency), with the least
privilege it documents, the configuration file its ConfigMap carries judged
by the libraries' own parser, and its start and preStop scripts run for both
cgroup drivers (systemd: kubepods.slice, cgroupfs: kubepods)."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from keepalive_preload import hostconfig
from support import ROOT, TIMEOUT, unavailable

try:
    import yaml  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - kubernetes-validate brings PyYAML
    yaml = None

DEPLOY = ROOT / "deploy" / "kubernetes"
MANIFESTS = ["namespace.yaml", "serviceaccount.yaml", "configmap.yaml", "daemonset.yaml"]
#: The oldest Kubernetes release the manifests are checked against (the oldest
#: the project names), and the validator's newest.
VERSIONS = ["1.27", None]
#: What the DaemonSet may do, and why (its comment says the same, one by one).
CAPABILITIES = {"BPF", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "SYS_RESOURCE"}


def validator() -> str:
    found = shutil.which("kubernetes-validate", path=os.path.dirname(sys.executable))
    if found is None or yaml is None:
        unavailable("kubernetes-validate is not installed (pip install '.[dev]')")
    return found


def load(name: str) -> dict[str, Any]:
    if yaml is None:
        unavailable("PyYAML is not installed (pip install '.[dev]')")
    document = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(document, dict)
    return document


def validate(path: Path, version: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([validator(), "--strict", "--no-warn",
                           *(["-k", version] if version else []), str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v or "latest")
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_validates(name: str, version: str | None) -> None:
    result = validate(DEPLOY / name, version)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout


def test_validation_rejects_a_wrong_field(tmp_path: Path) -> None:
    """The check bites: a field the API does not have fails it."""
    broken = tmp_path / "daemonset.yaml"
    broken.write_text((DEPLOY / "daemonset.yaml").read_text().replace(
        "      hostPID: true\n", "      hostPid: true\n"))
    result = validate(broken, None)
    assert result.returncode != 0
    assert "hostPid" in result.stdout + result.stderr


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load("kustomization.yaml")
    assert kustomization["resources"] == MANIFESTS
    assert sorted(p.name for p in DEPLOY.glob("*.yaml")) == sorted(
        [*MANIFESTS, "kustomization.yaml"])
    (image,) = kustomization["images"]
    assert image["name"] == container()["image"].split(":")[0]


def pod() -> dict[str, Any]:
    spec = load("daemonset.yaml")["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def container() -> dict[str, Any]:
    (only,) = pod()["containers"]
    assert isinstance(only, dict)
    return only


def test_least_privilege_spelled_out() -> None:
    spec, box = pod(), container()
    security = box["securityContext"]
    assert security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(security["capabilities"]["add"]) == CAPABILITIES
    assert spec["hostPID"] is True  # --existing reaches the pods' processes
    assert "hostNetwork" not in spec
    assert "hostIPC" not in spec
    assert spec["automountServiceAccountToken"] is False
    assert load("serviceaccount.yaml")["automountServiceAccountToken"] is False
    # Each capability and each host access has its reason in the manifest.
    text = (DEPLOY / "daemonset.yaml").read_text()
    for capability in CAPABILITIES:
        assert re.search(rf"^#   {capability} +\S", text, re.MULTILINE), capability
    assert "# - hostPID:" in text
    # The only host path: the node's cgroup2 mount, read-only.
    (host,) = [v for v in spec["volumes"] if "hostPath" in v]
    assert host["hostPath"] == {"path": "/sys/fs/cgroup", "type": "Directory"}
    (mount,) = [m for m in box["volumeMounts"] if m["name"] == host["name"]]
    assert mount["readOnly"] is True
    assert mount["mountPath"] != "/sys/fs/cgroup"  # not the container's own namespace
    namespace = load("namespace.yaml")["metadata"]
    assert namespace["name"] == load("daemonset.yaml")["metadata"]["namespace"]
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_values_come_from_the_configmap() -> None:
    box, spec = container(), pod()
    (config,) = [v for v in spec["volumes"] if "configMap" in v]
    assert config["configMap"]["name"] == load("configmap.yaml")["metadata"]["name"]
    (mount,) = [m for m in box["volumeMounts"] if m["name"] == config["name"]]
    assert mount["mountPath"] == hostconfig.DEFAULT_PATH  # what cgroup attach reads
    assert config["configMap"]["items"][0]["mode"] & 0o022 == 0  # trusted: not writable


def test_configmap_file_passes_the_libraries_parser(tmp_path: Path) -> None:
    text = load("configmap.yaml")["data"]["keepalive-preload.conf"]
    conf = tmp_path / "keepalive-preload.conf"
    conf.write_text(text)
    conf.chmod(0o644)
    checked = hostconfig.read(str(conf), strict=False)
    assert checked.problems == []
    # The values in it are the ones documented beside them, below Azure's 240 s.
    values = dict(re.findall(r"^(TCP_\w+)=(\d+)$", text, re.MULTILINE))
    assert int(values["TCP_KEEPIDLE"]) + int(values["TCP_KEEPINTVL"]) < 240
    if checked.reported:
        assert checked.values["idle"] == int(values["TCP_KEEPIDLE"])
        assert checked.values["interval"] == int(values["TCP_KEEPINTVL"])


def test_image_is_built_from_the_release_debs() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    (copy,) = re.findall(r"^COPY (.+) /tmp/debs/$", dockerfile, re.MULTILINE)
    patterns = copy.split()
    version = load("kustomization.yaml")["images"][0]["newTag"]
    # The names packaging/build_packages.py gives the .debs of this release.
    for arch in ("amd64", "arm64"):
        names = [f"libkeepalive-preload_{version}-1_{arch}.deb",
                 f"keepalive-preload_{version}-1_all.deb"]
        wanted = [p.replace("${TARGETARCH}", arch) for p in patterns]
        assert all(any(fnmatch.fnmatch(n, p) for n in names) for p in wanted)
        assert all(any(fnmatch.fnmatch(n, p) for p in wanted) for n in names)
    assert re.search(r"^FROM debian:\S+", dockerfile, re.MULTILINE)
    assert "pip" not in dockerfile  # nothing from PyPI


# ---- the container's scripts, run -------------------------------------------

def scripts(state: Path) -> tuple[str, str]:
    """The container's start script and its preStop command, with the state
    file moved from /run/keepalive-preload into state."""
    box = container()
    assert box["command"] == ["/bin/sh", "-c"]
    (start,) = box["args"]
    stop = box["lifecycle"]["preStop"]["exec"]["command"]
    assert stop[:2] == ["/bin/sh", "-c"]
    moved = [s.replace("/run/keepalive-preload", str(state)) for s in (start, stop[2])]
    assert all(str(state) in s for s in moved)
    return moved[0], moved[1]


def fake_command(bindir: Path, log: Path) -> None:
    """A keepalive-preload that records its arguments: the scripts' logic is
    under test here; the real attach is test_cgroup.py's and the VM matrix's."""
    bindir.mkdir()
    script = bindir / "keepalive-preload"
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    script.chmod(0o755)


@pytest.mark.parametrize("driver", ["kubepods.slice", "kubepods"])
def test_start_and_prestop_scripts(tmp_path: Path, driver: str) -> None:
    host = tmp_path / "cgroup"
    (host / driver).mkdir(parents=True)
    (host / "system.slice").mkdir()
    state, log = tmp_path / "run", tmp_path / "log"
    state.mkdir()
    fake_command(tmp_path / "bin", log)
    start, stop = scripts(state)
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOST_CGROUP": str(host),
           "CGROUP": "auto"}
    # Its own process group, so that what it leaves behind can be found.
    proc = subprocess.Popen(["/bin/sh", "-c", start], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while "cgroup attach" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        subprocess.run(["/bin/sh", "-c", stop], env=env, check=True, timeout=TIMEOUT)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0
        # Its sleep ended with it: nothing of the container is left running
        # (a zombie waiting for this host's reaper is dead already).
        time.sleep(0.2)
        left = subprocess.run(["ps", "-o", "stat=,args=", "-g", str(proc.pid)],
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert [line for line in left.stdout.splitlines() if not line.startswith("Z")] == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert log.read_text().splitlines() == [
        "config --check /etc/keepalive-preload.conf",
        f"cgroup attach --existing {host}/{driver}",
        f"cgroup detach {host}/{driver}"]


def test_start_script_without_pod_cgroups(tmp_path: Path) -> None:
    host = tmp_path / "cgroup"
    (host / "system.slice").mkdir(parents=True)
    state, log = tmp_path / "run", tmp_path / "log"
    state.mkdir()
    fake_command(tmp_path / "bin", log)
    start, _ = scripts(state)
    result = subprocess.run(["/bin/sh", "-c", start], capture_output=True, text=True,
                            timeout=TIMEOUT, env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
                                                 "HOST_CGROUP": str(host), "CGROUP": "auto"})
    assert result.returncode == 1
    assert "no kubepods.slice (systemd cgroup driver) or kubepods (cgroupfs driver)" in \
        result.stderr
    assert not log.exists()
