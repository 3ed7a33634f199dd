"""Capacity models, the pure maths: a monotone fit, a knee, the Universal Scalability Law.

No file, no clock, no randomness that is not seeded. :mod:`loadtest.sweep.capacity` applies
these to a sweep's steps.

- :func:`isotonic` — the pool-adjacent-violators algorithm (least squares under the
  constraint that the fit never decreases): latency should not fall as load rises, so noise
  that says otherwise is pooled rather than believed.
- :func:`kneedle` — Satopää et al., "Finding a 'Kneedle' in a Haystack" (ICDCSW 2011): on a
  curve normalised to the unit square, the knee of an increasing convex curve (a latency
  hockey stick) is the point farthest below the diagonal.
- :func:`fit_usl` — Gunther's Universal Scalability Law, ``X(N) = λN / (1 + σ(N−1) + κN(N−1))``.
  Dividing through, ``N/X = 1/λ + (σ/λ)(N−1) + (κ/λ)N(N−1)`` is linear in ``(1/λ, σ/λ, κ/λ)``,
  so the fit is a small weighted linear least squares (weights ``1/(N/X)²``: relative errors,
  as throughput noise is relative), with ``σ, κ ≥ 0`` enforced by trying the constrained
  subsets. Intervals come from a seeded bootstrap over the points.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["UslFit", "fit_usl", "isotonic", "kneedle", "usl_throughput"]


def isotonic(xs: Sequence[float], ys: Sequence[float]) -> list[float]:
    """The non-decreasing least-squares fit of ``ys`` over ``xs`` (points in any order; ties in
    ``x`` share one fitted value). Returns the fitted value of each input point, in input order."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    # blocks, each a running sum, a weight and its points; points of one x start in one block
    sums: list[float] = []
    weights: list[float] = []
    members: list[list[int]] = []
    for i in order:
        if members and xs[members[-1][0]] == xs[i]:
            sums[-1] += ys[i]
            weights[-1] += 1
            members[-1].append(i)
        else:
            sums.append(float(ys[i]))
            weights.append(1.0)
            members.append([i])
        while len(sums) > 1 and sums[-2] / weights[-2] > sums[-1] / weights[-1]:
            s, w, m = sums.pop(), weights.pop(), members.pop()
            sums[-1] += s
            weights[-1] += w
            members[-1].extend(m)
    fitted = [0.0] * len(xs)
    for s, w, m in zip(sums, weights, members, strict=True):
        for i in m:
            fitted[i] = s / w
    return fitted


def kneedle(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The knee of an increasing, convex curve given by distinct ``xs`` (ascending) and
    ``ys``: the x whose normalised point lies farthest below the diagonal. None with fewer
    than three points, a flat curve, or no point below the diagonal (no knee to speak of)."""
    if len(xs) < 3 or len(xs) != len(ys):
        return None
    x0, x1, y0, y1 = xs[0], xs[-1], min(ys), max(ys)
    if x1 <= x0 or y1 <= y0:
        return None
    best, best_d = None, 0.0
    for x, y in zip(xs, ys, strict=True):
        d = (x - x0) / (x1 - x0) - (y - y0) / (y1 - y0)
        if d > best_d + 1e-12:
            best, best_d = x, d
    return best


def usl_throughput(n: float, *, lam: float, sigma: float, kappa: float) -> float:
    """The USL's throughput at concurrency ``n``."""
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


@dataclass(frozen=True, kw_only=True)
class UslFit:
    """A USL fit: point estimates, bootstrap intervals (``(low, high)``), and the peak.

    ``peak_n`` = √((1−σ)/κ) is None when κ is 0 (no retrograde region within the model) or
    when it lies beyond twice the highest load tested (``peak_refused`` then says why): an
    extrapolation that far is a guess, not a measurement.
    """

    lam: float
    sigma: float
    kappa: float
    sigma_ci: tuple[float, float]
    kappa_ci: tuple[float, float]
    confidence: float
    points: int
    peak_n: float | None
    peak_refused: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "model": "X(N) = lambda*N / (1 + sigma*(N-1) + kappa*N*(N-1))",
            "lambda": self.lam, "sigma": self.sigma, "kappa": self.kappa,
            "sigma_ci": list(self.sigma_ci), "kappa_ci": list(self.kappa_ci), "confidence": self.confidence,
            "points": self.points, "peak_users": self.peak_n, "peak_refused": self.peak_refused,
        }


def _solve(a: list[list[float]], b: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None when singular."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        if abs(m[p][c]) < 1e-300:
            return None
        m[c], m[p] = m[p], m[c]
        for r in range(c + 1, n):
            f = m[r][c] / m[c][c]
            for k in range(c, n + 1):
                m[r][k] -= f * m[c][k]
    out = [0.0] * n
    for r in range(n - 1, -1, -1):
        out[r] = (m[r][n] - sum(m[r][k] * out[k] for k in range(r + 1, n))) / m[r][r]
    return out


def _fit_once(ns: Sequence[float], xs: Sequence[float]) -> tuple[float, float, float] | None:
    """(λ, σ, κ) by weighted linear least squares on N/X, σ, κ ≥ 0; None if it cannot fit."""
    ys = [n / x for n, x in zip(ns, xs, strict=True)]
    ws = [1 / (y * y) for y in ys]
    feats = [[1.0, n - 1, n * (n - 1)] for n in ns]
    best: tuple[float, tuple[float, float, float]] | None = None
    for keep in ((0, 1, 2), (0, 1), (0, 2), (0,)):
        ata = [[sum(w * f[i] * f[j] for w, f in zip(ws, feats, strict=True)) for j in keep] for i in keep]
        aty = [sum(w * f[i] * y for w, f, y in zip(ws, feats, ys, strict=True)) for i in keep]
        sol = _solve(ata, aty)
        if sol is None:
            continue
        coef = [0.0, 0.0, 0.0]
        for i, v in zip(keep, sol, strict=True):
            coef[i] = v
        if coef[0] <= 0 or coef[1] < 0 or coef[2] < 0:
            continue
        sse = sum(w * (y - sum(c * f for c, f in zip(coef, fr, strict=True))) ** 2
                  for w, y, fr in zip(ws, ys, feats, strict=True))
        if best is None or sse < best[0] - 1e-15:
            best = (sse, (coef[0], coef[1], coef[2]))
    if best is None:
        return None
    a, b, c = best[1]
    return 1 / a, b / a, c / a


def _quantile(sorted_vals: Sequence[float], q: float) -> float:
    pos = q * (len(sorted_vals) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def fit_usl(ns: Sequence[float], xs: Sequence[float], *, resamples: int = 400, confidence: float = 0.95,
            seed: int = 0) -> UslFit | None:
    """Fit the USL to throughputs ``xs`` measured at concurrencies ``ns`` (replicates allowed).

    None with fewer than three distinct concurrencies or any non-positive point. Intervals:
    percentile bootstrap over the points (``resamples``, seeded: the same points give the same
    intervals); resamples with fewer than three distinct concurrencies are skipped.
    """
    pts = [(float(n), float(x)) for n, x in zip(ns, xs, strict=True)]
    if len({n for n, _ in pts}) < 3 or any(n <= 0 or x <= 0 for n, x in pts):
        return None
    fit = _fit_once([n for n, _ in pts], [x for _, x in pts])
    if fit is None:
        return None
    lam, sigma, kappa = fit
    rng = random.Random(seed)
    sig_s: list[float] = []
    kap_s: list[float] = []
    for _ in range(resamples):
        sample = [pts[rng.randrange(len(pts))] for _ in pts]
        if len({n for n, _ in sample}) < 3:
            continue
        f = _fit_once([n for n, _ in sample], [x for _, x in sample])
        if f is not None:
            sig_s.append(f[1])
            kap_s.append(f[2])
    tail = (1 - confidence) / 2
    if sig_s:
        sig_s.sort()
        kap_s.sort()
        sigma_ci = (min(_quantile(sig_s, tail), sigma), max(_quantile(sig_s, 1 - tail), sigma))
        kappa_ci = (min(_quantile(kap_s, tail), kappa), max(_quantile(kap_s, 1 - tail), kappa))
    else:
        sigma_ci, kappa_ci = (sigma, sigma), (kappa, kappa)
    peak: float | None = None
    refused: str | None = None
    top = max(n for n, _ in pts)
    if kappa <= 0 or sigma >= 1:
        refused = "kappa is 0: no peak within the model (throughput does not fall in the range fitted)"
    else:
        peak = math.sqrt((1 - sigma) / kappa)
        if peak > 2 * top:
            refused = f"the fitted peak ({peak:.0f}) lies beyond twice the highest load tested ({top:g})"
            peak = None
    return UslFit(lam=lam, sigma=sigma, kappa=kappa, sigma_ci=sigma_ci, kappa_ci=kappa_ci,
                  confidence=confidence, points=len(pts), peak_n=peak, peak_refused=refused)
