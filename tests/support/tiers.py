"""Which real-time test modules may share the cores (tests/conftest.py marks their tests
``concurrent``; scripts/test.sh runs those three at a time)."""

from __future__ import annotations

#: real-time modules whose assertions hold whatever the machine's load (see the docstring)
SHARE_THE_CORES = frozenset({
    "tests/cli/test_cli_input.py", "tests/cli/test_live_flags.py", "tests/cli/test_new.py",
    "tests/cli/test_version_completion.py",
    "tests/e2e/test_hostile.py", "tests/e2e/test_secrets.py", "tests/e2e/test_otlp_e2e.py",
    "tests/e2e/test_scrape_e2e.py", "tests/e2e/test_prometheus_real.py", "tests/e2e/test_traceparent_raw.py",
    "tests/e2e/test_vendor_example.py", "tests/e2e/test_wheel_install.py",
    "tests/engine/test_loop.py", "tests/live/test_otlp.py", "tests/live/test_scrape.py",
    "tests/metrics/test_tokens.py",
    "tests/report/test_report.py", "tests/report/test_report_browser.py", "tests/report/test_report_classes.py",
    "tests/report/test_report_conversations.py", "tests/rundir/test_rundir.py",
    "tests/runner/test_tls.py", "tests/runner/test_tls_commands.py", "tests/runner/test_mock_host.py",
    "tests/runner/test_worker_kill.py", "tests/runner/test_workers.py",
    # Ray: exact merges, versions, environment. (test_ray_signals stays alone: its SIGINT at 1 s
    # once ended other than exit 4 when three ran at once; not reproduced since)
    "tests/runner/test_ray.py", "tests/runner/test_raysession.py",
    "tests/runner/test_ray_unreachable.py",
    "tests/studies/test_study_outputs.py", "tests/studies/test_ab_inputs.py",
    "tests/studies/test_calibrate_inputs.py", "tests/compare/test_damaged_run_dirs.py",
    "tests/compare/test_calibration_inputs.py",
})
