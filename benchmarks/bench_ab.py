"""The release gate's false-alarm and detection rates (issue 13), measured with ``loadtest ab``.

Not a CI test (long; traffic only to embedded mocks on 127.0.0.1). For each of ``--pairs``
comparisons it runs ``loadtest ab`` (``--rounds`` rounds, both sides the embedded mock with a
lognormal TTFT) and counts exit 1:

* A/A: both sides the same mock → every exit 1 is a false alarm (target: <= 1 of 20);
* +20% TTFT on the candidate's mock → detections (target: >= 19 of 20);
* +10% TTFT → the detection rate at the tolerance itself (expected low: the gate needs the
  whole interval above +10%).

    python benchmarks/bench_ab.py --pairs 20 --rounds 3 --duration 6s --users 32 [--calibrate 10]

``--servers`` (issue 22): each side is its own ``loadtest mock`` process, started for each
comparison (independent servers with a random TTFT, fresh seeds), and ``ab`` is pointed at
their URLs, as a user gates two deployments. With a closed loop a slower candidate completes
fewer answers, so at the right load its runs fall below the p99 sample floor the baseline's
clear: that check is INCONCLUSIVE and the others judged (before issue 22: exit 2, every time).

    python benchmarks/bench_ab.py --servers --pairs 10 --rounds 3 --duration 13s --users 4 \
        --median-ms 38 --gap-ms 2 --chunks 4 --cases aa,+20

Prints one line per comparison and a table at the end (paste it into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest.mock.process import MockProcess

SCENARIO = """\
name: bench-ab
target: {{url: mock}}
mock: {{ttft_ms: {ttft}, gap_ms: 2, chunks: 4}}
load: {{mode: closed, concurrency: {users}, duration: {duration}, warmup: 1s}}
session: {{steps: [{{gen: {{prompt: "Explain artificial intelligence"}}}}]}}
"""


def lognormal(median_ms: float, sigma: float) -> dict[str, object]:
    return {"dist": "lognormal", "median": median_ms, "p99": round(median_ms * 2.718281828 ** (2.326 * sigma), 3)}


def one(scenario: Path, out: Path, candidate_mock: dict[str, object] | None, args: argparse.Namespace,
        urls: tuple[str, str] = ("mock", "mock")) -> int:
    cmd = [sys.executable, "-m", "loadtest", "ab", str(scenario), "--baseline", urls[0], "--candidate", urls[1],
           "--rounds", str(args.rounds), "--out", str(out), *(x for m in args.metric for x in ("--metric", m))]
    if args.calibration:
        cmd += ["--calibration", str(args.calibration)]
    if candidate_mock is not None:
        cmd += ["--candidate-mock", json.dumps(candidate_mock)]
    if args.allow_saturated:
        cmd.append("--allow-saturated")
    env = {**os.environ, "LOADTEST_API_KEY": "bench-ab"}  # a mock server accepts any key
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode not in (0, 1):
        print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.stdout, file=sys.stderr)
    if args.servers:
        print("   " + _counts(out), flush=True)
    return proc.returncode


def on_servers(scenario: Path, out: Path, ttft: tuple[dict[str, object], dict[str, object]], seed: int,
               args: argparse.Namespace) -> int:
    """One comparison on two independent ``loadtest mock`` processes (baseline, candidate TTFT)."""
    def server(spec: dict[str, object], n: int) -> MockProcess:
        return MockProcess(["--ttft-ms", json.dumps(spec), "--gap-ms", str(args.gap_ms), "--chunks", str(args.chunks),
                            "--seed", str(seed * 2 + n)])  # fmt: skip

    with server(ttft[0], 0) as base, server(ttft[1], 1) as cand:
        return one(scenario, out, None, args, (base, cand))


def _counts(out: Path) -> str:
    """TTFT samples per run of one comparison (the p99 floor is 1,000), and the verdict line."""
    runs = []
    for d in sorted(out.glob("round-*-*")):
        try:
            s: dict[str, Any] = json.loads((d / "summary.json").read_text(encoding="utf-8"))
        except OSError:
            continue
        runs.append(f"{d.name.removeprefix('round-')}={s['latency_ms']['ttft']['count']}")
    try:
        verdict = json.loads((out / "compare.json").read_text(encoding="utf-8"))["verdict"]
    except OSError:
        verdict = "no compare.json"
    return f"ttft samples {' '.join(runs)}; {verdict}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="6s")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--median-ms", type=float, default=40.0)
    parser.add_argument("--sigma", type=float, default=0.3)
    parser.add_argument("--metric", action="append", default=None,
                        help="gated checks (default: loadtest's own default set, 14 checks)")
    parser.add_argument("--allow-saturated", action="store_true")
    parser.add_argument("--cases", default="aa,+20,+10")
    parser.add_argument("--servers", action="store_true",
                        help="each side its own `loadtest mock` process (independent servers), ab given their URLs")
    parser.add_argument("--gap-ms", type=float, default=2.0, help="--servers: gap between chunks")
    parser.add_argument("--chunks", type=int, default=4, help="--servers: chunks per answer")
    parser.add_argument("--calibrate", type=int, default=0, metavar="K",
                        help="first run `loadtest calibrate --runs K` on the baseline mock and pass its "
                             "calibration.json to every comparison (pooled variance: more degrees of freedom)")
    args = parser.parse_args()
    args.metric = args.metric or []
    base = lognormal(args.median_ms, args.sigma)
    cases = {"aa": None, "+20": lognormal(args.median_ms * 1.2, args.sigma),
             "+10": lognormal(args.median_ms * 1.1, args.sigma)}  # fmt: skip
    results: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "ab.yaml"
        scenario.write_text(SCENARIO.format(ttft=json.dumps(base), users=args.users, duration=args.duration))
        args.calibration = None
        if args.calibrate:
            cal = Path(tmp) / "calibration"
            cmd = [sys.executable, "-m", "loadtest", "calibrate", str(scenario), "--target", "mock",
                   "--runs", str(args.calibrate), "--out", str(cal), *(["--allow-saturated"] if args.allow_saturated else [])]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            print(proc.stdout.strip(), flush=True)
            if proc.returncode != 0:
                print(proc.stderr.strip(), file=sys.stderr)
                return 2
            args.calibration = cal / "calibration.json"
        for case in args.cases.split(","):
            codes = results.setdefault(case, [])
            for i in range(args.pairs):
                t0 = time.monotonic()
                if args.servers:
                    code = on_servers(scenario, Path(tmp) / f"{case}-{i}", (base, cases[case] or base), i, args)
                else:
                    code = one(scenario, Path(tmp) / f"{case}-{i}", {"ttft_ms": cases[case]} if cases[case] else None,
                               args)  # fmt: skip
                codes.append(code)
                print(f"{case} {i + 1}/{args.pairs}: exit {code} ({time.monotonic() - t0:.0f} s)", flush=True)
    print(f"\n{args.pairs} comparisons per case, {args.rounds} rounds, {args.duration} runs, {args.users} users, "
          f"TTFT lognormal median {args.median_ms} ms sigma {args.sigma}; gated: {', '.join(args.metric) or 'the default checks'}"
          + ("; independent mock servers" if args.servers else "")
          + (f"; calibration of {args.calibrate} runs" if args.calibrate else ""))
    print("| case | exit 1 (regression) | exit 0 | exit 2 (invalid) | other |")
    print("|---|---|---|---|---|")
    for case, codes in results.items():
        print(f"| {case} | {codes.count(1)} | {codes.count(0)} | {codes.count(2)} | "
              f"{sum(c not in (0, 1, 2) for c in codes)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
