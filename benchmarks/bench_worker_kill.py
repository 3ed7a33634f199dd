"""Killing one of two worker processes at random moments, many times (issue 22, item 3).

Each try is a real ``loadtest run --workers 2`` against tests/support/rawserver.py (3 s, 4 users,
twelve request classes so that each worker's report is over 16 KB), one worker SIGKILLed at a
seeded random moment after the server's first gen: from 1.2 s to 0.3 s before the end of the
load ("mid-run": the victim must be lost), and, for a share of the tries, from there to 0.5 s
after it ("at the end": the kill may land while the victim sends its report, or after; either it
is lost or it finished, never the survivor). Every try is checked as
tests/runner/test_worker_kill.py checks its twenty (tests/support/workerkill.py): exit 5, the
victim alone lost, the survivor merged, the victim's rows present, exactly those its merged
figures count, and every gen the server finished for it 2 s before the kill among them.

    .venv/bin/python benchmarks/bench_worker_kill.py                  # 50 tries, 5 at a time
    .venv/bin/python benchmarks/bench_worker_kill.py --tries 100 --late 0.2 --seed 7
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.helpers import run_concurrently  # noqa: E402
from support.workerkill import kill_try  # noqa: E402

DURATION_S = 3.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tries", type=int, default=50)
    ap.add_argument("--at-once", type=int, default=5, help="runs at a time")
    ap.add_argument("--late", type=float, default=0.2, help="share of the tries killed at the end")
    ap.add_argument("--seed", type=int, default=22)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    plan = {}
    for i in range(args.tries):
        late = rng.random() < args.late
        at = rng.uniform(DURATION_S - 0.3, DURATION_S + 0.5) if late else rng.uniform(1.2, DURATION_S - 0.3)
        plan[f"try{i:03d}"] = (rng.randrange(2), round(at, 2), late)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-worker-kill-") as tmp:
        tries = run_concurrently({name: partial(kill_try, Path(tmp) / name, victim=victim, kill_at_s=at,
                                                duration_s=DURATION_S, may_finish=late)
                                  for name, (victim, at, late) in plan.items()}, max_workers=args.at_once)
    wall = time.monotonic() - t0
    for t in tries.values():
        print(("[end] " if plan[t.name][2] else "[mid] ") + t.line())
    mid = [t for t in tries.values() if not plan[t.name][2]]
    end = [t for t in tries.values() if plan[t.name][2]]
    failed = [t for t in tries.values() if t.problems]
    survivors_lost = sum(any(f"worker {1 - t.victim} " in why for why in t.lost) for t in tries.values())
    print(f"\n{len(tries)} kills in {wall:.0f} s ({args.at_once} at a time, seed {args.seed}): "
          f"{len(tries) - len(failed)} passed, {len(failed)} failed; survivors lost: {survivors_lost}")
    print(f"mid-run: {len(mid)} kills, victim lost and its rows present in "
          f"{sum(not t.problems and t.finished == 1 for t in mid)}; victim rows per try "
          f"{min((t.rows[str(t.victim)] for t in mid), default=0)}..{max((t.rows[str(t.victim)] for t in mid), default=0)}")
    print(f"at the end: {len(end)} kills, victim lost in {sum(t.finished == 1 for t in end)}, "
          f"finished before the kill in {sum(t.finished == 2 for t in end)}, "
          f"passed {sum(not t.problems for t in end)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
