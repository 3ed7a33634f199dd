"""Schedules, pure: open-loop arrivals, rate profiles (ramps), retry back-off. No clock, no I/O."""
