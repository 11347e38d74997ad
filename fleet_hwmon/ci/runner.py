"""Run the test suite through pytest and record the run in DuckDB.

:func:`main` is what ``run_hardware_monitoring_tests.py`` runs. Exit status, one meaning each
(:data:`EXIT_CODES`): 0 the tests passed, 1 a test failed, 2 usage error (a bad option, a test path
that does not exist, an output path that cannot be written: nothing is run or recorded), 3 setup
failure (pytest's internal error, or the results database could not be written while the tests
passed), 5 no test was collected, 130 interrupted (Ctrl-C, or SIGTERM).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ..lifecycle import sigterm_interrupts
from ..printable import printable
from ..reports.jsonio import unwritable_option
from . import ci_env, github_output, results_db
from .recorder import ResultRecorder
from .results_db import DEFAULT_RESULTS_DB, ResultsDatabaseError, TestRun, path_problem, record_run

#: quick: no long, browser or cluster test; standard / full: the default suite (full is the CI
#: script's label for "with the HTML report"); long / comprehensive: the default suite plus the long tests.
MODES = ("quick", "standard", "full", "long", "comprehensive")
LONG_MODES = ("long", "comprehensive")
QUICK_SELECTION = "not long and not browser and not cluster"
STATUS_BY_EXIT_CODE = {0: "passed", 1: "failed", 2: "interrupted", 3: "error", 5: "no_tests"}
#: pytest's exit status -> ours (pytest's 2 "interrupted" becomes the shell's 130, its 4 "usage" our 2).
EXIT_CODES = {0: 0, 1: 1, 2: 130, 3: 3, 4: 2, 5: 5}
EXIT_USAGE, EXIT_SETUP, EXIT_INTERRUPTED = 2, 3, 130


class EscapedHtmlReport:
    """pytest-html (4.1, 4.2) puts a test's id into its report as markup, unescaped: an id
    holding ``<img onerror=...>`` (a parametrized value, say) would run as script when the
    report is opened. Each row's id cell is escaped here first."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        start = '<td class="col-testId">'
        test_id = report.nodeid if report.when == "call" else f"{report.nodeid}::{report.when}"
        for i, cell in enumerate(cells):
            if cell.startswith(start):
                cells[i] = f"{start}{html.escape(test_id)}</td>"


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: ``20250101T120000Z-1a2b3c4d`` (UTC time, then 8 random hex)."""
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def _absolute(path: str) -> str:
    """A path option made absolute against the current directory (where the command was typed)."""
    return os.path.abspath(os.path.expanduser(path))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_hardware_monitoring_tests.py",
        description="Run the hardware-monitoring test suite with pytest and record the run in DuckDB. "
                    "Unknown options and anything after '--' go to pytest (e.g. -k EXPR, a test path).")
    parser.add_argument("--verbose", "-v", action="store_true", help="verbose pytest output")
    parser.add_argument("--run-long-tests", action="store_true",
                        help="also run tests marked 'long' (skipped by default)")
    parser.add_argument("--db-path", type=_absolute,
                        help="the one DuckDB file the tests write to (each test starts it afresh; after the run "
                             "it holds the last test's data; default: a temporary file)")
    parser.add_argument("--html-report", metavar="PATH", type=_absolute,
                        help="write a self-contained pytest-html report")
    parser.add_argument("--junit-xml", metavar="PATH", type=_absolute, help="write a JUnit XML report")
    parser.add_argument("--results-db", metavar="PATH", type=_absolute,
                        default=os.environ.get("BENCHMARK_DB_PATH") or DEFAULT_RESULTS_DB,
                        help="DuckDB file that records the run (default: $BENCHMARK_DB_PATH when set, "
                             f"else {DEFAULT_RESULTS_DB})")
    parser.add_argument("--summary-json", metavar="PATH", type=_absolute,
                        help="write the run's outcome (counts, failed tests, artifacts) as JSON")
    parser.add_argument("--mode", choices=MODES,
                        help="quick (no long, browser or cluster test), standard, full, long or comprehensive "
                             "(both with the long tests); stored with the run (default: long when "
                             "--run-long-tests, else standard)")
    parser.add_argument("--quick", dest="mode", action="store_const", const="quick", help="same as --mode quick")
    parser.add_argument("--comprehensive", dest="mode", action="store_const", const="comprehensive",
                        help="same as --mode comprehensive")
    parser.add_argument("--reruns", type=int, default=1, metavar="N",
                        help="rerun a failed test up to N times (pytest-rerunfailures); one that then passes "
                             "is recorded 'flaky' and does not fail the run; 0 turns reruns off (default: 1)")
    parser.add_argument("--flaky-window", type=int, default=20, metavar="M",
                        help="the job summary lists tests flaky in any of the last M runs (default: 20)")
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


def pytest_arguments(ns: argparse.Namespace, passthrough: Sequence[str]) -> list[str]:
    """The argument list given to ``pytest.main`` for these options."""
    args = ["-rfEsxX"]
    if ns.db_path:  # without it each test writes a file of its own in its tmp_path
        args.append(f"--db-path={ns.db_path}")  # one token: pytest before 9 takes a lone value for a test path
    if ns.verbose:
        args.append("-v")
    if ns.run_long_tests:
        args.append("--run-long-tests")
    if ns.mode == "quick":
        args += ["-m", QUICK_SELECTION]  # a later -m of the caller's wins
    if ns.reruns > 0:
        args += ["--reruns", str(ns.reruns)]
    if ns.junit_xml:
        args += ["--junitxml", str(ns.junit_xml), "-o", "junit_family=xunit2"]
    if ns.html_report:
        args += ["--html", str(ns.html_report), "--self-contained-html"]
    return args + list(passthrough)


def summary_dict(run: TestRun, ns: argparse.Namespace, exit_code: int,
                 recorded_error: str | None = None) -> dict[str, Any]:
    """The run's outcome as a JSON-ready dict (see ``--summary-json``): ``exit_code`` is the runner's,
    ``pytest_exit_code`` pytest's; ``recorded`` says whether the run reached the results database,
    ``results_db_error`` why not."""
    counts = run.counts
    return {
        "run_id": run.run_id, "status": run.status, "exit_code": exit_code, "pytest_exit_code": run.exit_code,
        "mode": run.mode,
        "started_at": run.started_at.isoformat(), "finished_at": run.finished_at.isoformat(),
        "duration_s": round(run.duration_s, 3), "python_version": run.python_version,
        "commit": run.commit_sha, "branch": run.branch, "collected": len(run.results), "counts": counts,
        "failed_tests": [{"nodeid": r.nodeid, "outcome": r.outcome, "message": r.message}
                         for r in run.results if r.outcome in ("failed", "error")],
        "flaky_tests": [{"nodeid": r.nodeid, "message": r.message} for r in run.results if r.outcome == "flaky"],
        "artifacts": {"junit_xml": ns.junit_xml, "html_report": ns.html_report, "results_db": ns.results_db},
        "recorded": recorded_error is None, "results_db_error": recorded_error,
        "ci": run.ci_metadata,
    }


def _flaky_history(ns: argparse.Namespace) -> list[dict[str, Any]]:
    """Tests flaky in the last ``--flaky-window`` runs; ``[]`` (with a warning) when unreadable."""
    try:
        with results_db.connect(ns.results_db, read_only=True) as con:
            return results_db.flaky_history(con, ns.flaky_window)
    except (results_db.ResultsDatabaseError, duckdb.Error) as err:
        print(f"run_hardware_monitoring_tests: no flaky-test history: {err}", file=sys.stderr)
        return []


def main(argv: Sequence[str] | None = None) -> int:
    """Run pytest with the parsed options, record the run, return the exit status (see the module docstring)."""
    options = parse_args(sys.argv[1:] if argv is None else argv)
    ns = options.namespace
    if ns.reruns < 0 or ns.flaky_window < 1:
        print("run_hardware_monitoring_tests: --reruns must be 0 or more and --flaky-window 1 or more",
              file=sys.stderr)
        return EXIT_USAGE
    if ns.mode == "quick" and ns.run_long_tests:
        print("run_hardware_monitoring_tests: --quick leaves the long tests out; drop --run-long-tests",
              file=sys.stderr)
        return EXIT_USAGE
    ns.mode = ns.mode or ("long" if ns.run_long_tests else "standard")
    ns.run_long_tests = ns.run_long_tests or ns.mode in LONG_MODES
    run_id = ns.run_id or new_run_id()
    problem = unwritable_option([("--junit-xml", ns.junit_xml), ("--html-report", ns.html_report),
                                 ("--summary-json", ns.summary_json), ("--results-db", ns.results_db)])
    if not problem and ns.results_db and (unusable := path_problem(ns.results_db)):
        problem = f"--results-db: {printable(unusable)}"
    if problem:  # found now, not after the tests ran (pytest would crash writing it, and record nothing)
        print(f"run_hardware_monitoring_tests: {problem}; nothing was run", file=sys.stderr)
        return EXIT_USAGE
    for target in (ns.junit_xml, ns.html_report, ns.summary_json):
        if target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)

    recorder = ResultRecorder()
    started_at = datetime.now(timezone.utc)
    with sigterm_interrupts():  # a job runner's SIGTERM interrupts pytest as Ctrl-C does: the run is still recorded
        pytest_exit = int(pytest.main(pytest_arguments(ns, options.pytest_args),
                                      plugins=[recorder, EscapedHtmlReport()]))
    finished_at = datetime.now(timezone.utc)
    exit_code = EXIT_CODES.get(pytest_exit, EXIT_SETUP)
    if exit_code == EXIT_USAGE:  # pytest has said what was wrong; a run that never ran is not recorded
        print("run_hardware_monitoring_tests: usage error (see above); nothing was run or recorded", file=sys.stderr)
        return exit_code

    run = TestRun(
        run_id=run_id, started_at=started_at, finished_at=finished_at, mode=ns.mode,
        python_version=platform.python_version(), exit_code=pytest_exit,
        status=STATUS_BY_EXIT_CODE.get(pytest_exit, "error"), results=recorder.results,
        platform=platform.platform(), commit_sha=ci_env.current_commit(), branch=ci_env.current_branch(),
        pytest_args=options.pytest_args,
        ci_metadata=ci_env.github_actions_metadata() if ns.ci_integration else {})

    if pytest_exit == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("run_hardware_monitoring_tests: no test was collected (pytest exit code 5); "
              "check the test path and the -k / -m selection", file=sys.stderr)
    recorded_error = None
    try:
        record_run(ns.results_db, run)
    except ResultsDatabaseError as err:
        recorded_error = str(err)
        print(f"run_hardware_monitoring_tests: the run was NOT recorded: {err}", file=sys.stderr)
        if exit_code == 0:
            exit_code = EXIT_SETUP
    github_output.publish(run, recorder.locations, [] if recorded_error else _flaky_history(ns),
                          os.environ, ns.flaky_window)
    if ns.summary_json:
        summary = summary_dict(run, ns, exit_code, recorded_error)
        Path(ns.summary_json).write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    counts = run.counts
    where = f"recorded in {ns.results_db}" if recorded_error is None else "NOT recorded (see above)"
    print(printable(f"run {run_id} ({ns.mode}): {counts['passed']} passed, {counts['failed']} failed, "
                    f"{counts['error']} errors, {counts['skipped']} skipped, {counts['flaky']} flaky in "
                    f"{run.duration_s:.1f} s; {where}"))
    return exit_code
