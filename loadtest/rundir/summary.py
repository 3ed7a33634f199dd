"""summary.json: the :class:`Summary` model, shared by its writer and every reader.

``loadtest.rundir.writer.build_summary`` builds the summary and validates it here before it is
written; ``report``, ``compare`` and ``sweep`` read it back through :func:`read_summary`.
The fields are those of schema 2 (docs/run-directory.md), in the order they are written;
the ones a schema-1 file lacks have defaults, so old run directories still load.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_validator,
)

from loadtest import slo as _slo
from loadtest.errors import BadInput

__all__ = ["SCHEMA", "Summary", "read_summary", "summary_text"]

#: the summary.json schema this loadtest writes, and the newest one it reads
SCHEMA = 2

Number = StrictInt | StrictFloat  # a JSON number, kept as written (an int stays an int)
Count = Annotated[StrictInt, Field(ge=0)]
_EMPTY_WHEN_NULL = ("errors", "error_samples", "throughput", "schedule", "generator", "slo", "tls",
                    "chunks_per_answer")  # fmt: skip


class Summary(BaseModel):
    """One run's summary.json. Frozen; unknown keys are kept (and written back) as they are.

    Nested objects the readers look into key by key (``throughput``, ``generator``, …) are
    plain mappings: their figures may be ``null`` (no samples), and a schema-1 file has
    fewer of them.
    """

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    schema_version: StrictInt = Field(1, alias="schema", ge=1)
    scenario: str
    fingerprint: str | None = None
    seed: int | None = None  # load.seed: not part of the workload's fingerprint
    mock_seed: int | None = None  # the embedded mock's seed (drawn per run unless set)
    target: str | None = None
    started_at: str
    duration_s: Number
    measure_s: Number | None = None
    window: dict[str, Number] | None = None
    drain: dict[str, Any] | None = None
    mode: Literal["closed", "open"] | None = None
    requests: dict[str, Count]
    errors: dict[str, Count] = Field(default_factory=dict)
    error_samples: dict[str, list[Any]] = Field(default_factory=dict)
    reconnects: Count | None = None
    session: dict[str, Count] | None = None
    latency_ms: dict[str, dict[str, Any]]
    latency_from_failed: dict[str, Any] | None = None
    throughput: dict[str, Any] = Field(default_factory=dict)
    schedule: dict[str, Any] = Field(default_factory=dict)
    generator: dict[str, Any] = Field(default_factory=dict)
    chunks_per_answer: dict[str, Count] = Field(default_factory=dict)
    #: request classes (docs/classes.md): null without slo.goodput / a tokenizer; older files lack them
    goodput: dict[str, Any] | None = None
    tokens: dict[str, Any] | None = None
    by_tag: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tags_folded: dict[str, Count] = Field(default_factory=dict)
    conversations: dict[str, Any] | None = None  # null without session.conversation
    tls: dict[str, Any] = Field(default_factory=dict)
    interrupted: StrictBool = False
    error_rate: Number | None = None
    session_error_rate: Number | None = None
    slo: dict[str, dict[str, Any]] = Field(default_factory=dict)
    slo_by_tag: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    workers: dict[str, Any] = Field(default_factory=dict)  # {planned, finished, lost: [...], each: [...]}
    verdict: Literal["passed", "failed", "interrupted", "incomplete", "unreachable"] | None = None
    reason: str | None = None
    passed: StrictBool
    #: the exit code ``loadtest run`` returned for this verdict (absent in files of older versions)
    exit_code: Literal[0, 1, 3, 4, 5] | None = None

    @model_validator(mode="before")
    @classmethod
    def _older_schemas(cls, data: Any) -> Any:
        """A file without ``error_rate`` (written before it was a field) gets the one formula's
        value (:func:`loadtest.slo.error_rate`) when anything was offered, else None. An
        object written as ``null`` reads as empty (as the readers always took it)."""
        if isinstance(data, Mapping) and any(data.get(k, {}) is None for k in _EMPTY_WHEN_NULL):
            data = {**data, **{k: {} for k in _EMPTY_WHEN_NULL if k in data and data[k] is None}}
        if isinstance(data, Mapping) and "error_rate" not in data:
            requests = data.get("requests")
            if isinstance(requests, Mapping) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in requests.values()
            ) and _slo.error_counts(requests)[1]:
                data = {**data, "error_rate": round(_slo.error_rate(requests), 6)}
        return data

    # ---- derived figures (from the fields above, never recomputed elsewhere) ----

    @property
    def error_counts(self) -> tuple[int, int]:
        """``(not served, offered)`` requests: the counts behind ``error_rate``."""
        return _slo.error_counts(self.requests)

    @property
    def window_end_s(self) -> float:
        """End of the measured window in seconds since t0 (schema 2), else the run's duration."""
        end = (self.window or {}).get("end_s")
        return float(end) if end is not None else float(self.duration_s)

    @property
    def saturated(self) -> bool:
        return bool(self.generator.get("saturated"))

    @property
    def saturation_reasons(self) -> tuple[str, ...]:
        return tuple(str(r) for r in self.generator.get("reasons") or ())

    def to_json(self) -> dict[str, Any]:
        """The summary as summary.json holds it (keys in the written order, fields a file
        lacked left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def to_dict(self) -> dict[str, Any]:
        """Every field, defaults filled in, for readers that look figures up by key."""
        return self.model_dump(mode="json", by_alias=True)


def summary_text(summary: Mapping[str, Any]) -> str:
    """summary.json's text for ``summary``, after checking it against :class:`Summary` (a
    writer bug is found here, not by the next reader). Keys stay in the order given."""
    Summary.model_validate(summary)
    return json.dumps(summary, indent=2, sort_keys=False)


def read_summary(path: Path) -> Summary:
    """summary.json of a run directory; :class:`BadInput` naming the file on any defect.

    Refused: a file that is missing, unreadable or not JSON; a ``schema`` newer than
    :data:`SCHEMA`; a run that never reached its target (``verdict: unreachable``, nothing
    was measured: the reason is given); a field missing or of the wrong type; a NaN or an
    infinity anywhere (JSON has neither; Python's parser takes them); a figure the readers
    judge (``latency_ms``, ``throughput``, ``schedule`` rates, ``generator``, ``by_tag``) that
    is not a number, a count that is not a non-negative integer (issue 22: a damaged file was
    judged as if its figures were missing, and a PASS came of it).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_NonFinite, parse_float=_float)
    except FileNotFoundError:
        raise BadInput(f"{path}: missing; is {path.parent} a run directory?") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a JSON object at the top level")
    if (found := _non_finite(data)) is not None:
        where, text = found
        raise BadInput(f"{path}: field {where!r} is {text}, not a finite number (JSON has no NaN or infinity)")
    schema = data.get("schema", 1)  # absent: written before schemas existed
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
        raise BadInput(f"{path}: field 'schema' should be a positive integer, got {str(schema)[:40]!r}")
    if schema > SCHEMA:
        raise BadInput(f"{path}: written with summary schema {schema}, newer than this loadtest "
                       f"knows ({SCHEMA}); read it with a newer loadtest")
    if data.get("verdict") == "unreachable" or data.get("measured") is False:
        reason = str(data.get("reason") or "no reason recorded")[:300]
        what = "never reached its target" if data.get("verdict") == "unreachable" else "was interrupted during start-up"
        raise BadInput(f"{path}: this run {what}, nothing was measured ({reason})")
    try:
        summary = Summary.model_validate(data)
    except ValidationError as exc:
        raise BadInput(f"{path}: {_first_error(exc, data)}") from None
    if (defect := _figures_defect(summary)) is not None:
        raise BadInput(f"{path}: {defect}")
    return summary


class _NonFinite:
    """A ``NaN``, ``Infinity`` or out-of-range number (``1e999``) read from the file."""

    def __init__(self, text: str) -> None:
        self.text = text


def _float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def _non_finite(node: Any, where: str = "") -> tuple[str, str] | None:
    """(field path, text) of the first non-finite number in ``node``, else None."""
    if isinstance(node, _NonFinite):
        return where, node.text
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if (found := _non_finite(value, f"{where}.{key}" if where else str(key))) is not None:
            return found
    return None


#: the figures of a ``latency_ms`` entry: counts, and milliseconds (null without samples)
_LATENCY_COUNTS = ("count", "out_of_range")
_LATENCY_FIGURES = ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _figures_defect(summary: Summary) -> str | None:
    """The first figure of ``summary`` that a reader would judge and that is not one; None.

    The model types these objects loosely (their figures may be null, older schemas have fewer
    of them): what is checked is that every figure present has the type the readers read it
    as, so that a damaged file is refused instead of judged as if the figure were missing."""
    sections: list[tuple[str, Mapping[str, Any]]] = [("", {"latency_ms": summary.latency_ms,
                                                           "throughput": summary.throughput})]
    sections += [(f"by_tag.{tag}.", entry) for tag, entry in summary.by_tag.items()]
    for prefix, section in sections:
        if prefix and not isinstance(section.get("requests", {}), Mapping):
            return f"field '{prefix}requests' should be an object of counts"
        for key, value in (section.get("requests") or {}).items() if prefix else ():
            if not _is_count(value):
                return f"field '{prefix}requests.{key}' should be a count (an integer >= 0), got {value!r:.40}"
        if prefix and section.get("error_rate") is not None and not _is_number(section["error_rate"]):
            return f"field '{prefix}error_rate' should be a number or null, got {section['error_rate']!r:.40}"
        latency = section.get("latency_ms") or {}
        if not isinstance(latency, Mapping):
            return f"field '{prefix}latency_ms' should be an object"
        for metric, entry in latency.items():
            if not isinstance(entry, Mapping):
                return f"field '{prefix}latency_ms.{metric}' should be an object of figures"
            for key in _LATENCY_COUNTS:
                if key in entry and not _is_count(entry[key]):
                    return (f"field '{prefix}latency_ms.{metric}.{key}' should be a count (an integer >= 0), "
                            f"got {entry[key]!r:.40}")
            for key in _LATENCY_FIGURES:
                if entry.get(key) is not None and not _is_number(entry[key]):
                    return f"field '{prefix}latency_ms.{metric}.{key}' should be a number or null, got {entry[key]!r:.40}"
        throughput = section.get("throughput") or {}
        if not isinstance(throughput, Mapping):
            return f"field '{prefix}throughput' should be an object"
        for key, value in throughput.items():
            if key.endswith("_per_s") and value is not None and not _is_number(value):
                return f"field '{prefix}throughput.{key}' should be a number or null, got {value!r:.40}"
    for key in ("offered_rate", "achieved_rate"):
        if summary.schedule.get(key) is not None and not _is_number(summary.schedule[key]):
            return f"field 'schedule.{key}' should be a number or null, got {summary.schedule[key]!r:.40}"
    if not isinstance(summary.generator.get("saturated", False), bool | None):
        return f"field 'generator.saturated' should be true or false, got {summary.generator['saturated']!r:.40}"
    reasons = summary.generator.get("reasons")
    if reasons is not None and not (isinstance(reasons, list) and all(isinstance(r, str) for r in reasons)):
        return f"field 'generator.reasons' should be a list of sentences, got {reasons!r:.40}"
    return None


def _first_error(exc: ValidationError, data: Any) -> str:
    error = exc.errors(include_url=False)[0]
    # pydantic's location also names the union member it tried ("duration_s.int"): keep the
    # part that is a path in the file
    parts: list[str] = []
    node = data
    for part in error["loc"]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif error["type"] == "missing" and part == error["loc"][-1]:
            pass
        else:
            break
        parts.append(str(part))
    where = ".".join(parts)
    if error["type"] == "missing":
        return f"field {where!r} is missing"
    return f"field {where!r} is missing or has the wrong type ({error['msg']})"
