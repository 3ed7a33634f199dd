"""Judging a candidate run against a baseline: reading runs, the statistics (judge, pure)."""
