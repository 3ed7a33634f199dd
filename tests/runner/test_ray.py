"""--backend ray (issue 12, part 2): workers as Ray actors, on a local Ray the CLI starts and
on a two-node cluster on loopback (ray.cluster_utils), through the CLI.

Ray's start-up is slow (seconds per node), so one two-node cluster serves the module. On
Linux Ray replaces a loopback node address with the host's routable one unless
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (ray._private.ray_constants.ENABLE_RAY_CLUSTER, read when
ray is imported: hence set before the import, and inherited by the CLI's subprocesses).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
pytest.importorskip("ray")

from support.helpers import ROOT, read_csv_rows, run_cli

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime

SMOKE = str(ROOT / "scenarios" / "smoke.yaml")
CPUS_PER_NODE = 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """Two Ray nodes of two CPUs each on 127.0.0.1; yields the address for --ray-address."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": CPUS_PER_NODE, "node_ip_address": "127.0.0.1",
                                                      "include_dashboard": False})
    try:
        c.add_node(num_cpus=CPUS_PER_NODE, node_ip_address="127.0.0.1")
        c.wait_for_nodes()
        yield c.address
    finally:
        c.shutdown()


def _ok_measured(rows: list[dict[str, str]]) -> collections.Counter[str]:
    return collections.Counter(r["worker"] for r in rows if r["outcome"] == "ok" and r["phase"] == "measure")


def test_local_ray_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "run"
    t = time.monotonic()
    r = run_cli("run", SMOKE, "--backend", "ray", "--workers", "2", "--duration", "4s", "--out", str(out), "-q",
                timeout=180)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t < 120
    # Ray's notice that a local cluster uses token authentication needs no action (issue 22)
    assert "Token authentication" not in r.stderr and "authentication_token_setup" not in r.stderr, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    rows = read_csv_rows(out / "requests.csv")
    assert {r["worker"] for r in rows} == {"0", "1"}
    assert summary["requests"]["completed"] == sum(_ok_measured(rows).values()) > 0
    assert [w["index"] for w in summary["workers"]["each"]] == [0, 1]
    for w in summary["workers"]["each"]:
        assert w["loop"] and w["node"] and w["clock_offset_ms"] is not None and not w["lost"]
    # the run directory is one that report and compare read
    assert run_cli("report", str(out)).returncode == 0
    c = run_cli("compare", str(out), str(out), "--metric", "ttft.p50", "--allow-saturated")  # a short run: no p99
    # compare read both directories; a run this short judges no check, which is exit 2 (issue 22)
    assert c.returncode == 2 and "no check could be judged" in c.stderr, c.stdout + c.stderr


def test_two_nodes_merge_exactly(tmp_path: Path, cluster: str) -> None:
    out = tmp_path / "run"
    r = run_cli("run", SMOKE, "--backend", "ray", "--ray-address", cluster, "--workers", "4", "--duration", "4s",
                "--out", str(out), "-q", "--no-html", timeout=180)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    rows = read_csv_rows(out / "requests.csv")
    per_worker = _ok_measured(rows)
    assert set(per_worker) == {"0", "1", "2", "3"}
    assert summary["requests"]["completed"] == sum(per_worker.values())
    assert summary["requests"]["started"] == sum(1 for r in rows if r["phase"] == "measure")
    assert summary["latency_ms"]["ttft"]["count"] == summary["requests"]["completed"]
    nodes = {w["node"] for w in summary["workers"]["each"]}
    assert len(nodes) == 2, summary["workers"]["each"]  # spread over both nodes
    assert all(abs(w["clock_offset_ms"]) < 1000 for w in summary["workers"]["each"])  # one host: the same clock


def test_unschedulable_workers_exit_3_quickly(tmp_path: Path, cluster: str) -> None:
    out = tmp_path / "run"
    t = time.monotonic()
    r = run_cli("run", SMOKE, "--backend", "ray", "--ray-address", cluster, "--workers", str(2 * CPUS_PER_NODE + 2),
                "--duration", "4s", "--out", str(out), "-q", env={"LOADTEST_RAY_READY_TIMEOUT": "3"}, timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "could not be placed" in r.stderr and "CPUs" in r.stderr
    assert time.monotonic() - t < 60
    assert not (out / "requests.csv").exists()


def _ray_worker_pids() -> list[int]:
    """The RayWorker actor processes under this test process (its cluster's), by pid."""
    import psutil

    me = os.getpid()
    pids = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if cmd.startswith("ray::RayWorker") and me in (q.pid for q in p.parents()):
                pids.append(p.pid)
        except psutil.Error:
            continue
    return pids


def test_a_lost_actor_is_merged_up_to_the_loss(tmp_path: Path, cluster: str) -> None:
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "loadtest", "run", SMOKE, "--backend", "ray", "--ray-address",
                             cluster, "--workers", "2", "--duration", "8s", "--out", str(out), "-q", "--no-html"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(_ray_worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        pids = _ray_worker_pids()
        assert len(pids) == 2
        time.sleep(4)  # the run is under way: some ticks have come from both
        os.kill(pids[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 5, stdout + stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "incomplete"
    assert len(summary["workers"]["lost"]) == 1 and "was lost" in summary["workers"]["lost"][0]
    rows = read_csv_rows(out / "requests.csv")
    assert {r["worker"] for r in rows} == {"0", "1"}  # the lost worker's rows up to the loss
    assert summary["requests"]["completed"] > 0


def test_without_ray_installed_bad_input(tmp_path: Path) -> None:
    shim = tmp_path / "shim" / "ray"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('no ray here')\n")
    out = tmp_path / "run"
    r = run_cli("run", SMOKE, "--backend", "ray", "--duration", "3s", "--out", str(out),
                env={"PYTHONPATH": str(shim.parent)})
    assert r.returncode == 2
    assert "Ray is not installed: pip install 'loadtest[ray]'" in r.stderr
    assert not out.exists()
    r = run_cli("run", SMOKE, "--ray-address", "127.0.0.1:1", "--out", str(out))
    assert r.returncode == 2 and "--backend ray" in r.stderr


def test_sigint_stops_every_actor_and_writes_the_merged_run(tmp_path: Path, cluster: str) -> None:
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "loadtest", "run", SMOKE, "--backend", "ray", "--ray-address",
                             cluster, "--workers", "2", "--duration", "60s", "--out", str(out), "-q", "--no-html"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(_ray_worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(5)  # past the 2 s warmup
        t = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 4, stdout + stderr
    assert time.monotonic() - t < 30  # drained, not run to the end
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "interrupted" and not summary["workers"]["lost"]
    rows = read_csv_rows(out / "requests.csv")
    assert {r["worker"] for r in rows} == {"0", "1"}
    assert summary["requests"]["completed"] == sum(_ok_measured(rows).values()) > 0


def test_an_unreachable_cluster_exits_3_at_once(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    r = run_cli("run", SMOKE, "--backend", "ray", "--ray-address", f"127.0.0.1:{port}", "--duration", "3s",
                "--out", str(out), timeout=60)
    assert r.returncode == 3, r.stderr
    assert "cannot reach the Ray cluster" in r.stderr
    assert not (out / "requests.csv").exists()
