"""Run the test suite through pytest and record the run in DuckDB.

:func:`main` is what ``run_hardware_monitoring_tests.py`` runs. The exit status is pytest's
(0 passed, 1 failed, 2 interrupted, 3 internal error, 4 usage error, 5 no test collected); a run
that collects nothing says so on stderr and exits 5.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from . import ci_env
from .recorder import ResultRecorder
from .results_db import ResultsDatabaseError, TestRun, record_run

DEFAULT_RESULTS_DB = "hardware_monitoring_test_results.duckdb"
MODES = ("standard", "full", "long")
STATUS_BY_EXIT_CODE = {0: "passed", 1: "failed", 2: "interrupted", 3: "error", 4: "error", 5: "no_tests"}


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: ``20250101T120000Z-1a2b3c4d`` (UTC time, then 8 random hex)."""
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_hardware_monitoring_tests.py",
        description="Run the hardware-monitoring test suite with pytest and record the run in DuckDB. "
                    "Unknown options and anything after '--' go to pytest (e.g. -k EXPR, a test path).")
    parser.add_argument("--verbose", "-v", action="store_true", help="verbose pytest output")
    parser.add_argument("--run-long-tests", action="store_true",
                        help="also run tests marked 'long' (skipped by default)")
    parser.add_argument("--db-path", help="DuckDB file the tests write to (default: a temporary file)")
    parser.add_argument("--html-report", metavar="PATH", help="write a self-contained pytest-html report")
    parser.add_argument("--junit-xml", metavar="PATH", help="write a JUnit XML report")
    parser.add_argument("--results-db", metavar="PATH",
                        default=os.environ.get("BENCHMARK_DB_PATH") or DEFAULT_RESULTS_DB,
                        help="DuckDB file that records the run (default: $BENCHMARK_DB_PATH when set, "
                             f"else {DEFAULT_RESULTS_DB})")
    parser.add_argument("--summary-json", metavar="PATH",
                        help="write the run's outcome (counts, failed tests, artifacts) as JSON")
    parser.add_argument("--mode", choices=MODES, help="label stored with the run (default: long when "
                        "--run-long-tests, else standard)")
    parser.add_argument("--run-id", help="id stored with the run (default: UTC time + random suffix)")
    parser.add_argument("--ci-integration", action="store_true",
                        help="store the CI metadata (GitHub Actions variables) with the run")
    return parser


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """Parsed options: ``namespace`` holds the runner's own, ``pytest_args`` the pass-through."""

    namespace: argparse.Namespace
    pytest_args: list[str]


def parse_args(argv: Sequence[str]) -> RunnerOptions:
    """Split ``argv`` into the runner's options and pytest's (unknown options and all after ``--``)."""
    argv = list(argv)
    tail: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, tail = argv[:cut], argv[cut + 1:]
    namespace, extra = build_parser().parse_known_args(argv)
    return RunnerOptions(namespace, extra + tail)


def pytest_arguments(ns: argparse.Namespace, db_path: str, passthrough: Sequence[str]) -> list[str]:
    """The argument list given to ``pytest.main`` for these options."""
    args = ["-rfEsxX", "--db-path", db_path]
    if ns.verbose:
        args.append("-v")
    if ns.run_long_tests:
        args.append("--run-long-tests")
    if ns.junit_xml:
        args += ["--junitxml", str(ns.junit_xml), "-o", "junit_family=xunit2"]
    if ns.html_report:
        args += ["--html", str(ns.html_report), "--self-contained-html"]
    return args + list(passthrough)


def summary_dict(run: TestRun, ns: argparse.Namespace) -> dict[str, Any]:
    """The run's outcome as a JSON-ready dict (see ``--summary-json``)."""
    counts = run.counts
    return {
        "run_id": run.run_id, "status": run.status, "exit_code": run.exit_code, "mode": run.mode,
        "started_at": run.started_at.isoformat(), "finished_at": run.finished_at.isoformat(),
        "duration_s": round(run.duration_s, 3), "python_version": run.python_version,
        "commit": run.commit_sha, "branch": run.branch, "collected": len(run.results), "counts": counts,
        "failed_tests": [{"nodeid": r.nodeid, "outcome": r.outcome, "message": r.message}
                         for r in run.results if r.outcome in ("failed", "error")],
        "artifacts": {"junit_xml": ns.junit_xml, "html_report": ns.html_report, "results_db": ns.results_db},
        "ci": run.ci_metadata,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run pytest with the parsed options, record the run, return pytest's exit status."""
    options = parse_args(sys.argv[1:] if argv is None else argv)
    ns = options.namespace
    mode = ns.mode or ("long" if ns.run_long_tests else "standard")
    run_id = ns.run_id or new_run_id()
    for target in (ns.junit_xml, ns.html_report, ns.summary_json):
        if target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="hwmon-tests-") as scratch:
        db_path = ns.db_path or str(Path(scratch) / "tests.duckdb")
        recorder = ResultRecorder()
        started_at = datetime.now(timezone.utc)
        exit_code = int(pytest.main(pytest_arguments(ns, db_path, options.pytest_args), plugins=[recorder]))
        finished_at = datetime.now(timezone.utc)

    run = TestRun(
        run_id=run_id, started_at=started_at, finished_at=finished_at, mode=mode,
        python_version=platform.python_version(), exit_code=exit_code,
        status=STATUS_BY_EXIT_CODE.get(exit_code, "error"), results=recorder.results,
        platform=platform.platform(), commit_sha=ci_env.current_commit(), branch=ci_env.current_branch(),
        pytest_args=options.pytest_args,
        ci_metadata=ci_env.github_actions_metadata() if ns.ci_integration else {})

    if exit_code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("run_hardware_monitoring_tests: no test was collected (pytest exit code 5); "
              "check the test path and the -k / -m selection", file=sys.stderr)
    try:
        record_run(ns.results_db, run)
    except ResultsDatabaseError as err:
        print(f"run_hardware_monitoring_tests: {err}", file=sys.stderr)
        if exit_code == 0:
            exit_code = 1
    if ns.summary_json:
        Path(ns.summary_json).write_text(
            json.dumps(summary_dict(run, ns), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    counts = run.counts
    print(f"run {run_id} ({mode}): {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['error']} errors, {counts['skipped']} skipped in {run.duration_s:.1f} s; "
          f"recorded in {ns.results_db}")
    return exit_code
