"""Live outputs of a run while it goes: the merged view a second (:mod:`~loadtest.live.state`),
Prometheus ``/metrics`` (:mod:`~loadtest.live.prometheus`), OTLP/HTTP pushes
(:mod:`~loadtest.live.otlp`), and the target's own metrics scraped (:mod:`~loadtest.live.scrape`).

Every exporter reads the coordinator's merged snapshots, never the workers' hot path; a live
output that fails (a collector down, a scrape refused) is counted and shown, never fatal.
"""
