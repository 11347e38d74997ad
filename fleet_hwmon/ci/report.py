"""A finished run's outcome, as notifications see it, read from JUnit XML, a summary JSON or the
results database.

Example::

    report = load_report("ci_artifacts/<run id>/junit.xml")
    report.status           # "success" | "failure"
    report.failed_tests     # [FailedTest(nodeid, outcome, message), ...]
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import results_db

STATUSES = ("success", "failure")


@dataclass(frozen=True, slots=True)
class FailedTest:
    """One failed or errored test: node id, ``"failed"`` or ``"error"``, the failure text."""

    nodeid: str
    outcome: str
    message: str | None = None


@dataclass(frozen=True, slots=True)
class RunReport:
    """What a notification says about a run.

    ``status`` is ``"success"`` or ``"failure"``; ``counts`` maps ``passed``, ``failed``, ``error``,
    ``skipped`` (and ``xfailed`` / ``xpassed`` when known) to numbers of tests; ``duration_s`` is
    seconds or ``None``; links are absolute URLs or ``None``.
    """

    status: str
    counts: dict[str, int] = field(default_factory=dict)
    failed_tests: tuple[FailedTest, ...] = ()
    flaky_tests: tuple[FailedTest, ...] = ()
    run_id: str | None = None
    commit: str | None = None
    branch: str | None = None
    repository: str | None = None
    pull_request: int | None = None
    run_url: str | None = None
    report_url: str | None = None
    duration_s: float | None = None
    mode: str | None = None
    source: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def with_overrides(self, **changes: Any) -> RunReport:
        """A copy with the given non-``None`` fields replaced."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _status_from_counts(counts: dict[str, int]) -> str:
    """``failure`` when a test failed or errored, or when no test ran at all; else ``success``."""
    broken = counts.get("failed", 0) + counts.get("error", 0)
    ran = counts.get("passed", 0) + counts.get("skipped", 0) + counts.get("flaky", 0)
    return "failure" if broken or not ran else "success"


def _junit_message(element: ET.Element) -> str | None:
    """A ``<failure>`` / ``<error>``'s crash line: its ``message`` attribute (pytest writes the crash
    line there), else the ``E`` lines of its text (the traceback), else the text's last line."""
    head = (element.get("message") or "").strip()
    if head:
        return f"AssertionError: {head}" if head.startswith("assert ") else head
    text = element.text or ""
    error_lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ") and line[1:].strip()]
    if error_lines:
        return "\n".join(error_lines)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def from_junit_xml(path: str | Path) -> RunReport:
    """Read a JUnit XML file (pytest's, or any ``<testsuites>`` / ``<testsuite>``): one outcome per
    test (``failure`` -> failed, ``error`` -> error, ``skipped`` -> skipped, else passed; a test
    with several ``<testcase>`` attempts counts by its last, ``flaky`` when that passed);
    a failure's message is its crash line (see :func:`_junit_message`), not the whole traceback.
    Raises ``ValueError`` for a file that is not JUnit XML."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise ValueError(f"cannot read JUnit XML {path}: {err}") from err
    if root.tag not in ("testsuites", "testsuite"):
        raise ValueError(f"{path} is not JUnit XML (root element <{root.tag}>)")
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    final: dict[str, tuple[str, str | None]] = {}  # nodeid -> (outcome, message) of its last attempt
    attempts: dict[str, int] = {}
    duration_s = 0.0
    for suite in suites:
        duration_s += _seconds(suite.get("time"), path)
        for case in suite.iter("testcase"):
            nodeid = "::".join(part for part in (case.get("classname"), case.get("name")) if part)
            outcome, message = "passed", None
            for child, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
                element = case.find(child)
                if element is not None:
                    outcome, message = name, (None if name == "skipped" else _junit_message(element))
                    break
            final[nodeid] = (outcome, message)
            attempts[nodeid] = attempts.get(nodeid, 0) + 1
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0, "flaky": 0}
    failed: list[FailedTest] = []
    flaky: list[FailedTest] = []
    for nodeid, (outcome, message) in final.items():
        if outcome == "passed" and attempts[nodeid] > 1:  # pytest-rerunfailures writes one testcase per attempt
            outcome = "flaky"
            flaky.append(FailedTest(nodeid, outcome))
        elif outcome in ("failed", "error"):
            failed.append(FailedTest(nodeid, outcome, message))
        counts[outcome] += 1
    return RunReport(status=_status_from_counts(counts), counts=counts, failed_tests=tuple(failed),
                     flaky_tests=tuple(flaky), duration_s=round(duration_s, 3), source=str(path))


def _seconds(value: Any, path: str | Path) -> float:
    """A duration attribute in seconds: missing or not finite (``nan``) counts 0; not a number is
    an error naming the file."""
    try:
        seconds = float(value or 0.0)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: the duration {value!r} is not a number of seconds") from None
    return seconds if math.isfinite(seconds) else 0.0


def from_summary_json(path: str | Path) -> RunReport:
    """Read the runner's ``--summary-json`` file. Raises ``ValueError`` naming the file when it
    cannot be read or is not such a summary."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        counts = {k: int(v) for k, v in data.get("counts", {}).items()}
        ci = data.get("ci") or {}
        duration_s = data.get("duration_s")
        return RunReport(
            status="success" if data.get("status") == "passed" else "failure", counts=counts,
            failed_tests=tuple(FailedTest(t["nodeid"], t["outcome"], t.get("message")) for t in data["failed_tests"]),
            flaky_tests=tuple(FailedTest(t["nodeid"], "flaky", t.get("message")) for t in data.get("flaky_tests", [])),
            run_id=data.get("run_id"), commit=data.get("commit"), branch=data.get("branch"),
            run_url=ci.get("run_url"), pull_request=ci.get("pull_request"),
            duration_s=None if duration_s is None else _seconds(duration_s, path), mode=data.get("mode"),
            source=str(path))
    except OSError as err:
        raise ValueError(f"cannot read the runner's summary {path}: {err.strerror or err}") from err
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        what = f"no {err}" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{path} is not the runner's --summary-json file ({what})") from err


def from_results_db(path: str | Path, run_id: str | None = None) -> RunReport:
    """Read the latest run (or ``run_id``) from the results database. Raises ``ValueError`` when
    there is no such run and :class:`results_db.ResultsDatabaseError` when the file cannot be opened."""
    with results_db.connect(path, read_only=True) as con:
        run = results_db.latest_run(con, run_id) if results_db.has_runs_table(con) else None
        if run is None:
            raise ValueError(f"no run {run_id or ''} recorded in {path}".replace("  ", " "))
        results = results_db.results_of(con, run["run_id"])
    counts = {"passed": run["passed"], "failed": run["failed"], "error": run["errors"], "skipped": run["skipped"],
              "xfailed": run["xfailed"], "xpassed": run["xpassed"], "flaky": run["flaky"]}
    return RunReport(
        status="success" if run["status"] == "passed" else "failure", counts=counts,
        failed_tests=tuple(FailedTest(r.nodeid, r.outcome, r.message) for r in results
                           if r.outcome in ("failed", "error")),
        flaky_tests=tuple(FailedTest(r.nodeid, r.outcome, r.message) for r in results if r.outcome == "flaky"),
        run_id=run["run_id"], commit=run["commit_sha"], branch=run["branch"], run_url=run["ci_run_url"],
        duration_s=run["duration_s"], mode=run["mode"], source=str(path))


def load_report(path: str | Path, run_id: str | None = None) -> RunReport:
    """Dispatch on the file: ``.xml`` JUnit, ``.json`` runner summary, anything else a results database."""
    suffix = Path(path).suffix.lower()
    if suffix == ".xml":
        return from_junit_xml(path)
    if suffix == ".json":
        return from_summary_json(path)
    return from_results_db(path, run_id)
