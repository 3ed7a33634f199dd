"""The scenario's sections (target, mock, load, timeouts, slo) and :class:`Scenario` itself.

Field names carry units (``duration_s``), the YAML key does not (``duration``). A section given
as ``null`` is the same as an absent one (all defaults).

Internal to :mod:`loadtest.scenario`, which re-exports the public names. No I/O.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from loadtest.mock.faults import FaultModel
from loadtest.mock.latency import Dist, MockModel
from loadtest.scenario.fields import (
    DistField,
    Duration,
    FaultsField,
    FieldProblem,
    Model,
    PositiveDuration,
    format_duration,
    short,
    to_seconds,
)
from loadtest.scenario.outputs import OutputsConfig
from loadtest.scenario.slos import DEFAULT_SLO, Slo, parse_slo
from loadtest.scenario.steps import SessionConfig
from loadtest.schedule.arrivals import ArrivalKind
from loadtest.slo import SLO_NAMES

__all__ = [
    "SLO_NAMES",
    "LoadConfig",
    "MockConfig",
    "Scenario",
    "Slo",
    "Stage",
    "TargetConfig",
    "TimeoutsConfig",
]

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Sanity caps (issue 10): far beyond what one generator process can drive, so only a typo
#: (``concurrency: 1000000000``) reaches them. What *this* machine can do (file descriptors)
#: is checked before the run by :mod:`loadtest.engine.limits`, not here (no I/O in the model).
MAX_USERS = 1_000_000
MAX_CONNECTIONS = 1_000_000
MAX_RATE_PER_S = 1_000_000.0
MAX_WORKERS = 256
MAX_QUEUE = 100_000_000


class TargetConfig(Model):
    url: StrictStr = "mock"
    api_key_env: StrictStr = "LOADTEST_API_KEY"
    model: StrictStr | None = Field(None, min_length=1)
    ca_file: StrictStr | None = None
    insecure: StrictBool = False
    #: a Hugging Face tokenizer.json (a local file, resolved against the scenario's directory):
    #: answers and prompts are counted in tokens with it; None: nothing about tokens is counted
    tokenizer: StrictStr | None = Field(None, min_length=1)
    #: a server frame larger than this is a protocol error (the generator's memory stays bounded)
    max_frame_bytes: StrictInt = Field(4 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        _check_url(url)
        return url

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, name: str) -> str:
        if not _ENV_NAME_RE.fullmatch(name):
            raise ValueError(f"must be an environment variable name, got {short(name)}")
        return name

    @property
    def is_mock(self) -> bool:
        return self.url == "mock"


def _check_url(url: str) -> None:
    """``mock`` or ``ws[s]://host[:port]/path``. The message never repeats the URL (secrets)."""
    if url == "mock":
        return
    if "apikey=" in url.lower():
        raise ValueError(
            "the URL must not carry the API key (apikey=…): put the key in the variable named by "
            "target.api_key_env, or pass --api-key"
        )
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise ValueError(
            "is not a valid URL: use mock, ws://HOST[:PORT]/PATH or wss://HOST[:PORT]/PATH"
        ) from None
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"must be mock, or a ws:// or wss:// URL (scheme {parts.scheme or 'missing'!r})")
    if parts.password is not None:
        raise ValueError(
            "credentials in the URL are not supported: the key comes from the environment or --api-key"
        )
    if not parts.hostname or not port_ok or any(c.isspace() for c in url):
        raise ValueError("must name a host: ws://HOST[:PORT]/PATH or wss://HOST[:PORT]/PATH")


class MockConfig(Model):
    """The embedded mock's latency, capacity and faults (used only when ``target.url`` is mock)."""

    ttft_ms: DistField = Dist(a=100.0)
    gap_ms: DistField = Dist(a=10.0)
    chunks: DistField = Dist(a=20.0)
    capacity: StrictInt | None = Field(None, ge=1)
    gap_slowdown: StrictFloat | None = Field(None, ge=0)
    prefill_ms_per_kchar: StrictFloat = Field(0.0, ge=0)
    #: words in each chunk of an answer (a chunk is not a token: with N > 1 chunks hold several)
    words_per_chunk: StrictInt = Field(1, ge=1, le=64)
    #: extra TTFT per earlier turn of the conversation a gen continues (issue 20)
    turn_ms: StrictFloat = Field(0.0, ge=0)
    faults: FaultsField = FaultModel()
    #: None: a fresh random seed per run, recorded in summary.json as ``mock_seed`` (issue 13:
    #: repeated runs must draw independent latencies, or A/A runs measure one sample N times)
    seed: StrictInt | None = None
    #: the address the embedded mock binds: 127.0.0.1, or 0.0.0.0 (every interface) so that Ray
    #: workers on other hosts reach it, at the coordinator's address (``--mock-host``)
    host: StrictStr = Field("127.0.0.1", min_length=1)
    #: the host name or address workers are given for it (None: ``host``, or for 0.0.0.0/:: the
    #: address of the coordinator's outward interface)
    advertise: StrictStr | None = Field(None, min_length=1)

    @property
    def model(self) -> MockModel:
        return MockModel(
            ttft_ms=self.ttft_ms,
            gap_ms=self.gap_ms,
            chunks=self.chunks,
            capacity=self.capacity,
            gap_slowdown=self.gap_slowdown,
            prefill_ms_per_kchar=self.prefill_ms_per_kchar,
            words_per_chunk=self.words_per_chunk,
            turn_ms=self.turn_ms,
        )


class Stage(Model):
    """Ramp to ``target`` (users in closed loop, arrivals/s in open loop) over ``duration``."""

    duration_s: PositiveDuration = Field(alias="duration")
    target: StrictFloat = Field(ge=0)


class LoadConfig(Model):
    mode: Literal["closed", "open"] = "closed"
    concurrency: StrictInt = Field(10, ge=1)
    rate_per_s: StrictFloat | None = Field(None, gt=0, alias="rate")
    arrival: ArrivalKind = "poisson"
    burstiness: StrictFloat = Field(1.0, gt=0)
    stages: tuple[Stage, ...] = ()
    #: absolute path once loaded (the file gives it relative to itself)
    trace: StrictStr | None = Field(None, min_length=1)
    #: total run time, warmup included; with stages and no duration, their sum
    duration_s: PositiveDuration = Field(20.0, alias="duration")
    warmup_s: Duration = Field(0.0, alias="warmup")
    requests: StrictInt | None = Field(None, ge=1)
    seed: StrictInt = 1
    pace_s: PositiveDuration | None = Field(None, alias="pace")
    connections: StrictInt | None = Field(None, ge=1)
    max_connections: StrictInt = Field(100, ge=1)
    max_queue: StrictInt = Field(10000, ge=0)
    #: worker processes on this host (``auto``: see :meth:`worker_count`)
    workers: StrictInt | Literal["auto"] = 1

    def _caps(self) -> None:
        checks: list[tuple[tuple[str | int, ...], float, float, str]] = [
            (("concurrency",), self.concurrency, MAX_USERS, "users"),
            (("max_connections",), self.max_connections, MAX_CONNECTIONS, "connections"),
            (("max_queue",), self.max_queue, MAX_QUEUE, "queued requests"),
        ]
        if self.rate_per_s is not None:
            checks.append((("rate",), self.rate_per_s, MAX_RATE_PER_S, "arrivals per second"))
        if self.connections is not None:
            checks.append((("connections",), self.connections, MAX_CONNECTIONS, "connections"))
        if isinstance(self.workers, int):
            if self.workers < 1:
                raise FieldProblem(("workers",), f"workers must be >= 1 or auto, got {self.workers}")
            checks.append((("workers",), self.workers, MAX_WORKERS, "worker processes"))
        stage_cap = MAX_USERS if self.mode == "closed" else MAX_RATE_PER_S
        stage_unit = "users" if self.mode == "closed" else "arrivals per second"
        for i, stage in enumerate(self.stages):
            checks.append((("stages", i, "target"), stage.target, stage_cap, stage_unit))
        for key, value, cap, unit in checks:
            if value > cap:
                raise FieldProblem(
                    key, f"{value:,g} {unit} is beyond what loadtest supports (at most {cap:,g}); "
                    "is it a typo?"
                )

    def worker_count(self, *, cores: int, local_target: bool) -> int:
        """How many worker processes run the load. ``auto``: the usable cores minus one for the
        coordinator; against a local target (the embedded mock, a loopback address) the target
        needs cores too, so half of what is left. Never more workers than users (closed loop)."""
        if self.workers == "auto":
            spare = max(1, cores - 1)
            n = max(1, spare // 2) if local_target else spare
        else:
            n = self.workers
        if self.mode == "closed":
            n = min(n, max(1, self.peak_connections))
        return max(1, n)

    @property
    def peak_connections(self) -> int:
        """The most connections this load opens at once: closed loop, one per user (the
        peak of the stages when ramping); open loop, ``max_connections``."""
        if self.mode == "open":
            return self.max_connections
        if self.stages:
            return max(1, math.ceil(max(s.target for s in self.stages)))
        return self.concurrency

    @model_validator(mode="after")
    def _cross_check(self) -> LoadConfig:
        self._caps()
        if self.warmup_s >= self.duration_s:
            raise FieldProblem(
                ("warmup",),
                f"warmup ({format_duration(self.warmup_s)}) must be shorter than duration "
                f"({format_duration(self.duration_s)})",
            )
        if self.connections is not None and self.connections > self.max_connections:
            raise FieldProblem(
                ("connections",),
                f"connections ({self.connections}) exceeds max_connections ({self.max_connections})",
            )
        if self.stages and self.trace is not None:
            raise FieldProblem(("trace",), "give stages or trace, not both")
        if self.mode == "closed":
            for key, value in (
                ("rate", self.rate_per_s),
                ("trace", self.trace),
                ("connections", self.connections),
            ):
                if value is not None:
                    raise FieldProblem((key,), f"{key} applies to mode: open; this load is mode: closed")
            for i, stage in enumerate(self.stages):
                if stage.target != int(stage.target):
                    raise FieldProblem(
                        ("stages", i, "target"), "in mode: closed a stage's target is a whole number of users"
                    )
        else:
            if self.pace_s is not None:
                raise FieldProblem(("pace",), "pace applies to mode: closed; in mode: open use rate")
            if self.rate_per_s is None and not self.stages and self.trace is None:
                raise FieldProblem(
                    ("rate",), "mode: open needs a rate (arrivals per second), stages or a trace"
                )
            if self.rate_per_s is not None and (self.stages or self.trace is not None):
                raise FieldProblem(("rate",), "give one of rate, stages or trace in mode: open")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _stage_duration(cls, data: Any, handler: Any) -> LoadConfig:
        # "with stages, duration defaults to their sum": decided before the cross checks
        if (
            isinstance(data, dict)
            and data.get("stages")
            and "duration" not in data
            and "duration_s" not in data
        ):
            stages = data["stages"]
            try:
                total = sum(to_seconds(s.get("duration")) for s in stages)
            except (AttributeError, TypeError, ValueError):
                total = None  # the stage errors are reported by validation itself
            if total:
                data = {**data, "duration": total}
        result: LoadConfig = handler(data)
        return result

    @property
    def open_loop(self) -> bool:
        return self.mode == "open"


class TimeoutsConfig(Model):
    connect_s: PositiveDuration = Field(10.0, alias="connect")
    first_token_s: PositiveDuration = Field(30.0, alias="first_token")
    stream_s: PositiveDuration = Field(120.0, alias="stream")


_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class Scenario(Model):
    """A validated scenario. ``slo`` maps each SLO that is set to its limit."""

    name: StrictStr = Field("scenario", pattern=_NAME_RE.pattern)
    target: TargetConfig = Field(default_factory=lambda: TargetConfig.model_validate({}))
    mock: MockConfig = Field(default_factory=lambda: MockConfig.model_validate({}))
    load: LoadConfig = Field(default_factory=lambda: LoadConfig.model_validate({}))
    session: SessionConfig = Field(default_factory=lambda: SessionConfig.model_validate({}))
    timeouts: TimeoutsConfig = Field(default_factory=lambda: TimeoutsConfig.model_validate({}))
    slo: Annotated[Slo, PlainValidator(parse_slo), PlainSerializer(lambda v: v.to_plain())] = Field(
        default_factory=lambda: Slo(dict(DEFAULT_SLO)))
    #: the run directory (``--out``); None: ``reports/<name>-<UTC timestamp>/``
    out: StrictStr | None = Field(None, min_length=1)
    #: live metrics while the run goes (Prometheus, OTLP) and the target's own metrics scraped
    outputs: OutputsConfig = Field(default_factory=lambda: OutputsConfig.model_validate({}))

    @model_validator(mode="after")
    def _tags_can_occur(self) -> Scenario:
        """A per-tag SLO on a tag this scenario can never produce is a mistake (exit 2), found
        before anything connects; one that can occur but matched nothing fails the run."""
        space = self.session.tag_space()
        for tag in self.slo.by_tag:
            key, _, value = tag.partition("=")
            if key not in space:
                raise FieldProblem(("slo", "by_tag", tag), f"no request of this scenario carries a tag {key!r} "
                                   f"(its tag keys: {', '.join(sorted(space))})")
            if value not in space[key]:
                raise FieldProblem(("slo", "by_tag", tag), f"no request of this scenario can carry {tag} "
                                   f"({key} takes {', '.join(sorted(space[key]))})")
        rule = self.slo.goodput
        if rule is not None and rule.tpot_token_ms is not None and self.target.tokenizer is None:
            raise FieldProblem(("slo", "goodput", "tpot_token_ms"),
                               "tpot_token_ms counts output tokens: it needs target.tokenizer (or --tokenizer)")
        return self

    @property
    def mock_seed(self) -> int | None:
        """``mock.seed`` when set; None: the run draws a fresh seed (never ``load.seed``)."""
        return self.mock.seed
