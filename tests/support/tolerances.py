"""Timing tolerances of the real-time tests, in one place (issue 11).

The real-time tests run the generator, the mock (or a raw server) and pytest on the same
2-core CI machine, while other tests' processes come and go. What that machine holds,
measured over repeated full-suite runs (BENCHMARKS.md has the idle-machine figures):

- a median of many samples (TTFT p50, gap p50) stays within ~1-3 ms of the model;
- a p99 of the harness's own lateness (schedule lag, send lateness) reaches 2.5-5 ms when
  another test's processes compete for the cores, against ~0.1 ms on an idle machine.

No real-time test asserts anything tighter than these. What must be exact is asserted in
virtual time instead (tests/test_virtual_time.py: every send within 1 µs of schedule).
"""

#: a median latency of the mock or a raw server, measured through the harness, may exceed
#: the model by this much (loopback, decoding, a busy loop)
MEDIAN_SLACK_MS = 3.0
#: the median inter-chunk gap may exceed the model's by this much (one timer wake-up)
GAP_SLACK_MS = 1.5
#: the harness's own lateness (schedule lag, send − intended) at p99, on a loaded machine
P99_LATENESS_MS = 10.0
#: at p50
P50_LATENESS_MS = 2.0
#: relative tolerance for a mean derived from the mock's queueing model
MODEL_REL = 0.15
