"""The embedded mock proxy: its latency/capacity model and fault model (pure), the server, the child process.

Kept free of imports so that the scenario model can import ``mock.latency`` and ``mock.faults`` without the server."""
