"""Memory of a fleet of push-only workers: 1,000 workers pushing one sample a second for an hour,
compressed in time (each sample is dated a second after the last; nothing sleeps).

Each worker's monitor keeps ``--history-s`` seconds of samples in memory (the integration's
``worker_history_s``, ten minutes by default); older samples belong to the database, which this
benchmark leaves out (``db_path=None``) so the figure is the in-memory history alone. The
baseline is the process's RSS once the monitors exist, in the same run; the figure is the RSS
above it after the hour, with the RSS every ten simulated minutes (flat once the window is
full). For context it prints the bytes one held sample costs and what an unbounded hour
(``history_size=3600`` per worker, the monitor's default without a window) would hold. The
samples are held as columns (``fleet_hwmon.sample_history``). The CPU figure cycles through
0-99 %, so each worker also raises three alert events every 100 s; the monitor keeps those in
memory too (up to 10,000 per worker), which is the slow rise after the window is full
(``alerts_held``).

Run: ``python benchmarks/bench_push_memory.py [--workers 1000] [--hours 1] [--history-s 600] [--quick]``.
The last line printed is JSON; the target is <= 200 MB above the baseline.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from fleet_hwmon.sample import ResourceUtilization  # noqa: E402
from hardware_utilization_monitor import HardwareUtilizationMonitor  # noqa: E402

TARGET_MB = 200.0
GIB = 1024**3


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 1e6


def pushed(worker_id: str, at: datetime, step: int) -> ResourceUtilization:
    """What a remote worker pushes each second: CPU, memory, network, its running task."""
    return ResourceUtilization(worker_id=worker_id, timestamp=at, cpu_percent=float(step % 100),
                               memory_percent=40.0 + step % 7, memory_used_bytes=6 * GIB + step,
                               memory_total_bytes=16 * GIB, net_recv_bytes_per_s=1e5 + step,
                               net_sent_bytes_per_s=2e4, task_ids=("task-1",))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours at 1 Hz (default 1)")
    parser.add_argument("--history-s", type=float, default=600.0, help="in-memory window per worker (default 600)")
    parser.add_argument("--quick", action="store_true", help="200 workers for 20 simulated minutes")
    args = parser.parse_args()
    workers, seconds = (200, 1200) if args.quick else (args.workers, int(args.hours * 3600))
    ids = [f"worker-{i:04d}" for i in range(workers)]
    monitors = [HardwareUtilizationMonitor(w, None, push_only=True, history_s=args.history_s).start_monitoring()
                for w in ids]
    baseline = rss_mb()
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    marks, start = [], time.perf_counter()
    for step in range(seconds):
        at = t0 + timedelta(seconds=step)
        for worker_id, monitor in zip(ids, monitors):
            monitor.record_sample(pushed(worker_id, at, step))
        if (step + 1) % 600 == 0:
            marks.append({"simulated_min": (step + 1) // 60, "rss_above_start_mb": round(rss_mb() - baseline, 1)})
    elapsed = time.perf_counter() - start
    above = rss_mb() - baseline
    held = sum(m.status()["samples_in_memory"] for m in monitors)
    alerts_held = sum(len(m.get_alerts()) for m in monitors)
    per_sample = above * 1e6 / held if held else None
    for monitor in monitors:
        monitor.stop_monitoring()
    result = {
        "rss_above_start_mb": round(above, 1), "baseline_rss_mb": round(baseline, 1), "marks": marks,
        "workers": workers, "simulated_s": seconds, "history_s": args.history_s, "samples_held": held,
        "alerts_held": alerts_held,
        "bytes_per_held_sample": None if per_sample is None else round(per_sample),
        "unbounded_hour_projection_mb": None if per_sample is None else round(per_sample * 3600 * workers / 1e6),
        "samples_pushed": seconds * workers, "push_rate_per_s": round(seconds * workers / elapsed),
        "target_mb": TARGET_MB, "within_target": above <= TARGET_MB,
    }
    print(f"{workers} push-only workers, {seconds / 3600:.2f} h at 1 Hz, {args.history_s:.0f} s kept in memory: "
          f"+{above:.1f} MB RSS above start ({held:,} samples held, ~{result['bytes_per_held_sample']} B each; "
          f"an unbounded hour would hold ~{result['unbounded_hour_projection_mb']} MB); target <= {TARGET_MB:.0f} MB")
    print(json.dumps(result))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
