"""Stolen CPU time (/proc/stat "steal"): measured over the run, and named in a saturated run's
reasons when it is large (a shared VM starves the generator; more workers will not help)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import loadtest.runner.coordinator as coordinator
from loadtest.engine import selfwatch
from loadtest.engine.selfwatch import StealMeter
from loadtest.scenario import OutputsConfig


def test_steal_meter_is_the_share_of_cpu_time_stolen(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([(100, 10_000), (400, 12_000)])  # 300 of 2,000 jiffies stolen
    monkeypatch.setattr(selfwatch, "_proc_stat_cpu", lambda: next(readings))
    assert StealMeter().percent() == 15.0
    monkeypatch.setattr(selfwatch, "_proc_stat_cpu", lambda: None)  # no /proc/stat
    assert StealMeter().percent() is None


def test_proc_stat_is_read_where_it_exists() -> None:
    reading = selfwatch._proc_stat_cpu()
    if reading is None:
        pytest.skip("no /proc/stat here")
    steal, total = reading
    assert 0 <= steal <= total and total > 0


@pytest.mark.parametrize(("saturation", "steal", "named"), [
    (["event-loop lag p99 37.3 ms > 10 ms"], 20.0, True),
    (["event-loop lag p99 37.3 ms > 10 ms"], 1.0, False),  # a quiet host: the load's own doing
    ([], 20.0, False),  # not saturated: nothing to explain
])  # fmt: skip
def test_a_saturated_run_names_a_large_steal(monkeypatch: pytest.MonkeyPatch, saturation: list[str], steal: float,
                                             named: bool) -> None:  # fmt: skip
    class Result:
        def __init__(self) -> None:
            self.saturation = list(saturation)
            self.host_steal_percent: float | None = None

    monkeypatch.setattr(coordinator, "_run_backend", lambda *_a, **_k: Result())
    monkeypatch.setattr(coordinator.StealMeter, "percent", lambda _self: steal)
    sc: Any = SimpleNamespace(name="steal", target=SimpleNamespace(url="ws://127.0.0.1:9/v2/chat", tokenizer=None),
                              load=SimpleNamespace(workers=1), outputs=OutputsConfig())
    result: Any = coordinator.run(sc)
    assert result.host_steal_percent == steal
    assert any("hypervisor took" in r and f"{steal:g}%" in r for r in result.saturation) is named
    assert len(result.saturation) == len(saturation) + int(named)
