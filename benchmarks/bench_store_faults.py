"""Nothing lost under poisoned input: 1,000 push-only workers send samples through the
integration, 1 % of them poisoned (each kind of fault in turn), against the same run with none.

Kinds of poison: values out of their domain that the boundary repairs (an integer past 64 bits,
a percent above 100, NVML's "not available" sentinel, used memory above the total, a year-1
timestamp, a mount name with an undecodable byte), pushes the boundary refuses (an unknown key,
a value of the wrong type, an unregistered worker id), and a record past the boundary that
DuckDB cannot hold (a value set after construction, as a buggy component could), which the
writer isolates into ``rejected_rows``.

Every sample sent is accounted for: refused at the push (``ValueError``), stored (with or
without repaired values), rejected (kept in ``rejected_rows``) or dropped (counted). The figures
say how many of each, how many are uncounted (goal 0), whether every good sample was stored,
and the ingest rate of the poisoned run against the clean one (goal >= 0.8x), best of
``--repeats`` interleaved runs, each into a fresh DuckDB file.

Run: ``python benchmarks/bench_store_faults.py [--quick] [--workers 1000] [--samples 20] [--repeats 2]``
(``--quick``: 500 workers, 20 samples, 1 repeat).
The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration  # noqa: E402
from fleet_hwmon.coordinator.coordinator import Coordinator  # noqa: E402
from fleet_hwmon.sample import ResourceUtilization  # noqa: E402

GIB = 1024**3
POISON_SHARE = 0.01
TARGET_RATE_RATIO = 0.8
REPAIRED = ("oversized_int", "percent_above_100", "nvml_sentinel", "used_above_total", "year_1_timestamp",
            "undecodable_mount")
REFUSED = ("unknown_key", "wrong_type", "unregistered_worker")
UNSTORABLE = ("unstorable_record",)
KINDS = REPAIRED + REFUSED + UNSTORABLE


def good_sample(worker_id: str, at: datetime) -> dict:
    return {"worker_id": worker_id, "timestamp": at.isoformat(), "cpu_percent": 37.5, "memory_percent": 41.0,
            "memory_used_bytes": 6 * GIB, "memory_total_bytes": 16 * GIB, "net_recv_bytes_per_s": 1.0e5,
            "gpus": [{"index": 0, "uuid": f"GPU-{worker_id}", "name": "NVIDIA L4", "utilization_percent": 60.0,
                      "memory_used_bytes": 4 * GIB, "memory_total_bytes": 24 * GIB, "power_watts": 40.0}],
            "mounts": [{"mountpoint": "/data", "usage_percent": 30.0, "free_bytes": 70 * GIB,
                        "total_bytes": 100 * GIB}]}


def poisoned(kind: str, worker_id: str, at: datetime) -> tuple[str, object]:
    """``(worker id pushed as, the sample)`` carrying one fault of ``kind``."""
    data = good_sample(worker_id, at)
    if kind == "oversized_int":
        data["memory_used_bytes"] = 2**64
    elif kind == "percent_above_100":
        data["cpu_percent"] = 250.0
    elif kind == "nvml_sentinel":
        data["gpus"][0]["power_watts"] = (2**32 - 1) / 1000
    elif kind == "used_above_total":
        data["gpus"][0]["memory_used_bytes"] = 25 * GIB
    elif kind == "year_1_timestamp":
        data["timestamp"] = "0001-01-01T00:00:00+00:00"
    elif kind == "undecodable_mount":
        data["mounts"][0]["mountpoint"] = "/mnt/caf\udce9"
    elif kind == "unknown_key":
        data["cpu"] = data.pop("cpu_percent")
    elif kind == "wrong_type":
        data["cpu_percent"] = "37.5"
    elif kind == "unregistered_worker":
        data["worker_id"] = worker_id = "not-registered"
    elif kind == "unstorable_record":
        sample = ResourceUtilization.from_dict(data)
        object.__setattr__(sample, "swap_used_bytes", 2**63)  # past the boundary, as a buggy component could
        return worker_id, sample
    return worker_id, data


def run(path: Path, workers: int, samples: int, poison: bool) -> dict:
    coordinator = Coordinator()
    ids = [f"worker-{i:04d}" for i in range(workers)]
    for worker_id in ids:
        coordinator.register_worker(worker_id, {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 16}})
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=str(path), detect_capabilities=False,
                                                           update_interval_seconds=1.0)
    integration.initialize()
    t0 = datetime.now(timezone.utc) - timedelta(seconds=samples + 5)
    every = round(1 / POISON_SHARE)
    kinds = itertools.cycle(KINDS)
    sent, refused, poisoned_sent, by_kind = 0, 0, 0, {}
    start = time.perf_counter()
    for n, (step, worker_id) in enumerate(itertools.product(range(samples), ids)):
        at = t0 + timedelta(seconds=step)
        kind = next(kinds) if poison and n % every == every - 1 else None
        pushed_as, sample = poisoned(kind, worker_id, at) if kind else (worker_id, good_sample(worker_id, at))
        sent += 1
        poisoned_sent += kind is not None
        if kind:
            by_kind[kind] = by_kind.get(kind, 0) + 1
        try:
            integration.update_worker_utilization(pushed_as, sample)
        except ValueError:
            refused += 1
    integration._store.flush()
    elapsed = time.perf_counter() - start
    status = integration._store.status()
    integration.shutdown()
    with duckdb.connect(str(path)) as con:
        stored, repaired = con.execute("SELECT count(*), count(*) FILTER (len(invalid_fields) > 0) "
                                       "FROM resource_utilization").fetchone()
        kept = con.execute("SELECT count(*) FROM rejected_rows WHERE table_name = 'resource_utilization'").fetchone()[0]
    rejected = status["rejected_rows"].get("resource_utilization", {})
    dropped = status["dropped_rows"].get("resource_utilization", {})
    rejected_n, dropped_n = sum(rejected.values()), sum(dropped.values())
    return {
        "sent": sent, "poisoned": poisoned_sent, "poisoned_by_kind": by_kind, "refused_at_push": refused,
        "stored": stored, "stored_with_repaired_values": repaired, "rejected": rejected_n,
        "rejected_kept_in_table": kept, "rejected_by_reason": rejected, "dropped": dropped_n,
        "uncounted": sent - refused - stored - rejected_n - dropped_n,
        "good_sent": sent - poisoned_sent, "good_stored": stored - repaired,
        "seconds": elapsed, "samples_per_s": sent / elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20, help="samples per worker (default 20)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved clean/poisoned runs (default 2)")
    parser.add_argument("--quick", action="store_true", help="500 workers, 20 samples, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.samples, args.repeats = 500, 20, 1
    logging.basicConfig(level=logging.CRITICAL)  # one line per reason would be logged; the figures say it all
    clean, dirty = [], []
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as folder:
        for i in range(args.repeats):
            clean.append(run(Path(folder) / f"clean-{i}.duckdb", args.workers, args.samples, poison=False))
            dirty.append(run(Path(folder) / f"poisoned-{i}.duckdb", args.workers, args.samples, poison=True))
    best_clean = max(r["samples_per_s"] for r in clean)
    best_dirty = max(r["samples_per_s"] for r in dirty)
    last = dirty[-1]
    ratio = best_dirty / best_clean
    expected_repaired = sum(last["poisoned_by_kind"].get(k, 0) for k in REPAIRED)
    result = {
        **{k: v for k, v in last.items() if k not in ("seconds", "samples_per_s")},
        "expected_repaired": expected_repaired,
        "expected_refused": sum(last["poisoned_by_kind"].get(k, 0) for k in REFUSED),
        "expected_rejected": sum(last["poisoned_by_kind"].get(k, 0) for k in UNSTORABLE),
        "clean_samples_per_s": round(best_clean), "poisoned_samples_per_s": round(best_dirty),
        "rate_ratio": round(ratio, 3), "workers": args.workers, "samples_per_worker": args.samples,
        "repeats": args.repeats, "targets": {"uncounted": 0, "rate_ratio": TARGET_RATE_RATIO},
    }
    result["within_target"] = (last["uncounted"] == 0 and last["good_stored"] == last["good_sent"]
                               and last["rejected"] == result["expected_rejected"] == last["rejected_kept_in_table"]
                               and ratio >= TARGET_RATE_RATIO)
    print(f"{last['sent']:,} samples sent, {last['poisoned']:,} poisoned: {last['stored']:,} stored "
          f"({last['stored_with_repaired_values']:,} with repaired values), {last['refused_at_push']:,} refused at "
          f"the push, {last['rejected']:,} rejected into rejected_rows, {last['dropped']:,} dropped, "
          f"{last['uncounted']:,} uncounted; poisoned run at {ratio:.2f}x the clean run's ingest rate "
          f"({best_dirty:,.0f} vs {best_clean:,.0f} samples/s)")
    print(json.dumps(result))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
