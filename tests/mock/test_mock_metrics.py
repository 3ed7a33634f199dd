"""The mock's own ``/metrics`` (issue 21): Prometheus text that a Prometheus parser reads, whose
figures match the gens a client drove through it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.aio import uvloop_test

from loadtest.mock.metrics import CONTENT_TYPE, MockMetric, render_metrics
from loadtest.protocol import AuthComplete, ConvMessage, GenRequest, Message, decode_server_frame, encode_gen
from loadtest.testing import running_mock


def _parse(text: str) -> dict[str, tuple[str, float]]:
    """sample name → (family type, value), by an independent parser."""
    return {s.name: (f.type, s.value) for f in text_string_to_metric_families(text) for s in f.samples}


# ---------------------------------------------------------------- pure rendering


def test_the_text_format_has_help_type_and_sample_lines() -> None:
    text = render_metrics([MockMetric("a_total", "counter", "As.\nTwo lines", 3),
                           MockMetric("b", "gauge", "B.", 2.5)])  # fmt: skip
    assert text == ("# HELP a_total As.\\nTwo lines\n# TYPE a_total counter\na_total 3\n"
                    "# HELP b B.\n# TYPE b gauge\nb 2.5\n")  # fmt: skip
    assert _parse(text) == {"a_total": ("counter", 3.0), "b": ("gauge", 2.5)}
    assert render_metrics([]) == ""
    with pytest.raises(ValueError, match="_total"):
        render_metrics([MockMetric("a", "counter", "A.", 1)])


# ---------------------------------------------------------------- over real sockets


async def _get_metrics(http: aiohttp.ClientSession, url: str) -> dict[str, tuple[str, float]]:
    async with http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == CONTENT_TYPE
        return _parse(await resp.text())


async def _until(check: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _read_to_stop(ws: aiohttp.ClientWebSocketResponse) -> int:
    """The answer in flight, read to its stop; the chunks it had."""
    chunks = 0
    while True:
        event = decode_server_frame((await ws.receive(timeout=10)).data)
        if isinstance(event, Message):
            if event.stop:
                return chunks
            chunks += 1


async def _gen_to_stop(ws: aiohttp.ClientWebSocketResponse) -> int:
    await ws.send_str(encode_gen(GenRequest(prompt="hello")))
    return await _read_to_stop(ws)


@pytest.mark.realtime
@uvloop_test
async def test_metrics_count_the_gens_served_and_abandoned_and_end_with_nothing_active() -> None:
    async with running_mock(ttft_ms=5, gap_ms=20, chunks=10) as server, aiohttp.ClientSession() as http:
        metrics_url = server.url.replace("ws://", "http://").replace("/v2/chat", "/metrics")
        before = await _get_metrics(http, metrics_url)
        assert before["mock_gens_served_total"] == ("counter", 0)
        assert before["mock_active_streams"] == ("gauge", 0)
        async with http.ws_connect(server.url) as ws:
            assert isinstance(decode_server_frame((await ws.receive(timeout=5)).data), AuthComplete)
            assert [await _gen_to_stop(ws) for _ in range(3)] == [10, 10, 10]
        # an answer left before its stop: abandoned, not served
        async with http.ws_connect(server.url) as ws:
            await ws.receive(timeout=5)  # auth-connect-complete
            await ws.send_str(encode_gen(GenRequest(prompt="bye")))
            assert isinstance(decode_server_frame((await ws.receive(timeout=5)).data), ConvMessage)
            during = await _get_metrics(http, metrics_url)
            assert during["mock_active_streams"][1] == 1
            assert during["mock_open_connections"][1] == 1
        await _until(lambda: server.streams_abandoned + server.streams_completed == 4, "the last stream to end")
        after = await _get_metrics(http, metrics_url)
    # gens served = gens the client saw completed (3); the one it left is abandoned
    assert after["mock_gens_served_total"] == ("counter", 3) and server.streams_completed == 3
    assert after["mock_streams_abandoned_total"] == ("counter", 1)
    assert after["mock_streams_started_total"][1] == 4
    assert after["mock_active_streams"][1] == 0
    assert after["mock_queue_depth"][1] == 0
    assert after["mock_open_connections"][1] == 0
    assert after["mock_connections_total"][1] == 2
    assert after["mock_conversations"][1] == 4
    assert "mock_capacity" not in after  # no capacity model


@pytest.mark.realtime
@uvloop_test
async def test_queue_depth_counts_the_gens_waiting_for_a_slot() -> None:
    # one slot, a stream of ~0.5 s: the second and third gens wait while the first is served
    async with running_mock(ttft_ms=5, gap_ms=25, chunks=20, capacity=1) as server, aiohttp.ClientSession() as http:
        metrics_url = server.url.replace("ws://", "http://").replace("/v2/chat", "/metrics")
        sockets = [await http.ws_connect(server.url) for _ in range(3)]
        try:
            for ws in sockets:
                await ws.receive(timeout=5)  # auth-connect-complete
                await ws.send_str(encode_gen(GenRequest(prompt="q")))
            assert isinstance(decode_server_frame((await sockets[0].receive(timeout=5)).data), ConvMessage)
            await _until(lambda: server.streams_started == 3, "three gens received")
            await asyncio.sleep(0.05)  # the stream tasks reach the slot
            during = await _get_metrics(http, metrics_url)
            assert during["mock_active_streams"][1] == 1
            assert during["mock_queue_depth"] == ("gauge", 2)
            assert during["mock_capacity"] == ("gauge", 1)
            assert during["mock_gens_served_total"][1] == 0
            served = await asyncio.gather(*(_read_to_stop(ws) for ws in sockets))
            assert served == [20, 20, 20]
            # the server counts a stop just after writing it
            await _until(lambda: server.streams_completed == 3, "three stops counted")
            after = await _get_metrics(http, metrics_url)
        finally:
            for ws in sockets:
                await ws.close()
    assert after["mock_gens_served_total"][1] == 3
    assert after["mock_queue_depth"][1] == 0
    assert after["mock_active_streams"][1] == 0

