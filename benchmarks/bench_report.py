"""Benchmark of the fleet report on a large metrics file (not a test).

Builds a DuckDB file with 10,000,000 samples (100 workers x 100,000 s at 1 Hz, about a day and
4 hours; 40 workers carry a GPU, 10 of them marked simulated) with one DuckDB ``INSERT ... SELECT
FROM range(...)`` per chunk through the store's writer, then times:

- ``baseline_query_s``: the bare SQL aggregation alone (the per-worker time-bucketed mean / max of
  CPU, memory and GPU, the same query shape the report runs), fetched to Python;
- ``build_s``: :func:`build_report_data` (every query of the report plus assembling the dict);
- ``render_s``: :func:`render_fleet_report` (charts and HTML); ``json_s``: :func:`export_report_json`.

Each is timed ``--repeat`` times (the best run is reported, all totals are listed) in wall seconds
and, as ``*_cpu_s``, in CPU seconds of this process (all DuckDB threads): on a shared machine the
wall time depends on the load (``load_average_1m_before``), the CPU time much less.

Targets: build + render <= 5 s, HTML <= 2 MB (exit status 1 when missed). The last line of output is one JSON object.

    python benchmarks/bench_report.py            # 10,000,000 samples
    python benchmarks/bench_report.py --quick    # 1,000,000 samples
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from fleet_hwmon.reports.fleet_data import choose_bucket_seconds  # noqa: E402
from fleet_hwmon.reports.fleet_report import (  # noqa: E402
    build_report_data,
    export_report_json,
    render_fleet_report,
)
from fleet_hwmon.sample import ResourceUtilization  # noqa: E402
from fleet_hwmon.store import close_store, open_store  # noqa: E402
from fleet_hwmon.store.queries import GPU_UTILIZATION_SQL  # noqa: E402

WORKERS = 100
CHUNK_ROWS = 1_000_000
TARGET_S = 5.0
TARGET_HTML_BYTES = 2 * 1024 * 1024

_GPU = ("[struct_pack(index := 0::BIGINT, uuid := 'GPU-' || w, name := 'NVIDIA A100-SXM4-80GB', "
        "utilization_percent := CASE WHEN h % 50 = 0 THEN NULL ELSE (h2 % 1000) / 10.0 END, "
        "memory_used_bytes := (h2 % 80)::BIGINT * 1073741824, memory_total_bytes := 85899345920::BIGINT, "
        "temperature_celsius := 40.0 + h % 40, power_watts := 100.0 + h2 % 300, fan_percent := NULL::DOUBLE, "
        "sm_clock_mhz := 1410.0, memory_clock_mhz := 1593.0, pci_bus_id := '00000000:07:00.0', "
        "mig_enabled := false, parent_uuid := NULL::VARCHAR, unavailable_reason := NULL::VARCHAR, "
        "simulated := w >= 30)]")


def _insert_sql(start: int, rows: int) -> str:
    """Rows ``start .. start+rows`` of the synthetic fleet: row i is worker i % 100 at second i // 100."""
    return f"""INSERT INTO resource_utilization BY NAME
SELECT 'worker-' || lpad(w::VARCHAR, 3, '0') AS worker_id,
  TIMESTAMPTZ '2025-01-01 00:00:00+00' + to_seconds(sec) AS timestamp,
  least(100.0, greatest(0.0, 20.0 + w * 0.6 + 25.0 * sin(sec / 3600.0 + w) + (h % 100) / 10.0)) AS cpu_percent,
  CASE WHEN w = 99 THEN NULL ELSE 30.0 + (w % 50) + (h2 % 100) / 20.0 END AS memory_percent,
  ((30.0 + (w % 50)) * 687194767.36)::BIGINT AS memory_used_bytes,
  68719476736::BIGINT AS memory_total_bytes,
  (h % 100000)::DOUBLE AS net_recv_bytes_per_s, (h2 % 50000)::DOUBLE AS net_sent_bytes_per_s,
  load_avg AS load_average_1m,
  CASE WHEN w < 40 THEN {_GPU} ELSE [] END AS gpus,
  CASE WHEN w BETWEEN 30 AND 39 THEN ['gpus'] ELSE [] END AS simulated_fields
FROM (SELECT i % {WORKERS} AS w, i // {WORKERS} AS sec, hash(i) AS h, hash(i * 7 + 1) AS h2,
             (hash(i) % 800) / 100.0 AS load_avg
      FROM range({start}, {start + rows}) r(i))"""


def build_database(path: str, samples: int) -> float:
    """Create ``path`` with ``samples`` rows through the store's writer; returns seconds taken."""
    if os.path.exists(path):
        os.remove(path)
    began = time.perf_counter()
    store = open_store(path)
    try:
        store.ensure_table("resource_utilization", ResourceUtilization)
        for start in range(0, samples, CHUNK_ROWS):
            store.write(_insert_sql(start, min(CHUNK_ROWS, samples - start)))
        store.write("CHECKPOINT")
    finally:
        close_store(store)
    return time.perf_counter() - began


def baseline_query(path: str, bucket_s: float) -> tuple[float, float, int]:
    """The bare aggregation: per worker and bucket, mean and max of CPU, memory and GPU.
    Returns (wall seconds, process CPU seconds, rows)."""
    con = duckdb.connect(path, read_only=True)
    try:
        con.execute("SET TimeZone='UTC'")
        gpu = f"CASE WHEN len(gpus) > 0 THEN {GPU_UTILIZATION_SQL} END"
        sql = (f"SELECT worker_id, time_bucket(to_microseconds({int(bucket_s * 1e6)}::BIGINT), timestamp) AS b, "
               f"count(*), avg(cpu_percent), max(cpu_percent), avg(memory_percent), max(memory_percent), "
               f"avg({gpu}), max({gpu}) FROM resource_utilization GROUP BY ALL")
        began, cpu = time.perf_counter(), time.process_time()
        rows = con.execute(sql).fetchall()
        return time.perf_counter() - began, time.process_time() - cpu, len(rows)
    finally:
        con.close()


def time_report(db: Path, html: Path, title: str) -> tuple[dict, dict[str, float]]:
    """One build + render; returns the data and the wall / CPU seconds of each step."""
    store = open_store(db)
    try:
        began, cpu = time.perf_counter(), time.process_time()
        data = build_report_data(store, title=title)
        build_s, build_cpu_s = time.perf_counter() - began, time.process_time() - cpu
    finally:
        close_store(store)
    began, cpu = time.perf_counter(), time.process_time()
    render_fleet_report(data, html)
    render_s, render_cpu_s = time.perf_counter() - began, time.process_time() - cpu
    return data, {"build_s": build_s, "build_cpu_s": build_cpu_s, "render_s": render_s,
                  "render_cpu_s": render_cpu_s, "report_s": build_s + render_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000,000 samples instead of 10,000,000")
    parser.add_argument("--samples", type=int, default=None, help="number of samples (overrides --quick)")
    parser.add_argument("--workdir", default=None, help="folder for the database and the report (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the report files")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (the best is reported; default 3)")
    args = parser.parse_args(argv)
    samples = args.samples or (1_000_000 if args.quick else 10_000_000)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-report-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db, html, report_json = workdir / "bench.duckdb", workdir / "report.html", workdir / "report.json"

    generate_s = build_database(str(db), samples)
    span_s = samples // WORKERS - 1
    bucket_s = choose_bucket_seconds(span_s, 240)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    runs, baselines = [], []
    for _ in range(max(1, args.repeat)):
        baselines.append(baseline_query(str(db), bucket_s))
        data, timings = time_report(db, html, f"Benchmark: {samples:,} samples")
        runs.append(timings)
    began = time.perf_counter()
    export_report_json(data, report_json)
    json_s = time.perf_counter() - began

    best = min(runs, key=lambda r: r["report_s"])
    baseline_s, baseline_cpu_s, baseline_rows = min(baselines)
    html_bytes = html.stat().st_size
    result = {
        "benchmark": "fleet_report",
        "samples": samples, "workers": WORKERS, "span_s": span_s, "repeat": len(runs),
        "cpu_count": os.cpu_count(), "load_average_1m_before": load_before,
        "python": platform.python_version(), "duckdb": duckdb.__version__,
        "generate_s": round(generate_s, 3), "db_bytes": db.stat().st_size,
        "bucket_seconds": data["series"]["bucket_seconds"], "points_per_series": len(data["series"]["times"]),
        "baseline_query_s": round(baseline_s, 3), "baseline_query_cpu_s": round(baseline_cpu_s, 3),
        "baseline_rows": baseline_rows,
        **{key: round(value, 3) for key, value in best.items()},
        "report_s_all_runs": [round(r["report_s"], 3) for r in runs],
        "json_s": round(json_s, 3),
        "overhead_over_baseline_s": round(best["report_s"] - baseline_s, 3),
        "overhead_ratio": round(best["report_s"] / baseline_s, 2) if baseline_s else None,
        "html_bytes": html_bytes, "json_bytes": report_json.stat().st_size,
        "target_s": TARGET_S, "target_html_bytes": TARGET_HTML_BYTES,
        "within_target": best["report_s"] <= TARGET_S and html_bytes <= TARGET_HTML_BYTES,
    }
    if not args.keep:
        for path in (db, html, report_json):
            path.unlink(missing_ok=True)
        if not args.workdir:
            workdir.rmdir()
    else:
        result["workdir"] = str(workdir)
    print(json.dumps(result))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
