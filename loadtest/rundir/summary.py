"""summary.json: the :class:`Summary` model, shared by its writer and every reader.

``loadtest.rundir.writer.build_summary`` builds the summary and validates it here before it is
written; ``report``, ``compare`` and ``sweep`` read it back through :func:`read_summary`.
The fields are those of schema 2 (docs/run-directory.md), in the order they are written;
the ones a schema-1 file lacks have defaults, so old run directories still load.
"""

from __future__ import annotations

import json
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
    was measured: the reason is given); a field missing or of the wrong type.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: missing; is {path.parent} a run directory?") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a JSON object at the top level")
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
        return Summary.model_validate(data)
    except ValidationError as exc:
        raise BadInput(f"{path}: {_first_error(exc, data)}") from None


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
