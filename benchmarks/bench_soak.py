"""Soak: does the harness's memory stay flat over a long closed-loop run with faults?

The mock runs in its own process (``MockProcess``) with a modest fault rate (streams cut,
closed, malformed, errored, left without ``stop``), so connections break and are replaced
all the time. The harness is the real CLI (``python -m loadtest run ... -q --no-html``) in
a second process; this script samples that process's RSS and open file descriptors every
``--sample-s`` seconds with psutil and reports RSS at the start and the end, and the slope
of a least-squares line through the samples after the first minute (start-up, imports and
the first connections are not growth).

    .venv/bin/python benchmarks/bench_soak.py [--seconds 300] [--users 20] [--sample-s 10]

Not part of CI: it takes ``--seconds`` plus a few. Exit 1 when the slope exceeds
``--max-slope-mb-per-min`` (default 1.0).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from loadtest.mock.latency import MockModel, parse_dist
from loadtest.mock.process import MockProcess, model_args

FAULTS = {
    "abrupt_close": 0.004,
    "close_code": {"rate": 0.004, "code": 1011},
    "malformed_frame": 0.004,
    "error_mid_stream": 0.004,
    "error_instead": 0.004,
    "no_stop": 0.002,
    "unknown_event": 0.01,
}

SCENARIO = """\
name: soak
target: {{url: mock}}
load: {{mode: closed, concurrency: {users}, duration: {seconds}s, warmup: 5s, seed: 7}}
session:
  steps:
    - gen: {{prompt: "Explain artificial intelligence"}}
timeouts: {{connect: 5s, first_token: 5s, stream: 2s}}
slo: {{error_rate: 0.2}}
"""


def _slope_mb_per_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS (MB) over time (minutes)."""
    n = len(samples)
    if n < 2:
        return 0.0
    xs = [t / 60 for t, _ in samples]
    ys = [r / 2**20 for _, r in samples]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--max-slope-mb-per-min", type=float, default=1.0)
    args = ap.parse_args()

    model = MockModel(ttft_ms=parse_dist(30), gap_ms=parse_dist(3), chunks=parse_dist(20))
    with tempfile.TemporaryDirectory() as tmp, MockProcess(model_args(model, seed=7, faults=FAULTS)) as url:
        scenario = Path(tmp) / "soak.yaml"
        scenario.write_text(SCENARIO.format(users=args.users, seconds=args.seconds), encoding="utf-8")
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "loadtest", "run", str(scenario), "--target", url,
               "--api-key", "soak-key", "--out", str(out), "--no-html", "-q"]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ps = psutil.Process(proc.pid)
        samples: list[tuple[float, int, int]] = []
        next_at = t0 + 2.0  # the first sample once imports are done
        while proc.poll() is None:
            now = time.monotonic()
            if now >= next_at:
                try:
                    samples.append((now - t0, ps.memory_info().rss, ps.num_fds()))
                except psutil.NoSuchProcess:
                    break
                print(f"t={now - t0:6.1f}s rss={samples[-1][1] / 2**20:7.1f} MB fds={samples[-1][2]}",
                      flush=True)
                next_at += args.sample_s
            time.sleep(0.2)
        _, stderr = proc.communicate()
        wall = time.monotonic() - t0
        if proc.returncode not in (0, 1) or not (out / "summary.json").exists():
            print(f"harness failed (exit {proc.returncode}):\n{stderr[-3000:]}", file=sys.stderr)
            return 2
        summary = json.loads((out / "summary.json").read_text())

    steady = [(t, r) for t, r, _ in samples if t >= 60.0] or [(t, r) for t, r, _ in samples]
    slope = _slope_mb_per_min(steady)
    start_mb, end_mb = samples[0][1] / 2**20, samples[-1][1] / 2**20
    req = summary["requests"]
    print()
    print(f"command: {' '.join(sys.argv)}")
    print(f"wall {wall:.0f} s, {args.users} users, exit {proc.returncode}")
    print(f"requests: completed {req['completed']}, failed {req['failed']}, "
          f"reconnects {summary['reconnects']}, errors {summary['errors']}")
    print(f"RSS start {start_mb:.1f} MB (t={samples[0][0]:.0f} s), end {end_mb:.1f} MB "
          f"(t={samples[-1][0]:.0f} s), slope after 60 s {slope:+.3f} MB/min")
    print(f"fds start {samples[0][2]}, end {samples[-1][2]}, max {max(f for _, _, f in samples)}")
    return 1 if slope > args.max_slope_mb_per_min else 0


if __name__ == "__main__":
    sys.exit(main())
