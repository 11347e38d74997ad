"""Resident memory of a monitor fed one million samples through ``record_sample``.

The monitor keeps a bounded history (``history_size``, a ring buffer), bounded alert and task
lists, and running task sums, so its memory must stop growing once the ring is full. The run
feeds STANDARD-like samples (with one running task and an alert that fires and resolves every
1,000 samples) and reads ``psutil.Process().memory_info().rss`` after ``gc.collect()``:
before feeding (monitor built, ring empty), after the first ``history_size`` samples (ring full,
the baseline the target is measured from: same run, same process), every 50,000 samples, and at
the end. ``--db`` also writes every sample to a DuckDB file in a temporary folder (the target
is then 30 MB: DuckDB keeps the rows written since its last checkpoint, its table's metadata and
its allocator's pages); each reading then first waits until the store has written every sample
queued so far (``flush()``), baseline included, so that no reading lands inside a checkpoint,
whose transient buffers the JSON reports apart: ``rss_peak_mb`` is the process's highest RSS
over the run (the kernel's high-water mark, Linux only). The JSON also gives DuckDB's own
account (``duckdb_memory()``), the file size, the highest reading and the growth over the second
half of the run (flat after warm-up).

Run: ``python benchmarks/bench_monitor_memory.py [--quick] [--samples N] [--db]``. The last line
printed is JSON: ``{"rss_before_mb", "rss_ring_full_mb", "rss_after_mb", "growth_after_ring_full_mb",
"growth_second_half_mb", "rss_max_mb", "rss_peak_mb", "target_growth_mb", "within_target", "samples",
"samples_per_s", ...}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from hardware_utilization_monitor import HardwareUtilizationMonitor, ResourceUtilization  # noqa: E402

TARGET_GROWTH_MB = 10.0
TARGET_GROWTH_DB_MB = 30.0
TRACE_EVERY = 50_000
MB = 1024 * 1024


def rss_mb(monitor: HardwareUtilizationMonitor | None = None) -> float:
    """RSS after a collection; with a store, once its writer has written what is queued."""
    if monitor is not None and monitor._store is not None:
        monitor._store.flush(timeout_s=120)
    gc.collect()
    return psutil.Process().memory_info().rss / MB


def peak_rss_mb() -> float | None:
    """The process's highest RSS so far (``VmHWM``), or None where /proc does not give it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def make_sample(i: int, t0: datetime, task_ids: tuple[str, ...]) -> ResourceUtilization:
    cpu = 97.0 if i % 1000 < 5 else float(i % 60)  # crosses the default 90/95 % thresholds briefly
    return ResourceUtilization(
        worker_id="bench-worker", timestamp=t0 + timedelta(milliseconds=i), cpu_percent=cpu,
        load_average_1m=1.0, memory_used_bytes=8 * 1024**3 + i % 4096, memory_total_bytes=32 * 1024**3,
        memory_percent=25.0 + (i % 10), disk_usage_percent=61.5, net_recv_bytes_per_s=float(i % 1000),
        net_sent_bytes_per_s=10.0, task_ids=task_ids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000, help="samples to feed (default 1,000,000)")
    parser.add_argument("--history-size", type=int, default=3600, help="the monitor's ring (default 3600)")
    parser.add_argument("--db", action="store_true", help="also store every sample in a DuckDB file")
    parser.add_argument("--quick", action="store_true", help="200,000 samples")
    args = parser.parse_args()
    total = 200_000 if args.quick else args.samples

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        db_path = str(Path(folder) / "memory.duckdb") if args.db else None
        monitor = HardwareUtilizationMonitor("bench-worker", db_path=db_path, interval_seconds=3600, sources=[],
                                             history_size=args.history_size)
        monitor.start_monitoring()
        t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        before = rss_mb(monitor)
        ring_full = None
        trace: list[float] = []
        task = None
        start = time.perf_counter()
        for i in range(total):
            if i % 10_000 == 0:  # one task per 10,000 samples, so finished tasks accumulate too
                if task is not None:
                    monitor.stop_task_monitoring(task)
                task = f"task-{i // 10_000}"
                monitor.start_task_monitoring(task)
            monitor.record_sample(make_sample(i, t0, (task,)))
            if i + 1 == args.history_size:
                ring_full = rss_mb(monitor)
            if (i + 1) % TRACE_EVERY == 0:
                trace.append(rss_mb(monitor))
        elapsed = time.perf_counter() - start
        monitor.stop_task_monitoring(task)
        after = rss_mb(monitor)
        peak = peak_rss_mb()
        status = monitor.status()
        duckdb_mb = file_mb = None
        if db_path is not None:
            duckdb_mb = monitor._store.query("SELECT sum(memory_usage_bytes) FROM duckdb_memory()")[0][0] / MB
            file_mb = Path(db_path).stat().st_size / MB
        alerts = len(monitor.get_alerts())
        monitor.stop_monitoring()
        after_stop = rss_mb()

    ring_full = ring_full if ring_full is not None else before
    growth = after - ring_full
    target = TARGET_GROWTH_DB_MB if args.db else TARGET_GROWTH_MB
    half = trace[len(trace) // 2 - 1] if len(trace) >= 2 else ring_full
    result = {
        "rss_before_mb": round(before, 1),
        "rss_ring_full_mb": round(ring_full, 1),
        "rss_after_mb": round(after, 1),
        "rss_after_stop_mb": round(after_stop, 1),
        "growth_after_ring_full_mb": round(growth, 2),
        "growth_total_mb": round(after - before, 2),
        "growth_second_half_mb": round(after - half, 2),
        "rss_max_mb": round(max([after, ring_full, *trace]), 1),
        "rss_peak_mb": None if peak is None else round(peak, 1),
        "target_growth_mb": target,
        "within_target": growth <= target,
        "samples": total,
        "samples_per_s": round(total / elapsed),
        "history_size": args.history_size,
        "history_kept": len(monitor.get_historical_metrics()),
        "alert_events": alerts,
        "tasks_kept": len(monitor.get_task_history()),
        "db": bool(args.db),
        "db_written_rows": status["db_written_rows"],
        "db_dropped_rows": status["db_dropped_rows"],
        "duckdb_memory_mb": None if duckdb_mb is None else round(duckdb_mb, 1),
        "db_file_mb": None if file_mb is None else round(file_mb, 1),
    }
    print(f"RSS {before:.1f} MB before, {ring_full:.1f} MB with the ring full, {after:.1f} MB after "
          f"{total:,} samples: growth {growth:+.2f} MB after the ring filled, "
          f"{after - half:+.2f} MB over the second half, "
          f"highest reading {result['rss_max_mb']:.1f} MB, peak {result['rss_peak_mb']} MB (target <= {target:.0f} MB; "
          f"{result['samples_per_s']:,} samples/s through record_sample)")
    print(json.dumps(result))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
