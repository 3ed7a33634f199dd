"""The shape of the tree, as issue 18 set it, checked so that it stays: tests mirror the
package, no test imports another test file, at most seven modules at the top of ``loadtest/``,
no module over 450 lines. Pure: reads files, runs nothing."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "loadtest"
TESTS = ROOT / "tests"
#: test directories that are not a package of loadtest: the whole tool, the docs, this file, helpers
NOT_A_PACKAGE = {"e2e", "docs", "meta", "support"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_test_file_imports_another_test_file() -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.split(".")[-1].startswith("test_"))
                 for p in TESTS.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_test_directory_mirrors_a_package() -> None:
    dirs = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert dirs - NOT_A_PACKAGE <= packages, sorted(dirs - NOT_A_PACKAGE - packages)
    assert not list(TESTS.glob("test_*.py")), "a test file at the top of tests/: put it beside its package"


def test_the_top_of_the_package_holds_at_most_seven_modules() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 7, top


def test_no_module_is_over_450_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert long == {}


def test_every_module_that_shares_the_cores_exists_and_is_real_time() -> None:
    """support.tiers.SHARE_THE_CORES: no stale entry, and only real-time modules (the fast
    tier runs in parallel anyway)."""
    from support.tiers import SHARE_THE_CORES

    for name in sorted(SHARE_THE_CORES):
        path = ROOT / name
        assert path.is_file(), f"{name}: listed in SHARE_THE_CORES but missing"
        assert "realtime" in path.read_text(encoding="utf-8"), f"{name}: not a real-time module"
