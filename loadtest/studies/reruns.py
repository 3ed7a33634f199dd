"""The rerun budget of a study: runs spoiled by a saturated generator, run again."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from loadtest.errors import BadInput

__all__ = ["Reruns"]


class Reruns:
    """The runs a command may run again because their generator saturated (the machine, not
    the target: on a shared VM, a burst of CPU taken by the hypervisor), ``limit`` in all.
    :meth:`set_aside` keeps a spoiled run directory as ``<name>.spoiled-<attempt>`` and records
    (and warns) one line saying which and why. Shared by ``ab``, ``calibrate`` and ``sweep``."""

    def __init__(self, limit: int, warn: Callable[[str], None] = lambda _: None) -> None:
        if limit < 0:
            raise BadInput(f"--retries must be >= 0, got {limit}")
        self.limit = limit
        self.lines: list[str] = []
        self._warn = warn

    @property
    def left(self) -> bool:
        return len(self.lines) < self.limit

    def set_aside(self, run_dirs: Sequence[Path], attempt: int, what: str, reasons: Sequence[str]) -> None:
        for d in run_dirs:
            d.rename(d.with_name(f"{d.name}.spoiled-{attempt}"))
        why = "; ".join(str(r) for r in reasons) or "saturated"
        self.lines.append(f"{what} run again (attempt {attempt + 1}): the generator was saturated ({why})")
        self._warn(f"warning: {self.lines[-1]}")
