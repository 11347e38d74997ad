"""Scheduling speed: the hardware-aware ``find_best_worker_for_task`` against the original.

Run: ``python benchmarks/bench_find_best_worker.py [--quick] [--sizes 10,100,1000,10000]``.
For each fleet size the reference coordinator gets workers of mixed hardware (CPU-only, T4,
A100), each fed one sample (a few overloaded, a few with unknown CPU or MIG GPUs), and the
integration patches its scheduler. The timed loop asks the coordinator's own scheduler method
for tasks of mixed requirements (CPU, any GPU, CUDA >= 8), as the dispatch loop would; every
decision is recorded and appended to a temporary DuckDB file, as in production. Every 50
decisions each worker sends a fresh sample (untimed), as it would every update interval. The original,
unpatched method is timed on the same fleet in the same run.

The last line printed is JSON: ``{"sizes": [{"workers", "decisions", "patched_median_us",
"patched_p95_us", "patched_decisions_per_s", "patched_cpu_median_us", "original_median_us",
"original_p95_us", "original_decisions_per_s", "original_cpu_median_us", "alternatives_chosen"},
...], "target_median_us_at_1000": 1000, "within_target": bool}``. Times are wall-clock per
decision (``*_cpu_*``: CPU time of the deciding thread, which a busy machine disturbs less);
the target applies to the wall-clock median at 1,000 workers.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration  # noqa: E402
from fleet_hwmon.coordinator.coordinator import Coordinator  # noqa: E402
from fleet_hwmon.coordinator.scheduler import TaskScheduler  # noqa: E402
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization, utc_now  # noqa: E402

TARGET_US_AT_1000 = 1000.0
SAMPLES_EVERY = 50  # decisions between two rounds of worker samples (which clear in-flight load)
GIB = 1024**3
CAPABILITIES = [
    {"hardware": ["cpu"], "memory": {"total_gb": 16}, "cpu": {"cores_effective": 8}},
    {"hardware": ["cpu"], "memory": {"total_gb": 64}, "cpu": {"cores_effective": 32}},
    {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 32}, "cpu": {"cores_effective": 8},
     "gpu": {"name": "Tesla T4", "cuda_compute": 7.5, "memory_gb": 16}},
    {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 128}, "cpu": {"cores_effective": 16},
     "gpu": {"name": "NVIDIA A100-SXM4-80GB", "cuda_compute": 8.0, "memory_gb": 80}},
]
TASKS = [
    {"type": "unit", "requirements": {"hardware": ["cpu"]}},
    {"type": "integration", "requirements": {"hardware": ["cpu"], "min_memory_gb": 24}},
    {"type": "gpu-inference", "requirements": {"hardware": ["gpu"]}},
    {"type": "gpu-training", "requirements": {"hardware": ["gpu"], "min_cuda_compute": 8.0}},
]


def worker_sample(n: int, worker_id: str, capabilities: dict[str, Any]) -> ResourceUtilization:
    """Mixed, reproducible load: every 50th worker above critical, every 17th with unknown CPU,
    GPUs busy or idle, every 7th GPU under MIG (utilization unknown)."""
    cpu = 97.0 if n % 50 == 0 else None if n % 17 == 0 else float((n * 37) % 90)
    memory = float((n * 53) % 85)
    gpus: tuple[GpuUtilization, ...] = ()
    if "gpu" in capabilities["hardware"]:
        utilization = None if n % 7 == 0 else float((n * 29) % 95)
        gpus = (GpuUtilization(0, f"GPU-{worker_id}", capabilities["gpu"]["name"], utilization,
                               mig_enabled=utilization is None or None),)
    total = int(capabilities["memory"]["total_gb"] * GIB)
    return ResourceUtilization(worker_id=worker_id, timestamp=utc_now(), cpu_percent=cpu, memory_percent=memory,
                               cpu_count_effective=capabilities["cpu"]["cores_effective"], memory_total_bytes=total,
                               memory_available_bytes=int(total * (1 - memory / 100)), gpus=gpus)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def bench_size(size: int, decisions: int, folder: Path) -> dict[str, Any]:
    coordinator = Coordinator(max_tasks_per_worker=4, seed=0)
    for n in range(size):
        coordinator.register_worker(f"worker-{n:05d}", CAPABILITIES[n % len(CAPABILITIES)])
    integration = CoordinatorHardwareMonitoringIntegration(
        coordinator, db_path=str(folder / f"bench-{size}.duckdb"), update_interval_seconds=3600.0,
        detect_capabilities=False)
    integration.initialize()
    try:
        scheduler = coordinator.task_scheduler
        available = list(coordinator.workers)
        counts = {w: n % 3 for n, w in enumerate(available)}
        tasks = [{"task_id": f"task-{i:06d}", "priority": 1, **TASKS[i % len(TASKS)]} for i in range(decisions)]

        def push_samples() -> None:  # untimed: fresh samples, as every update interval brings
            for n, (worker_id, info) in enumerate(coordinator.workers.items()):
                integration.update_worker_utilization(worker_id, worker_sample(n, worker_id, info["capabilities"]))

        def timed(method) -> tuple[list[float], list[float], list[str | None]]:
            wall, cpu, chosen = [], [], []
            gc.collect()
            for i, task in enumerate(tasks):
                if i and i % SAMPLES_EVERY == 0:
                    push_samples()
                start, start_cpu = time.perf_counter(), time.thread_time()
                worker_id, _ = method(task, available, counts)
                cpu.append((time.thread_time() - start_cpu) * 1e6)
                wall.append((time.perf_counter() - start) * 1e6)
                chosen.append(worker_id)
            return wall, cpu, chosen

        push_samples()
        original_times, original_cpu, _ = timed(lambda *a: TaskScheduler.find_best_worker_for_task(scheduler, *a))
        patched_times, patched_cpu, chosen = timed(scheduler.find_best_worker_for_task)
        stats = integration.scheduler_statistics()
    finally:
        integration.shutdown()
    assert stats["decisions"] == decisions and None not in chosen
    return {
        "workers": size,
        "decisions": decisions,
        "patched_median_us": round(statistics.median(patched_times), 1),
        "patched_p95_us": round(percentile(patched_times, 0.95), 1),
        "patched_decisions_per_s": round(1e6 * len(patched_times) / sum(patched_times), 1),
        "patched_cpu_median_us": round(statistics.median(patched_cpu), 1),
        "original_median_us": round(statistics.median(original_times), 1),
        "original_p95_us": round(percentile(original_times, 0.95), 1),
        "original_decisions_per_s": round(1e6 * len(original_times) / sum(original_times), 1),
        "original_cpu_median_us": round(statistics.median(original_cpu), 1),
        "alternatives_chosen": stats["alternatives_chosen"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer decisions per size (under a minute)")
    parser.add_argument("--sizes", default="10,100,1000,10000", help="comma-separated fleet sizes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-find-best-worker-") as folder:
        for size in sizes:
            budget = 100_000 if args.quick else 1_000_000  # worker-decisions per size
            decisions = max(20, min(2000, budget // size))
            result = bench_size(size, decisions, Path(folder))
            results.append(result)
            print(f"{size:>6} workers: patched median {result['patched_median_us']:>8.1f} us "
                  f"(p95 {result['patched_p95_us']:.1f}, CPU {result['patched_cpu_median_us']:.1f}), "
                  f"original {result['original_median_us']:.1f} us; "
                  f"{result['patched_decisions_per_s']:.0f} decisions/s over {decisions}", flush=True)
    at_1000 = next((r for r in results if r["workers"] == 1000), None)
    summary = {"sizes": results, "target_median_us_at_1000": TARGET_US_AT_1000,
               "within_target": None if at_1000 is None else at_1000["patched_median_us"] <= TARGET_US_AT_1000}
    print(json.dumps(summary))
    return 0 if summary["within_target"] is not False else 1


if __name__ == "__main__":
    sys.exit(main())
