"""loadtest: a load tester for streaming LLM chat proxies over WebSocket.

The library API (what the CLI calls)::

    import loadtest
    sc = loadtest.load_scenario("scenarios/smoke.yaml")
    options = loadtest.RunOptions(workers=2)   # key, TLS, backend, workers, output: one value
    result = loadtest.run(sc, options)         # RunResult: every worker merged
    summary = loadtest.summarize(result)       # summary.json as a dict
    summary = loadtest.run_to_dir(sc, options.replace(out=Path("reports/x")))  # a run directory
    print(summary["latency_ms"]["ttft"]["p99"], summary["verdict"])

Names are imported on first use, so that ``python -m loadtest`` starts fast; a type checker
sees them typed (``py.typed``).
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker sees (the package ships py.typed); at run time: _LAZY
    from loadtest.engine.result import RunResult
    from loadtest.engine.tls import Tls
    from loadtest.runner.coordinator import run, summarize
    from loadtest.runner.options import RunOptions
    from loadtest.runner.todir import run_to_dir
    from loadtest.scenario import Overrides, load_scenario

from loadtest.version import __version__

__all__ = ["Overrides", "RunOptions", "RunResult", "Tls", "__version__", "load_scenario", "run", "run_to_dir",
           "summarize"]

_LAZY = {
    "run": "loadtest.runner.coordinator",
    "run_to_dir": "loadtest.runner.todir",
    "RunOptions": "loadtest.runner.options",
    "Tls": "loadtest.engine.tls",
    "summarize": "loadtest.runner.coordinator",
    "RunResult": "loadtest.engine.result",
    "load_scenario": "loadtest.scenario",
    "Overrides": "loadtest.scenario",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loadtest' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
