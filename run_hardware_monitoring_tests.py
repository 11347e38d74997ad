#!/usr/bin/env python3
"""Run the hardware-monitoring test suite with pytest and record the run in DuckDB.

Usage::

    python run_hardware_monitoring_tests.py [--verbose] [--run-long-tests] [--db-path PATH]
        [--html-report PATH] [--junit-xml PATH] [--results-db PATH] [pytest args ... | -- pytest args]

Each run adds a ``test_runs`` row and one ``test_results`` row per test to ``--results-db``
(default ``$BENCHMARK_DB_PATH`` when set). The exit status is pytest's; 5 means no test was
collected. The logic lives in :mod:`fleet_hwmon.ci.runner`.
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
