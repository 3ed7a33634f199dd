"""The sweep's console lines: one per step as it ends, and the answer. Pure."""

from __future__ import annotations

from loadtest.slo import AT_LEAST
from loadtest.sweep.plan import Mode, SweepAnswer, SweepStep

__all__ = ["answer_line", "step_line"]


def _load_text(load: float | None, mode: Mode) -> str:
    if load is None:
        return "-"
    return f"{load:g} users" if mode == "closed" else f"{load:g}/s"


def step_line(step: SweepStep, *, mode: Mode) -> str:
    """One console line per step: load, verdict, each SLO, throughput, TTFT."""
    verdict = "PASS" if step.passed else "FAIL"
    if step.saturated:
        verdict = "SATURATED (generator)"
    if step.interrupted:
        verdict += " (interrupted)"
    slos = []
    for name, v in {**step.slo, **{k: v for k, v in step.judged().items() if k.startswith("by_tag ")}}.items():
        op = ">=" if name.rpartition(" ")[2] in AT_LEAST else "<="
        value = "no data" if v["value"] is None else f"{v['value']:g}"
        slos.append(f"{name} {value} {op} {v['limit']:g}{'' if v['pass'] else ' FAIL'}")
    ttft = "-" if step.ttft_p50_ms is None or step.ttft_p99_ms is None else (
        f"{step.ttft_p50_ms:.1f}/{step.ttft_p99_ms:.1f} ms")
    tag = f" (replicate {step.replicate})" if step.replicate > 1 else (" (refine)" if step.refinement else "")
    return (f"step {step.index:>2}{tag}  {_load_text(step.load, mode)}: {verdict}  {'  '.join(slos)}  "
            f"· {step.throughput_rps or 0:.1f} req/s  ttft p50/p99 {ttft}  → {step.run_dir}")


def answer_line(answer: SweepAnswer, *, mode: Mode, stopped: str) -> str:
    """The final console line: the answer, plainly (and why it is partial, when it is)."""
    parts = []
    if answer.max_passing_load is not None:
        parts.append(f"max passing {_load_text(answer.max_passing_load, mode)}")
    else:
        parts.append("no level passed")
    if answer.first_failing_load is not None:
        parts.append(f"first failing {_load_text(answer.first_failing_load, mode)}")
    if answer.inconclusive:
        parts.append(f"INCONCLUSIVE from {_load_text(answer.saturated_at_load, mode)} up: the load generator "
                     "was saturated there, so those figures describe the generator, not the target "
                     "(lower the load per process or add workers)")
    elif answer.first_failing_load is None and answer.max_passing_load is not None and stopped == "completed":
        parts.append("no level failed: the capacity is above the range tried")
    if answer.passed_above_first_failure:
        loads = ", ".join(f"{v:g}" for v in answer.passed_above_first_failure)
        parts.append(f"note: {loads} passed above the first failure (noisy or non-monotone target)")
    if stopped == "interrupted":
        parts.append("sweep interrupted: partial answer")
    elif stopped == "unreachable":
        parts.append("target unreachable: partial answer")
    return "; ".join(parts)
