"""Interval statistics of the release gate (issue 13), pure: Student's t without scipy, the
paired and Welch intervals across rounds, the moving-block bootstrap over seconds, Holm.

Every estimate is of δ, oriented so that a positive δ is *worse* (a log ratio of latencies
candidate/baseline, of throughputs baseline/candidate, a difference of error rates), and
carries enough to give an interval at any level and a one-sided p-value against a bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "POWER",
    "Estimate",
    "block_indices",
    "detectable",
    "f_sf",
    "holm",
    "paired_t",
    "pooled",
    "t_cdf",
    "t_ppf",
    "welch",
]


# ---- Student's t (the regularized incomplete beta by Lentz's continued fraction) ----------


def _betacf(a: float, b: float, x: float) -> float:
    # Numerical Recipes (2nd ed.) §6.4, betacf: the continued fraction of I_x(a, b)
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` degrees of freedom (``inf``: the normal)."""
    if math.isinf(df):
        return 0.5 * math.erfc(-t / math.sqrt(2.0))
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on :func:`t_cdf`, to ~1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be within (0, 1), got {p!r}")
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


# ---- estimates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """δ (positive = worse) with its sampling distribution: Student's t (``se``, ``df``)
    or bootstrap ``draws``. ``method`` names it for the output."""

    value: float
    method: str
    se: float = 0.0
    df: float = math.inf
    draws: tuple[float, ...] = ()

    def interval(self, tail: float) -> tuple[float, float]:
        """Two-sided interval with ``tail`` probability on each side (``tail`` 0.025: 95%)."""
        if self.draws:
            lo, hi = np.quantile(np.asarray(self.draws), [tail, 1.0 - tail])
            return float(lo), float(hi)
        half = t_ppf(1.0 - tail, self.df) * self.se if self.se > 0 else 0.0
        return self.value - half, self.value + half

    def p_above(self, bound: float) -> float:
        """One-sided p-value of H0 "δ ≤ bound" (small when δ is credibly above ``bound``)."""
        if self.draws:
            draws = np.asarray(self.draws)
            return float((np.count_nonzero(draws <= bound) + 1) / (len(draws) + 1))
        if self.se <= 0:
            return 0.0 if self.value > bound else 1.0
        return 1.0 - t_cdf((self.value - bound) / self.se, self.df)

    def widened(self, floor_se: float, df: float) -> Estimate:
        """The same centre with its standard error raised to at least ``floor_se`` (a
        calibrated between-run noise floor); a normal/t approximation from then on."""
        se = self.se
        if self.draws:
            se = float(np.std(np.asarray(self.draws), ddof=1))
        if floor_se <= se:
            return self
        return Estimate(self.value, f"{self.method}, widened to the calibrated noise floor", se=floor_se, df=df)


#: a calibration whose variance these rounds exceed at this one-sided p is not pooled
MISFIT_P = 0.01


def f_sf(x: float, d1: float, d2: float) -> float:
    """P(F > x) for Snedecor's F with (``d1``, ``d2``) degrees of freedom."""
    if x <= 0:
        return 1.0
    return _betainc(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * x))


def paired_t(deltas: Sequence[float]) -> Estimate:
    """Paired t on per-round differences (log ratios): mean, se = sd/√n, df = n − 1."""
    d = np.asarray(deltas, dtype=np.float64)
    if len(d) < 2:
        raise ValueError("a paired interval needs at least 2 rounds")
    se = float(np.std(d, ddof=1) / math.sqrt(len(d)))
    return Estimate(float(d.mean()), f"paired t over {len(d)} rounds", se=se, df=float(len(d) - 1))


def pooled(est: Estimate, *, var: float, runs: int, what: str) -> Estimate:
    """``est`` (a t estimate: se, df) with its variance pooled with an independent estimate of
    the same variance from a calibration: ``var``, what se² would be by the calibration,
    measured on ``runs`` runs, so with ``runs`` − 1 degrees of freedom. The pooled se² =
    (df·se² + (K−1)·var) / (df + K − 1) has df + K − 1 degrees of freedom: three paired rounds
    alone give 2, and t(0.99, 2) = 6.96; with a calibration of ten runs, 11 and 2.72.

    Valid only when the calibration measured the same noise (same scenario, target, machine):
    when these runs vary more than it allows (one-sided F test, p < :data:`MISFIT_P`), nothing
    is pooled and the method says so. ``what`` names the calibration."""
    if runs < 2 or not math.isfinite(var) or var < 0 or est.draws or not math.isfinite(est.df):
        return est
    own = est.se**2
    if est.df > 0 and var > 0 and f_sf(own / var, est.df, runs - 1) < MISFIT_P:
        # a busier machine, another target: its variance is not theirs, and pooling would
        # narrow the interval wrongly
        return Estimate(est.value, f"{est.method}; not pooled: these runs vary more than {what} "
                        f"allows (F test p < {MISFIT_P:g})", se=est.se, df=est.df)  # fmt: skip
    df = est.df + runs - 1
    return Estimate(est.value, f"{est.method}, variance pooled with {what} ({df:.0f} df)",
                    se=math.sqrt((est.df * own + (runs - 1) * var) / df), df=df)  # fmt: skip


def welch(baseline: Sequence[float], candidate: Sequence[float]) -> Estimate:
    """Welch's unequal-variance t on candidate − baseline (values already on the log scale).

    With one run on a side its variance is unknown: that side borrows the other's
    (the pooled two-sample t, df = n_other − 1), and the method says so.
    """
    b, c = np.asarray(baseline, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    nb, nc = len(b), len(c)
    if nb + nc < 3 or min(nb, nc) < 1:
        raise ValueError("an unpaired interval needs 1 run on one side and 2 or more on the other")
    diff = float(c.mean() - b.mean())
    if min(nb, nc) == 1:
        many = b if nb > 1 else c
        s2 = float(np.var(many, ddof=1))
        se = math.sqrt(s2 * (1 / nb + 1 / nc))
        return Estimate(diff, f"two-sample t ({nb} vs {nc} runs, variance of the larger side)",
                        se=se, df=float(len(many) - 1))  # fmt: skip
    vb, vc = float(np.var(b, ddof=1)) / nb, float(np.var(c, ddof=1)) / nc
    se = math.sqrt(vb + vc)
    if se == 0:
        return Estimate(diff, f"Welch t ({nb} vs {nc} runs)", se=0.0)
    # Welch–Satterthwaite degrees of freedom
    df = (vb + vc) ** 2 / (vb**2 / (nb - 1) + vc**2 / (nc - 1))
    return Estimate(diff, f"Welch t ({nb} vs {nc} runs)", se=se, df=df)


# ---- the moving-block bootstrap and Holm --------------------------------------------------


def block_indices(n: int, block: int, resamples: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """``resamples`` × ``n`` second indices of a moving-block bootstrap (Künsch 1989): runs
    of ``block`` consecutive seconds from uniformly drawn starts, cut to ``n``. Seconds next
    to each other share the target's state (a GC pause, a queue, drift), so they are drawn
    together; resampling single seconds would hide that dependence and narrow the interval."""
    block = max(1, min(block, n))
    per = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(resamples, per))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(resamples, per * block)
    out: npt.NDArray[np.int64] = idx[:, :n].astype(np.int64)
    return out


def holm(pvalues: Sequence[float], alpha: float) -> list[tuple[bool, float]]:
    """Holm's step-down (Holm 1979), family-wise ``alpha``: per test, in input order,
    (rejected, the level it was judged at: alpha / (m − rank + 1)). Once a test is not
    rejected, no later (larger p) one is."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out: list[tuple[bool, float]] = [(False, alpha)] * m
    going = True
    for rank, i in enumerate(order):
        level = alpha / (m - rank)
        going = going and pvalues[i] <= level
        out[i] = (going, level)
    return out


#: the power at which the gate states :attr:`loadtest.compare.gate.GateRow.detectable`
POWER = 0.8


def detectable(metric: str, est: Estimate, tau: float, level: float) -> float:
    """The smallest worse change δ* whose interval would clear the tolerance with ``POWER``:
    τ + (t(1 − level) + t(POWER))·se, for a t estimate; for a bootstrap, the distance from the
    centre to its ``level`` quantile stands for t(1 − level)·se. In natural terms."""
    if est.draws:
        lo, _ = est.interval(level)
        spread = est.value - lo
        z = t_ppf(1 - level, math.inf)
        se = spread / z if z > 0 else 0.0
        delta = tau + spread + t_ppf(POWER, math.inf) * se
    else:
        delta = tau + (t_ppf(1 - level, est.df) + t_ppf(POWER, est.df)) * est.se
    if metric == "error_rate":
        return round(delta, 6)
    if metric == "throughput":
        return round(-math.expm1(-delta), 6)  # a drop by this share
    return round(math.expm1(delta), 6)
