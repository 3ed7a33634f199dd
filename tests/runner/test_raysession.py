"""Ray sessions (issue 22, item 9): an actor whose host runs another loadtest ends the run with
exit 3 naming both versions (not an import error deep in Ray), and a local Ray's processes
inherit only the allowed environment (never the API key's variable)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loadtest.errors import WorkersUnavailable
from loadtest.runner import raysession
from loadtest.runner.raysession import ENV_ALLOWED, check_versions


def test_a_worker_with_another_version_is_exit_3_naming_both() -> None:
    check_versions({0: "0.1.0", 1: "0.1.0"}, mine="0.1.0")
    with pytest.raises(WorkersUnavailable) as err:
        check_versions({0: "0.1.0", 1: "0.2.0"}, mine="0.1.0")
    assert err.value.exit_code == 3
    assert "loadtest 0.1.0" in str(err.value) and "worker 1: loadtest 0.2.0" in str(err.value)
    assert "worker 0" not in str(err.value)


@pytest.mark.realtime
def test_a_version_mismatch_in_a_real_ray_run_is_exit_3_with_a_summary(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    from loadtest.runner.options import RunOptions
    from loadtest.runner.todir import run_to_dir
    from loadtest.scenario import load_scenario

    # the coordinator believes it is 9.9.9; the actors (fresh processes) report the installed version
    monkeypatch.setattr(raysession, "local_version", lambda: "9.9.9")
    sc = load_scenario("scenarios/smoke.yaml")
    out = tmp_path / "run"
    with pytest.raises(WorkersUnavailable, match=r"loadtest 9\.9\.9; worker 0: loadtest 0\.1\.0"):
        run_to_dir(sc, RunOptions(backend="ray", workers=1, out=out, html=False, quiet=True))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 3 and "another loadtest" in summary["reason"]


@pytest.mark.realtime
def test_a_local_ray_inherits_only_the_allowed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("LOADTEST_API_KEY", "sekrit-key")
    monkeypatch.setenv("MY_DATABASE_PASSWORD", "hunter2")
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")

    @ray.remote(num_cpus=0)
    def environ() -> dict[str, str]:
        return dict(os.environ)

    before = set(os.environ)
    with raysession.ray_session(None, workers=1):
        seen = ray.get(environ.remote())
        assert os.environ["LOADTEST_API_KEY"] == "sekrit-key"  # the coordinator's own is left as it was
    assert "LOADTEST_API_KEY" not in seen and "MY_DATABASE_PASSWORD" not in seen
    assert "sekrit-key" not in json.dumps(seen) and "hunter2" not in json.dumps(seen)
    assert seen.get("RAY_DEDUP_LOGS") == "0" and "PATH" in seen
    inherited = {k for k in seen if k in before and not k.startswith(("RAY_", "LC_"))}
    assert inherited <= ENV_ALLOWED  # anything else the actors have, Ray set itself
