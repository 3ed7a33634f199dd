"""The mock's fault model: which stream misbehaves, how, and when. Pure and seeded.

Scenario / ``--faults`` JSON form (every key optional; rates are per stream, 0..1)::

    abrupt_close: 0.01          # TCP closed mid-stream, no close frame
    close_code: {rate: 0.01, code: 1011}   # close frame with this code mid-stream
    malformed_frame: 0.01       # a frame that is not JSON, mid-stream
    error_mid_stream: 0.01      # an ``error`` event after some chunks
    error_instead: 0.01         # an ``error`` event instead of the stream
    no_stop: 0.01               # the stream never sends ``stop: true``
    unknown_event: 0.01         # an unknown event inside the stream (stream completes)
    error_then_late: 0.01       # an ``error`` after some chunks, then the rest of the answer and
                                # its ``stop`` anyway (a proxy flushing what it had buffered)
    stall: [{at_s: 4, ms: 1000}]          # every stream pauses: chunks due in the window wait
    refuse_upgrade: {rate: 0.5, status: 503}   # HTTP status instead of the upgrade
    slow_handshake: {rate: 1, ms: 300}    # delay before the upgrade completes

Stream faults are drawn once per stream with one uniform number against cumulative
rates, so their rates add up (they must sum to <= 1).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from loadtest.errors import BadInput

__all__ = ["STREAM_FAULTS", "FaultModel", "FaultPlan", "StreamFault", "parse_faults"]

#: stream fault kinds, in the order rates are accumulated
STREAM_FAULTS: tuple[str, ...] = (
    "abrupt_close",
    "close_code",
    "malformed_frame",
    "error_mid_stream",
    "error_instead",
    "no_stop",
    "unknown_event",
    "error_then_late",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultModel:
    rates: tuple[tuple[str, float], ...] = ()
    close_code: int = 1011
    stalls: tuple[tuple[float, float], ...] = ()  # (at_s, duration_s)
    refuse_rate: float = 0.0
    refuse_status: int = 503
    slow_handshake_rate: float = 0.0
    slow_handshake_s: float = 0.0
    spec: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def active(self) -> bool:
        return bool(self.rates or self.stalls or self.refuse_rate or self.slow_handshake_rate)


@dataclass(frozen=True, slots=True)
class StreamFault:
    kind: str = ""
    at_chunk: int = -1
    code: int = 0


_NO_FAULT = StreamFault()


def _rate(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v <= 1):
        raise BadInput(f"faults.{name} must be a rate between 0 and 1, got {v!r}")
    return float(v)


def _num(v: Any, name: str, *, lo: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo:
        raise BadInput(f"faults.{name} must be a number >= {lo}, got {v!r}")
    return float(v)


def _mapping(v: Any, name: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise BadInput(f"faults.{name} must be a mapping with keys {sorted(keys)}, got {v!r}")
    unknown = set(v) - keys
    if unknown:
        raise BadInput(f"faults.{name} has unknown key(s) {sorted(unknown)}; allowed {sorted(keys)}")
    return v


def parse_faults(spec: Any) -> FaultModel:
    """Validate the fault mapping described in the module docstring."""
    if spec is None:
        return FaultModel()
    if not isinstance(spec, dict):
        raise BadInput(f"faults must be a mapping, got {spec!r}")
    allowed = set(STREAM_FAULTS) | {"stall", "refuse_upgrade", "slow_handshake"}
    unknown = set(spec) - allowed
    if unknown:
        raise BadInput(f"faults has unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
    rates: list[tuple[str, float]] = []
    code = 1011
    for kind in STREAM_FAULTS:
        if kind not in spec:
            continue
        v = spec[kind]
        if kind == "close_code":
            m = _mapping(v, kind, {"rate", "code"})
            code = int(_num(m.get("code", 1011), "close_code.code", lo=1000))
            if code > 4999:
                raise BadInput(f"faults.close_code.code must be 1000..4999, got {code}")
            v = m.get("rate", 0)
        r = _rate(v, kind)
        if r:
            rates.append((kind, r))
    if sum(r for _, r in rates) > 1 + 1e-9:
        raise BadInput("faults: the stream fault rates add up to more than 1")
    stalls: list[tuple[float, float]] = []
    raw_stalls = spec.get("stall", [])
    if isinstance(raw_stalls, dict):
        raw_stalls = [raw_stalls]
    if not isinstance(raw_stalls, list):
        raise BadInput("faults.stall must be a mapping {at_s, ms} or a list of them")
    for i, s in enumerate(raw_stalls):
        m = _mapping(s, f"stall[{i}]", {"at_s", "ms"})
        stalls.append((_num(m.get("at_s"), f"stall[{i}].at_s"), _num(m.get("ms"), f"stall[{i}].ms") / 1000))
    refuse_rate, refuse_status = 0.0, 503
    if "refuse_upgrade" in spec:
        m = _mapping(spec["refuse_upgrade"], "refuse_upgrade", {"rate", "status"})
        refuse_rate = _rate(m.get("rate", 1.0), "refuse_upgrade.rate")
        refuse_status = int(_num(m.get("status", 503), "refuse_upgrade.status", lo=400))
        if refuse_status > 599:
            raise BadInput("faults.refuse_upgrade.status must be an HTTP error status 400..599")
    hs_rate, hs_s = 0.0, 0.0
    if "slow_handshake" in spec:
        m = _mapping(spec["slow_handshake"], "slow_handshake", {"rate", "ms"})
        hs_rate = _rate(m.get("rate", 1.0), "slow_handshake.rate")
        hs_s = _num(m.get("ms", 0), "slow_handshake.ms") / 1000
    return FaultModel(
        rates=tuple(rates),
        close_code=code,
        stalls=tuple(sorted(stalls)),
        refuse_rate=refuse_rate,
        refuse_status=refuse_status,
        slow_handshake_rate=hs_rate,
        slow_handshake_s=hs_s,
        spec=dict(spec),
    )


class FaultPlan:
    """Draws faults from a :class:`FaultModel` with its own seeded generator."""

    def __init__(self, model: FaultModel, *, seed: int = 0) -> None:
        self.model = model
        self._rng = random.Random(seed ^ 0x5EED_FA17)

    def stream_fault(self, chunks: int) -> StreamFault:
        if not self.model.rates:
            return _NO_FAULT
        u = self._rng.random()
        acc = 0.0
        for kind, rate in self.model.rates:
            acc += rate
            if u < acc:
                at = 0 if kind == "error_instead" else max(0, chunks // 2)
                return StreamFault(kind, at, self.model.close_code)
        return _NO_FAULT

    def stall_s(self, t_s: float) -> float:
        """Extra wait for a chunk due ``t_s`` after server start (0 outside stall windows)."""
        for at, dur in self.model.stalls:
            if at <= t_s < at + dur:
                return at + dur - t_s
        return 0.0

    def refuse_upgrade(self) -> int:
        m = self.model
        if m.refuse_rate and self._rng.random() < m.refuse_rate:
            return m.refuse_status
        return 0

    def handshake_delay_s(self) -> float:
        m = self.model
        if m.slow_handshake_rate and self._rng.random() < m.slow_handshake_rate:
            return m.slow_handshake_s
        return 0.0
