"""loadtest's version: one place, imported by the package root and by whatever writes it into
a file (report.html, OTLP resources, the Ray version check) without importing the root."""

__all__ = ["__version__"]

__version__ = "0.1.0"
