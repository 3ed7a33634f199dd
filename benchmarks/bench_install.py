"""Install size and time of the wheel in a fresh virtualenv (issue 23): a tree's wheel is built,
then installed ``--rounds`` times into a new venv each, and the venv's site-packages measured.

The tree is the working tree, or a commit (``--ref``, checked out with ``git worktree`` into a
temporary directory) to measure "before". With ``--constraints`` the install uses the
repository's ``constraints.txt`` (what CI and bootstrap do); without, the newest releases the
tree's pyproject allows (what a user's ``pip install`` did before the lock). pip's cache is
warm after the first round (the rounds after it measure unpacking and linking, not the
network), so the figure quoted is the median of the rounds after the first, next to the first.

    .venv/bin/python benchmarks/bench_install.py [--ref 6f85026] [--constraints] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _size_mb(venv: Path) -> float:
    (site,) = (venv / "lib").glob("python3.*/site-packages")
    return sum(f.stat().st_size for f in site.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def _top(venv: Path, n: int = 6) -> list[tuple[str, float]]:
    (site,) = (venv / "lib").glob("python3.*/site-packages")
    sizes = {d.name: sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) / 1e6
             for d in site.iterdir() if d.is_dir() and not d.name.endswith((".dist-info", "__pycache__"))}
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", help="git ref to build instead of the working tree")
    ap.add_argument("--constraints", action="store_true", help="install with the repository's constraints.txt")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tree = ROOT
        if args.ref:
            tree = tmp / "tree"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.ref],
                           check=True, capture_output=True)
        try:
            subprocess.run([sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp / "dist")], check=True)
            (wheel,) = (tmp / "dist").glob("loadtest-*.whl")
            times, size, top = [], 0.0, []
            for i in range(args.rounds):
                venv = tmp / f"venv{i}"
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
                cmd = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)]
                if args.constraints:
                    cmd[5:5] = ["-c", str(ROOT / "constraints.txt")]
                t0 = time.monotonic()
                subprocess.run(cmd, check=True)
                times.append(time.monotonic() - t0)
                size, top = _size_mb(venv), _top(venv)
                print(f"round {i + 1}: {times[-1]:.1f} s, site-packages {size:.0f} MB", flush=True)
        finally:
            if args.ref:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    rest = times[1:] or times
    print(f"\n{args.ref or 'working tree'}{' with constraints.txt' if args.constraints else ''}: "
          f"site-packages {size:.0f} MB; install {statistics.median(rest):.1f} s median of rounds 2-{len(times)} "
          f"(first round {times[0]:.1f} s)")
    print("largest: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in top))


if __name__ == "__main__":
    main()
