"""What a run shows inside GitHub Actions: a Markdown job summary and one annotation per failure.

* ``$GITHUB_STEP_SUMMARY`` (a file GitHub renders on the run's page) gets :func:`step_summary`:
  the counts, the failed tests, this run's flaky tests and the tests flaky in N of the last M runs.
* stdout gets :func:`annotations`: ``::error file=F,line=L,title=T::message`` per failed test and
  ``::warning ...`` per flaky one, which GitHub pins to that line of the pull request's diff.

Both only when ``GITHUB_ACTIONS`` is ``true`` (see :func:`publish`); the text follows GitHub's
workflow-command escaping (``%``, CR and LF everywhere; ``:`` and ``,`` in properties too).
"""

from __future__ import annotations

import sys

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..printable import printable
from .results_db import TestRun

MAX_LISTED = 50  # a job summary is at most 1 MiB; 50 failures with their first line fit easily


def _escape_data(text: str) -> str:
    """Escaped for a workflow command; escape sequences and other control characters (a test's
    message may hold them) dropped, so none reaches the log or the annotation."""
    text = printable(text, multiline=True).replace("\t", " ")
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotations(run: TestRun, locations: Mapping[str, tuple[str, int]]) -> list[str]:
    """Workflow commands: ``::error`` for each failed or errored test, ``::warning`` for each flaky
    one, at the ``(file, line)`` from ``locations`` (the test's node id path when unknown)."""
    lines = []
    for result in run.results:
        level = {"failed": "error", "error": "error", "flaky": "warning"}.get(result.outcome)
        if level is None:
            continue
        file, line = locations.get(result.nodeid, (result.nodeid.split("::", 1)[0], 1))
        title = f"{result.outcome}: {result.nodeid}"
        lines.append(f"::{level} file={_escape_property(file)},line={line},title={_escape_property(title)}::"
                     f"{_escape_data(result.message or result.outcome)}")
    return lines


def _cell(text: Any) -> str:
    """One Markdown table cell / list item on one line: ``|`` and backticks cannot break it, nor
    control characters (dropped)."""
    return " ".join(printable(str(text)).split()).replace("|", "\\|").replace("`", "'")


def step_summary(run: TestRun, flaky_history: Sequence[Mapping[str, Any]] = (), window_runs: int = 20) -> str:
    """The job summary's Markdown for one run (``flaky_history``: :func:`results_db.flaky_history`)."""
    counts = run.counts
    verdict = {"passed": "passed", "failed": "FAILED", "interrupted": "interrupted", "no_tests": "no test ran"}
    out = [f"### Hardware monitoring tests {verdict.get(run.status, run.status)} ({run.mode} mode)", "",
           "| passed | failed | errors | skipped | flaky | duration |", "|---:|---:|---:|---:|---:|---:|",
           f"| {counts['passed']} | {counts['failed']} | {counts['error']} | {counts['skipped']} | "
           f"{counts['flaky']} | {run.duration_s:.1f} s |", ""]
    failed = [r for r in run.results if r.outcome in ("failed", "error")]
    if failed:
        out += [f"#### Failed tests ({len(failed)})", ""]
        out += [f"- `{_cell(r.nodeid)}` ({r.outcome}): {_cell((r.message or '').splitlines()[0] if r.message else '')}"
                for r in failed[:MAX_LISTED]]
        out += [f"- ... and {len(failed) - MAX_LISTED} more"] if len(failed) > MAX_LISTED else []
        out.append("")
    flaky_now = [r for r in run.results if r.outcome == "flaky"]
    if flaky_now:
        out += [f"#### Flaky in this run ({len(flaky_now)}): failed, then passed on rerun; the run is not failed", ""]
        out += [f"- `{_cell(r.nodeid)}`" for r in flaky_now[:MAX_LISTED]] + [""]
    if flaky_history:
        out += [f"#### Flaky tests (last {window_runs} runs)", "", "| test | flaky in | last flaky |", "|---|---|---|"]
        out += [f"| `{_cell(h['nodeid'])}` | {h['flaky_runs']} of the last {h['runs']} runs | "
                f"{h['last_flaky_at']:%Y-%m-%d %H:%M} UTC |" for h in flaky_history[:MAX_LISTED]]
        out.append("")
    return "\n".join(out) + "\n"


def publish(run: TestRun, locations: Mapping[str, tuple[str, int]], flaky_history: Sequence[Mapping[str, Any]],
            environ: Mapping[str, str], window_runs: int = 20) -> None:
    """Inside GitHub Actions: print the annotations and append the step summary to the file
    ``$GITHUB_STEP_SUMMARY`` names. Outside it (``GITHUB_ACTIONS`` not ``true``): nothing."""
    if environ.get("GITHUB_ACTIONS") != "true":
        return
    for line in annotations(run, locations):
        print(line)
    if environ.get("GITHUB_STEP_SUMMARY"):
        try:
            with Path(environ["GITHUB_STEP_SUMMARY"]).open("a", encoding="utf-8") as handle:
                handle.write(step_summary(run, flaky_history, window_runs))
        except OSError as err:  # the run is recorded already: say so, and go on
            print(f"run_hardware_monitoring_tests: cannot append the job summary to $GITHUB_STEP_SUMMARY "
                  f"({environ['GITHUB_STEP_SUMMARY']}): {err.strerror or err}", file=sys.stderr)
