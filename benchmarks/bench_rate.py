"""Open-loop rate accuracy: does the harness send what the schedule offers, on time?

One mock proxy in its own process (fast model: TTFT 5 ms, 1 ms gaps, 3 chunks) and the real
open-loop runner (``run_scenario``: scheduler, pool, full recording, a requests.csv sink as the
CLI writes it). For each rate: a constant-arrival schedule for ``--seconds`` (1 s warmup), then

* ``achieved / offered`` over the measured window (pass: within 1 %),
* ``schedule_lag`` p99 (pass: < 2 ms): t_send - queue wait - t_intended, the harness's own
  lateness (dispatcher wake-up + hand-over to a connection),
* generator and mock CPU (% of one core), event-loop lag, TTFT, queue wait, drops.

The mock competes with the generator for the same cores (2 on the CI box): at high rates the
mock's own CPU is part of what limits the result, and the table says how much it used.

    .venv/bin/python benchmarks/bench_rate.py                       # 2000/s for 20 s
    .venv/bin/python benchmarks/bench_rate.py --rates 1000,1500,2000,2500,3000 --seconds 10
    .venv/bin/python benchmarks/bench_rate.py --arrival poisson --rates 2000
    .venv/bin/python benchmarks/bench_rate.py --rates 8000 --workers 1,2 --seconds 10   # scale-out

``achieved`` is what was really sent inside the measured window (summary.json schema 2): a
generator that falls behind shows it here, and ``sent_after_window`` counts what went out late.
With ``--workers 2`` the worker processes' CPU is sampled from outside (psutil) and reported
next to the mock's: on 2 cores, two workers and the mock share them.

Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from loadtest.mock.latency import MockModel, parse_dist
from loadtest.mock.process import MockProcess, model_args
from loadtest.rundir.writer import RequestCsv
from loadtest.runner.coordinator import run as run_scenario
from loadtest.runner.options import RunOptions
from loadtest.scenario import Scenario

PROMPT = "Explain artificial intelligence"


def _runq_wait_s(pid: int | str = "self") -> float:
    """Seconds this process spent runnable but waiting for a CPU (Linux schedstat; 0 elsewhere).

    The tell-tale of a busy machine: a generator that lags with little CPU of its own but a
    long run-queue wait was starved by other processes, not limited by its own work.
    """
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class _ChildCpu:
    """CPU seconds of this process's worker children (not the mock), sampled every 0.2 s, so
    that a child's time is kept even after it exited."""

    def __init__(self, exclude: int) -> None:
        import threading

        self.exclude, self.seen, self._stop = exclude, {}, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for ch in psutil.Process().children(recursive=True):
                if ch.pid == self.exclude:
                    continue
                try:
                    t = ch.cpu_times()
                    self.seen[ch.pid] = t.user + t.system
                except psutil.Error:
                    pass

    def total(self) -> float:
        self._stop.set()
        self._t.join()
        return sum(self.seen.values())


def one_rate(url: str, rate: float, seconds: float, *, arrival: str, connections: int,
             max_connections: int, run_dir: Path, mock_proc: psutil.Process, workers: int = 1) -> dict[str, Any]:
    sc = Scenario.model_validate({
        "name": "bench-rate",
        "target": {"url": url},
        "load": {"mode": "open", "rate": float(rate), "arrival": arrival, "duration": f"{seconds}s",
                 "warmup": "1s", "seed": 1, "connections": connections,
                 "max_connections": max_connections},
        "session": {"steps": [{"gen": {"prompt": PROMPT}}]},
        "timeouts": {"connect": "10s", "first_token": "10s", "stream": "10s"},
    })
    sink = RequestCsv(run_dir)
    m0 = mock_proc.cpu_times()
    q0, mq0 = _runq_wait_s(), _runq_wait_s(mock_proc.pid)
    c0, w0 = time.process_time(), time.perf_counter()
    children = _ChildCpu(exclude=mock_proc.pid) if workers > 1 else None
    result = run_scenario(sc, RunOptions(workers=workers), sink=sink)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    worker_cpu = children.total() if children is not None else cpu
    q1, mq1 = _runq_wait_s(), _runq_wait_s(mock_proc.pid)
    m1 = mock_proc.cpu_times()
    load1 = psutil.getloadavg()[0]
    sink.finish()
    c = result.figures
    lat = {k: r.summary_ms() for k, r in c.metrics.totals.items() if r.count}
    offered, achieved = result.offered_rate or 0.0, result.achieved_rate or 0.0
    lag99 = lat.get("schedule_lag", {}).get("p99")
    ratio = achieved / offered if offered else 0.0
    return {
        "rate": rate,
        "workers": workers,
        "sent_after_window": c.sent_after_window,
        "workers_cpu_pct": round(100 * worker_cpu / wall, 1),
        "offered_rate": round(offered, 2),
        "achieved_rate": round(achieved, 2),
        "ratio": round(ratio, 5),
        "schedule_lag_p50_ms": lat.get("schedule_lag", {}).get("p50"),
        "schedule_lag_p99_ms": lag99,
        "schedule_lag_max_ms": lat.get("schedule_lag", {}).get("max"),
        "queue_p99_ms": lat.get("queue", {}).get("p99"),
        "ttft_p50_ms": lat.get("ttft", {}).get("p50"),
        "ttft_p99_ms": lat.get("ttft", {}).get("p99"),
        "ttft_uncorrected_p99_ms": lat.get("ttft_uncorrected", {}).get("p99"),
        "loop_lag_p99_ms": lat.get("loop_lag", {}).get("p99"),
        "completed": c.completed, "failed": c.failed, "dropped": c.dropped, "cancelled": c.cancelled,
        "gen_cpu_pct": round(100 * cpu / wall, 1),
        # per-second samples of the measured window (SelfWatch): the steady-state cost
        "gen_cpu_pct_steady": round(sorted(result.cpu_percents)[len(result.cpu_percents) // 2], 1)
        if result.cpu_percents else None,
        "mock_cpu_pct": round(100 * ((m1.user + m1.system) - (m0.user + m0.system)) / wall, 1),
        "gen_runq_wait_pct": round(100 * (q1 - q0) / wall, 1),
        "mock_runq_wait_pct": round(100 * (mq1 - mq0) / wall, 1),
        "loadavg_1m_after": round(load1, 2),
        "saturated": result.saturation,
        "pass": abs(ratio - 1) <= 0.01 and lag99 is not None and lag99 < 2.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="2000", help="comma-separated arrivals/s (default 2000)")
    ap.add_argument("--seconds", type=float, default=20.0, help="run length per rate, warmup (1 s) included")
    ap.add_argument("--arrival", default="constant", choices=("constant", "poisson", "gamma"))
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--max-connections", type=int, default=256)
    ap.add_argument("--workers", default="1", help="comma-separated worker counts to try at each rate")
    ap.add_argument("--json", action="store_true", help="print one JSON object per rate")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]
    model = MockModel(ttft_ms=parse_dist(5, name="ttft_ms"), gap_ms=parse_dist(1, name="gap_ms"),
                      chunks=parse_dist(3, name="chunks"))
    mock = MockProcess(model_args(model, seed=1))
    print(f"# cores: {psutil.cpu_count()}  mock: ttft 5 ms, gap 1 ms, 3 chunks (own process)", flush=True)
    ok = True
    with mock as url, tempfile.TemporaryDirectory() as tmp:
        assert mock.proc is not None
        mock_proc = psutil.Process(mock.proc.pid)
        runs = [(rate, int(w)) for rate in rates for w in args.workers.split(",") if w]
        for i, (rate, workers) in enumerate(runs):
            row = one_rate(url, rate, args.seconds, arrival=args.arrival, connections=args.connections,
                           max_connections=args.max_connections, run_dir=Path(tmp) / f"r{i}",
                           mock_proc=mock_proc, workers=workers)
            ok = ok and row["pass"]
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"rate {rate:>6g}/s  workers {workers} (cpu {row['workers_cpu_pct']} %)  sent after window "
                      f"{row['sent_after_window']}  offered {row['offered_rate']:>8.2f}  achieved {row['achieved_rate']:>8.2f}"
                      f"  ratio {row['ratio']:.4f}  sched_lag p50/p99/max {row['schedule_lag_p50_ms']}/"
                      f"{row['schedule_lag_p99_ms']}/{row['schedule_lag_max_ms']} ms  loop_lag p99 "
                      f"{row['loop_lag_p99_ms']} ms  ttft p50/p99 {row['ttft_p50_ms']}/{row['ttft_p99_ms']} ms"
                      f"  queue p99 {row['queue_p99_ms']} ms  cpu gen(steady)/mock {row['gen_cpu_pct_steady']}/"
                      f"{row['mock_cpu_pct']} %  runq wait gen/mock {row['gen_runq_wait_pct']}/{row['mock_runq_wait_pct']} %"
                      f"  load {row['loadavg_1m_after']}  failed/dropped {row['failed']}/{row['dropped']}"
                      f"  {'PASS' if row['pass'] else 'FAIL'} {'; '.join(row['saturated'])}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
