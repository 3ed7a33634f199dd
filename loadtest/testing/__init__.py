"""Test doubles shipped with the product (trio's ``trio.testing`` idea): the mock proxy in this
process, virtual time, and a fake WebSocket served by the protocol's own server side.

- :mod:`.mockserver` — :func:`running_mock` / :func:`make_mock_config`: the real mock on
  127.0.0.1 and a free port, for tests over real sockets::

      async with running_mock(ttft_ms=100, gap_ms=10, chunks=20) as server:
          url = server.url      # ws://127.0.0.1:PORT/v2/chat

  (in its own process: :class:`MockProcess`).
- :mod:`.virtual` — :func:`run_virtual`, :class:`VirtualLoop`, :class:`VirtualClock`: an event
  loop whose time jumps to the next timer when nothing is ready, so a ten-second schedule runs
  in the time its callbacks take, every timestamp exact.
- :mod:`.fakews` — :class:`FakeWebSocket`: aiohttp's client WebSocket interface answered by a
  script through :class:`~loadtest.protocol.ServerConnection`, on a clock; the engine's peer in
  virtual time, no socket anywhere.
"""

from loadtest.mock.process import MockProcess
from loadtest.mock.server import MockServer
from loadtest.testing.fakews import Answer, FakeWebSocket, Raw, Script
from loadtest.testing.mockserver import make_mock_config, running_mock
from loadtest.testing.virtual import VirtualClock, VirtualLoop, run_virtual

__all__ = ["Answer", "FakeWebSocket", "MockProcess", "MockServer", "Raw", "Script", "VirtualClock", "VirtualLoop",
           "make_mock_config", "run_virtual", "running_mock"]
