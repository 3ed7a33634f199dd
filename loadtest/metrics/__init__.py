"""Measurement: HDR recorders and interval snapshots (pure), the collector that turns events into figures."""
