"""The no-result run directory (unreachable, or interrupted at start-up) is written with the
standard library only, so a Ctrl-C during the heavy imports can still be recorded; its schema is
summary.json's; readers refuse it with its reason; a directory this run never claimed is left
alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.errors import BadInput
from loadtest.rundir import SCHEMA, read_summary
from loadtest.rundir.noresult import SUMMARY_SCHEMA, record_interrupt


def test_its_schema_is_summary_json_s() -> None:
    assert SUMMARY_SCHEMA == SCHEMA


def test_it_loads_without_numpy_or_pydantic() -> None:
    code = "import sys, loadtest.rundir.noresult; print(sorted({'numpy', 'pydantic', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_interrupt_is_recorded_and_readers_refuse_it_with_the_reason(tmp_path: Path) -> None:
    run_dir = tmp_path / "new" / "run"
    record_interrupt(run_dir, scenario="s", target="ws://h/v2/chat?apikey=sekrit", api_key="sekrit",
                     scenario_yaml="name: s\n")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["verdict"], summary["exit_code"], summary["measured"]) == ("interrupted", 4, False)
    assert "sekrit" not in (run_dir / "summary.json").read_text()
    with pytest.raises(BadInput, match="interrupted during start-up, nothing was measured"):
        read_summary(run_dir / "summary.json")


def test_a_directory_it_never_claimed_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "someone-else.txt").write_text("x")
    record_interrupt(tmp_path, scenario="s")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["someone-else.txt"]
