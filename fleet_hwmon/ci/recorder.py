"""A pytest plugin object that turns pytest's reports into one :class:`TestResult` per test.

Pass an instance to ``pytest.main(args, plugins=[recorder])``. Rules, one outcome per test:
a setup or teardown failure makes the test ``error``; a failing call is ``failed``; a skip in
setup or call is ``skipped``; ``xfail`` / ``xpass`` are kept apart; a module that fails to be
collected is one ``error`` row named after the module; a test that failed and passed when rerun
(pytest-rerunfailures logs the failed attempt with outcome ``rerun``) is ``flaky``, its message
the first attempt's failure. Durations add setup, call and teardown of every attempt.
A failure's ``message`` is pytest's crash line (``report.longrepr.reprcrash.message``, e.g.
``AssertionError: assert 1 == 2``); without one, the traceback's ``E`` lines, else its last line.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from .results_db import TestResult

MESSAGE_LIMIT_CHARS = 4000


def _crash_line(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    """What went wrong, without the test's source: pytest's crash line when it has one."""
    longrepr = report.longrepr
    crash = getattr(getattr(longrepr, "reprcrash", None), "message", None)
    if crash and str(crash).strip():
        text = str(crash).strip()
        # a bare ``assert`` crash line names no exception; say which one it is, like every other crash line
        return f"AssertionError: {text}" if text.startswith("assert ") else text
    text = getattr(report, "longreprtext", None) or str(longrepr)
    # pytest marks the error lines of a traceback with "E " (collection errors, unknown fixtures ...)
    error_lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ") and line[1:].strip()]
    if error_lines:
        return "\n".join(error_lines)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def _message(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    """The text stored as a test's ``message``: a skip's reason, or the failure's crash line
    (``AssertionError: assert 1 == 2``), never the test's source code."""
    longrepr = report.longrepr
    if longrepr is None:
        return None
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # skip: (path, line, reason)
        text = str(longrepr[2])
        if text.startswith("Skipped: "):
            text = text[len("Skipped: "):]
    else:
        text = _crash_line(report) or ""
    if len(text) > MESSAGE_LIMIT_CHARS:
        text = text[:MESSAGE_LIMIT_CHARS] + f"\n... ({len(text) - MESSAGE_LIMIT_CHARS} more characters)"
    return text or None


class ResultRecorder:
    """Collects per-test outcomes while pytest runs; read :attr:`results` afterwards.

    ``results`` is a list of :class:`TestResult` in the order tests finished; ``collected`` is the
    number of items pytest collected (after deselection); ``locations`` maps a failed test's node
    id to ``(file, line)`` (1-based) where it failed, for annotations.
    """

    def __init__(self) -> None:
        self._by_nodeid: dict[str, dict[str, Any]] = {}
        self.collected = 0
        self.locations: dict[str, tuple[str, int]] = {}

    # -- pytest hooks -------------------------------------------------------------------
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collected = len(session.items)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._by_nodeid[report.nodeid or "<collection>"] = {
                "outcome": "error", "duration_s": 0.0, "message": _message(report)}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self._by_nodeid.setdefault(report.nodeid, {"outcome": None, "duration_s": 0.0, "message": None,
                                                           "rerun_message": None})
        entry["duration_s"] += float(report.duration or 0.0)
        if report.failed or report.outcome == "rerun":
            self.locations[report.nodeid] = _failure_location(report)
        if report.outcome == "rerun":  # a failed attempt that pytest-rerunfailures runs again
            entry["rerun_message"] = entry["rerun_message"] or _message(report)
            return
        wasxfail = getattr(report, "wasxfail", None)
        if report.when == "call":
            if report.passed:
                entry["outcome"] = "xpassed" if wasxfail is not None else "passed"
                if wasxfail:
                    entry["message"] = wasxfail
            elif report.skipped:
                entry["outcome"] = "xfailed" if wasxfail is not None else "skipped"
                entry["message"] = wasxfail if wasxfail is not None else _message(report)
            else:
                entry["outcome"] = "failed"
                entry["message"] = _message(report)
        elif report.when == "setup":
            if report.skipped:
                entry["outcome"] = "xfailed" if wasxfail is not None else "skipped"
                entry["message"] = wasxfail if wasxfail is not None else _message(report)
            elif report.failed:
                entry["outcome"] = "error"
                entry["message"] = _message(report)
        elif report.when == "teardown" and report.failed:
            previous = entry["message"]
            entry["outcome"] = "error"
            entry["message"] = _message(report) if previous is None else f"{previous}\n\n{_message(report)}"

    # -- results ------------------------------------------------------------------------
    @property
    def results(self) -> list[TestResult]:
        return [_final(nodeid, entry) for nodeid, entry in self._by_nodeid.items() if entry["outcome"] is not None]


def _final(nodeid: str, entry: dict[str, Any]) -> TestResult:
    if entry.get("rerun_message") is not None and entry["outcome"] == "passed":
        return TestResult(nodeid, "flaky", entry["duration_s"], f"passed on rerun; first attempt: "
                          f"{entry['rerun_message']}")
    return TestResult(nodeid, entry["outcome"], entry["duration_s"], entry["message"])


def _failure_location(report: pytest.TestReport) -> tuple[str, int]:
    """``(file, 1-based line)`` of a failure: the crash point when it lies in the current folder's
    tree (the test's own code), else the test's definition."""
    crash = getattr(report.longrepr, "reprcrash", None)
    path, line = getattr(crash, "path", None), getattr(crash, "lineno", None)
    if path and line:
        relative = os.path.relpath(path)
        if not relative.startswith(".."):
            return relative, int(line)
    file, line0, _ = report.location
    return file, (line0 or 0) + 1
