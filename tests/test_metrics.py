"""`keepalive-preload metrics`: the host's TCP sockets in the Prometheus text
format, judged by Debian's `promtool check metrics` and served by a real
`prometheus-node-exporter` (textfile collector); exact counts in PID and
network namespaces of the test's own, `--output` written atomically.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

from live import ECHO, holder
from support import ENTRY_POINTS, TIMEOUT, clean_env, cli, stop, unavailable

SAMPLE = re.compile(r'^(\w+)(?:\{([^}]*)\})? (\S+)$')


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, line
        labels = frozenset(tuple(pair.split("=", 1)) for pair in
                           (match.group(2).split(",") if match.group(2) else []))
        out[(match.group(1), frozenset((k, v.strip('"')) for k, v in labels))] = float(
            match.group(3))
    return out


def need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        unavailable(f"{tool} is not installed (Debian: prometheus, prometheus-node-exporter)")
    return found


def test_promtool_accepts_it_and_labels_are_bounded() -> None:
    promtool = need("promtool")
    with holder(3):
        result = cli("metrics")
    assert result.returncode == 0, result.stderr
    checked = subprocess.run([promtool, "check", "metrics"], input=result.stdout,
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = result.stdout.splitlines()
    helps = [line.split()[2] for line in lines if line.startswith("# HELP ")]
    types = [line.split()[2] for line in lines if line.startswith("# TYPE ")]
    assert helps == types
    assert len(set(helps)) == len(helps)  # once per metric
    allowed = {"protocol": {"tcp", "mptcp"}, "keepalive": {"on", "off", "unknown"},
               "source": {"program", "library", "cgroup", "none", "unknown"},
               "loopback": {"true", "false"}}
    for (name, labels), _ in samples(result.stdout).items():
        for key, value in labels:
            if key == "state":
                assert re.fullmatch(r"[a-z0-9-]+", value), value
            else:
                assert value in allowed[key], (name, key, value)


def test_counts_in_namespaces_of_our_own(tmp_path: Path) -> None:
    """In new PID and network namespaces, one pair on 10.200.9.2 (a network
    address) and one on loopback, nothing else: exact counts before and after
    `apply` of the network pair."""
    if os.geteuid() != 0:
        unavailable("new PID and network namespaces need root")
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import json, subprocess
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "addr", "add", "10.200.9.2/32", "dev", "lo"], check=True)
        kp, echo = {ENTRY_POINTS["module"]!r}, {ECHO!r}
        procs = []
        def pair(address):
            server = subprocess.Popen([*echo, "serve", address, "0"], stdout=subprocess.PIPE,
                                      text=True)
            port = json.loads(server.stdout.readline())["port"]
            client = subprocess.Popen([*echo, "connect", address, str(port)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            client.stdout.readline(); server.stdout.readline()
            procs.extend([server, client])
            return [server.pid, client.pid]
        network = pair("10.200.9.2"); pair("127.0.0.1")
        run = lambda *a: subprocess.run([*kp, *a], capture_output=True, text=True, timeout=60)
        out = {{"before": run("metrics").stdout}}
        run("apply", *map(str, network))
        out["after"] = run("metrics").stdout
        for p in procs:
            p.kill(); p.wait()
        print(json.dumps(out))
    """))
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--net",
                           sys.executable, str(driver)], capture_output=True, text=True,
                          timeout=120, env=clean_env())
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)

    def count(text: str, **labels: str) -> float:
        return sum(v for (name, got), v in samples(text).items()
                   if name == "keepalive_preload_tcp_sockets"
                   and set(labels.items()) <= set(got))

    before, after = out["before"], out["after"]
    for loopback in ("true", "false"):
        assert count(before, state="established", keepalive="off", source="none",
                     loopback=loopback) == 2
        assert count(before, state="listen", loopback=loopback) == 1
    assert samples(before)[("keepalive_preload_established_without_keepalive",
                            frozenset({("loopback", "false")}))] == 2
    assert count(after, state="established", keepalive="on", loopback="false") == 2
    assert count(after, state="established", keepalive="off", loopback="true") == 2
    assert samples(after)[("keepalive_preload_established_without_keepalive",
                           frozenset({("loopback", "false")}))] == 0
    assert samples(after)[("keepalive_preload_unreadable_processes", frozenset())] == 0


def test_output_is_atomic_and_world_readable(tmp_path: Path) -> None:
    target = tmp_path / "keepalive_preload.prom"
    target.write_text("old\n")
    old_inode = target.stat().st_ino
    result = cli("metrics", "--output", str(target))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert target.stat().st_ino != old_inode  # renamed over, not rewritten in place
    assert target.stat().st_mode & 0o777 == 0o644
    assert target.read_text().startswith("# HELP keepalive_preload_")
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary left
    missing = cli("metrics", "--output", str(tmp_path / "no" / "such.prom"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("keepalive-preload: cannot write ")
    assert len(missing.stderr.splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_node_exporter_serves_it(tmp_path: Path) -> None:
    """A real prometheus-node-exporter with only the textfile collector, on a
    free loopback port: its scrape carries our metrics and no textfile error."""
    exporter = need("prometheus-node-exporter")
    with holder(1):
        result = cli("metrics", "--output", str(tmp_path / "keepalive_preload.prom"))
    assert result.returncode == 0, result.stderr
    port = _free_port()
    proc = subprocess.Popen([exporter, "--collector.disable-defaults", "--collector.textfile",
                             f"--collector.textfile.directory={tmp_path}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=5) as page:
                    scraped = page.read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "node_exporter did not answer"
                time.sleep(0.2)
    finally:
        stop(proc)
    got = samples("\n".join(line for line in scraped.splitlines()
                            if line.startswith(("keepalive_preload_", "node_textfile"))))
    assert got[("node_textfile_scrape_error", frozenset())] == 0
    ours = {name for name, _ in got if name.startswith("keepalive_preload_")}
    assert {"keepalive_preload_tcp_sockets", "keepalive_preload_established_without_keepalive",
            "keepalive_preload_unreadable_processes"} <= ours
    assert "# TYPE keepalive_preload_tcp_sockets gauge" in scraped
