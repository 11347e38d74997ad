"""Cost of the Prometheus endpoint: one scrape of a large fleet, and sampling with a scraper.

1. **One scrape** of a fleet of ``--workers`` workers (default 1,000) with ``--gpus`` GPUs each
   (default 4), every worker registered with the reference coordinator and fed one full sample
   through ``update_worker_utilization`` (some firing alerts; every GPU's health read, as the NVML
   sampler reads it), a few hundred decisions made. Timed: ``integration.metrics_snapshot()``; the
   collector building its families from it; and the whole scrape, an HTTP GET of ``/metrics`` on
   127.0.0.1 (snapshot, families, prometheus_client's text encoding, transfer), twice: plain, and
   with the headers Prometheus itself sends (``Accept`` preferring OpenMetrics,
   ``Accept-Encoding: gzip``; the endpoint answers in the text format, gzipped at level 1). The
   parts are timed apart too: prometheus_client's text encoding of the built families, and gzip.
   Baseline, same run: ``prometheus_client.generate_latest`` of a registry holding the same series
   as plain ``Gauge`` children, the hot-path design a collector replaces (its cost is the
   library's text encoding alone).
2. **Sampling with a scraper**: a monitor sampling this host (STANDARD, no GPU) through
   ``sample_now()`` in the same process, timed in alternating phases without and with a thread
   scraping the endpoint once a second. Both wall time and the sampling thread's CPU time per
   sample are reported: the scrape runs on another thread, so it can only show up in the wall
   time (the GIL), never in the sample's own work.

Run: ``python benchmarks/bench_metrics_scrape.py [--quick] [--workers 1000] [--gpus 4]``. The
last line is JSON: ``{"workers", "gpus", "series", "bytes", "gzip_bytes", "scrape_median_ms",
"scrape_p90_ms", "prometheus_scrape_median_ms", "snapshot_median_ms", "collect_median_ms",
"text_encode_cpu_median_ms" (prometheus_client's text encoding of already built families),
"gzip_cpu_median_ms" (level 1, as the endpoint compresses),
"baseline_encode_median_ms", "scrape_vs_baseline", the same with ``_cpu_`` (CPU time of the
process, all threads: the figure a loaded machine disturbs least), "target_scrape_ms": 50,
"sample_cpu_us_without", "sample_cpu_us_with", "sample_wall_us_without", "sample_wall_us_with",
"sample_cpu_ratio", "within_target"}``; ``within_target``: both scrapes' median <= 50 ms and the
sample's CPU time with the scraper within 10 % of without.
"""

from __future__ import annotations

import argparse
import collections
import functools
import gzip
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
import types
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry, Gauge, generate_latest  # noqa: E402

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration  # noqa: E402
from fleet_hwmon.coordinator.coordinator import Coordinator  # noqa: E402
from fleet_hwmon.metrics.collector import FleetCollector  # noqa: E402
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization, utc_now  # noqa: E402
from hardware_utilization_monitor import HardwareUtilizationMonitor, MonitoringLevel  # noqa: E402

TARGET_SCRAPE_MS = 50.0
TARGET_SAMPLE_RATIO = 1.10
GIB = 1024**3
# what Prometheus 2.42 sends (newer servers add text/plain;version=1.0.0 and escaping; the
# library answers both with OpenMetrics)
PROMETHEUS_HEADERS = {"Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                                "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                      "Accept-Encoding": "gzip"}


def fleet_sample(n: int, gpus: int) -> ResourceUtilization:
    """A full sample; every 25th worker above the CPU alert threshold."""
    return ResourceUtilization(
        f"worker-{n:05d}", utc_now(), cpu_percent=96.0 if n % 25 == 0 else 20.0 + n % 50, cpu_count_effective=32.0,
        memory_used_bytes=40 * GIB, memory_available_bytes=88 * GIB, memory_total_bytes=128 * GIB,
        memory_percent=31.25, disk_usage_percent=40.0, disk_read_bytes_per_s=1.5e6, disk_write_bytes_per_s=2.5e6,
        net_recv_bytes_per_s=1e5, net_sent_bytes_per_s=2e5,
        gpus=tuple(GpuUtilization(g, f"GPU-{n:05d}-{g}", "NVIDIA A100-SXM4-80GB", 30.0 + g, 10 * GIB, 80 * GIB,
                                  55.0 + g, 200.0 + g, health="ok") for g in range(gpus)))


def build_fleet(workers: int, gpus: int, db_path: str) -> CoordinatorHardwareMonitoringIntegration:
    coordinator = Coordinator(max_tasks_per_worker=4)
    capabilities = {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 128}, "cpu": {"cores_effective": 32},
                    "gpu": {"name": "NVIDIA A100-SXM4-80GB", "cuda_compute": 8.0, "memory_gb": 80}}
    for n in range(workers):
        coordinator.register_worker(f"worker-{n:05d}", dict(capabilities))
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, detect_capabilities=False)
    integration.initialize()
    for n in range(workers):
        integration.update_worker_utilization(f"worker-{n:05d}", fleet_sample(n, gpus))
    ids = list(coordinator.workers)
    for t in range(200):
        integration.decide_task({"task_id": f"t{t}", "type": "unit", "requirements": {"hardware": ["gpu"]}}, ids, {})
    return integration


def baseline_registry(text: bytes) -> CollectorRegistry:
    """The same series as plain Gauge children (values set once, as hot-path gauges would hold them)."""
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    for family in text_string_to_metric_families(text.decode()):
        if family.type != "gauge":
            continue
        labels = sorted({k for s in family.samples for k in s.labels})
        gauge = Gauge(family.name, family.documentation, labels, registry=registry)
        for s in family.samples:
            (gauge.labels(**{k: s.labels.get(k, "") for k in labels}) if labels else gauge).set(s.value)
    return registry


def timed_ms(fn) -> tuple[float, float]:
    """(wall ms, CPU ms of this process, every thread: the HTTP server's too)."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - start) * 1000.0, (time.process_time() - cpu) * 1000.0


def fetch(url: str, headers: dict[str, str] | None = None) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as response:
        return response.read()


def scrape_every_second(url: str, stop: threading.Event) -> None:
    while not stop.is_set():
        fetch(url)
        stop.wait(1.0)


def sampling_phases(url: str, phases: int, phase_s: float) -> dict[str, list[float]]:
    """Per-sample wall and CPU microseconds of a host monitor, alternately without and with a
    1 Hz scraper of ``url``."""
    monitor = HardwareUtilizationMonitor("bench-host", None, MonitoringLevel.STANDARD, enable_gpu=False)
    for _ in range(20):
        monitor.sample_now()
    out: dict[str, list[float]] = {"wall_without": [], "cpu_without": [], "wall_with": [], "cpu_with": []}
    for phase in range(2 * phases):
        scraping = phase % 2 == 1
        stop = threading.Event()
        scraper = None
        if scraping:
            scraper = threading.Thread(target=scrape_every_second, args=(url, stop), daemon=True)
            scraper.start()
        end = time.monotonic() + phase_s
        suffix = "with" if scraping else "without"
        while time.monotonic() < end:
            wall, cpu = time.perf_counter(), time.thread_time()
            monitor.sample_now()
            out[f"cpu_{suffix}"].append((time.thread_time() - cpu) * 1e6)
            out[f"wall_{suffix}"].append((time.perf_counter() - wall) * 1e6)
            time.sleep(0.01)
        stop.set()
        if scraper is not None:
            scraper.join()
    monitor.stop_monitoring()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--runs", type=int, default=15, help="timed scrapes (default 15)")
    parser.add_argument("--phases", type=int, default=3, help="sampling phases of each kind (default 3)")
    parser.add_argument("--phase-s", type=float, default=5.0, help="seconds per sampling phase (default 5)")
    parser.add_argument("--quick", action="store_true", help="7 scrapes, 2 phases of 3 s each")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.phases, args.phase_s = 7, 2, 3.0
    logging.disable(logging.WARNING)

    with tempfile.TemporaryDirectory() as folder:
        integration = build_fleet(args.workers, args.gpus, str(Path(folder) / "bench.duckdb"))
        try:
            server = integration.start_metrics_server(0)
            text = fetch(server.url)
            series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
            baseline = baseline_registry(text)
            collector = FleetCollector(integration.metrics_snapshot)
            gzipped = fetch(server.url, PROMETHEUS_HEADERS)
            timed: dict[str, list[tuple[float, float]]] = {
                "scrape": [], "prometheus_scrape": [], "snapshot": [], "collect": [], "text": [], "gzip": [],
                "encode": []}
            for _ in range(args.runs):  # interleaved, so all see the same machine load
                timed["scrape"].append(timed_ms(lambda: fetch(server.url)))
                timed["prometheus_scrape"].append(timed_ms(lambda: fetch(server.url, PROMETHEUS_HEADERS)))
                timed["snapshot"].append(timed_ms(integration.metrics_snapshot))
                # families consumed as the encoder does, one at a time
                timed["collect"].append(timed_ms(lambda: collections.deque(collector.collect(), maxlen=0)))
                built = types.SimpleNamespace(collect=list(collector.collect()).__iter__)  # untimed
                timed["text"].append(timed_ms(functools.partial(generate_latest, built)))
                del built  # not alive while the others are timed
                timed["gzip"].append(timed_ms(lambda: gzip.compress(text, compresslevel=1)))
                timed["encode"].append(timed_ms(lambda: generate_latest(baseline)))
            sampling = sampling_phases(server.url, args.phases, args.phase_s)
        finally:
            integration.shutdown()

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 2)

    wall = {name: [w for w, _ in values] for name, values in timed.items()}
    cpu = {name: [c for _, c in values] for name, values in timed.items()}
    cpu_ratio = statistics.median(sampling["cpu_with"]) / statistics.median(sampling["cpu_without"])
    scrape = wall["scrape"]
    result = {
        "workers": args.workers, "gpus": args.gpus, "series": series, "bytes": len(text),
        "gzip_bytes": len(gzipped),
        "scrape_median_ms": median(scrape), "scrape_p90_ms": round(sorted(scrape)[int(len(scrape) * 0.9)], 2),
        "scrape_cpu_median_ms": median(cpu["scrape"]),
        "prometheus_scrape_median_ms": median(wall["prometheus_scrape"]),
        "prometheus_scrape_cpu_median_ms": median(cpu["prometheus_scrape"]),
        "snapshot_median_ms": median(wall["snapshot"]), "snapshot_cpu_median_ms": median(cpu["snapshot"]),
        "collect_median_ms": median(wall["collect"]), "collect_cpu_median_ms": median(cpu["collect"]),
        "text_encode_cpu_median_ms": median(cpu["text"]), "gzip_cpu_median_ms": median(cpu["gzip"]),
        "baseline_encode_median_ms": median(wall["encode"]), "baseline_encode_cpu_median_ms": median(cpu["encode"]),
        "scrape_vs_baseline": round(statistics.median(scrape) / statistics.median(wall["encode"]), 2),
        "target_scrape_ms": TARGET_SCRAPE_MS,
        "sample_cpu_us_without": median(sampling["cpu_without"]), "sample_cpu_us_with": median(sampling["cpu_with"]),
        "sample_wall_us_without": median(sampling["wall_without"]),
        "sample_wall_us_with": median(sampling["wall_with"]),
        "sample_cpu_ratio": round(cpu_ratio, 3), "samples": len(sampling["cpu_without"]) + len(sampling["cpu_with"]),
    }
    result["within_target"] = (max(result["scrape_median_ms"], result["prometheus_scrape_median_ms"])
                               <= TARGET_SCRAPE_MS and cpu_ratio <= TARGET_SAMPLE_RATIO)
    print(f"{args.workers} workers x {args.gpus} GPUs, {series} series, {len(text)} bytes: one scrape "
          f"{result['scrape_median_ms']} ms wall, {result['scrape_cpu_median_ms']} ms CPU; with Prometheus's headers "
          f"(answered as text, gzipped) {result['prometheus_scrape_median_ms']} ms wall, "
          f"{result['prometheus_scrape_cpu_median_ms']} ms CPU. CPU parts: snapshot "
          f"{result['snapshot_cpu_median_ms']} ms, collector {result['collect_cpu_median_ms']} ms, text encoding "
          f"{result['text_encode_cpu_median_ms']} ms, "
          f"gzip {result['gzip_cpu_median_ms']} ms; the same series as plain Gauges encode in "
          f"{result['baseline_encode_cpu_median_ms']} ms CPU. One host sample: {result['sample_cpu_us_without']} us "
          f"CPU without a scraper, {result['sample_cpu_us_with']} us with one at 1 Hz (wall "
          f"{result['sample_wall_us_without']} / {result['sample_wall_us_with']} us)")
    print(json.dumps(result))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
