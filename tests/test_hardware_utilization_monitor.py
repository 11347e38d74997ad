"""The public monitor end to end: real psutil samples, a real DuckDB file, real subprocesses.

Values are checked against what the host reports (psutil, the cgroup files) or against the
samples the monitor keeps in memory; nothing here asserts how fast anything ran.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta, datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pytest

from fleet_hwmon.sampling.cgroup import CgroupReader, effective_memory
from fleet_hwmon.sampling.sampler import build_host_sources
from hardware_utilization_monitor import (
    AlertSeverity,
    AlertState,
    HardwareAlert,
    HardwareUtilizationMonitor,
    MonitoringLevel,
    ResourceUtilization,
    main,
)

INTERVAL_S = 0.05
ROOT = Path(__file__).resolve().parents[1]


# -- shared helpers ---------------------------------------------------------------------------
def wait_until(predicate, timeout_s: float = 10.0, step_s: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds; returns its last value (the caller asserts on it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())


def host_memory_total_bytes() -> int:
    """What the monitor should report as total memory here: the cgroup limit when one binds,
    else psutil's figure (the same rule as ``effective_memory``)."""
    vm = psutil.virtual_memory()
    return effective_memory(vm.total, vm.available, CgroupReader().read())[0]


def strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def sample(worker_id: str, ts: float, **fields: Any) -> ResourceUtilization:
    return ResourceUtilization(worker_id=worker_id, timestamp=datetime.fromtimestamp(ts, tz=timezone.utc),
                               **fields)


class ThreadRecorder:
    """A metric source that reads nothing and remembers which threads sampled it."""

    name = "thread_recorder"

    def __init__(self) -> None:
        self.threads: set[int] = set()

    def read(self, now_s: float) -> dict[str, Any]:
        self.threads.add(threading.get_ident())
        return {}


def start_cpu_burner(seconds: float) -> subprocess.Popen:
    """A child process that keeps one core busy for ``seconds``; returns once it is burning."""
    code = ("import sys, time\nprint('burning', flush=True)\nend = time.monotonic() + float(sys.argv[1])\n"
            "while time.monotonic() < end:\n    pass\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "burning"
    return proc


def db_rows(path: str, sql: str) -> list[dict[str, Any]]:
    """Rows of ``sql`` read through a fresh connection of this test (not the store's)."""
    with duckdb.connect(path) as con:
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


class _Cells(HTMLParser):
    """Text of every table row of an HTML page, as lists of cell strings."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse_html(path: Path) -> _Cells:
    parser = _Cells()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


class TestHardwareUtilizationMonitor:
    def test_basic_monitoring(self, db_path):
        monitor = HardwareUtilizationMonitor("worker-basic", db_path=db_path, interval_seconds=INTERVAL_S,
                                             enable_gpu=False)
        with monitor:
            assert monitor.is_running
            assert wait_until(lambda: len(monitor.get_historical_metrics()) >= 6)
        assert not monitor.is_running
        samples = monitor.get_historical_metrics()
        assert monitor.status()["samples"] == len(samples) >= 6
        expected_total = host_memory_total_bytes()
        logical_cpus = psutil.cpu_count()
        for s in samples:
            assert s.worker_id == "worker-basic"
            assert s.timestamp.utcoffset().total_seconds() == 0
            assert s.memory_total_bytes == expected_total
            assert 0 <= s.memory_used_bytes <= expected_total
            assert s.memory_percent == pytest.approx(100.0 * s.memory_used_bytes / expected_total)
            assert 0 < s.cpu_count_effective <= logical_cpus
            assert 0 <= s.disk_usage_percent <= 100
            assert s.cpu_temperature_celsius is None  # STANDARD does not read sensors
            assert s.gpus == ()
        stamps = [s.timestamp for s in samples]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        # CPU is unknown only while warming up (until 0.1 s of reference), then always real
        warm = [s.timestamp >= samples[0].timestamp + timedelta(seconds=0.1) for s in samples]
        for s, is_warm in zip(samples, warm):
            assert (s.cpu_percent is None and not is_warm) or 0.0 <= s.cpu_percent <= 100.0
        assert all(s.cpu_percent is not None for s, is_warm in zip(samples, warm) if is_warm)
        assert monitor.get_current_metrics() == samples[-1]
        assert monitor.status()["source_errors"] == {"cpu": 0, "load": 0, "memory": 0, "disk": 0, "network": 0}

    def test_interval_must_be_positive(self):
        for bad in (0, -1.0, "fast"):
            with pytest.raises(ValueError, match="interval_seconds"):
                HardwareUtilizationMonitor("w", interval_seconds=bad, enable_gpu=False)
        with pytest.raises(ValueError, match="unknown monitoring level"):
            HardwareUtilizationMonitor("w", monitoring_level="extreme", enable_gpu=False)

    def test_stop_is_idempotent_and_restart_works(self, db_path):
        monitor = HardwareUtilizationMonitor("worker-restart", db_path=db_path, interval_seconds=INTERVAL_S,
                                             enable_gpu=False)
        monitor.stop_monitoring()  # never started: nothing to do
        monitor.start_monitoring()
        assert monitor.start_monitoring() is monitor  # idempotent
        assert wait_until(lambda: monitor.status()["samples"] >= 2)
        monitor.stop_monitoring()
        monitor.stop_monitoring()
        first_run = monitor.status()["samples"]
        monitor.start_monitoring()
        assert wait_until(lambda: monitor.status()["samples"] >= first_run + 2)
        monitor.stop_monitoring()
        count = db_rows(db_path, "SELECT count(*) AS n FROM resource_utilization")[0]["n"]
        assert count == monitor.status()["samples"]

    def test_task_monitoring(self):
        monitor = HardwareUtilizationMonitor("worker-tasks", interval_seconds=0.2, enable_gpu=False)
        with monitor:
            monitor.start_task_monitoring("long-task", task_type="suite")
            with pytest.raises(ValueError, match="already being monitored"):
                monitor.start_task_monitoring("long-task")

            # a task shorter than the interval: its own start and stop samples give it values
            before_short_s = time.monotonic()
            monitor.start_task_monitoring("short-task")
            time.sleep(0.1)
            short = monitor.stop_task_monitoring("short-task", success=True)
            short_outer_s = time.monotonic() - before_short_s
            running = monitor.get_task_metrics("long-task")
            assert running.end_time is None and running.duration_s is None

            # an idle baseline, then a task during which a child process burns one core
            monitor.start_task_monitoring("idle-task")
            time.sleep(0.8)
            idle = monitor.stop_task_monitoring("idle-task")
            burner = start_cpu_burner(10.0)
            try:
                monitor.start_task_monitoring("burn-task")
                time.sleep(0.8)
                burn = monitor.stop_task_monitoring("burn-task", success=False, error="boom")
            finally:
                burner.kill()
                burner.wait()
            long = monitor.stop_task_monitoring("long-task")
        with pytest.raises(KeyError):
            monitor.stop_task_monitoring("long-task")

        history = monitor.get_historical_metrics()

        def of(task_id: str) -> list[ResourceUtilization]:
            return [s for s in history if task_id in s.task_ids]

        # at least the sleep, at most the time around the two calls (a loaded host stretches both)
        assert 0.1 <= short.duration_s <= short_outer_s
        # samples tagged with the task; a loop tick read just before the task was registered
        # and recorded just after it may be counted too (it is the worker's state at the start)
        tagged = of("short-task")
        assert len(tagged) >= 2 and short.sample_count in (len(tagged), len(tagged) + 1)
        short_cpu = [s.cpu_percent for s in tagged if s.cpu_percent is not None]
        assert short_cpu, "a task of 0.1 s at a 0.2 s interval got no CPU reading"
        assert 0.0 <= max(short_cpu) <= short.peak_cpu_percent <= 100.0
        assert 0.0 < short.peak_memory_percent <= 100.0
        assert short.peak_memory_used_bytes >= max(s.memory_used_bytes for s in tagged)
        assert short.success is True and short.worker_id == "worker-tasks"

        # Peak and mean come from the task's own samples (how much the burner adds to the host
        # depends on what else runs here, so no level is asserted). The accumulator may also hold
        # the one tick recorded just after the start (see above), hence the bounds.
        for usage in (idle, burn):
            cpu = [s.cpu_percent for s in of(usage.task_id) if s.cpu_percent is not None]
            assert cpu and max(cpu) <= usage.peak_cpu_percent <= 100.0, usage.task_id
            if usage.sample_count == len(of(usage.task_id)):
                assert usage.peak_cpu_percent == max(cpu)
                assert usage.mean_cpu_percent == pytest.approx(sum(cpu) / len(cpu))
        assert (burn.success, burn.error) == (False, "boom")
        assert long.task_type == "suite"
        assert len(of("long-task")) <= long.sample_count <= len(of("long-task")) + 1
        assert long.sample_count > burn.sample_count + idle.sample_count
        assert long.peak_cpu_percent >= burn.peak_cpu_percent
        assert long.start_time < short.start_time < short.end_time < burn.start_time < long.end_time
        assert [t.task_id for t in monitor.get_task_history()] == ["short-task", "idle-task", "burn-task",
                                                                   "long-task"]
        assert monitor.get_task_metrics("nope") is None

    def test_alert_generation(self, caplog):
        recorder = ThreadRecorder()
        sources = build_host_sources(MonitoringLevel.STANDARD) + [recorder]
        monitor = HardwareUtilizationMonitor(
            "worker-alerts", interval_seconds=INTERVAL_S, sources=sources,
            alert_thresholds={"memory": {"warning": 0.5, "critical": 100.0}})
        delivered: list[tuple[HardwareAlert, int]] = []

        def failing(alert: HardwareAlert) -> None:
            raise RuntimeError("webhook down")

        def recording(alert: HardwareAlert) -> None:
            delivered.append((alert, threading.get_ident()))

        monitor.register_alert_callback(failing)
        monitor.register_alert_callback(recording)
        with caplog.at_level(logging.ERROR, logger="fleet_hwmon.alerts.dispatch"):
            with monitor:
                assert wait_until(lambda: monitor.status()["samples"] >= 8)
                monitor.wait_for_alert_delivery()
                failures = monitor.status()["alert_callback_failures"]

        memory_alerts = monitor.get_alerts(resource="memory")
        assert len(memory_alerts) == 1, "a value that stays over the threshold fires once"
        alert = memory_alerts[0]
        assert (alert.severity, alert.state, alert.threshold) == (AlertSeverity.WARNING, AlertState.FIRING, 0.5)
        assert alert.value == next(s.memory_percent for s in monitor.get_historical_metrics()
                                   if s.timestamp == alert.timestamp)
        assert monitor.get_alerts(resource="memory", active_only=True) == [alert]
        memory_delivered = [a for a, _ in delivered if a.resource == "memory"]
        assert memory_delivered == [alert]
        sampler_threads = recorder.threads
        assert sampler_threads and not sampler_threads & {ident for _, ident in delivered}
        assert threading.get_ident() not in {ident for _, ident in delivered}
        assert failures == len(delivered)  # the failing callback ran for every event
        failing_logs = [r for r in caplog.records if "alert callback" in r.getMessage()
                        and "webhook down" in r.getMessage()]
        assert len(failing_logs) == 1, "a callback failing on every event is logged once"

    def test_alert_escalation_and_resolution_through_record_sample(self):
        monitor = HardwareUtilizationMonitor("worker-fed", interval_seconds=3600, sources=[],  # fed samples only
                                             alert_thresholds={"cpu": (80, 90)}, alert_margin_percent=5.0)
        delivered: list[HardwareAlert] = []
        monitor.register_alert_callback(delivered.append)
        cpu_values = [50.0, 85.0, 86.0, 92.0, 95.0, 79.0, 75.0, 74.9, 40.0, 81.0]
        with monitor:
            events = [monitor.record_sample(sample("worker-fed", 1_700_000_000 + i, cpu_percent=v))
                      for i, v in enumerate(cpu_values)]
            monitor.wait_for_alert_delivery()
        cpu_events = [[(e.severity, e.state, e.value) for e in batch if e.resource == "cpu"] for batch in events]
        assert cpu_events == [
            [],
            [(AlertSeverity.WARNING, AlertState.FIRING, 85.0)],
            [],  # still over: no repeat
            [(AlertSeverity.CRITICAL, AlertState.FIRING, 92.0)],  # escalates once
            [],
            [],  # 79 is under the warning line but not by the 5-point margin
            [],  # 75 is exactly on the margin: still firing
            [(AlertSeverity.CRITICAL, AlertState.RESOLVED, 74.9)],
            [],
            [(AlertSeverity.WARNING, AlertState.FIRING, 81.0)],  # a new episode
        ]
        cpu_delivered = [a for a in delivered if a.resource == "cpu"]
        assert cpu_delivered == [e for batch in events for e in batch if e.resource == "cpu"]
        assert cpu_delivered[1].threshold == 90.0 and cpu_delivered[2].threshold == 90.0
        assert [a.severity for a in monitor.get_alerts(resource="cpu", active_only=True)] == [AlertSeverity.WARNING]
        assert len(monitor.get_alerts(severity="critical")) == 2
        assert monitor.unregister_alert_callback(delivered.append) is True
        assert monitor.unregister_alert_callback(delivered.append) is False

    def test_alert_thresholds_assigned_later_apply_from_the_next_sample(self, db_path):
        monitor = HardwareUtilizationMonitor("late", interval_seconds=3600, sources=[], alert_thresholds={"cpu": 85})
        with monitor:
            assert monitor.alert_thresholds["cpu"] == {"warning": 85.0, "critical": 95.0}
            assert monitor.record_sample(sample("late", 1_700_000_000, cpu_percent=80.0)) == []
            monitor.alert_thresholds = {"cpu_percent": "70", "memory": (50, 60)}
            assert monitor.alert_thresholds["cpu"] == {"warning": 70.0, "critical": 95.0}
            with pytest.raises(ValueError, match="alert threshold 'gpu': 'hot' is not a percent"):
                monitor.alert_thresholds = {"gpu": "hot"}
            assert monitor.alert_thresholds["memory"] == {"warning": 50.0, "critical": 60.0}  # unchanged
            (event,) = monitor.record_sample(sample("late", 1_700_000_001, cpu_percent=80.0))
        assert (event.resource_type, event.severity, event.threshold) == ("cpu", "warning", 70.0)
        assert monitor.get_alerts(resource_type="cpu", severity="WARNING") == [event]
        assert monitor.get_alerts(resource_type="memory") == []

    def test_task_monitoring_on_a_monitor_never_started_is_stored(self, db_path, caplog):
        monitor = HardwareUtilizationMonitor("cold", db_path=db_path, interval_seconds=3600, sources=[])
        with caplog.at_level(logging.INFO, logger="fleet_hwmon.monitor"):
            monitor.start_task_monitoring("t-cold", "unit")
        assert "monitor of cold not started: its database is open for task t-cold" in caplog.text
        usage = monitor.stop_task_monitoring("t-cold")
        monitor.stop_monitoring()
        con = duckdb.connect(db_path, read_only=True)
        try:
            assert con.execute("SELECT task_id, sample_count FROM task_resource_usage").fetchall() == [
                ("t-cold", usage.sample_count)]
            assert con.execute("SELECT count(*) FROM resource_utilization WHERE worker_id = 'cold'").fetchone() == (2,)
        finally:
            con.close()

    def test_naive_datetimes_are_read_as_utc(self, db_path):
        monitor = HardwareUtilizationMonitor("naive", db_path=db_path, interval_seconds=3600, sources=[],
                                             alert_thresholds={"cpu": (50, 90)})
        with monitor:
            for i, cpu in enumerate((10.0, 60.0, 20.0)):
                monitor.record_sample(sample("naive", 1_700_000_000 + 60 * i, cpu_percent=cpu))
            naive = datetime(2023, 11, 14, 22, 14, 20)  # 1_700_000_060 in UTC, no tzinfo
            later = datetime(2023, 11, 14, 22, 16)  # after the three, before the sampler's own samples
            assert [s.cpu_percent for s in monitor.get_historical_metrics(start_time=naive, end_time=later)] == [
                60.0, 20.0]
            assert [s.cpu_percent for s in monitor.get_historical_metrics(end_time=naive)] == [10.0, 60.0]
            assert [(a.state, a.value) for a in monitor.get_alerts(start_time=naive)] == [
                ("firing", 60.0), ("resolved", 20.0)]
            third = datetime(2023, 11, 14, 22, 15, 20)  # the third sample's time
            assert [(a.state, a.value) for a in monitor.get_alerts(start_time=third)] == [("resolved", 20.0)]
            monitor._store.flush()
            assert [r["cpu_percent"] for r in monitor.get_metrics_from_db(start=naive, end=later)] == [60.0, 20.0]

    def test_database_integration(self, db_path):
        monitor = HardwareUtilizationMonitor("worker-db", db_path=db_path, interval_seconds=INTERVAL_S,
                                             enable_gpu=False, alert_thresholds={"memory": (0.5, 100.0)})
        with monitor:
            monitor.start_task_monitoring("db-task")
            assert wait_until(lambda: monitor.status()["samples"] >= 6)
            monitor.stop_task_monitoring("db-task", success=True)
            from_store = monitor.get_metrics_from_db()
            buckets = monitor.get_metrics_from_db(bucket_seconds=3600)
        samples = monitor.get_historical_metrics()
        assert len(from_store) <= len(samples)

        rows = db_rows(db_path, "SELECT * FROM resource_utilization ORDER BY timestamp")
        assert len(rows) == len(samples)
        for s, row in zip(samples, rows):
            expected = s.to_dict()
            assert row["timestamp"] == s.timestamp
            for name, value in expected.items():
                if name != "timestamp":
                    assert row[name] == value, name
        assert all(r["cpu_temperature_celsius"] is None for r in rows)  # not read at STANDARD: NULL
        assert all(r["gpus"] == [] for r in rows)
        swap_total = psutil.swap_memory().total
        assert all((r["swap_percent"] is None) == (swap_total == 0) for r in rows)
        # Sampling went on between the two reads: the buckets saw the first n rows, n at least
        # what the earlier read saw.
        n = sum(b["samples"] for b in buckets)
        assert len(from_store) <= n <= len(rows)
        assert max(b["cpu_percent_max"] for b in buckets) == max(r["cpu_percent"] for r in rows[:n]
                                                                 if r["cpu_percent"] is not None)

        types = {r["column_name"]: r["data_type"] for r in db_rows(
            db_path, "SELECT column_name, data_type FROM information_schema.columns "
                     "WHERE table_name = 'resource_utilization'")}
        assert types["timestamp"] == "TIMESTAMP WITH TIME ZONE"
        assert types["memory_total_bytes"] == "BIGINT" and types["cpu_percent"] == "DOUBLE"

        (task,) = monitor.get_task_history()
        (task_row,) = db_rows(db_path, "SELECT * FROM task_resource_usage")
        for name, value in task.to_dict().items():
            if name in ("start_time", "end_time"):
                assert task_row[name] == getattr(task, name)
            else:
                assert task_row[name] == value, name
        assert task_row["process_cpu_seconds"] is None  # not measured: NULL, not 0

        alerts = monitor.get_alerts()
        alert_rows = db_rows(db_path, "SELECT * FROM hardware_alerts ORDER BY timestamp")
        assert len(alert_rows) == len(alerts) >= 1
        for alert, row in zip(alerts, alert_rows):
            for name, value in alert.to_dict().items():
                if name == "timestamp":
                    assert row[name] == alert.timestamp
                else:
                    assert row[name] == value, name
        assert db_rows(db_path, "SELECT version FROM schema_meta") == [{"version": 1}]

    def test_report_generation(self, db_path, tmp_path):
        monitor = HardwareUtilizationMonitor("worker-report", db_path=db_path, interval_seconds=3600,
                                             sources=[], alert_thresholds={"cpu": (50, 90)})
        with monitor:
            assert wait_until(lambda: monitor.status()["samples"] == 1)  # the loop's own (empty) sample
            monitor.start_task_monitoring("task-<1>")  # its start and stop samples read nothing
            for cpu, memory in ((10.0, 30.0), (20.0, 40.0)):
                monitor.record_sample(sample("worker-report", time.time(), cpu_percent=cpu, memory_percent=memory,
                                             task_ids=("task-<1>",)))
            monitor.stop_task_monitoring("task-<1>", success=False, error="AssertionError: x < y")
            monitor.record_sample(sample("worker-report", time.time(), cpu_percent=60.0, memory_percent=50.0))
            from_db = monitor.generate_html_report(str(tmp_path / "from_db.html"))
        from_memory = monitor.generate_html_report(str(tmp_path / "from_memory.html"))

        for path in (from_db, from_memory):
            page = parse_html(path)
            by_resource = {row[0]: row[1:] for row in page.rows if row and row[0] in ("cpu", "memory", "gpu", "disk")}
            assert by_resource["cpu"] == ["60.0%", "10.0%", "30.0%", "60.0%"], path.name
            assert by_resource["memory"] == ["50.0%", "30.0%", "40.0%", "50.0%"], path.name
            assert by_resource["gpu"] == ["n/a"] * 4  # never read: unknown, not 0
            assert by_resource["disk"] == ["n/a"] * 4
            task_rows = [row for row in page.rows if row and row[0] == "task-<1>"]
            assert len(task_rows) == 1
            assert task_rows[0][1] == "failed" and task_rows[0][-1] == "AssertionError: x < y"
            assert task_rows[0][3:5] == ["20.0%", "15.0%"]  # peak and mean CPU over the task's samples
            alert_rows = [row for row in page.rows if len(row) == 7 and row[1] == "cpu"]
            assert [(r[2], r[3], r[4], r[5]) for r in alert_rows] == [("warning", "firing", "60.0%", "50.0%")]
            assert "worker-report" in "".join(page.text)

    def test_json_export(self, db_path, tmp_path):
        monitor = HardwareUtilizationMonitor("worker-json", db_path=db_path, interval_seconds=INTERVAL_S,
                                             enable_gpu=False)
        with monitor:
            monitor.start_task_monitoring("json-task")
            assert wait_until(lambda: monitor.status()["samples"] >= 4)
            monitor.stop_task_monitoring("json-task")
            bad = sample("worker-json", time.time() + 3600, cpu_percent=float("nan"),
                         memory_percent=float("inf"), net_recv_bytes_per_s=float("-inf"))
            monitor.record_sample(bad)
        # exported once sampling has stopped, so status, summary and samples are one snapshot
        path = monitor.export_metrics_to_json(str(tmp_path / "out" / "metrics.json"))
        data = strict_json(path.read_text(encoding="utf-8"))
        samples = monitor.get_historical_metrics()
        assert [ResourceUtilization.from_dict(d) for d in data["samples"]] == samples
        (exported_bad,) = [d for d in data["samples"] if d["timestamp"] == bad.timestamp.isoformat()]
        assert exported_bad["cpu_percent"] is None
        assert exported_bad["memory_percent"] is None
        assert exported_bad["net_recv_bytes_per_s"] is None
        assert data["status"]["worker_id"] == "worker-json" and data["status"]["samples"] == len(samples)
        assert data["summary"]["samples"] == len(samples)
        real_cpu = [s.cpu_percent for s in samples if s.cpu_percent is not None]
        assert data["summary"]["cpu"]["max"] == pytest.approx(max(real_cpu))
        (task,) = data["tasks"]
        assert task == json.loads(json.dumps(monitor.get_task_history()[0].to_dict()))
        assert datetime.fromisoformat(data["generated_at"]).utcoffset().total_seconds() == 0
        assert not list(path.parent.glob(".*.tmp"))  # written atomically

    def test_command_line(self, tmp_path):
        db = tmp_path / "cli.duckdb"
        out_json, out_html = tmp_path / "cli.json", tmp_path / "cli.html"
        code = main(["--duration", "0.4", "--interval", "0.05", "--worker-id", "cli-worker", "--db-path", str(db),
                     "--export-json", str(out_json), "--html-report", str(out_html), "--quiet"])
        assert code == 0
        data = strict_json(out_json.read_text())
        assert data["status"]["worker_id"] == "cli-worker"
        stored = db_rows(str(db), "SELECT count(*) AS n, min(worker_id) AS w FROM resource_utilization")[0]
        assert stored["w"] == "cli-worker" and stored["n"] >= len(data["samples"]) >= 2
        assert "cli-worker" in "".join(parse_html(out_html).text)
        # The export's status counts the rows its own summary read back: none left unwritten.
        assert data["status"]["db_written_rows"]["resource_utilization"] == data["summary"]["samples"] == stored["n"]
        assert data["status"]["store"]["pending_rows"] == 0

    def test_command_line_bad_level_and_locked_file(self, db_path, capsys):
        with pytest.raises(SystemExit):
            main(["--level", "extreme"])
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys, time, duckdb\ncon = duckdb.connect(sys.argv[1])\n"
             "print('holding', flush=True)\nsys.stdin.read()\n", db_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "holding"
            assert main(["--duration", "0.1", "--db-path", db_path, "--quiet"]) == 2
        finally:
            holder.communicate("")
        err = capsys.readouterr().err
        assert db_path in err and "own file" in err and str(holder.pid) in err


def test_module_runs_as_a_script(tmp_path):
    db = tmp_path / "script.duckdb"
    result = subprocess.run([sys.executable, str(ROOT / "hardware_utilization_monitor.py"), "--duration", "0.3",
                             "--interval", "0.05", "--worker-id", "script-worker", "--db-path", str(db)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    first_line = result.stdout.splitlines()[0]
    assert first_line.startswith("worker script-worker: ") and first_line.endswith(f"samples in {db}")
    reported = int(first_line.split()[2])
    count = db_rows(str(db), "SELECT count(*) AS n FROM resource_utilization")[0]["n"]
    assert 2 <= reported <= count  # the summary is taken just before the last ticks are flushed


@pytest.mark.parametrize("signum, status, word", [(2, 130, "interrupted"), (15, 143, "terminated")])
def test_a_stopped_run_keeps_its_samples_and_says_how_it_ended(tmp_path, signum, status, word):
    # Ctrl-C (or a job runner's SIGTERM) ends the sampling early: the samples are stored, the
    # exit status says which signal ended it (128 + its number), as the demo's does.
    pytest.importorskip("prometheus_client")  # its endpoint says when the first sample is in
    import urllib.request

    db = tmp_path / "stopped.duckdb"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "hardware_utilization_monitor.py"), "--duration", "120", "--interval", "0.05",
         "--db-path", str(db), "--metrics-port", "0", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        url = proc.stdout.readline().removeprefix("metrics: ").strip()
        deadline = time.monotonic() + 60
        sampled = b"fleet_hwmon_worker_last_sample_timestamp_seconds{"
        while sampled not in urllib.request.urlopen(url, timeout=10).read():
            assert time.monotonic() < deadline, "no sample within 60 s"
            time.sleep(0.05)
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    assert f"{word}: sampling stopped early; every sample taken is kept" in err and "Traceback" not in err
    assert db_rows(str(db), "SELECT count(*) AS n FROM resource_utilization")[0]["n"] >= 1


def test_a_database_found_cut_short_after_the_sampling_is_one_clear_error(tmp_path, capsys):
    whole = tmp_path / "whole.duckdb"
    assert main(["--duration", "0.3", "--interval", "0.05", "--db-path", str(whole), "--quiet"]) == 0
    cut = tmp_path / "cut.duckdb"
    cut.write_bytes(whole.read_bytes()[:300_000])  # its last blocks lost (a copy cut short, a full disk)
    assert whole.stat().st_size > 300_000
    capsys.readouterr()
    assert main(["--duration", "0.2", "--interval", "0.05", "--db-path", str(cut), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: metrics database {str(cut)!r} is damaged and cannot be used")
    assert f"mv {cut} {cut}.damaged" in err and "Traceback" not in err


def test_a_worker_id_with_an_undecodable_byte_is_stored_and_summarised_as_its_samples_have_it(tmp_path):
    db = tmp_path / "ids.duckdb"
    raw = os.fsdecode(b"worker-\xff")  # a byte that is not UTF-8, as a Linux argument can carry one
    assert main(["--duration", "0.3", "--interval", "0.05", "--worker-id", raw, "--db-path", str(db),
                 "--quiet"]) == 0
    stored = db_rows(str(db), "SELECT DISTINCT worker_id FROM resource_utilization")
    assert stored == [{"worker_id": "worker-\ufffd"}]


class TestLazyAlertThreadAndWallClock:
    def test_push_only_monitor_without_callbacks_starts_no_alert_thread(self):
        def alert_threads() -> set[str]:
            return {t.name for t in threading.enumerate() if t.name == "callbacks:alerts:lazy"}

        monitor = HardwareUtilizationMonitor("lazy", interval_seconds=3600, push_only=True,
                                             alert_thresholds={"cpu": (80, 90)})
        delivered: list[HardwareAlert] = []
        with monitor:
            assert monitor._dispatcher is None and alert_threads() == set()
            assert monitor.status()["alert_callback_failures"] == 0
            monitor.record_sample(sample("lazy", 1_700_000_000, cpu_percent=95.0))  # no callback: nowhere to go
            monitor.register_alert_callback(delivered.append)  # the first callback starts the thread
            assert alert_threads() == {"callbacks:alerts:lazy"}
            monitor.record_sample(sample("lazy", 1_700_000_001, cpu_percent=50.0))
            monitor.wait_for_alert_delivery()
            assert [(a.resource, a.state) for a in delivered] == [("cpu", AlertState.RESOLVED)]
        assert monitor._dispatcher is None and monitor.status()["alert_callback_failures"] is None
        assert wait_until(lambda: alert_threads() == set())
        # Registered before start: the thread starts with the monitor, as before.
        with monitor:
            assert alert_threads() == {"callbacks:alerts:lazy"}
        with pytest.raises(TypeError, match="callback must be callable"):
            monitor.register_alert_callback("not a function")

    def test_task_start_and_end_dated_by_the_wall_clock(self):
        now = [datetime(2025, 1, 1, tzinfo=timezone.utc)]
        elapsed = [0.0]
        monitor = HardwareUtilizationMonitor("clocked", interval_seconds=3600, push_only=True,
                                             wall_clock=lambda: now[0], clock=lambda: elapsed[0])
        with monitor:
            monitor.start_task_monitoring("t1", "unit")
            now[0] = datetime(2025, 1, 1, 0, 2, 30, tzinfo=timezone.utc)
            elapsed[0] = 150.0
            usage = monitor.stop_task_monitoring("t1")
        assert (usage.start_time, usage.end_time, usage.duration_s) == (
            datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2025, 1, 1, 0, 2, 30, tzinfo=timezone.utc), 150.0)
