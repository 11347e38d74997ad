#!/usr/bin/env python3
"""Run the hardware-monitoring test suite with pytest and record the run in DuckDB.

Usage::

    python run_hardware_monitoring_tests.py [--verbose] [--run-long-tests] [--db-path PATH]
        [--html-report PATH] [--junit-xml PATH] [--results-db PATH] [--summary-json PATH]
        [--mode quick|standard|full|long|comprehensive] [--quick] [--comprehensive] [--reruns N]
        [--flaky-window M] [--run-id ID] [--ci-integration] [pytest args ... | -- pytest args]

Each run adds a ``test_runs`` row and one ``test_results`` row per test to ``--results-db``
(default ``$BENCHMARK_DB_PATH`` when set). The exit status has one meaning each: 0 every test
passed, 1 a test failed, 2 a usage error (nothing ran), 3 a setup failure (pytest's internal
error, or the results database could not be written), 5 no test was collected, 130
interrupted; docs/ci.md has the table. The logic lives in :mod:`fleet_hwmon.ci.runner`.
"""

from __future__ import annotations

import importlib.util
import sys

# What the runner and its options need, from the test extras that `pip install .` leaves out.
NEEDED = ("pytest", "pytest_html", "pytest_timeout", "pytest_rerunfailures")

if __name__ == "__main__":
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(f"run_hardware_monitoring_tests: {', '.join(missing)} not installed; install the test extras "
                 "with: pip install '.[test]'")
    from fleet_hwmon.ci.runner import main

    sys.exit(main())
