"""The scenario's ``slo`` section: per-run limits, ``by_tag`` (per request class) and the
``goodput`` rule. Internal to :mod:`loadtest.scenario`. No I/O.

What each SLO compares is :mod:`loadtest.slo`'s; here only what a scenario may say: limits are
finite numbers >= 0 (shares in [0, 1]), ``by_tag`` keys are ``key=value``, ``min_goodput``
needs ``goodput``. Whether a tag can occur at all is the scenario's check (it knows the steps).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from loadtest.metrics.goodput import GOODPUT_KEYS, GoodputRule
from loadtest.scenario.fields import FieldProblem, short, unknown_key_message
from loadtest.slo import ALWAYS_ON, SHARES, SLO_NAMES, TAG_SLO_NAMES

__all__ = ["DEFAULT_SLO", "Slo", "parse_slo"]

DEFAULT_SLO: dict[str, float] = {"ttft_p99_ms": 1000.0, **ALWAYS_ON}


def _limit(name: str, limit: Any, loc: tuple[Any, ...]) -> float:
    if isinstance(limit, bool) or not isinstance(limit, (int, float)):
        raise FieldProblem(loc, f"an SLO limit is a number, got {short(limit)}")
    try:
        limit_f = float(limit)
    except OverflowError:
        limit_f = math.inf
    is_share = name in ALWAYS_ON or name in SHARES
    if not math.isfinite(limit_f) or limit_f < 0 or (is_share and limit_f > 1):
        bound = "between 0 and 1" if is_share else "a finite number >= 0"
        raise FieldProblem(loc, f"{name} must be {bound}, got {short(limit)}")
    return limit_f


def _limits(value: dict[Any, Any], loc: tuple[Any, ...], names: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, limit in value.items():
        if name not in names:
            message = unknown_key_message(name, names).replace("key", "SLO", 1)
            if name == "session_error_rate":
                message = ("session_error_rate has no tag: session steps (set-ups, pings) belong to no "
                           "request class; set it for the run")
            raise FieldProblem((*loc, name), message)
        if limit is None:
            continue  # not set (the always-on error rates then keep their default)
        out[str(name)] = _limit(str(name), limit, (*loc, name))
    return out


def _goodput(value: Any) -> GoodputRule:
    if not isinstance(value, dict):
        raise FieldProblem(("goodput",), f"goodput is a mapping of limits ({', '.join(GOODPUT_KEYS)}), "
                           f"got {short(value)}")
    for key in value:
        if key not in GOODPUT_KEYS:
            raise FieldProblem(("goodput", key), unknown_key_message(key, GOODPUT_KEYS))
    limits = {k: _limit(k, v, ("goodput", k)) for k, v in value.items() if v is not None}
    if not limits:
        raise FieldProblem(("goodput",), f"goodput needs at least one limit ({', '.join(GOODPUT_KEYS)}): "
                           "a good request is one within every limit named")
    return GoodputRule(**limits)


def parse_slo(value: Any) -> Slo:
    """The ``slo`` section as given (None: the defaults) → :class:`Slo`; FieldProblem names the key."""
    if isinstance(value, Slo):
        return value
    if value is None:
        return Slo(dict(DEFAULT_SLO))
    if not isinstance(value, dict):
        raise ValueError(f"slo must be a mapping of {', '.join(SLO_NAMES)}, by_tag, goodput")
    runwide = {k: v for k, v in value.items() if k not in ("by_tag", "goodput")}
    out = _limits(runwide, (), SLO_NAMES)
    for name, limit in ALWAYS_ON.items():
        out.setdefault(name, limit)
    rule = None if value.get("goodput") is None else _goodput(value["goodput"])
    by_tag: dict[str, dict[str, float]] = {}
    raw = value.get("by_tag")
    if raw is not None:
        if not isinstance(raw, dict):
            raise FieldProblem(("by_tag",), f'by_tag maps "key=value" to SLOs, got {short(raw)}')
        for tag, limits in raw.items():
            if not isinstance(tag, str) or "=" not in tag or not tag.partition("=")[0]:
                raise FieldProblem(("by_tag", tag), f'a by_tag key is a tag "key=value", got {short(tag)}')
            if not isinstance(limits, dict) or not limits:
                raise FieldProblem(("by_tag", tag), f"the SLOs of {tag} are a mapping of limits, got {short(limits)}")
            key, _, val = tag.partition("=")
            by_tag[f"{key.strip()}={val.strip()}"] = _limits(limits, ("by_tag", tag), TAG_SLO_NAMES)
    needs_rule = ["min_goodput"] if "min_goodput" in out else []
    needs_rule += [f"by_tag {t} min_goodput" for t, lim in by_tag.items() if "min_goodput" in lim]
    if needs_rule and rule is None:
        raise FieldProblem(("min_goodput",) if "min_goodput" in out else ("by_tag",),
                           f"{needs_rule[0]} needs slo.goodput: the limits that make a request good "
                           "(e.g. goodput: {ttft_ms: 500, tpot_ms: 50})")
    return Slo(out, by_tag=by_tag, goodput=rule)


class Slo(Mapping[str, float]):
    """The ``slo`` section: the per-run limits (this mapping), ``by_tag`` (per ``key=value``) and
    the ``goodput`` rule. Frozen."""

    __slots__ = ("_limits", "by_tag", "goodput")

    def __init__(self, limits: dict[str, float], *, by_tag: dict[str, dict[str, float]] | None = None,
                 goodput: GoodputRule | None = None) -> None:
        self._limits = dict(limits)
        self.by_tag: dict[str, dict[str, float]] = dict(by_tag or {})
        self.goodput = goodput

    def __getitem__(self, name: str) -> float:
        return self._limits[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._limits)

    def __len__(self) -> int:
        return len(self._limits)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Slo):
            return (self._limits, self.by_tag, self.goodput) == (other._limits, other.by_tag, other.goodput)
        return isinstance(other, Mapping) and not self.by_tag and self.goodput is None and dict(other) == self._limits

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Slo({self._limits!r}, by_tag={self.by_tag!r}, goodput={self.goodput!r})"

    def to_plain(self) -> dict[str, Any]:
        """As the scenario file writes it (by_tag and goodput only when set)."""
        out: dict[str, Any] = dict(self._limits)
        if self.by_tag:
            out["by_tag"] = {t: dict(v) for t, v in self.by_tag.items()}
        if self.goodput is not None:
            out["goodput"] = self.goodput.to_dict()
        return out
