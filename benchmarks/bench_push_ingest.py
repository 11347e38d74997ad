"""CPU cost of taking one pushed sample: ``update_worker_utilization`` of the integration, against
building the same record from its dict alone (``ResourceUtilization.from_dict``: the checks
every pushed value goes through, which the ingestion cannot skip), in the same run.

Workers push STANDARD-like samples (CPU, memory, network, one GPU, one mount, a running task)
dated by a clock 0.2 s ahead of the coordinator's, so each sample is mapped onto the
coordinator's clock on the way in. Pushes go through the whole path: clock mapping, the
worker's monitor (history, alerts, task usage, the store's queue) and the scheduler's view; the
database is a real DuckDB file (its writer thread runs beside, not timed: the figures are CPU
time of the pushing thread). It also counts the record copies (``evolve``) made per push.
Figures are medians of ``--repeats`` interleaved rounds.

Run: ``python benchmarks/bench_push_ingest.py [--quick] [--workers 200] [--samples 20] [--repeats 5]``
(``--quick``: 100 workers, 20 samples, 3 repeats).
The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration  # noqa: E402
from fleet_hwmon.coordinator.coordinator import Coordinator  # noqa: E402
from fleet_hwmon.sample import ResourceUtilization  # noqa: E402

GIB = 1024**3
WORKER_AHEAD_S = 0.2


def pushed(worker_id: str, at: datetime, step: int) -> dict:
    return {"worker_id": worker_id, "timestamp": at.isoformat(), "cpu_percent": float(step % 70),
            "memory_percent": 41.0, "memory_used_bytes": 6 * GIB + step, "memory_total_bytes": 16 * GIB,
            "net_recv_bytes_per_s": 1.0e5, "net_sent_bytes_per_s": 2.0e4, "task_ids": ["task-1"],
            "gpus": [{"index": 0, "uuid": f"GPU-{worker_id}", "name": "NVIDIA L4", "utilization_percent": 60.0,
                      "memory_used_bytes": 4 * GIB, "memory_total_bytes": 24 * GIB, "power_watts": 40.0}],
            "mounts": [{"mountpoint": "/data", "usage_percent": 30.0, "free_bytes": 70 * GIB,
                        "total_bytes": 100 * GIB}]}


class CountedCopies:
    """Counts ``ResourceUtilization.evolve`` calls while installed."""

    def __init__(self) -> None:
        self.copies = 0
        self._original = ResourceUtilization.evolve

    def __enter__(self) -> CountedCopies:
        original = self._original

        def evolve(record, **changes):
            self.copies += 1
            return original(record, **changes)

        ResourceUtilization.evolve = evolve
        return self

    def __exit__(self, *exc: object) -> None:
        ResourceUtilization.evolve = self._original


def cpu_per_call_us(calls: list, fn) -> float:
    start = time.thread_time()
    for args in calls:
        fn(*args)
    return (time.thread_time() - start) / len(calls) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--samples", type=int, default=20, help="samples per worker per round")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="100 workers, 20 samples, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.samples, args.repeats = 100, 20, 3
    ids = [f"worker-{i:04d}" for i in range(args.workers)]
    coordinator = Coordinator()
    for worker_id in ids:
        coordinator.register_worker(worker_id, {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 16}})
    now = [datetime.now(timezone.utc) - timedelta(hours=1)]
    ingest, build, copies = [], [], []
    with tempfile.TemporaryDirectory() as folder, CoordinatorHardwareMonitoringIntegration(
            coordinator, db_path=str(Path(folder) / "ingest.duckdb"), detect_capabilities=False,
            heartbeat_metrics_key=None, wall_clock=lambda: now[0]) as integration:
        for _ in range(args.repeats):
            rounds = []
            for step in range(args.samples):
                now[0] += timedelta(seconds=1)
                rounds += [(w, pushed(w, now[0] + timedelta(seconds=WORKER_AHEAD_S), step)) for w in ids]
            build.append(cpu_per_call_us([(data,) for _, data in rounds], ResourceUtilization.from_dict))
            with CountedCopies() as counted:
                ingest.append(cpu_per_call_us(rounds, integration.update_worker_utilization))
            copies.append(counted.copies / len(rounds))
        stored = integration.worker_monitors[ids[0]].status()["samples"]
    result = {
        "ingest_cpu_us_per_sample": round(statistics.median(ingest), 1),
        "from_dict_cpu_us_per_sample": round(statistics.median(build), 1),
        "ratio_to_from_dict": round(statistics.median(ingest) / statistics.median(build), 2),
        "copies_per_push": round(statistics.median(copies), 2),
        "workers": args.workers, "samples_per_round": args.workers * args.samples, "repeats": args.repeats,
        "samples_of_first_worker": stored,
    }
    print(f"one pushed sample: {result['ingest_cpu_us_per_sample']} µs CPU through update_worker_utilization, "
          f"{result['from_dict_cpu_us_per_sample']} µs to build the record alone "
          f"({result['ratio_to_from_dict']}x); {result['copies_per_push']} record copies per push")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
