"""Tasks per second through the hardware-aware Dask path against plain Dask ``client.submit``.

Both sides run the same N short tasks (a trivial function, ``fleet_hwmon.cluster.remote.
noop_task``: no subprocess, so this measures dispatch, not process start-up) on the same
``LocalCluster`` (loopback, one thread per worker, no dashboard), in the same run, alternately:

- **hardware-aware**: ``ClusterCoordinator`` + ``CoordinatorHardwareMonitoringIntegration``
  (DuckDB in a temporary folder): each task is queued, scored by the patched
  ``find_best_worker_for_task`` (decision stored), submitted to the chosen worker with
  ``workers=[address], allow_other_workers=False``, its result collected and recorded
  (task monitoring start/stop, history). ``max_tasks_per_worker`` is N, so the coordinator's
  slot limit does not throttle it (Dask has none either).
- **plain Dask**: ``client.submit(noop_task, ..., pure=False)`` N times, then ``client.gather``.

Timing runs from the first submit until every result is in. Run:
``python benchmarks/bench_cluster_dispatch.py [--quick] [--tasks N] [--runs R] [--workers W]``.
The last line printed is JSON: ``{"aware_tasks_per_s", "dask_tasks_per_s", "ratio",
"target_ratio": 0.8, "within_target", "aware_cpu_ms_per_task", "dask_cpu_ms_per_task", ...}`` (medians
over the runs); the exit status is 0 when the target is met, else 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_RATIO = 0.8
SPEC = {"command": ["true"]}


def run_aware(coordinator, n: int, run: int) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        coordinator.submit_task({"task_id": f"r{run}-t{i}", "type": "noop", "priority": 0,
                                 "requirements": {"hardware": ["cpu"]}, "spec": SPEC})
    while not coordinator.all_done():
        time.sleep(0.002)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    counts = coordinator.counts()
    if counts["failed"]:
        raise RuntimeError(f"{counts['failed']} tasks failed on the hardware-aware path")
    return elapsed, cpu


def run_dask(client, n: int, run: int) -> tuple[float, float]:
    from fleet_hwmon.cluster.remote import noop_task

    start, cpu = time.perf_counter(), time.process_time()
    futures = [client.submit(noop_task, f"d{run}-t{i}", SPEC, 0.25, pure=False) for i in range(n)]
    results = client.gather(futures)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if not all(r["success"] for r in results):
        raise RuntimeError("a plain Dask task failed")
    return elapsed, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of each side (under a minute)")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("distributed").setLevel(logging.WARNING)

    from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
    from fleet_hwmon.cluster import ClusterCoordinator, HardwareMetricsPlugin
    from fleet_hwmon.cluster.remote import noop_task

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as folder:
        started = time.perf_counter()
        coordinator = ClusterCoordinator.local(
            args.workers, cluster_kwargs={"threads_per_worker": 1, "silence_logs": logging.WARNING},
            plugin=HardwareMetricsPlugin(1.0, "basic"), task_function=noop_task,
            max_tasks_per_worker=args.tasks, dispatch_interval_s=0.05)
        integration = CoordinatorHardwareMonitoringIntegration(
            coordinator, db_path=str(Path(folder) / "bench.duckdb"), update_interval_seconds=1.0,
            hardware_scoring_factors={"critical_percent": 100.0, "recovery_percent": 100.0})
        try:
            integration.initialize()
            coordinator.register_sample_callback(integration.update_worker_utilization)
            coordinator.start()
            if not coordinator.wait_for_workers(args.workers, timeout_s=60):
                raise RuntimeError("the workers did not join")
            setup_s = time.perf_counter() - started
            run_dask(coordinator.client, min(100, args.tasks), -1)  # warm both paths up
            run_aware(coordinator, min(100, args.tasks), -1)
            aware, dask = [], []
            for run in range(runs):
                dask.append(run_dask(coordinator.client, args.tasks, run))
                aware.append(run_aware(coordinator, args.tasks, run))
            stats = integration.scheduler_statistics()
        finally:
            coordinator.stop(timeout_s=10)
            integration.shutdown()
            coordinator.close()

    aware_rate = args.tasks / statistics.median(s for s, _ in aware)
    dask_rate = args.tasks / statistics.median(s for s, _ in dask)
    ratio = aware_rate / dask_rate
    result = {
        "aware_tasks_per_s": round(aware_rate, 1), "dask_tasks_per_s": round(dask_rate, 1),
        "ratio": round(ratio, 3), "target_ratio": TARGET_RATIO, "within_target": ratio >= TARGET_RATIO,
        "tasks": args.tasks, "runs": runs, "workers": args.workers,
        "aware_seconds": [round(s, 3) for s, _ in aware], "dask_seconds": [round(s, 3) for s, _ in dask],
        # CPU of this (the client / coordinator) process per task: what the path itself costs,
        # less sensitive than wall time to what else loads the machine
        "aware_cpu_ms_per_task": round(1000 * statistics.median(c for _, c in aware) / args.tasks, 3),
        "dask_cpu_ms_per_task": round(1000 * statistics.median(c for _, c in dask) / args.tasks, 3),
        "decisions": stats["decisions"], "tasks_per_worker": stats["tasks_per_worker"],
        "setup_s": round(setup_s, 2),
    }
    print(f"hardware-aware: {aware_rate:,.0f} tasks/s; plain Dask: {dask_rate:,.0f} tasks/s; ratio {ratio:.2f} "
          f"(target >= {TARGET_RATIO})")
    print(json.dumps(result))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
