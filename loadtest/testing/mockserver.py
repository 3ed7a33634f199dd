"""The mock proxy in this process, on 127.0.0.1 and a free port::

    async with running_mock(ttft_ms=100, gap_ms=10, chunks=20) as server:
        url = server.url      # ws://127.0.0.1:PORT/v2/chat

For a mock in its own process (benchmarks, ``loadtest run``) use
:class:`loadtest.mock.process.MockProcess`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from loadtest.mock.faults import parse_faults
from loadtest.mock.latency import MockModel, parse_dist
from loadtest.mock.server import MockConfig, MockServer

__all__ = ["make_mock_config", "running_mock"]


def make_mock_config(
    *,
    ttft_ms: Any = 100,
    gap_ms: Any = 10,
    chunks: Any = 20,
    capacity: int | None = None,
    gap_slowdown: float | None = None,
    turn_ms: float = 0.0,
    faults: dict[str, Any] | None = None,
    api_keys: Iterable[str] = (),
    seed: int = 0,
) -> MockConfig:
    """A :class:`~loadtest.mock.server.MockConfig` from plain values, as a scenario's ``mock:``
    section gives them (a number, or a distribution spec for ``parse_dist``; faults as
    ``parse_faults`` reads them). Raises BadInput for a value the scenario would refuse."""
    return MockConfig(
        model=MockModel(
            ttft_ms=parse_dist(ttft_ms, name="ttft_ms"),
            gap_ms=parse_dist(gap_ms, name="gap_ms"),
            chunks=parse_dist(chunks, name="chunks"),
            capacity=capacity,
            gap_slowdown=gap_slowdown,
            turn_ms=turn_ms,
        ),
        faults=parse_faults(faults),
        api_keys=frozenset(api_keys),
        seed=seed,
    )


@contextlib.asynccontextmanager
async def running_mock(**kwargs: Any) -> AsyncIterator[MockServer]:
    """An in-process mock on 127.0.0.1, a free port; keyword args as :func:`make_mock_config`."""
    server = MockServer(make_mock_config(**kwargs))
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop()
