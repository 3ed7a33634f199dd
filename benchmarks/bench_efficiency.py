"""Generator efficiency: chunks per client CPU-second, harness vs a bare aiohttp loop.

One mock proxy in its own process (started once, fast model: many chunks, ~1 ms apart)
serves both contenders, in alternating rounds of the same length and concurrency:

* ``bare``    -- N aiohttp WebSockets on uvloop that send a ``gen`` and ``json.loads`` every
  frame until ``stop``, nothing else: the floor of what any Python client pays per chunk.
* ``harness`` -- the real closed-loop runner (``run_scenario``) with full recording: every
  chunk timestamped, every ITL gap recorded, per-second rows, interval snapshots, self-watch,
  and every request written to a requests.csv (the CLI's ``RequestCsv`` sink).

Client CPU is ``time.process_time()`` of this process around each round (the mock's CPU is
not included: it is another process). The figure of merit is the median over rounds of
``(harness chunks/CPU-s) / (bare chunks/CPU-s)``, target >= 0.9. Absolute figures depend on
the machine; the ratio, measured in one run against one server, is what to compare.

    .venv/bin/python benchmarks/bench_efficiency.py [--rounds 5] [--seconds 5] [--users 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import uvloop

from loadtest.mock.latency import MockModel, parse_dist
from loadtest.mock.process import MockProcess, model_args
from loadtest.protocol import GenRequest, encode_gen
from loadtest.rundir.writer import RequestCsv
from loadtest.runner.coordinator import run as run_scenario
from loadtest.scenario import Scenario

PROMPT = "Explain artificial intelligence"


@dataclass
class Round:
    kind: str
    chunks: int
    requests: int
    cpu_s: float
    wall_s: float
    itl_recorded: int = -1  # harness only: ITL values in the histograms
    itl_expected: int = -1  # harness only: sum of (chunks - 1) over successful requests

    @property
    def per_cpu_s(self) -> float:
        return self.chunks / self.cpu_s if self.cpu_s > 0 else 0.0


# --------------------------------------------------------------------------- bare loop


async def _bare_user(session: aiohttp.ClientSession, url: str, frame: str, end: float, out: list[int]) -> None:
    loads = json.loads
    ws = await session.ws_connect(url, autoping=True, autoclose=False, max_msg_size=0, compress=0)
    try:
        loads((await ws.receive()).data)  # auth-connect-complete
        chunks = requests = 0
        while time.perf_counter() < end:
            await ws.send_str(frame)
            while True:
                obj = loads((await ws.receive()).data)
                if obj["event"] == "message":
                    data = obj["data"]
                    if data["output"]:
                        chunks += 1
                    if data["stop"]:
                        break
            requests += 1
        out[0] += chunks
        out[1] += requests
    finally:
        await ws.close()


async def _bare(url: str, users: int, seconds: float) -> tuple[int, int]:
    frame = encode_gen(GenRequest(prompt=PROMPT))
    out = [0, 0]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        end = time.perf_counter() + seconds
        async with asyncio.TaskGroup() as tg:
            for _ in range(users):
                tg.create_task(_bare_user(session, url, frame, end, out))
    return out[0], out[1]


def run_bare(url: str, users: int, seconds: float) -> Round:
    w0, c0 = time.perf_counter(), time.process_time()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        chunks, requests = runner.run(_bare(url, users, seconds))
    return Round("bare", chunks, requests, time.process_time() - c0, time.perf_counter() - w0)


# --------------------------------------------------------------------------- harness


def run_harness(url: str, users: int, seconds: float, out_dir: Path) -> Round:
    sc = Scenario.model_validate({
        "name": "bench-efficiency",
        "target": {"url": url},
        "load": {"mode": "closed", "concurrency": users, "duration": f"{seconds}s", "warmup": "0s"},
        "session": {"steps": [{"gen": {"prompt": PROMPT}}]},
        "timeouts": {"connect": "10s", "first_token": "10s", "stream": "30s"},
    })
    sink = RequestCsv(out_dir)
    w0, c0 = time.perf_counter(), time.process_time()
    result = run_scenario(sc, sink=sink)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    sink.finish()
    c = result.figures
    chunks = sum(row.chunks for row in c.seconds.values())
    requests = sum(row.completions for row in c.seconds.values())
    itl_expected = sum((n - 1) * k for n, k in c.chunks_per_answer.items() if n > 1)
    return Round("harness", chunks, requests, cpu, wall,
                 itl_recorded=c.metrics.totals["itl"].count, itl_expected=itl_expected)


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--chunks", type=int, default=200, help="chunks per answer")
    ap.add_argument("--gap-ms", type=float, default=1.0, help="gap: uniform 0..GAP ms, or GAP ms with --const-gap")
    ap.add_argument("--const-gap", action="store_true")
    args = ap.parse_args()

    model = MockModel(
        ttft_ms=parse_dist(1, name="ttft_ms"),
        gap_ms=parse_dist(args.gap_ms if args.const_gap else {"dist": "uniform", "low": 0, "high": args.gap_ms},
                          name="gap_ms"),
        chunks=parse_dist(args.chunks, name="chunks"),
    )
    gap = f"{args.gap_ms:g} ms" if args.const_gap else f"uniform 0..{args.gap_ms:g} ms"
    print(f"mock: ttft 1 ms, gap {gap}, {args.chunks} chunks/answer; "
          f"{args.users} connections, {args.rounds} rounds x 2 x {args.seconds:g} s", flush=True)
    rows: list[tuple[Round, Round, float]] = []
    mock_cpu: dict[str, list[float]] = {"bare": [], "harness": []}
    mock = MockProcess(model_args(model, seed=1))
    with mock as url, tempfile.TemporaryDirectory() as tmp:
        assert mock.proc is not None
        mock_proc = psutil.Process(mock.proc.pid)
        # one short untimed round of each first: lazy imports, first allocations, warm caches
        run_bare(url, args.users, 1.0)
        run_harness(url, args.users, 1.0, Path(tmp) / "warmup")
        for i in range(args.rounds):
            order = ("bare", "harness") if i % 2 == 0 else ("harness", "bare")
            got: dict[str, Round] = {}
            for kind in order:
                m0 = sum(mock_proc.cpu_times()[:2])
                if kind == "bare":
                    got[kind] = run_bare(url, args.users, args.seconds)
                else:
                    got[kind] = run_harness(url, args.users, args.seconds, Path(tmp) / f"r{i}")
                mock_cpu[kind].append((sum(mock_proc.cpu_times()[:2]) - m0) / got[kind].wall_s)
            b, h = got["bare"], got["harness"]
            ratio = h.per_cpu_s / b.per_cpu_s
            rows.append((b, h, ratio))
            print(f"round {i + 1}: bare {b.per_cpu_s:,.0f}  harness {h.per_cpu_s:,.0f} chunks/CPU-s"
                  f"  ratio {ratio:.3f}", flush=True)

    print()
    hdr = (f"{'round':>5} | {'bare chunks':>11} {'CPU s':>6} {'CPU%':>5} {'chunks/CPU-s':>12} | "
           f"{'harness chunks':>14} {'CPU s':>6} {'CPU%':>5} {'chunks/CPU-s':>12} | {'ratio':>6}")
    print(hdr)
    print("-" * len(hdr))
    for i, (b, h, ratio) in enumerate(rows, 1):
        print(f"{i:>5} | {b.chunks:>11,} {b.cpu_s:>6.2f} {100 * b.cpu_s / b.wall_s:>5.0f} {b.per_cpu_s:>12,.0f} | "
              f"{h.chunks:>14,} {h.cpu_s:>6.2f} {100 * h.cpu_s / h.wall_s:>5.0f} {h.per_cpu_s:>12,.0f} | {ratio:>6.3f}")
    med_b = statistics.median(b.per_cpu_s for b, _, _ in rows)
    med_h = statistics.median(h.per_cpu_s for _, h, _ in rows)
    med_r = statistics.median(r for _, _, r in rows)
    print("-" * len(hdr))
    print(f"median chunks/CPU-s: bare {med_b:,.0f}, harness {med_h:,.0f}; "
          f"median ratio harness/bare {med_r:.3f} (target >= 0.90: {'PASS' if med_r >= 0.9 else 'FAIL'})")
    print(f"median chunks/s (wall): bare {statistics.median(b.chunks / b.wall_s for b, _, _ in rows):,.0f}, "
          f"harness {statistics.median(h.chunks / h.wall_s for _, h, _ in rows):,.0f}; mock CPU median: "
          f"{100 * statistics.median(mock_cpu['bare']):.0f}% (bare rounds), "
          f"{100 * statistics.median(mock_cpu['harness']):.0f}% (harness rounds)")
    bad = [(i, h.itl_recorded, h.itl_expected) for i, (_, h, _) in enumerate(rows, 1)
           if h.itl_recorded != h.itl_expected]
    if bad:
        print(f"MEASUREMENT CHECK FAILED: itl values recorded != sum(chunks - 1): {bad}")
        return 1
    print("measurement check: in every harness round, itl values recorded == sum(chunks - 1) over answers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
