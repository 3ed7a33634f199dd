"""The vendor's own client example (tests/vendor_client.py) against ``loadtest mock``.

Both run as subprocesses: the mock via :class:`loadtest.mock.process.MockProcess` on port 0,
the example with ``sys.executable``. The example reconnects forever, so it is killed
once it has printed the end of the stream.
"""

from __future__ import annotations

import ast
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loadtest.mock.process import MockProcess
from loadtest.mock.server import mock_chunk_chars

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime

VENDOR_CLIENT = Path(__file__).resolve().parents[1] / "support" / "vendor_client.py"
TIMEOUT_S = 15.0
STREAM_END = "--- Stream End ---"


def _read_until(proc: subprocess.Popen[str], marker: str, timeout_s: float) -> list[str]:
    """Lines of ``proc``'s stdout up to and including ``marker``, or all if the deadline hits."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    out: list[str] = []
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            break
        out.append(line)
        if line == marker:
            break
    return out


def test_vendor_example_against_the_mock() -> None:
    env = dict(os.environ, PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
    with MockProcess(["--chunks", "5", "--ttft-ms", "20", "--gap-ms", "5"]) as url:
        proc = subprocess.Popen(
            [sys.executable, str(VENDOR_CLIENT), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            env=env,
        )
        try:
            lines = _read_until(proc, STREAM_END, TIMEOUT_S)
        finally:
            proc.kill()
            proc.wait(timeout=TIMEOUT_S)
            assert proc.stdout is not None
            proc.stdout.close()
    out = "\n".join(lines)
    assert STREAM_END in lines, out
    assert any(line.startswith("Auth successful:") for line in lines), out
    assert any("Pong received:" in line for line in lines), out
    assert not any("Error" in line or "Unknown event" in line for line in lines), out

    conv = [line for line in lines if line.startswith("Conversation message:")]
    assert len(conv) == 1, out
    data = ast.literal_eval(conv[0].removeprefix("Conversation message:").strip())
    assert set(data) == {"conversationId", "messageId"}
    assert data["conversationId"] and data["messageId"]

    # the streamed answer is printed chunk by chunk on one line, just before the end marker
    answer = lines[lines.index(STREAM_END) - 1]
    assert answer.startswith("Artificial intelligence")
    assert len(answer.split()) == 5
    assert len(answer) == mock_chunk_chars(5)
