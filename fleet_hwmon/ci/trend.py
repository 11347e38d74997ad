"""Trend charts of the results database: pass rate and duration over the last runs, as small SVGs.

Drawn by pygal through the fleet report's :func:`fleet_hwmon.reports.charts.line_chart` (inline,
script-free, escaped SVG). One point per run that ran (interrupted runs are left out), oldest
first; a run where no test was judged has no pass rate (a gap, never 0).

Example::

    charts = trend_charts("ci_artifacts/test_results.duckdb", runs=30)
    Path("pass_rate_trend.svg").write_text(charts["pass_rate_trend.svg"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..reports.charts import line_chart
from . import results_db


def pass_rate_percent(run: dict[str, Any]) -> float | None:
    """(passed + flaky) / (passed + flaky + failed + errors) of one run, in percent; ``None`` when
    no test was judged."""
    good = run["passed"] + run["flaky"]
    judged = good + run["failed"] + run["errors"]
    return 100.0 * good / judged if judged else None


def trend_charts(db_path: str | Path, runs: int = 30) -> dict[str, str]:
    """``{"pass_rate_trend.svg": svg, "duration_trend.svg": svg}`` over the newest ``runs`` runs.
    Raises :class:`results_db.ResultsDatabaseError` when the database cannot be opened."""
    with results_db.connect(db_path, read_only=True) as con:
        points = results_db.recent_runs(con, runs) if results_db.has_runs_table(con) else []
    times = [run["started_at"] for run in points]
    size = {"width": 480, "height": 200}
    return {
        "pass_rate_trend.svg": line_chart(f"Pass rate, last {len(points)} runs", times,
                                          [("pass rate", [pass_rate_percent(run) for run in points])], **size),
        "duration_trend.svg": line_chart(f"Suite duration, last {len(points)} runs", times,
                                         [("duration (s)", [run["duration_s"] for run in points])],
                                         y_title="s", y_range=None, **size),
    }
