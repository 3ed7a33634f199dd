"""Capacity sweeps: the plan and verdict (pure), and the search that runs one step per level."""
