"""Cost of one STANDARD sample against the bare psutil calls that read the same numbers.

Two measurements, each against its baseline in the same run:

- Back to back: ``Sampler(worker, build_host_sources(MonitoringLevel.STANDARD)).sample()`` (no
  GPU) against the same reads with nothing around them: ``cpu_times()``, ``getloadavg()``,
  ``virtual_memory()``, ``swap_memory()``, ``disk_usage('/')``, ``disk_io_counters(perdisk=True)``,
  ``net_io_counters(pernic=True)`` and one plain read of each cgroup limit file the sampler reads
  (and of ``memory.stat``, for the working set). Timed alternately, wall clock, medians.
- End to end, paced: a ``HardwareUtilizationMonitor`` sampling STANDARD every 0.05 s and storing
  every sample in a DuckDB file (its sampling thread, the store's writer thread and DuckDB's own
  threads), against the bare reads paced the same way by one thread, and against the same monitor
  without a database. The figure is the process's CPU time (user + system, all threads) per
  sample over a window after a warm-up second; the three run in turn, ``--paced-runs`` times,
  and the medians are compared, so all see the same machine load.

Run: ``python benchmarks/bench_sampling.py [--quick] [--runs N] [--paced-runs N] [--paced-s S]``.
The last line printed is JSON: ``{"sample_median_us", "baseline_median_us", "ratio",
"stored_cpu_us", "unstored_cpu_us", "paced_baseline_cpu_us", "stored_ratio", "target_ratio": 1.5,
"within_target", ...}`` (``within_target``: both ratios within the target). With ``--profile`` it
also prints the top functions of the sample path (cProfile) before the JSON line.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from fleet_hwmon.levels import MonitoringLevel  # noqa: E402
from fleet_hwmon.sampling.cgroup import CgroupReader  # noqa: E402
from fleet_hwmon.sampling.sampler import Sampler, build_host_sources  # noqa: E402
from hardware_utilization_monitor import HardwareUtilizationMonitor  # noqa: E402

TARGET_RATIO = 1.5
PACED_INTERVAL_S = 0.05
WARM_UP_S = 1.0


def cgroup_files(reader: CgroupReader) -> list[Path]:
    """The limit and usage files ``reader.read()`` opens on this host (resolved once, like the reader)."""
    version = reader.version
    names = {2: (("cpu", "cpu.max"), ("memory", "memory.max"), ("memory", "memory.current")),
             1: (("cpu", "cpu.cfs_quota_us"), ("cpu", "cpu.cfs_period_us"),
                 ("memory", "memory.limit_in_bytes"), ("memory", "memory.usage_in_bytes"))}.get(version, ())
    files = []
    for group, name in names:
        for directory in (reader._cpu_dirs if group == "cpu" else reader._memory_dirs):
            files.append(directory / name)
    if version in (1, 2) and reader._memory_dirs:  # inactive file pages, beside the usage (working set)
        files.append(reader._memory_dirs[0] / "memory.stat")
    return files


def baseline_reader(files: list[Path]):
    def read_all() -> None:
        psutil.cpu_times()
        psutil.getloadavg()
        psutil.virtual_memory()
        psutil.swap_memory()
        psutil.disk_usage("/")
        psutil.disk_io_counters(perdisk=True)
        psutil.net_io_counters(pernic=True)
        for path in files:
            try:
                with open(path, encoding="ascii") as handle:
                    handle.read()
            except OSError:
                pass

    return read_all


def timed_us(fn) -> float:
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / 1000.0


def paced_reads_cpu_us(read, seconds: float) -> float:
    """CPU per call of ``read`` run every ``PACED_INTERVAL_S`` by one thread, like a monitor's loop."""
    stop = threading.Event()
    calls = [0]
    window: list[tuple[float, int]] = []

    def loop() -> None:
        next_tick = time.monotonic()
        while not stop.is_set():
            read()
            calls[0] += 1
            next_tick += PACED_INTERVAL_S
            stop.wait(max(next_tick - time.monotonic(), PACED_INTERVAL_S / 2))

    thread = threading.Thread(target=loop, name="paced-reads")
    thread.start()
    time.sleep(WARM_UP_S)
    window.append((time.process_time(), calls[0]))
    time.sleep(seconds)
    window.append((time.process_time(), calls[0]))
    stop.set()
    thread.join()
    (cpu0, n0), (cpu1, n1) = window
    return (cpu1 - cpu0) / max(1, n1 - n0) * 1e6


def paced_monitor_cpu_us(seconds: float, folder: str | None) -> float:
    """CPU per sample of a STANDARD monitor sampling every ``PACED_INTERVAL_S``, storing each
    sample in a new DuckDB file in ``folder`` (``None``: no database)."""
    db_path = None if folder is None else str(Path(folder) / f"paced-{time.monotonic_ns()}.duckdb")
    monitor = HardwareUtilizationMonitor("bench", db_path=db_path, interval_seconds=PACED_INTERVAL_S,
                                         enable_gpu=False)
    monitor.start_monitoring()
    try:
        time.sleep(WARM_UP_S)
        cpu0, n0 = time.process_time(), monitor.status()["samples"]
        time.sleep(seconds)
        cpu1, n1 = time.process_time(), monitor.status()["samples"]
    finally:
        monitor.stop_monitoring()
    return (cpu1 - cpu0) / max(1, n1 - n0) * 1e6


def paced(read, runs: int, seconds: float) -> dict[str, float]:
    """Medians of the three paced arms, run in turn ``runs`` times."""
    arms: dict[str, list[float]] = {"baseline": [], "unstored": [], "stored": []}
    with tempfile.TemporaryDirectory(prefix="bench-sampling-") as folder:
        for _ in range(runs):
            arms["baseline"].append(paced_reads_cpu_us(read, seconds))
            arms["unstored"].append(paced_monitor_cpu_us(seconds, None))
            arms["stored"].append(paced_monitor_cpu_us(seconds, folder))
    return {arm: statistics.median(values) for arm, values in arms.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="timed samples of each kind (default 2000)")
    parser.add_argument("--quick", action="store_true", help="500 runs")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the sample path")
    parser.add_argument("--paced-runs", type=int, default=5, help="turns of the three paced arms (default 5)")
    parser.add_argument("--paced-s", type=float, default=10.0, help="measured seconds per paced arm (default 10)")
    args = parser.parse_args()
    runs = 500 if args.quick else args.runs
    paced_runs, paced_s = (2, 4.0) if args.quick else (args.paced_runs, args.paced_s)

    reader = CgroupReader()
    sampler = Sampler("bench", build_host_sources(MonitoringLevel.STANDARD, cgroup=reader))
    baseline = baseline_reader(cgroup_files(reader))
    for _ in range(50):  # warm up: file handles, psutil's caches, the interpreter's
        sampler.sample()
        baseline()

    gc.disable()
    try:
        sample_us, baseline_us = [], []
        for _ in range(runs):
            sample_us.append(timed_us(sampler.sample))
            baseline_us.append(timed_us(baseline))
    finally:
        gc.enable()

    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(min(runs, 500)):
            sampler.sample()
        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(15)
        print(text.getvalue())

    cpu = paced(baseline, paced_runs, paced_s)
    stored_ratio = cpu["stored"] / cpu["baseline"]

    sample_median = statistics.median(sample_us)
    baseline_median = statistics.median(baseline_us)
    ratio = sample_median / baseline_median
    result = {
        "sample_median_us": round(sample_median, 1),
        "baseline_median_us": round(baseline_median, 1),
        "sample_p90_us": round(sorted(sample_us)[int(runs * 0.9)], 1),
        "baseline_p90_us": round(sorted(baseline_us)[int(runs * 0.9)], 1),
        "ratio": round(ratio, 3),
        "stored_cpu_us": round(cpu["stored"], 1),
        "unstored_cpu_us": round(cpu["unstored"], 1),
        "paced_baseline_cpu_us": round(cpu["baseline"], 1),
        "stored_ratio": round(stored_ratio, 3),
        "unstored_ratio": round(cpu["unstored"] / cpu["baseline"], 3),
        "paced_interval_s": PACED_INTERVAL_S,
        "target_ratio": TARGET_RATIO,
        "within_target": ratio <= TARGET_RATIO and stored_ratio <= TARGET_RATIO,
        "runs": runs,
        "paced_runs": paced_runs,
        "paced_s": paced_s,
        "cgroup_version": reader.version,
        "cgroup_files": len(cgroup_files(reader)),
    }
    print(f"STANDARD sample: median {sample_median:.1f} us; bare psutil + cgroup reads: median "
          f"{baseline_median:.1f} us; ratio {ratio:.2f}x (target <= {TARGET_RATIO}x, {runs} runs each)")
    print(f"paced every {PACED_INTERVAL_S} s, CPU per sample: stored {cpu['stored']:.0f} us, not stored "
          f"{cpu['unstored']:.0f} us, bare reads {cpu['baseline']:.0f} us; stored {stored_ratio:.2f}x the bare "
          f"reads (target <= {TARGET_RATIO}x; medians of {paced_runs} turns of {paced_s:.0f} s)")
    print(json.dumps(result))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
