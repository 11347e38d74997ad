"""Output paths that cannot be written, and malformed inputs of the reports, met before any work:
each command refuses at once with one line naming the option (exit status 2), nothing run,
sampled or sent, nothing written; the reports read what they are given or name the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet_hwmon.ci.report import from_junit_xml, from_summary_json
from fleet_hwmon.reports.jsonio import unwritable_reason

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def spots(tmp_path: Path) -> dict[str, Path]:
    """A folder where a file is expected, and a file where a folder is expected."""
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    return {"folder": tmp_path / "adir", "under_a_file": tmp_path / "afile" / "out.json"}


def test_unwritable_reason_names_what_is_in_the_way_and_leaves_nothing_behind(tmp_path, spots):
    assert unwritable_reason(spots["folder"]) == f"{spots['folder']} is a folder"
    assert unwritable_reason(spots["under_a_file"]) == f"{tmp_path / 'afile'} is a file, not a folder"
    assert unwritable_reason(tmp_path / "afile" / "deeper" / "x", folder=True) == \
        f"{tmp_path / 'afile'} is a file, not a folder"
    assert unwritable_reason(spots["folder"], folder=True) is None
    assert unwritable_reason(tmp_path / "new" / "deeper" / "report.html") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]  # no folder made, no probe left


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command, option", [
    (["run_hardware_monitoring_tests.py", "--results-db", "{db}", "--junit-xml", "{bad}", "{suite}"], "--junit-xml"),
    (["run_hardware_monitoring_tests.py", "--results-db", "{bad}", "{suite}"], "--results-db"),
    (["generate_status_badge.py", "--label", "x", "--value", "5", "--output", "{bad}"], "--output"),
    (["hardware_utilization_monitor.py", "--duration", "60", "--db-path", "{db}", "--html-report", "{bad}"],
     "--html-report"),
    (["run_coordinator_with_hardware_monitoring.py", "--db-path", "{db}", "--export-json", "{bad}"],
     "--export-json"),
    (["ci_notification.py", "--test-report", "{db}", "--dry-run", "--result-json", "{bad}"], "--result-json"),
])
@pytest.mark.parametrize("spot", ["folder", "under_a_file"])
def test_every_command_refuses_an_output_path_it_cannot_write_before_any_work(tmp_path, spots, command, option,
                                                                            spot):
    suite = tmp_path / "test_nothing.py"
    suite.write_text("def test_never_run():\n    raise AssertionError('the tests ran')\n")
    db = tmp_path / "work.duckdb"
    args = [str(ROOT / command[0])] + [a.format(db=db, bad=spots[spot], suite=suite) for a in command[1:]]
    done = _run(args, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert option in last and ("is a folder" in last or "is a file, not a folder" in last), done.stderr
    assert "Traceback" not in done.stderr and "the tests ran" not in done.stdout
    assert not db.exists()  # nothing sampled, run or recorded


@pytest.mark.parametrize("args, message", [
    (["--label", "x", "--value", "nan"], "--value must be a finite number"),
    (["--allow-missing", "--days", "1e10"], "--days must be more than 0"),
    (["--allow-missing", "--trend-runs", "-1"], "--trend-runs must be at least 1"),
    (["--allow-missing", "--flaky-window", "0"], "--flaky-window must be at least 1"),
])
def test_badge_numbers_out_of_range_are_one_usage_error(tmp_path, args, message):
    done = _run([str(ROOT / "generate_status_badge.py"), *args], tmp_path)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, reason", [
    ("[]", "a JSON list, not an object"), ("{}", "no 'failed_tests'"), ("{not json", "Expecting property name"),
])
def test_a_summary_json_that_is_not_the_runners_is_named(tmp_path, content, reason):
    path = tmp_path / "summary.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="is not the runner's --summary-json file") as raised:
        from_summary_json(path)
    assert str(path) in str(raised.value) and reason in str(raised.value)
    with pytest.raises(ValueError, match="cannot read the runner's summary"):
        from_summary_json(tmp_path / "missing.json")


def test_durations_that_are_not_finite_count_zero_and_junk_names_the_file(tmp_path):
    summary = {"status": "failed", "counts": {"passed": 1, "failed": 1}, "duration_s": float("nan"),
               "failed_tests": [{"nodeid": "t::a", "outcome": "failed", "message": "boom"}]}
    (tmp_path / "s.json").write_text(json.dumps(summary))  # Python writes NaN, as a careless tool would
    assert from_summary_json(tmp_path / "s.json").duration_s == 0.0
    junit = '<testsuite time="{}"><testcase classname="t" name="a" time="1"/></testsuite>'
    (tmp_path / "nan.xml").write_text(junit.format("nan"))
    assert from_junit_xml(tmp_path / "nan.xml").duration_s == 0.0
    (tmp_path / "abc.xml").write_text(junit.format("abc"))
    with pytest.raises(ValueError, match=r"abc\.xml: the duration 'abc' is not a number of seconds"):
        from_junit_xml(tmp_path / "abc.xml")


def test_notification_from_a_summary_with_a_nan_duration_is_sent(tmp_path):
    summary = {"status": "passed", "counts": {"passed": 1}, "duration_s": float("nan"), "failed_tests": []}
    (tmp_path / "s.json").write_text(json.dumps(summary))
    config = {"webhook": {"enabled": True, "notify_on": ["success", "failure"], "url": "http://127.0.0.1:9/hook"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    done = _run([str(ROOT / "ci_notification.py"), "--test-report", str(tmp_path / "s.json"), "--dry-run",
                 "--notification-config", str(tmp_path / "config.json"), "--channels", "webhook"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "webhook: ok" in done.stdout


def test_monitor_reports_with_a_database_and_no_sample_yet(tmp_path):
    from hardware_utilization_monitor import HardwareUtilizationMonitor

    monitor = HardwareUtilizationMonitor("w", db_path=str(tmp_path / "m.duckdb"), push_only=True)
    monitor.start_monitoring()
    try:
        html = monitor.generate_html_report(str(tmp_path / "m.html")).read_text()
        summary = json.loads(monitor.export_metrics_to_json(str(tmp_path / "m.json")).read_text())["summary"]
    finally:
        monitor.stop_monitoring()
    assert summary["samples"] == 0 and summary["first_sample"] is None and summary["cpu"]["mean"] is None
    assert "w" in html


def test_github_annotations_and_job_summary_carry_no_control_characters():
    """A test's message with a terminal escape (a title change, a screen clear) and a NUL: the
    workflow command and the job summary keep the text, drop the controls, escape the rest."""
    from datetime import datetime, timezone

    from fleet_hwmon.ci.github_output import annotations, step_summary
    from fleet_hwmon.ci.results_db import TestResult, TestRun

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    message = "AssertionError: \x1b]0;PWNED\x07got \x1b[2J50%\x00\nsecond line"
    run = TestRun("r1", now, now, "standard", "3.11", 1, "failed",
                  [TestResult("t.py::test_\x1b[31mred", "failed", 0.1, message)])
    [line] = annotations(run, {})
    assert line == ("::error file=t.py,line=1,title=failed%3A t.py%3A%3Atest_red::"
                    "AssertionError: got 50%25%0Asecond line")
    summary = step_summary(run)
    assert "- `t.py::test_red` (failed): AssertionError: got 50%" in summary
    assert not any(c in summary for c in "\x1b\x00\x07")


def test_a_results_database_that_cannot_be_opened_says_why(tmp_path):
    """Not a database, damaged, or a folder: each says so (no lock blamed); an empty file (left
    by a crash, or touched) is a new database for the runner and 'no run' for the readers."""
    from fleet_hwmon.ci import results_db

    (tmp_path / "text.duckdb").write_text("not a database at all\n" * 100)
    (tmp_path / "folder.duckdb").mkdir()
    with pytest.raises(results_db.ResultsDatabaseError, match="not a DuckDB database this version can read"):
        with results_db.connect(tmp_path / "text.duckdb"):
            pass
    with pytest.raises(results_db.ResultsDatabaseError, match="it is a folder"):
        with results_db.connect(tmp_path / "folder.duckdb"):
            pass
    empty = tmp_path / "empty.duckdb"
    empty.write_bytes(b"")
    with pytest.raises(results_db.ResultsDatabaseError, match="an empty file"):
        with results_db.connect(empty, read_only=True):
            pass
    with results_db.connect(empty) as con:  # becomes a database
        results_db.ensure_schema(con)
    with results_db.connect(empty, read_only=True) as con:
        assert results_db.has_runs_table(con)


def test_an_empty_database_path_is_named_and_the_badges_take_it_as_the_default(tmp_path):
    """``--db "$BENCHMARK_DB_PATH"`` with the variable unset passes an empty path: the badge tool
    reads it as its default; the results database refuses it by name, not as "a folder"."""
    from fleet_hwmon.ci import results_db

    with pytest.raises(results_db.ResultsDatabaseError, match="the path is empty"):
        with results_db.connect(""):
            pass
    env = {k: v for k, v in os.environ.items() if k != "BENCHMARK_DB_PATH"}
    done = subprocess.run([sys.executable, str(ROOT / "generate_status_badge.py"), "--db", "", "--output-dir", "b"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "'hardware_monitoring_test_results.duckdb': no such file" in done.stderr
