"""Cost of one STANDARD sample against the bare psutil calls that read the same numbers.

The sample is ``Sampler(worker, build_host_sources(MonitoringLevel.STANDARD)).sample()`` (no GPU).
The baseline makes the same reads with nothing around them: ``cpu_times()``, ``getloadavg()``,
``virtual_memory()``, ``swap_memory()``, ``disk_usage('/')``, ``disk_io_counters(perdisk=True)``,
``net_io_counters(pernic=True)`` and one plain read of each cgroup limit file the sampler reads
(and of ``memory.stat``, for the working set).
The two are timed alternately in the same run, so both see the same machine load.

Run: ``python benchmarks/bench_sampling.py [--quick] [--runs N]``. The last line printed is
JSON: ``{"sample_median_us", "baseline_median_us", "ratio", "target_ratio": 1.5,
"within_target", "runs", ...}``. With ``--profile`` it also prints the top functions of the
sample path (cProfile) before the JSON line.
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from fleet_hwmon.levels import MonitoringLevel  # noqa: E402
from fleet_hwmon.sampling.cgroup import CgroupReader  # noqa: E402
from fleet_hwmon.sampling.sampler import Sampler, build_host_sources  # noqa: E402

TARGET_RATIO = 1.5


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="timed samples of each kind (default 2000)")
    parser.add_argument("--quick", action="store_true", help="500 runs")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the sample path")
    args = parser.parse_args()
    runs = 500 if args.quick else args.runs

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

    sample_median = statistics.median(sample_us)
    baseline_median = statistics.median(baseline_us)
    ratio = sample_median / baseline_median
    result = {
        "sample_median_us": round(sample_median, 1),
        "baseline_median_us": round(baseline_median, 1),
        "sample_p90_us": round(sorted(sample_us)[int(runs * 0.9)], 1),
        "baseline_p90_us": round(sorted(baseline_us)[int(runs * 0.9)], 1),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "within_target": ratio <= TARGET_RATIO,
        "runs": runs,
        "cgroup_version": reader.version,
        "cgroup_files": len(cgroup_files(reader)),
    }
    print(f"STANDARD sample: median {sample_median:.1f} us; bare psutil + cgroup reads: median "
          f"{baseline_median:.1f} us; ratio {ratio:.2f}x (target <= {TARGET_RATIO}x, {runs} runs each)")
    print(json.dumps(result))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
