"""Open-loop capacity (issue 14): is the sweep's bracket where the pass rate really crosses 50 %,
and does its "reliably passing" rate pass in >= 90 % of independent fixed-rate runs?

The embedded mock with capacity 8 (TTFT 50 ms, gap 5 ms, 20 chunks), Poisson arrivals, a TTFT
p99 SLO of 430 ms. One geometric open-loop sweep gives a bracket [reliably passing, reliably
failing]; then ``--runs`` fixed-rate runs, each with its own seed (schedule and mock), at the
bracket's low end, its middle and its high end count how often each rate passes.

    .venv/bin/python benchmarks/bench_capacity_open.py                 # 10 runs a rate, 6 s steps

Not run in CI (several minutes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from loadtest.runner.coordinator import run, summarize
from loadtest.scenario import Overrides, load_scenario
from loadtest.studies.sweep import prepare_sweep, run_sweep, step_line
from loadtest.sweep.plan import SweepStep

SCENARIO = """
name: capacity-open-bench
target: {url: mock}
mock: {capacity: 8, ttft_ms: 50, gap_ms: 5, chunks: 20, seed: MOCKSEED}
load: {mode: open, rate: 10, arrival: poisson, duration: 6s, warmup: 2s, seed: SEED, max_connections: 400}
session:
  steps:
    - gen: {prompt: "Explain artificial intelligence"}
slo: {ttft_p99_ms: 430, error_rate: 0.01}
"""


def fixed_rate_passes(tmp: Path, rate: float, runs: int, step_s: float) -> list[bool]:
    """Independent fixed-rate runs at ``rate``; each passes by the sweep's own rule for a step
    (its SLOs, and not overloaded: sent ≥ 98 % of offered, completed ≥ 95 % of sent). The line
    also says how many passed the SLOs alone (the queue may grow through a run that does)."""
    out, slo_only = [], 0
    for i in range(runs):
        path = tmp / f"fixed-{rate:g}-{i}.yaml"
        path.write_text(SCENARIO.replace("MOCKSEED", str(1000 + i)).replace("SEED", str(500 + i)), encoding="utf-8")
        sc = load_scenario(path, overrides=Overrides(rate_per_s=rate, duration_s=step_s))
        summary = summarize(run(sc))
        slo_only += bool(summary["passed"])
        out.append(SweepStep.from_summary(summary, load=rate, index=i + 1, run_dir="", refinement=False).passed)
    print(f"  {rate:g}/s: {slo_only} of {runs} passed the SLOs alone", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--step-seconds", type=float, default=6.0)
    ap.add_argument("--replicates", type=int, default=3)
    ap.add_argument("--rates", help="skip the sweep: only the fixed-rate runs at these rates (lo,mid,hi)")
    args = ap.parse_args()
    if args.rates:
        with tempfile.TemporaryDirectory() as tmp_name:
            for rate in (float(r) for r in args.rates.split(",")):
                passes = fixed_rate_passes(Path(tmp_name), rate, args.runs, args.step_seconds)
                print(f"fixed rate {rate:g}/s: passed {sum(passes)} of {len(passes)}", flush=True)
        return 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "sweep.yaml"
        path.write_text(SCENARIO.replace("MOCKSEED", "1").replace("SEED", "1"), encoding="utf-8")
        overrides = Overrides(duration_s=args.step_seconds)
        _, plan = prepare_sweep(path, overrides=overrides, environ={}, levels=None, start=20, factor=2,
                                max_load=160, rates_given=True, refine=20, continue_after_fail=False,
                                replicates=args.replicates)
        t = time.monotonic()
        outcome = run_sweep(path, plan=plan, overrides=overrides, environ={}, out=tmp / "out", html=False,
                            quiet=True, on_step=lambda s: print("  " + step_line(s, mode="open"), flush=True))
        ans = outcome.capacity["answer"]
        print(f"sweep: {ans['line']}  bracket {ans['bracket']}  ({len(outcome.steps)} steps, "
              f"{time.monotonic() - t:.0f} s, exit {outcome.exit_code})", flush=True)
        lo, hi = ans["bracket"]
        if lo is None or hi is None:
            print("no bracket: nothing to check")
            return 1
        shares = {}
        for rate in (lo, round((lo + hi) / 2, 2), hi):
            passes = fixed_rate_passes(tmp, rate, args.runs, args.step_seconds)
            shares[rate] = sum(passes) / len(passes)
            print(f"fixed rate {rate:g}/s: passed {sum(passes)} of {len(passes)}", flush=True)
    ok = shares[lo] >= 0.9 and shares[hi] <= 0.5
    print(f"reliably passing {lo:g}/s passes {shares[lo]:.0%} (target >= 90 %); reliably failing {hi:g}/s "
          f"passes {shares[hi]:.0%}: the 50 % point lies in the bracket: {'yes' if shares[lo] >= 0.5 >= shares[hi] else 'no'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
