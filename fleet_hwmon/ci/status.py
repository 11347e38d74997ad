"""Test status from the results database, and the badges / shields endpoint JSON built from it.

Example::

    status = get_test_status("results.duckdb", days=7)
    label, message, color = metric_badge(status, "pass_rate")   # ("pass rate", "98.2%", "brightgreen")
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from . import results_db
from .badges import status_color, threshold_color

METRICS = ("status", "pass_rate", "tests", "duration", "runs")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def get_test_status(db_path: str | Path, days: float = 1, now: datetime | None = None) -> dict[str, Any]:
    """The suite's status from the results database.

    Returns a JSON-ready dict::

        {"status": "passing" | "failing" | "unknown",
         "latest_run": {run_id, started_at (UTC ISO), status, passed, failed, errors, skipped,
                        collected, duration_s, commit_sha, ...} | None,
         "window": {"days", "since" (ISO), "runs", "passing_runs", "passed", "failed", "errors",
                    "skipped", "flaky", "pass_rate_percent" (0-100, or None when no test ran)},
         "generated_at": ISO time, "reason": why the status is unknown (only then)}

    ``status`` follows the latest run: ``passing`` when it passed, ``failing`` when it failed,
    errored, was interrupted or collected no test, ``unknown`` when there is no database or no
    run. The pass rate is (passed + flaky) / (passed + flaky + failed + errors) over the runs of
    the last ``days`` (a flaky test passed, on its rerun).
    A database that cannot be opened raises :class:`results_db.ResultsDatabaseError`.
    """
    now = now or datetime.now(timezone.utc)
    since = now - timedelta(days=days)
    empty_window = {"days": days, "since": since.isoformat(), "runs": 0, "passing_runs": 0, "passed": 0,
                    "failed": 0, "errors": 0, "skipped": 0, "flaky": 0, "pass_rate_percent": None}
    result: dict[str, Any] = {"status": "unknown", "latest_run": None, "window": empty_window,
                              "generated_at": now.isoformat()}
    if not Path(db_path).exists():
        result["reason"] = f"no results database at {db_path}"
        return result
    with results_db.connect(db_path, read_only=True) as con:
        if not results_db.has_runs_table(con):
            tables = [name for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables ORDER BY table_name LIMIT 6").fetchall()]
            if tables:  # another kind of database (the metrics one, say): not "no run yet"
                raise results_db.ResultsDatabaseError(
                    str(db_path), f"not a test results database: it has no test_runs table (its tables: "
                                  f"{', '.join(tables)})")
        latest = results_db.latest_run(con) if results_db.has_runs_table(con) else None
        runs = results_db.runs_since(con, since) if latest else []
    if latest is None:
        result["reason"] = "no run recorded yet"
        return result
    result["latest_run"] = {key: _iso(value) for key, value in latest.items()}
    result["status"] = "passing" if latest["status"] == "passed" else "failing"
    totals = {key: sum(run[key] for run in runs) for key in ("passed", "failed", "errors", "skipped", "flaky")}
    judged = totals["passed"] + totals["flaky"] + totals["failed"] + totals["errors"]
    result["window"] = {**empty_window, **totals, "runs": len(runs),
                        "passing_runs": sum(1 for run in runs if run["status"] == "passed"),
                        "pass_rate_percent": round(100.0 * (totals["passed"] + totals["flaky"]) / judged, 2)
                        if judged else None}
    return result


def metric_badge(status: dict[str, Any], metric: str) -> tuple[str, str, str]:
    """``(label, message, colour name)`` of one metric badge (see :data:`METRICS`) for a
    :func:`get_test_status` result. Raises ``ValueError`` for an unknown metric."""
    latest = status.get("latest_run") or {}
    window = status["window"]
    if metric == "status":
        return "tests", status["status"], status_color(status["status"])
    if metric == "pass_rate":
        rate = window["pass_rate_percent"]
        return "pass rate", "unknown" if rate is None else f"{rate:g}%", threshold_color(rate)
    if metric == "tests":
        if not latest:
            return "tests", "unknown", "lightgrey"
        parts = [f"{latest['passed']} passed"]
        parts += [f"{latest[key]} {word}" for key, word in (("failed", "failed"), ("errors", "errors"),
                                                             ("skipped", "skipped")) if latest[key]]
        return "tests", ", ".join(parts), status_color(status["status"])
    if metric == "duration":
        if not latest:
            return "test duration", "unknown", "lightgrey"
        return "test duration", f"{latest['duration_s']:.1f} s", "blue"
    if metric == "runs":
        return f"runs ({window['days']:g} d)", str(window["runs"]), "blue"
    raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")


#: The keys shields' endpoint badge accepts (https://shields.io/badges/endpoint-badge); any other
#: key makes it answer "invalid response data".
ENDPOINT_KEYS = ("schemaVersion", "label", "message", "color", "labelColor", "isError", "namedLogo", "logoSvg",
                 "logoColor", "logoWidth", "style", "cacheSeconds")


def endpoint_json(status: dict[str, Any], metric: str = "status") -> dict[str, Any]:
    """A shields.io endpoint document for one metric, exactly the endpoint schema:
    ``{"schemaVersion": 1, "label", "message", "color"}``. The details (:func:`get_test_status`)
    go to a file of their own (``generate_status_badge.py --detail-json``)."""
    label, message, color = metric_badge(status, metric)
    return {"schemaVersion": 1, "label": label, "message": message, "color": color}


def flaky_tests(db_path: str | Path, last_runs: int = 20) -> list[dict[str, Any]]:
    """:func:`results_db.flaky_history` of the database at ``db_path`` (``[]`` when it does not exist),
    times as UTC ISO strings."""
    if not Path(db_path).exists():
        return []
    with results_db.connect(db_path, read_only=True) as con:
        history = results_db.flaky_history(con, last_runs) if results_db.has_runs_table(con) else []
    return [{key: _iso(value) for key, value in row.items()} for row in history]
