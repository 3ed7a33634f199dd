"""Studies: drivers that run many runs (the A/B release gate, calibration, capacity sweeps) and
their rerun budget."""
