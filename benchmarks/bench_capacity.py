"""Capacity sweep accuracy (issue 14): does a geometric sweep find the mock's true capacity,
every time?

The embedded mock with capacity 8 (TTFT 50 ms, gap 5 ms, 20 chunks) and a TTFT p99 SLO of
430 ms: the mock's model predicts a sharp step (``MockModel.predicted_ttft_ms``): 24 users
≈ 347 ms (+ client overhead ≈ 360 ms), 25 users ≈ 495 ms (≈ 510 ms), so the truth is 24 users.
Each repetition is a full ``sweep --start 5 --factor 2 --max 80`` (default refinement and 3
replicates at the boundary) with its own sweep seed; the bench prints each answer, its steps
and wall time, and passes when every repetition answers exactly the truth.

    .venv/bin/python benchmarks/bench_capacity.py                          # 3 sweeps, 5 s steps
    .venv/bin/python benchmarks/bench_capacity.py --repeats 1 --step-seconds 4

Not run in CI (about 2 minutes per sweep).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from loadtest.mock.latency import Dist, MockModel
from loadtest.scenario import Overrides
from loadtest.studies.sweep import prepare_sweep, run_sweep, step_line

SCENARIO = """
name: capacity-bench
target: {url: mock}
mock: {capacity: 8, ttft_ms: 50, gap_ms: 5, chunks: 20}
load: {mode: closed, concurrency: 1, duration: 10s, seed: SEED}
session:
  steps:
    - gen: {prompt: "Explain artificial intelligence"}
slo: {ttft_p99_ms: 430, error_rate: 0.01}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--step-seconds", type=float, default=5.0)
    ap.add_argument("--replicates", type=int, default=3)
    args = ap.parse_args()
    model = MockModel(ttft_ms=Dist(a=50), gap_ms=Dist(a=5), chunks=Dist(a=20), capacity=8)
    truth = max(u for u in range(1, 200) if model.predicted_ttft_ms(u, 0.99) <= 430)
    print(f"model: p99 at 24 users {model.predicted_ttft_ms(24, 0.99):.0f} ms, at 25 users "
          f"{model.predicted_ttft_ms(25, 0.99):.0f} ms; truth {truth} users")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(1, args.repeats + 1):
            path = Path(tmp) / f"s{rep}.yaml"
            path.write_text(SCENARIO.replace("SEED", str(rep)), encoding="utf-8")
            overrides = Overrides(duration_s=args.step_seconds)
            _, plan = prepare_sweep(path, overrides=overrides, environ={}, levels=None, start=5, factor=2,
                                    max_load=80, rates_given=False, refine=20, continue_after_fail=False,
                                    replicates=args.replicates)
            t = time.monotonic()
            outcome = run_sweep(path, plan=plan, overrides=overrides, environ={}, out=Path(tmp) / f"out{rep}",
                                html=False, quiet=True, on_step=lambda s: print("  " + step_line(s, mode="closed")))
            wall = time.monotonic() - t
            ans = outcome.capacity["answer"]
            results.append({"seed": rep, "answer": ans["load"], "bracket": ans["bracket"], "line": ans["line"],
                            "steps": len(outcome.steps), "wall_s": round(wall, 1), "exit": outcome.exit_code,
                            "knee": (outcome.capacity["curve"]["knee"] or {}).get("load")})
            print(f"sweep {rep}: {ans['line']}  ({len(outcome.steps)} steps, {wall:.0f} s, exit {outcome.exit_code})")
    print(json.dumps(results, indent=2))
    hits = sum(1 for r in results if r["answer"] == truth)
    print(f"{hits} of {len(results)} sweeps answered exactly {truth} users")
    return 0 if hits == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
