"""The metrics endpoints as users start them: the demo's and the monitor CLI's ``--metrics-port``,
scraped over real HTTP on 127.0.0.1 while they run, each scrape checked against the rows the
same run wrote to DuckDB."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
Series = dict[tuple[str, frozenset], float]


def parse(text: str) -> Series:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape_while_running(command: list[str], timeout_s: float) -> tuple[list[Series], str]:
    """Start ``command``, read the metrics URL it prints first, scrape it every 0.1 s until the
    process ends; returns the scrapes and the rest of its output."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [process.stdout.readline()]
        while lines[-1] and not lines[-1].startswith("metrics:"):  # log lines may come first
            lines.append(process.stdout.readline())
        assert lines[-1].startswith("metrics:"), "".join(lines)
        url = lines[-1].split()[1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), url
        scrapes, deadline = [], time.monotonic() + timeout_s
        while process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    scrapes.append(parse(response.read().decode()))
            except (urllib.error.URLError, ConnectionError):
                pass  # the run is ending: its server stops before the process exits
            time.sleep(0.1)
        rest = process.communicate(timeout=timeout_s)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, rest
    return scrapes, rest


def rows(db: Path, sql: str) -> list[dict[str, Any]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r)) for r in cursor.fetchall()]
    finally:
        con.close()


def by_worker(series: Series, name: str) -> dict[str, float]:
    return {dict(labels)["worker_id"]: v for (n, labels), v in series.items() if n == name}


def check_samples_match_rows(scrapes: list[Series], db: Path) -> int:
    """Every worker's scraped figures are exactly those of one stored sample (found by its
    timestamp); a figure stored as NULL is absent. Returns how many (scrape, worker) pairs matched."""
    stored = {(r["worker_id"], round(r["timestamp"].timestamp(), 6)): r for r in rows(
        db, "SELECT worker_id, timestamp, cpu_percent, memory_used_bytes, memory_total_bytes, gpus "
            "FROM resource_utilization")}
    matched = 0
    for series in scrapes:
        cpu = by_worker(series, "fleet_hwmon_worker_cpu_utilization_ratio")
        used = by_worker(series, "fleet_hwmon_worker_memory_used_bytes")
        total = by_worker(series, "fleet_hwmon_worker_memory_total_bytes")
        for worker, stamp in by_worker(series, "fleet_hwmon_worker_last_sample_timestamp_seconds").items():
            row = stored[(worker, round(stamp, 6))]
            assert cpu.get(worker) == (None if row["cpu_percent"] is None else pytest.approx(row["cpu_percent"] / 100))
            assert used.get(worker) == row["memory_used_bytes"]
            assert total.get(worker) == row["memory_total_bytes"]
            gpus = {dict(labels)["gpu_uuid"]: v for (n, labels), v in series.items()
                    if n == "fleet_hwmon_gpu_memory_total_bytes" and dict(labels)["worker_id"] == worker}
            assert gpus == {g["uuid"]: g["memory_total_bytes"] for g in row["gpus"]
                            if g["memory_total_bytes"] is not None}
            names = {dict(labels)["gpu_uuid"]: dict(labels)["gpu_name"] for (n, labels), v in series.items()
                     if n == "fleet_hwmon_gpu_info" and dict(labels)["worker_id"] == worker and v == 1.0}
            assert names == {g["uuid"]: g["name"] for g in row["gpus"]}
            matched += 1
    return matched


def total(series: Series, name: str, **labels: str) -> float:
    return sum(v for (n, found), v in series.items()
               if n == name and all(dict(found).get(k) == want for k, want in labels.items()))


def test_demo_metrics_match_its_database(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    scrapes, out = scrape_while_running(
        [sys.executable, "run_coordinator_with_hardware_monitoring.py", "--num-workers", "2", "--num-tasks", "3",
         "--duration", "60", "--db-path", str(db), "--report", str(tmp_path / "r.html"), "--quiet",
         "--metrics-port", "0"], timeout_s=180)
    assert "3 tasks completed" in out, out
    assert scrapes, "no scrape succeeded while the demo ran"
    assert check_samples_match_rows(scrapes, db) > 0
    decisions = rows(db, "SELECT count(*) AS n FROM scheduling_decisions")[0]["n"]
    tasks = {(r["task_type"], "succeeded" if r["success"] else "failed"): r["n"] for r in rows(
        db, "SELECT task_type, success, count(*) AS n FROM task_resource_usage GROUP BY ALL")}
    written = rows(db, "SELECT count(*) AS n FROM resource_utilization")[0]["n"]
    previous: Series = {}
    for series in scrapes:  # counters never go down, and never pass what the run stored
        for (name, labels), value in series.items():
            if name.endswith("_total"):
                assert value >= previous.get((name, labels), 0), name
        assert total(series, "fleet_hwmon_scheduling_decisions_total") <= decisions
        for (task_type, status), count in tasks.items():
            assert total(series, "fleet_hwmon_tasks_finished_total", task_type=task_type, status=status) <= count
        assert set(by_worker(series, "fleet_hwmon_worker_stale")) <= {"worker-1-cpu-small", "worker-2-gpu-t4"}
        assert total(series, "fleet_hwmon_store_rows_written_total", table="resource_utilization") <= written
        previous = series
    last = scrapes[-1]
    assert total(last, "fleet_hwmon_scheduling_decisions_total") >= 1
    assert total(last, "fleet_hwmon_scheduling_decision_duration_seconds_count") == total(
        last, "fleet_hwmon_scheduling_decisions_total")
    gpu = {dict(labels)["gpu_uuid"]: v for (n, labels), v in last.items() if n == "fleet_hwmon_gpu_simulated"}
    assert gpu == {"GPU-simulated-worker-2-gpu-t4-0": 1.0}  # the demo's T4 is generated, and says so


def test_monitor_cli_metrics_match_its_database(tmp_path: Path) -> None:
    db = tmp_path / "monitor.duckdb"
    scrapes, _ = scrape_while_running(
        [sys.executable, "hardware_utilization_monitor.py", "--duration", "3", "--interval", "0.5",
         "--worker-id", "probe", "--db-path", str(db), "--quiet", "--metrics-port", "0"], timeout_s=60)
    assert scrapes
    assert check_samples_match_rows(scrapes, db) > 0
    assert all(set(by_worker(s, "fleet_hwmon_worker_memory_total_bytes")) <= {"probe"} for s in scrapes)
    assert all(not by_worker(s, "fleet_hwmon_worker_stale") for s in scrapes)  # no scheduler: no verdict
    assert all(total(s, "fleet_hwmon_scheduling_decisions_total") == 0 for s in scrapes)


def test_monitor_cli_stopped_by_sigterm_keeps_every_sample(tmp_path: Path) -> None:
    """SIGTERM (a service manager's stop) while the monitor CLI samples: it stops as Ctrl-C
    stops it, exit 143 (128 + SIGTERM, as the demo), and every sample it took is in DuckDB, the
    last one scraped included (killed where it stood, the samples still queued for the writer
    were lost)."""
    db = tmp_path / "monitor.duckdb"
    process = subprocess.Popen(
        [sys.executable, "hardware_utilization_monitor.py", "--duration", "600", "--interval", "0.2",
         "--worker-id", "probe", "--db-path", str(db), "--metrics-port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        while line and not line.startswith("metrics:"):  # log lines may come first
            line = process.stdout.readline()
        assert line.startswith("metrics:"), line
        url, stamps = line.split()[1], set()

        def three_samples(series: Series) -> bool:
            stamps.update(by_worker(series, "fleet_hwmon_worker_last_sample_timestamp_seconds").values())
            return len(stamps) >= 3

        wait_for_scrape(url, three_samples, 120, "three samples")
        process.send_signal(signal.SIGTERM)
        out = process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, out
    assert "terminated: sampling stopped early; every sample taken is kept" in out
    stored = rows(db, "SELECT timestamp FROM resource_utilization WHERE worker_id = 'probe'")
    assert f"worker probe: {len(stored)} samples in {db}" in out, out
    assert {round(stamp, 6) for stamp in stamps} <= {round(r["timestamp"].timestamp(), 6) for r in stored}


def scrape(url: str) -> Series:
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse(response.read().decode())


def wait_for_scrape(url: str, predicate, timeout_s: float, what: str) -> Series:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        series = scrape(url)
        if predicate(series):
            return series
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.mark.cluster
def test_cluster_coordinator_serves_its_dask_workers_and_their_staleness(db_path: str) -> None:
    pytest.importorskip("distributed")
    from fleet_hwmon.cluster.remote import pause_sampling, resume_sampling
    from tests.test_cluster import Fleet

    fleet = Fleet(db_path, n_workers=2, stale_after_intervals=6)  # 3 s without samples
    try:
        url = fleet.integration.start_metrics_server(0).url
        workers = sorted(fleet.coordinator.workers)  # Dask addresses
        series = wait_for_scrape(url, lambda s: set(by_worker(s, "fleet_hwmon_worker_memory_total_bytes")) ==
                                 set(workers), 30, "both Dask workers' samples")
        for worker in workers:  # each worker's figures are its own latest sample's
            latest = fleet.integration.get_worker_utilization(worker)
            assert by_worker(series, "fleet_hwmon_worker_memory_total_bytes")[worker] == latest.memory_total_bytes
        quiet, busy = workers
        fleet.client.run(pause_sampling, workers=[quiet])
        series = wait_for_scrape(url, lambda s: by_worker(s, "fleet_hwmon_worker_stale").get(quiet) == 1.0, 30,
                                 "the paused worker to turn stale")
        assert by_worker(series, "fleet_hwmon_worker_stale")[busy] == 0.0
        stamps = by_worker(series, "fleet_hwmon_worker_last_sample_timestamp_seconds")
        assert stamps[quiet] < stamps[busy]  # the paused worker's latest sample is the older one
        fleet.client.run(resume_sampling, workers=[quiet])
    finally:
        fleet.close()
