"""One run: its options, the backends that run its workers (in-process, worker processes, Ray),
the coordinator that merges them exactly, and run-to-directory."""
