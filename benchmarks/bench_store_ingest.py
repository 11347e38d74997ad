"""Ingest rate of the metrics store against one raw DuckDB bulk insert of the same rows.

Store path (timed): ``open_store(path).append_many("resource_utilization", samples)`` then
``flush()`` - the writer thread turns the records into Arrow batches and inserts them.
Raw path (timed): one ``INSERT INTO resource_utilization SELECT * FROM arrow_table`` of an Arrow
table built beforehand (untimed) from the same records, into a fresh file with the same schema.
The target ratio is measured against this one. For context a second raw figure also times the
records -> Arrow conversion (``to_arrow``), the work the store cannot skip when it is handed
Python records. All paths write real DuckDB files in a temporary folder, in the same run.

The samples look like a STANDARD sample of a worker (CPU, load, memory, swap, disk, network,
one task id); ``--gpus N`` adds N GPUs per sample.

Run: ``python benchmarks/bench_store_ingest.py [--quick] [--rows N] [--gpus N]``. The last line
printed is JSON: ``{"store_samples_per_s", "raw_samples_per_s", "ratio_to_raw",
"raw_with_conversion_samples_per_s", "ratio_to_raw_with_conversion", "targets":
{"samples_per_s": 100000, "ratio_to_raw": 0.5}, "within_target", "rows", ...}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from fleet_hwmon.sample import GpuUtilization, ResourceUtilization  # noqa: E402
from fleet_hwmon.store import close_store, open_store  # noqa: E402
from fleet_hwmon.store.schema import create_table_sql, to_arrow  # noqa: E402

TARGET_SAMPLES_PER_S = 100_000
TARGET_RATIO = 0.5
GIB = 1024**3


def make_samples(rows: int, gpus: int, seed: int = 7) -> list[ResourceUtilization]:
    rng = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    out = []
    for i in range(rows):
        gpu_list = tuple(GpuUtilization(g, f"GPU-{g:04d}", "NVIDIA GeForce RTX 4090", rng.uniform(0, 100),
                                        rng.randrange(24 * GIB), 24 * GIB, power_watts=rng.uniform(50, 450))
                         for g in range(gpus))
        out.append(ResourceUtilization(
            worker_id=f"worker-{i % 8}", timestamp=t0 + timedelta(milliseconds=i),
            cpu_percent=rng.uniform(0, 100), load_average_1m=rng.uniform(0, 8), load_average_5m=1.0,
            load_average_15m=0.5, cpu_count_effective=8.0, memory_used_bytes=rng.randrange(16 * GIB),
            memory_available_bytes=8 * GIB, memory_total_bytes=32 * GIB, memory_percent=rng.uniform(0, 100),
            swap_used_bytes=0, swap_percent=None, disk_usage_percent=61.5,
            disk_read_bytes_per_s=rng.uniform(0, 1e8), disk_write_bytes_per_s=rng.uniform(0, 1e8),
            net_sent_bytes_per_s=rng.uniform(0, 1e7), net_recv_bytes_per_s=rng.uniform(0, 1e7),
            gpus=gpu_list, task_ids=(f"task-{i // 100}",)))
    return out


def store_ingest(path: Path, samples: list[ResourceUtilization]) -> float:
    store = open_store(path, max_pending_rows=len(samples) + 1)
    try:
        store.ensure_table("resource_utilization", ResourceUtilization)
        gc.collect()
        start = time.perf_counter()
        accepted = store.append_many("resource_utilization", samples)
        store.flush()
        elapsed = time.perf_counter() - start
        assert accepted == len(samples), f"{len(samples) - accepted} rows dropped"
        assert store.query("SELECT count(*) FROM resource_utilization")[0][0] == len(samples)
    finally:
        close_store(store)
    return elapsed


def raw_ingest(path: Path, samples: list[ResourceUtilization], convert_in_timing: bool = False) -> float:
    """One bulk insert of an Arrow table of ``samples``; the table is built before the clock
    starts unless ``convert_in_timing`` (then the Python -> Arrow conversion is timed too)."""
    con = duckdb.connect(str(path))
    try:
        con.execute(create_table_sql("resource_utilization", ResourceUtilization))
        table = None if convert_in_timing else to_arrow(samples, ResourceUtilization)
        gc.collect()
        start = time.perf_counter()
        if table is None:
            table = to_arrow(samples, ResourceUtilization)
        con.register("arrow_rows", table)
        con.execute("INSERT INTO resource_utilization SELECT * FROM arrow_rows")
        elapsed = time.perf_counter() - start
        assert con.execute("SELECT count(*) FROM resource_utilization").fetchone()[0] == len(samples)
    finally:
        con.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="samples per run (default 500,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path; the best counts (default 3)")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs per sample (default 0, as on this host)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 2 repeats")
    args = parser.parse_args()
    rows, repeats = (100_000, 2) if args.quick else (args.rows, args.repeats)

    samples = make_samples(rows, args.gpus)
    store_s, raw_s, raw_convert_s = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder:
        for i in range(repeats):  # alternate, so every path sees the same machine load
            store_s.append(store_ingest(Path(folder) / f"store-{i}.duckdb", samples))
            raw_s.append(raw_ingest(Path(folder) / f"raw-{i}.duckdb", samples))
            raw_convert_s.append(raw_ingest(Path(folder) / f"raw-convert-{i}.duckdb", samples, True))
    store_rate = rows / min(store_s)
    raw_rate = rows / min(raw_s)
    raw_convert_rate = rows / min(raw_convert_s)
    ratio = store_rate / raw_rate
    result = {
        "store_samples_per_s": round(store_rate),
        "raw_samples_per_s": round(raw_rate),
        "ratio_to_raw": round(ratio, 3),
        "raw_with_conversion_samples_per_s": round(raw_convert_rate),
        "ratio_to_raw_with_conversion": round(store_rate / raw_convert_rate, 3),
        "store_best_s": round(min(store_s), 3),
        "raw_best_s": round(min(raw_s), 3),
        "targets": {"samples_per_s": TARGET_SAMPLES_PER_S, "ratio_to_raw": TARGET_RATIO},
        "within_target": store_rate >= TARGET_SAMPLES_PER_S and ratio >= TARGET_RATIO,
        "rows": rows,
        "gpus_per_sample": args.gpus,
        "repeats": repeats,
    }
    print(f"store: {store_rate:,.0f} samples/s; raw insert of a pre-built Arrow table: {raw_rate:,.0f} "
          f"samples/s; raw insert timing the records -> Arrow conversion too: {raw_convert_rate:,.0f} samples/s; "
          f"ratio to raw {ratio:.2f} (targets >= {TARGET_SAMPLES_PER_S:,} samples/s and >= {TARGET_RATIO}x raw; "
          f"{rows:,} rows, best of {repeats})")
    print(json.dumps(result))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
