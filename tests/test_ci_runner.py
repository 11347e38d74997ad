"""The test runner, run as a real subprocess on a generated suite with known outcomes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import duckdb
import pytest

from fleet_hwmon.ci.report import load_report

ROOT = Path(__file__).resolve().parents[1]

TINY_SUITE = '''
import pytest

def test_pass_one(): pass
def test_pass_two(): pass
def test_pass_three(): pass
def test_fail_one(): assert 1 + 1 == 3, "arithmetic"
def test_fail_two(): raise ValueError("bad <value> & more")

@pytest.mark.skip(reason="not on this host")
def test_skipped(): pass

@pytest.mark.long
def test_long_end_to_end(): pass

@pytest.mark.xfail(reason="known bug")
def test_expected_failure(): assert False

@pytest.fixture
def broken(): raise RuntimeError("fixture exploded")

def test_setup_error(broken): pass
'''


def make_suite(folder: Path) -> Path:
    """A tiny project: this repository's conftest (for --db-path / --run-long-tests) and 9 tests."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (folder / "pytest.ini").write_text("[pytest]\nmarkers =\n    long: long tests\n")
    path = folder / "test_tiny.py"
    path.write_text(TINY_SUITE)
    return path


def run_runner(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_hardware_monitoring_tests.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)


def test_run_is_recorded_with_exact_counts(tmp_path):
    suite = make_suite(tmp_path / "suite")
    db = tmp_path / "results.duckdb"
    done = run_runner("--results-db", str(db), "--junit-xml", str(tmp_path / "junit.xml"),
                      "--summary-json", str(tmp_path / "summary.json"), "--run-id", "run-1", str(suite))
    assert done.returncode == 1, done.stdout + done.stderr
    con = duckdb.connect(str(db), read_only=True)
    row = con.execute("SELECT mode, collected, passed, failed, errors, skipped, xfailed, xpassed, exit_code, "
                      "status, python_version FROM test_runs WHERE run_id = 'run-1'").fetchone()
    assert row == ("standard", 9, 3, 2, 1, 2, 1, 0, 1, "failed", sys.version.split()[0])
    outcomes = dict(con.execute("SELECT nodeid, outcome FROM test_results WHERE run_id = 'run-1'").fetchall())
    assert outcomes == {
        "test_tiny.py::test_pass_one": "passed", "test_tiny.py::test_pass_two": "passed",
        "test_tiny.py::test_pass_three": "passed", "test_tiny.py::test_fail_one": "failed",
        "test_tiny.py::test_fail_two": "failed", "test_tiny.py::test_skipped": "skipped",
        "test_tiny.py::test_long_end_to_end": "skipped", "test_tiny.py::test_expected_failure": "xfailed",
        "test_tiny.py::test_setup_error": "error"}
    messages = dict(con.execute("SELECT nodeid, message FROM test_results").fetchall())
    assert messages["test_tiny.py::test_skipped"] == "not on this host"
    assert messages["test_tiny.py::test_long_end_to_end"] == "long test: run with --run-long-tests"
    # the crash line, not the test's source code
    assert messages["test_tiny.py::test_fail_one"] == "AssertionError: arithmetic\nassert (1 + 1) == 3"
    assert messages["test_tiny.py::test_fail_two"] == "ValueError: bad <value> & more"
    assert messages["test_tiny.py::test_setup_error"] == "RuntimeError: fixture exploded"
    assert messages["test_tiny.py::test_pass_one"] is None
    con.close()

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"] == {"passed": 3, "failed": 2, "error": 1, "skipped": 2, "xfailed": 1, "xpassed": 0,
                                 "flaky": 0}
    assert [t["nodeid"] for t in summary["failed_tests"]] == [
        "test_tiny.py::test_fail_one", "test_tiny.py::test_fail_two", "test_tiny.py::test_setup_error"]
    assert [t["message"] for t in summary["failed_tests"]] == [
        "AssertionError: arithmetic\nassert (1 + 1) == 3", "ValueError: bad <value> & more",
        "RuntimeError: fixture exploded"]
    junit = load_report(tmp_path / "junit.xml")
    assert [(t.nodeid, t.message) for t in junit.failed_tests] == [
        ("test_tiny::test_fail_one", "AssertionError: arithmetic\nassert (1 + 1) == 3"),
        ("test_tiny::test_fail_two", "ValueError: bad <value> & more"),
        ("test_tiny::test_setup_error", 'failed on setup with "RuntimeError: fixture exploded"')]
    # JUnit counts xfail as skipped; each failed test's two attempts count once
    assert junit.counts == {"passed": 3, "failed": 2, "error": 1, "skipped": 3, "flaky": 0}
    assert junit.status == "failure"
    assert "run run-1 (standard): 3 passed, 2 failed, 1 errors, 2 skipped" in done.stdout


def test_long_tests_run_with_the_option_and_a_selection_passes_through(tmp_path):
    suite = make_suite(tmp_path / "suite")
    db = tmp_path / "results.duckdb"
    done = run_runner("--results-db", str(db), "--run-long-tests", "--run-id", "long-1", str(suite),
                      "-k", "long or pass_one")
    assert done.returncode == 0, done.stdout + done.stderr
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT mode, collected, passed, status FROM test_runs").fetchone() == (
        "long", 2, 2, "passed")
    con.close()


def test_results_db_defaults_to_benchmark_db_path(tmp_path):
    suite = make_suite(tmp_path / "suite")
    db = tmp_path / "from_env.duckdb"
    done = run_runner(str(suite), "-k", "pass_one", env={**os.environ, "BENCHMARK_DB_PATH": str(db)})
    assert done.returncode == 0, done.stderr
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT passed FROM test_runs").fetchall() == [(1,)]
    con.close()


def test_no_collected_test_fails_with_a_clear_message(tmp_path):
    suite = make_suite(tmp_path / "suite")
    db = tmp_path / "results.duckdb"
    done = run_runner("--results-db", str(db), "--", str(suite), "-k", "no_such_test")
    assert done.returncode == 5
    assert "no test was collected (pytest exit code 5)" in done.stderr
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT collected, status, exit_code FROM test_runs").fetchone() == (0, "no_tests", 5)
    con.close()


def test_html_report_lists_each_test(tmp_path):
    suite = make_suite(tmp_path / "suite")
    report = tmp_path / "out" / "tiny_report.html"
    done = run_runner("--results-db", str(tmp_path / "r.duckdb"), "--html-report", str(report), "--verbose",
                      str(suite))
    assert done.returncode == 1
    html = report.read_text()
    for name in ("test_pass_one", "test_pass_two", "test_pass_three", "test_fail_one", "test_fail_two",
                 "test_skipped", "test_long_end_to_end", "test_expected_failure", "test_setup_error"):
        assert f"test_tiny.py::{name}" in html
    assert "<link rel=\"stylesheet\"" not in html  # self-contained: styles are inline


def test_junit_xml_is_valid(tmp_path):
    suite = make_suite(tmp_path / "suite")
    run_runner("--results-db", str(tmp_path / "r.duckdb"), "--junit-xml", str(tmp_path / "j.xml"), str(suite),
               "-k", "pass")
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert len(list(root.iter("testcase"))) == 3


def test_locked_results_database_is_named_in_the_error(tmp_path):
    suite = make_suite(tmp_path / "suite")
    db = tmp_path / "locked.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('ready', flush=True); time.sleep(30)", str(db)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        done = run_runner("--results-db", str(db), "--summary-json", str(tmp_path / "summary.json"), str(suite),
                          "-k", "pass_one")
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 3  # the tests passed, but the run could not be recorded: a setup failure
    assert f"the run was NOT recorded: results database '{db}'" in done.stderr
    assert "another process holds it" in done.stderr
    assert "NOT recorded (see above)" in done.stdout and "recorded in" not in done.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["status"], summary["exit_code"], summary["recorded"]) == ("passed", 3, False)
    assert "another process holds it" in summary["results_db_error"]


MESSAGE_SUITE = '''
def compute():
    return 1

def test_plain_assert(fleet_factory=None, max_retries=0):
    assert compute() == 2

def test_unknown_fixture(no_such_fixture):
    pass
'''


def test_failure_message_is_the_crash_line_not_the_source(tmp_path):
    suite = make_suite(tmp_path / "suite")
    suite.unlink()
    (suite.parent / "test_messages.py").write_text(MESSAGE_SUITE)
    (suite.parent / "test_broken_import.py").write_text("import no_such_module_hwmon\n")
    db = tmp_path / "results.duckdb"
    done = run_runner("--results-db", str(db), "--junit-xml", str(tmp_path / "junit.xml"), str(suite.parent),
                      "--continue-on-collection-errors")
    assert done.returncode == 1, done.stdout + done.stderr
    con = duckdb.connect(str(db), read_only=True)
    messages = dict(con.execute("SELECT nodeid, message FROM test_results").fetchall())
    con.close()
    assert messages == {
        "test_messages.py::test_plain_assert": "AssertionError: assert 1 == 2\n +  where 1 = compute()",
        "test_messages.py::test_unknown_fixture": "fixture 'no_such_fixture' not found",
        "test_broken_import.py": "ModuleNotFoundError: No module named 'no_such_module_hwmon'"}
    junit = {t.nodeid: t.message for t in load_report(tmp_path / "junit.xml").failed_tests}
    assert junit["test_messages::test_plain_assert"] == "AssertionError: assert 1 == 2\n +  where 1 = compute()"


@pytest.mark.parametrize("args", [["--no-such-option"], ["tests/no_such_file.py"]])
def test_usage_errors_exit_2_and_record_nothing(tmp_path, args):
    suite = make_suite(tmp_path / "suite")
    db = tmp_path / "results.duckdb"
    done = run_runner("--results-db", str(db), "--summary-json", str(tmp_path / "summary.json"), str(suite), *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nothing was run or recorded" in done.stderr
    assert not db.exists() and not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize(("mode_args", "mode", "long_ran"), [
    (["--mode", "long"], "long", True), (["--comprehensive"], "comprehensive", True),
    (["--quick"], "quick", False), ([], "standard", False)])
def test_modes_choose_the_tests(tmp_path, mode_args, mode, long_ran):
    suite = make_suite(tmp_path / "suite")
    (suite.parent / "test_marked.py").write_text(
        "import pytest\n\n@pytest.mark.browser\ndef test_in_chromium(): pass\n\n"
        "@pytest.mark.cluster\ndef test_on_dask(): pass\n")
    (suite.parent / "pytest.ini").write_text("[pytest]\nmarkers =\n    long: l\n    browser: b\n    cluster: c\n")
    db = tmp_path / "results.duckdb"
    done = run_runner("--results-db", str(db), *mode_args, str(suite.parent), "-k", "long or pass_one or in_ or on_")
    assert done.returncode == 0, done.stdout + done.stderr
    con = duckdb.connect(str(db), read_only=True)
    outcomes = dict(con.execute("SELECT nodeid, outcome FROM test_results").fetchall())
    assert con.execute("SELECT mode FROM test_runs").fetchone() == (mode,)
    con.close()
    if mode == "quick":  # long, browser and cluster tests deselected, not even listed as skipped
        assert outcomes == {"test_tiny.py::test_pass_one": "passed"}
        return
    assert outcomes["test_tiny.py::test_long_end_to_end"] == ("passed" if long_ran else "skipped")
    assert outcomes["test_marked.py::test_in_chromium"] == outcomes["test_marked.py::test_on_dask"] == "passed"


def test_quick_and_long_tests_together_is_a_usage_error(tmp_path):
    done = run_runner("--quick", "--run-long-tests", "--results-db", str(tmp_path / "r.duckdb"))
    assert done.returncode == 2 and "--quick leaves the long tests out" in done.stderr
    assert not (tmp_path / "r.duckdb").exists()


DB_SUITE = """
import duckdb

def test_first(db_path):
    with duckdb.connect(db_path) as con:
        con.execute("CREATE TABLE samples AS SELECT 1 AS x")

def test_second(db_path):
    with duckdb.connect(db_path) as con:
        assert con.execute("SELECT count(*) FROM information_schema.tables").fetchone() == (0,)  # afresh
        con.execute("CREATE TABLE samples AS SELECT 2 AS x")
"""


def test_db_path_is_exactly_one_file_and_relative_paths_follow_the_current_folder(tmp_path):
    suite = make_suite(tmp_path / "suite")
    suite.write_text(DB_SUITE)
    work = tmp_path / "work"
    work.mkdir()
    done = run_runner("--db-path", "data/tests.duckdb", "--results-db", "history.duckdb", "--summary-json",
                      "out/summary.json", str(suite), cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in (work / "data").iterdir()) == ["tests.duckdb"]
    con = duckdb.connect(str(work / "data" / "tests.duckdb"), read_only=True)
    assert con.execute("SELECT x FROM samples").fetchall() == [(2,)]  # the last test's data
    con.close()
    assert (work / "history.duckdb").is_file()
    summary = json.loads((work / "out" / "summary.json").read_text())
    assert summary["artifacts"]["results_db"] == str(work / "history.duckdb")


FLAKY_SUITE = """
import pathlib

def test_steady(): pass

def test_timing_sensitive():
    marker = pathlib.Path(__file__).with_name("attempted")
    first = not marker.exists()
    marker.write_text("")
    assert not first, "deadline missed by 3 ms"

def test_really_broken():
    assert 1 == 2
"""


def test_a_test_passing_on_rerun_is_flaky_and_does_not_fail_the_run(tmp_path):
    suite = make_suite(tmp_path / "suite")
    suite.write_text(FLAKY_SUITE)
    db, summary_md = tmp_path / "results.duckdb", tmp_path / "step_summary.md"
    env = {**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary_md)}
    for run_id in ("r1", "r2"):
        (suite.parent / "attempted").unlink(missing_ok=True)
        done = run_runner("--results-db", str(db), "--run-id", run_id, "--summary-json", str(tmp_path / "s.json"),
                          "--html-report", str(tmp_path / "report.html"), str(suite), "-k", "steady or timing",
                          env=env)
        assert done.returncode == 0, done.stdout + done.stderr  # flaky passes do not turn the run red
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT run_id, passed, failed, flaky, status FROM test_runs ORDER BY run_id").fetchall() == [
        ("r1", 1, 0, 1, "passed"), ("r2", 1, 0, 1, "passed")]
    outcome, message = con.execute("SELECT outcome, message FROM test_results WHERE run_id = 'r2' AND nodeid = "
                                   "'test_tiny.py::test_timing_sensitive'").fetchone()
    con.close()
    assert outcome == "flaky" and "deadline missed by 3 ms" in message
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [t["nodeid"] for t in summary["flaky_tests"]] == ["test_tiny.py::test_timing_sensitive"]
    assert summary["counts"]["flaky"] == 1 and summary["failed_tests"] == []
    assert "::warning file=" in done.stdout and "flaky%3A test_tiny.py%3A%3Atest_timing_sensitive" in done.stdout
    markdown = summary_md.read_text()
    assert "#### Flaky in this run (1)" in markdown
    assert "| `test_tiny.py::test_timing_sensitive` | 2 of the last 2 runs |" in markdown
    assert "rerun" in (tmp_path / "report.html").read_text().lower()  # pytest-html shows the rerun


def test_a_real_failure_still_fails_and_is_annotated_at_its_line(tmp_path):
    suite = make_suite(tmp_path / "suite")
    suite.write_text(FLAKY_SUITE)
    summary_md = tmp_path / "step_summary.md"
    env = {**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary_md)}
    done = run_runner("--results-db", str(tmp_path / "r.duckdb"), str(suite), "-k", "really", env=env, cwd=suite.parent)
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("::error "))
    assert line.startswith("::error file=test_tiny.py,line=13,title=failed%3A test_tiny.py%3A%3Atest_really_broken::")
    assert line.endswith("::AssertionError: assert 1 == 2")
    markdown = summary_md.read_text()
    assert markdown.startswith("### Hardware monitoring tests FAILED (standard mode)")
    assert "- `test_tiny.py::test_really_broken` (failed): AssertionError: assert 1 == 2" in markdown


WAITING_SUITE = '''
import pathlib, time

def test_ok(): pass

def test_waits_to_be_stopped():
    pathlib.Path(__file__).with_name("started").write_text("")
    time.sleep(120)
'''


def test_sigterm_interrupts_the_run_as_ctrl_c_does_and_it_is_still_recorded(tmp_path):
    """A job runner's SIGTERM (a timeout, a cancelled job) while a test runs: pytest is
    interrupted as by Ctrl-C, exit status 130, and the run is recorded as interrupted with the
    test that passed, instead of the process dying with nothing recorded."""
    suite = make_suite(tmp_path / "suite")
    suite.write_text(WAITING_SUITE)
    db = tmp_path / "results.duckdb"
    runner = subprocess.Popen([sys.executable, str(ROOT / "run_hardware_monitoring_tests.py"), "--results-db", str(db),
                               "--run-id", "stopped", str(suite)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (suite.parent / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        runner.send_signal(signal.SIGTERM)
        out, _ = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 130, out
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT status, passed FROM test_runs WHERE run_id = 'stopped'").fetchone() == (
            "interrupted", 1)


MARKUP_ID_SUITE = '''
import pytest

@pytest.mark.parametrize("value", ['<img src=x onerror="document.title=1">'])
def test_markup(value): pass
'''


def test_a_test_id_holding_markup_is_text_in_the_html_report(tmp_path):
    """The report's rows are markup its script inserts as is: the id cell must be escaped, or
    an id holding ``<img onerror=...>`` runs as script when the report is opened."""
    import html as html_module
    import re

    suite = make_suite(tmp_path / "suite")
    suite.write_text(MARKUP_ID_SUITE)
    report = tmp_path / "report.html"
    done = run_runner("--results-db", str(tmp_path / "r.duckdb"), "--html-report", str(report), str(suite))
    assert done.returncode == 0, done.stdout + done.stderr
    blob = html_module.unescape(re.search(r'data-jsonblob="([^"]*)"', report.read_text()).group(1))
    rows = json.loads(blob)["tests"]
    cells = [cell for entries in rows.values() for entry in entries for cell in entry["resultsTableRow"]
             if "col-testId" in cell]
    assert cells == ['<td class="col-testId">test_tiny.py::test_markup[&lt;img src=x '
                     'onerror=&quot;document.title=1&quot;&gt;]</td>']


def test_a_results_database_path_duckdb_cannot_open_is_a_usage_error_before_any_test_runs(tmp_path):
    # A name with a byte that is not UTF-8 is a valid Linux path, but DuckDB cannot open it: the
    # runner says so at once (exit 2) instead of running the suite and failing to record it.
    suite = make_suite(tmp_path / "suite")
    db = os.fsdecode(bytes(tmp_path) + b"/results-\xff.duckdb")
    done = subprocess.run([sys.executable, str(ROOT / "run_hardware_monitoring_tests.py"), "--results-db", db,
                           str(suite)], cwd=ROOT, capture_output=True, timeout=120)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, err
    assert "--results-db: the path has bytes that are not UTF-8" in err and "nothing was run" in err
    assert b"passed" not in done.stdout and not os.path.exists(db)
