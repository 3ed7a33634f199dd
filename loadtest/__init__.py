"""loadtest: a load tester for streaming LLM chat proxies over WebSocket."""

__version__ = "0.1.0"
__all__ = ["__version__"]
