"""Scale: N (default 10,000) concurrent sessions from one process, through the real runner.

The mock proxy runs in its own process. The runner (closed loop, concurrency N) gives each
user the script ``gen`` then a long ``think``: every session connects, authenticates,
streams one answer and then stays open. Once all N have streamed, this process is sampled
for a few seconds with every session open, then sent SIGINT, the runner's graceful stop
(users wake from think, close their WebSockets, run_scenario returns). Bounded in time by
``--max-s`` (the scenario duration) whatever happens.

Reported: time until all sessions were open (the latest first ``gen`` send, which follows
auth at once) and had streamed; connect-time percentiles; client RSS delta while all are
open divided by N (everything the run allocated, fixed costs included: an upper bound of
the per-session cost; target <= 50 KiB); the mock's RSS and CPU, to see whether it kept up;
errors by category.

    .venv/bin/python benchmarks/bench_scale.py [--sessions 10000] [--max-s 120]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import psutil

from loadtest.metrics.collector import RequestRecord
from loadtest.mock.latency import MockModel, parse_dist
from loadtest.mock.process import MockProcess, model_args
from loadtest.runner.coordinator import run as run_scenario
from loadtest.scenario import Scenario

KIB = 1024
MIB = 1024 * 1024


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (children, the mock included, inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "?"


@dataclass
class Watch:
    """Filled by the request sink (event loop thread) and the sampler thread."""

    sessions: int
    first_send: dict[int, int] = field(default_factory=dict)  # user -> t_send of its first gen (ns since t0)
    first_stop: dict[int, int] = field(default_factory=dict)  # user -> end of its first gen
    outcomes: dict[str, int] = field(default_factory=dict)
    all_open_at: float = 0.0  # perf_counter when every user had finished its first gen
    rss_open: list[int] = field(default_factory=list)
    mock_rss_open: list[int] = field(default_factory=list)
    peak_rss: int = 0
    mock_cpu_open_phase: float = 0.0
    client_cpu_open_phase: float = 0.0
    stop_sent_at: float = 0.0

    def sink(self, rec: RequestRecord, t0: int) -> None:
        self.outcomes[rec.outcome] = self.outcomes.get(rec.outcome, 0) + 1
        if rec.user not in self.first_send and rec.t_send:
            self.first_send[rec.user] = rec.t_send - t0
            self.first_stop[rec.user] = (rec.t_stop or rec.t_send) - t0


def sampler(w: Watch, me: psutil.Process, mock: psutil.Process, hold_s: float, done: threading.Event) -> None:
    """Samples RSS every 100 ms; SIGINT to this process once all sessions were open for hold_s."""
    t_start = time.perf_counter()
    m_cpu0 = sum(mock.cpu_times()[:2])
    c_cpu0 = sum(me.cpu_times()[:2])
    while not done.wait(0.1):
        rss = me.memory_info().rss
        w.peak_rss = max(w.peak_rss, rss)
        if not w.all_open_at and len(w.first_stop) >= w.sessions:
            w.all_open_at = time.perf_counter()
            elapsed = w.all_open_at - t_start
            w.mock_cpu_open_phase = (sum(mock.cpu_times()[:2]) - m_cpu0) / elapsed
            w.client_cpu_open_phase = (sum(me.cpu_times()[:2]) - c_cpu0) / elapsed
        if w.all_open_at:
            w.rss_open.append(rss)
            w.mock_rss_open.append(mock.memory_info().rss)
            if time.perf_counter() - w.all_open_at >= hold_s and not w.stop_sent_at:
                w.stop_sent_at = time.perf_counter()
                os.kill(os.getpid(), signal.SIGINT)  # the runner's graceful stop


class GcPauses:
    """Times every cyclic-GC pass (gc.callbacks): long gen-2 passes stall the event loop."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._t = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._t)

    def close(self) -> None:
        gc.callbacks.remove(self._cb)

    def describe(self) -> str:
        return "; ".join(
            f"gen{g}: {len(p)} passes, {1000 * sum(p):.0f} ms total, max {1000 * max(p, default=0):.0f} ms"
            for g, p in self.pauses.items()
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--max-s", type=float, default=120.0, help="hard bound: the scenario's duration")
    ap.add_argument("--hold-s", type=float, default=3.0, help="seconds to sample with all sessions open")
    ap.add_argument("--chunks", type=int, default=10)
    args = ap.parse_args()
    n = args.sessions

    soft, hard = raise_nofile()
    print(f"RLIMIT_NOFILE {soft}/{hard}; ip_local_port_range {' - '.join(_read('/proc/sys/net/ipv4/ip_local_port_range').split())}; "
          f"somaxconn {_read('/proc/sys/net/core/somaxconn')}; tcp_max_syn_backlog "
          f"{_read('/proc/sys/net/ipv4/tcp_max_syn_backlog')}; cores {os.cpu_count()}")
    if soft < n + 100:
        print(f"warning: RLIMIT_NOFILE {soft} < sessions + 100: expect connect errors (EMFILE)")
    model = MockModel(ttft_ms=parse_dist(20, name="ttft_ms"), gap_ms=parse_dist(5, name="gap_ms"),
                      chunks=parse_dist(args.chunks, name="chunks"))
    me = psutil.Process()
    mock = MockProcess(model_args(model, seed=1))
    with mock as url:
        assert mock.proc is not None
        mock_ps = psutil.Process(mock.proc.pid)
        sc = Scenario.model_validate({
            "name": "bench-scale",
            "target": {"url": url},
            "load": {"mode": "closed", "concurrency": n, "duration": f"{args.max_s}s", "warmup": "0s"},
            "session": {"steps": [{"gen": {"prompt": "Explain artificial intelligence"}},
                                  {"think": f"{args.max_s * 2}s"}]},
            "timeouts": {"connect": "60s", "first_token": "60s", "stream": "60s"},
        })
        w = Watch(sessions=n)
        mock_rss0 = mock_ps.memory_info().rss
        rss0 = me.memory_info().rss
        done = threading.Event()
        th = threading.Thread(target=sampler, args=(w, me, mock_ps, args.hold_s, done), daemon=True)
        t_run = time.perf_counter()
        gcp = GcPauses()
        th.start()
        try:
            result = run_scenario(sc, sink=w.sink)
        finally:
            done.set()
            th.join()
            gcp.close()
        t_end = time.perf_counter()
    c = result.figures
    connect = c.metrics.totals["connect"].summary_ms()
    errors = {k: v for k, v in c.errors.items() if v}

    opened = len(w.first_send)
    rows: list[tuple[str, str]] = [
        ("sessions requested", f"{n:,}"),
        ("sessions opened and streamed", f"{len(w.first_stop):,}"),
        ("time to open all (last first-gen send)", _s(max(w.first_send.values(), default=0) / 1e9)
         if opened == n else f"only {opened:,} opened"),
        ("time until all had streamed once", _s(max(w.first_stop.values(), default=0) / 1e9)),
        ("connect p50 / p99 / max", f"{connect['p50']} / {connect['p99']} / {connect['max']} ms"
         if connect["count"] else "-"),
        ("client RSS before run", f"{rss0 / MIB:,.1f} MiB"),
        ("client RSS, all open (median)", f"{_median(w.rss_open) / MIB:,.1f} MiB" if w.rss_open else "-"),
        ("client RSS per session", f"{(_median(w.rss_open) - rss0) / n / KIB:,.1f} KiB  (target <= 50 KiB)"
         if w.rss_open else "-"),
        ("client RSS peak", f"{w.peak_rss / MIB:,.1f} MiB"),
        ("client CPU while opening", f"{100 * w.client_cpu_open_phase:.0f}% of a core"),
        ("mock RSS per session (all open)", f"{(_median(w.mock_rss_open) - mock_rss0) / n / KIB:,.1f} KiB"
         if w.mock_rss_open else "-"),
        ("mock CPU while opening", f"{100 * w.mock_cpu_open_phase:.0f}% of a core"),
        ("time to close all (SIGINT -> run returned)", _s(t_end - w.stop_sent_at) if w.stop_sent_at else "-"),
        ("whole run (wall)", _s(t_end - t_run)),
        ("requests ok / failed", f"{w.outcomes.get('ok', 0):,} / {w.outcomes.get('failed', 0):,}"),
        ("errors", ", ".join(f"{k}={v}" for k, v in errors.items()) or "none"),
        ("cyclic GC during the run", gcp.describe()),
        ("runner saturation flags", "; ".join(result.saturation) or "none"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    per_s: dict[int, int] = {}
    for t in w.first_send.values():
        per_s[t // 1_000_000_000] = per_s.get(t // 1_000_000_000, 0) + 1
    print("sessions opened per second of the run: "
          + ", ".join(f"{s}s:{per_s.get(s, 0)}" for s in range(max(per_s, default=-1) + 1)))
    ok = len(w.first_stop) == n and not errors and bool(w.rss_open)
    return 0 if ok else 1


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _median(values: list[int]) -> float:
    s = sorted(values)
    return float(s[len(s) // 2])


if __name__ == "__main__":
    sys.exit(main())
