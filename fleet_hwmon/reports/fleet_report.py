"""The fleet report: HTML (one self-contained file, readable offline) and strict JSON.

    data = build_report_data(store, workers=integration_view, scheduler_stats=stats)
    render_fleet_report(data, "hardware_report.html")
    export_report_json(data, "hardware_report.json")

:func:`build_report_data` (in :mod:`fleet_hwmon.reports.fleet_data`) reads the store with SQL
aggregation; this module only presents its result. The HTML goes through the autoescaped Jinja2
environment, holds no ``<script>`` and references nothing outside the file: charts are pygal SVG
inlined without scripts, sparklines are tiny hand-made SVG polylines. For a large fleet the
charts show the fleet (mean and max across workers) and the busiest workers per resource, and
the worker table carries a sparkline per resource, so the page stays small and readable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from fleet_hwmon.reports.charts import PALETTE, line_chart, percent_range, sparkline_points, worker_colour
from fleet_hwmon.reports.fleet_data import (
    MAX_EXCLUSIONS_SHOWN,
    build_report_data,
    choose_bucket_seconds,
)
from fleet_hwmon.reports.fleet_metrics import RESOURCE_LABELS, RESOURCES, format_metric
from fleet_hwmon.reports.jsonio import write_json
from fleet_hwmon.reports.render import render_to_file

__all__ = ["build_report_data", "choose_bucket_seconds", "export_report_json", "render_fleet_report"]

TEMPLATE = "fleet_report.html.j2"
TOP_WORKERS = 8


def fmt_duration(seconds: Any) -> str:
    """``3725`` -> ``1 h 2 min``; ``None`` -> ``n/a``."""
    if seconds is None:
        return "n/a"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds else "0 s"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (sec, "s")]
    shown = [f"{value} {unit}" for value, unit in parts if value][:2]
    return " ".join(shown)


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _simulated_note(workers: list[Mapping[str, Any]], resource: str) -> str:
    """`` - simulated`` when every charted worker's values of ``resource`` are simulated, ``
    - includes simulated`` when some are, else empty (real values stay unlabelled)."""
    flags = [bool(w["samples_simulated"].get(resource)) for w in workers]
    if flags and all(flags):
        return " \u2013 simulated"
    return " \u2013 includes simulated" if any(flags) else ""


def _charts(data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Fleet charts (mean and max across workers) and busiest-workers charts, per resource.

    Each worker keeps one colour in every chart (by its place in the worker table); the y axis
    is scaled to the data (at least 0-10 %); a chart or series of simulated values says so in
    its title and legend."""
    series = data["series"]
    times = series["times"]
    bucket = fmt_duration(series["bucket_seconds"])
    colours = {w["worker_id"]: worker_colour(i) for i, w in enumerate(data["workers"])}
    order = {w["worker_id"]: i for i, w in enumerate(data["workers"])}
    with_data = {r: [w for w in data["workers"] if _mean(series["workers"].get(w["worker_id"], {}).get(r, {})
                                                         .get("mean", [])) is not None] for r in RESOURCES}
    fleet, busiest, missing = [], [], []
    for resource in RESOURCES:
        label = RESOURCE_LABELS[resource]
        workers = with_data[resource]
        if not workers:
            missing.append(label)
            continue
        if len(workers) > 1:
            values = series["fleet"][resource]
            note = _simulated_note(workers, resource)
            lines = [("mean of workers", values["mean"]), ("max of any worker", values["max"])]
            fleet.append({"title": f"{label}: fleet{note}", "simulated": bool(note), "svg": line_chart(
                f"{label} utilization across {len(workers)} workers (per {bucket}){note}", times, lines,
                dashed=(1,), y_range=percent_range([v for _, v in lines]), colours=(PALETTE[7], PALETTE[1]))})
        ranked = sorted(workers, key=lambda w: -(_mean(series["workers"][w["worker_id"]][resource]["mean"]) or 0.0))
        # The busiest workers, shown in the worker table's order so the legends read alike.
        top = sorted(ranked[:TOP_WORKERS], key=lambda w: order[w["worker_id"]])
        heading = (f"{label}: busiest {len(top)} of {len(workers)} workers" if len(workers) > len(top)
                   else f"{label}: per worker")
        note = _simulated_note(top, resource)
        lines = [(str(w["worker_id"]) + (" (simulated)" if w["samples_simulated"].get(resource) else ""),
                  series["workers"][w["worker_id"]][resource]["mean"]) for w in top]
        busiest.append({"title": heading + note, "simulated": bool(note), "svg": line_chart(
            f"{heading} (mean per {bucket}){note}", times, lines, y_range=percent_range([v for _, v in lines]),
            colours=[colours[w["worker_id"]] for w in top])})
    return {"fleet": fleet, "busiest": busiest, "missing": missing}


def show_value(value: Any) -> str:
    """A scalar as a reader expects it: booleans as yes / no, unknown as n/a, floats rounded."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _tasks_per_worker(data: Mapping[str, Any]) -> dict[str, Any]:
    """One "Tasks per worker" table: the recorded decisions' counts and, when the live scheduler
    statistics carry their own ``tasks_per_worker`` counter, that counter as a column."""
    recorded = data["scheduler"]["decisions"]["tasks_per_worker"]
    counter = dict(data["scheduler"]["stats"]["tables"].get("tasks_per_worker") or [])
    rows = [dict(row, counter=counter.get(str(row["worker_id"]))) for row in recorded]
    seen = {str(row["worker_id"]) for row in recorded}
    rows += [{"worker_id": k, "tasks": None, "as_alternative": None, "counter": v}
             for k, v in counter.items() if k not in seen]
    return {"rows": rows, "has_counter": bool(counter), "has_recorded": bool(recorded)}


def render_fleet_report(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``data`` (from :func:`build_report_data`) as one self-contained HTML file; returns its path.

    The file references no network resource and runs no script; every text from the store or the
    coordinator (worker ids, task ids, GPU names, error messages) is escaped by the autoescaped
    environment, and chart SVG comes only from pygal with its scripts removed.
    """
    return render_to_file(
        TEMPLATE, path, data=data, charts=_charts(data), resources=RESOURCES, resource_labels=RESOURCE_LABELS,
        fmt=format_metric, duration=fmt_duration, spark_points=sparkline_points, show=show_value,
        max_exclusions=MAX_EXCLUSIONS_SHOWN, tasks_per_worker=_tasks_per_worker(data),
    )


def export_report_json(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``data`` as strict JSON (no NaN / infinity, times ISO 8601 UTC), atomically."""
    return write_json(path, data)
