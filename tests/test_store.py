"""The DuckDB store: migrations, one writer per file, per-thread readers, and what survives a
second process (C18), concurrent threads (C19), interpreter exit without stop (C20) and SIGKILL.

Every test uses a real DuckDB file in a temporary folder and real child processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from fleet_hwmon.sample import ResourceUtilization
from fleet_hwmon.store import StoreError, StoreLockedError, close_store, open_store, queries
from fleet_hwmon.store.schema import SCHEMA_VERSION, record_columns
from hardware_utilization_monitor import HardwareUtilizationMonitor

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def run_child(code: str, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout_s, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def count_rows(path: str, where: str = "") -> int:
    with duckdb.connect(path) as con:
        return con.execute(f"SELECT count(*) FROM resource_utilization {where}").fetchone()[0]


def fed(worker_id: str, i: int, **fields) -> ResourceUtilization:
    return ResourceUtilization(worker_id=worker_id, timestamp=T0 + timedelta(seconds=i), **fields)


@pytest.fixture
def store(db_path):
    s = open_store(db_path, flush_interval_s=0.2)
    s.ensure_table("resource_utilization", ResourceUtilization)
    yield s
    close_store(s)


# -- schema and migration --------------------------------------------------------------------
def test_migration_adds_missing_columns_and_keeps_old_rows(db_path):
    with duckdb.connect(db_path) as con:  # a file written by an older version
        con.execute("CREATE TABLE resource_utilization (worker_id VARCHAR, timestamp TIMESTAMPTZ, "
                    "cpu_percent DOUBLE, memory_percent DOUBLE)")
        con.execute("INSERT INTO resource_utilization VALUES ('old-worker', '2025-06-01 10:00:00+00', 12.5, 40.0)")
    store = open_store(db_path)
    try:
        store.ensure_table("resource_utilization", ResourceUtilization)
        store.append("resource_utilization", fed("new-worker", 0, cpu_percent=50.0, swap_percent=3.0))
        rows = queries.samples(store)
    finally:
        close_store(store)
    assert [(r["worker_id"], r["cpu_percent"], r["memory_percent"]) for r in rows] == [
        ("old-worker", 12.5, 40.0), ("new-worker", 50.0, None)]
    old, new = rows
    assert old["timestamp"] == datetime(2025, 6, 1, 10, tzinfo=timezone.utc)
    assert old["swap_percent"] is None and old["gpus"] is None and old["cpu_temperature_celsius"] is None
    assert new["swap_percent"] == 3.0
    with duckdb.connect(db_path) as con:
        columns = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'resource_utilization'").fetchall()]
        versions = con.execute("SELECT version FROM schema_meta").fetchall()
    assert set(columns) == {c.name for c in record_columns(ResourceUtilization)}
    assert versions == [(SCHEMA_VERSION,)]


def test_migration_widens_the_gpu_records_of_an_older_file(db_path):
    from fleet_hwmon.sample import GpuUtilization

    with duckdb.connect(db_path) as con:  # GPUs as an older version stored them, before health
        con.execute('CREATE TABLE resource_utilization (worker_id VARCHAR, timestamp TIMESTAMPTZ, '
                    'gpus STRUCT("index" BIGINT, uuid VARCHAR, name VARCHAR, utilization_percent DOUBLE)[])')
        con.execute("INSERT INTO resource_utilization VALUES ('old', '2025-06-01 10:00:00+00', "
                    "[{'index': 0, 'uuid': 'GPU-a', 'name': 'A', 'utilization_percent': 12.5}])")
    store = open_store(db_path)
    try:
        store.ensure_table("resource_utilization", ResourceUtilization)
        store.append("resource_utilization", fed("new", 0, gpus=(GpuUtilization(
            0, "GPU-b", "B", utilization_percent=50.0, health="lost", health_reason="GpuIsLost"),)))
        rows = queries.samples(store)
    finally:
        close_store(store)
    old, new = ({g["uuid"]: g for g in r["gpus"]} for r in rows)
    assert old["GPU-a"]["utilization_percent"] == 12.5 and old["GPU-a"]["health"] is None
    assert (new["GPU-b"]["health"], new["GPU-b"]["health_reason"]) == ("lost", "GpuIsLost")


def test_reopening_does_not_duplicate_schema_rows(db_path):
    for _ in range(3):
        store = open_store(db_path)
        store.ensure_table("resource_utilization", ResourceUtilization)
        close_store(store)
    with duckdb.connect(db_path) as con:
        assert con.execute("SELECT count(*) FROM schema_meta").fetchone()[0] == 1


def test_full_buffer_drops_and_counts(tmp_path):
    store = open_store(tmp_path / "drops.duckdb", flush_interval_s=60, batch_rows=1000, max_pending_rows=5)
    try:
        store.ensure_table("resource_utilization", ResourceUtilization)
        accepted = store.append_many("resource_utilization", [fed("w", i) for i in range(12)])
        assert accepted == 5
        store.flush()
        stats = store.stats()
        assert (stats.dropped_rows, stats.written_rows, stats.pending_rows) == (7, {"resource_utilization": 5}, 0)
        assert store.query("SELECT count(*) FROM resource_utilization") == [(5,)]
    finally:
        close_store(store)


def test_flush_returns_only_when_everything_queued_so_far_is_written(tmp_path):
    store = open_store(tmp_path / "flush.duckdb", flush_interval_s=60, batch_rows=1000)
    try:
        store.ensure_table("resource_utilization", ResourceUtilization)
        total = 0
        for chunk in range(20):  # the writer is busy with earlier batches while later ones arrive
            total += store.append_many("resource_utilization",
                                       [fed("w", chunk * 2000 + i, cpu_percent=1.0) for i in range(2000)])
        store.flush()
        assert store.stats().pending_rows == 0
        assert store.query("SELECT count(*) FROM resource_utilization", flush=False) == [(total,)]
        assert total == 40_000
    finally:
        close_store(store)


def test_close_writes_what_is_pending_without_waiting_for_the_flush_interval(tmp_path):
    path = tmp_path / "slow-flush.duckdb"
    store = open_store(path, flush_interval_s=3600)
    store.ensure_table("resource_utilization", ResourceUtilization)
    store.append_many("resource_utilization", [fed("w", i, cpu_percent=float(i)) for i in range(3)])
    close_store(store)
    assert not store._thread.is_alive()
    with duckdb.connect(str(path)) as con:
        assert con.execute("SELECT cpu_percent FROM resource_utilization ORDER BY timestamp").fetchall() == [
            (0.0,), (1.0,), (2.0,)]
    with pytest.raises(StoreError, match="has stopped"):
        store.flush()


def test_summary_current_is_the_latest_samples_value(store):
    store.append_many("resource_utilization", [
        fed("w", 0, cpu_percent=10.0, memory_percent=20.0),
        fed("w", 1, cpu_percent=90.0, memory_percent=30.0),
        fed("w", 2, cpu_percent=None, memory_percent=25.0),  # the latest tick could not read the CPU
    ])
    (row,) = queries.summary(store, "w")
    assert row["samples"] == 3
    assert row["cpu"] == {"min": 10.0, "mean": 50.0, "max": 90.0, "current": None}
    assert row["memory"] == {"min": 20.0, "mean": 25.0, "max": 30.0, "current": 25.0}
    assert row["gpu"] == {"min": None, "mean": None, "max": None, "current": None}
    (bucket,) = queries.bucketed(store, 60, worker_id="w")
    assert (bucket["samples"], bucket["cpu_percent_mean"], bucket["cpu_percent_max"]) == (3, 50.0, 90.0)
    with pytest.raises(ValueError):
        queries.bucketed(store, 0)
    assert [r["timestamp"] for r in queries.samples(store, start=T0 + timedelta(seconds=1), limit=1)] == [
        T0 + timedelta(seconds=1)]


def test_a_failing_statement_is_raised_to_the_caller_and_the_writer_lives_on(store):
    with pytest.raises(duckdb.Error):
        store.write("INSERT INTO no_such_table VALUES (1)")
    store.append("resource_utilization", fed("w", 0, cpu_percent=1.0))
    assert store.query("SELECT cpu_percent FROM resource_utilization") == [(1.0,)]


# -- C18: a second process -------------------------------------------------------------------
LOCKED_CHILD = """
    import json, sys
    from hardware_utilization_monitor import HardwareUtilizationMonitor
    from fleet_hwmon.store import StoreLockedError
    monitor = HardwareUtilizationMonitor("second-process", db_path=sys.argv[1], enable_gpu=False)
    try:
        monitor.start_monitoring()
    except StoreLockedError as err:
        print(json.dumps({"type": type(err).__name__, "message": str(err), "path": err.path,
                          "holder_pid": err.holder_pid}))
    else:
        print(json.dumps({"type": None}))
"""


def test_c18_second_process_gets_a_clear_error(db_path):
    monitor = HardwareUtilizationMonitor("first-process", db_path=db_path, interval_seconds=0.1, enable_gpu=False)
    with monitor:
        result = run_child(LOCKED_CHILD, db_path)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert monitor.is_running  # the holder is not disturbed
    assert answer["type"] == "StoreLockedError"
    assert answer["path"] == str(Path(db_path).resolve())
    assert answer["holder_pid"] == os.getpid()
    message = answer["message"]
    assert str(Path(db_path).resolve()) in message and f"process {os.getpid()}" in message
    assert "its own file" in message and "--db-path metrics-" in message and "after the writing process" in message
    # once the holder has stopped, the second process gets the file
    result = run_child(LOCKED_CHILD, db_path)
    assert json.loads(result.stdout) == {"type": None}


def test_c18_store_locked_error_pickles():
    import pickle

    err = pickle.loads(pickle.dumps(StoreLockedError("/x/metrics.duckdb", 4242, "detail")))
    assert (err.path, err.holder_pid) == ("/x/metrics.duckdb", 4242)
    assert isinstance(err, StoreError) and "process 4242" in str(err)


def test_c18_two_monitors_in_one_process_share_the_store(db_path):
    first = HardwareUtilizationMonitor("worker-a", db_path=db_path, interval_seconds=0.05, enable_gpu=False)
    second = HardwareUtilizationMonitor("worker-b", db_path=db_path, interval_seconds=0.05, enable_gpu=False)
    with first, second:
        deadline = time.monotonic() + 10
        while min(first.status()["samples"], second.status()["samples"]) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        first.stop_monitoring()  # one leaving does not close the file under the other
        second.record_sample(fed("worker-b", 0, cpu_percent=5.0))
        assert [r["cpu_percent"] for r in second.get_metrics_from_db(end=T0)] == [5.0]
    assert count_rows(db_path, "WHERE worker_id = 'worker-a'") == first.status()["samples"] >= 3
    assert count_rows(db_path, "WHERE worker_id = 'worker-b'") == second.status()["samples"] >= 4


# -- C19: threads ----------------------------------------------------------------------------
def test_c19a_readers_on_eight_threads_while_the_sampler_writes(db_path):
    monitor = HardwareUtilizationMonitor("worker-c19", db_path=db_path, interval_seconds=3600, sources=[],
                                         flush_interval_s=0.05)
    rows_to_write, readers, reads_each = 1000, 8, 200
    errors: list[BaseException] = []
    seen: dict[int, list[int]] = {}
    with monitor:
        store = open_store(db_path)  # the monitor's store (one per file in a process), used by the readers
        deadline = time.monotonic() + 10
        while monitor.status()["samples"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the loop's own first sample
        start = threading.Barrier(readers + 1)

        def write() -> None:
            try:
                start.wait()
                for i in range(rows_to_write):
                    monitor.record_sample(fed("fed-worker", i, cpu_percent=float(i % 100)))
            except BaseException as err:  # asserted on the main thread
                errors.append(err)

        def read(n: int) -> None:
            counts = seen.setdefault(n, [])
            try:
                start.wait()
                for _ in range(reads_each):
                    counts.append(store.query("SELECT count(*) FROM resource_utilization "
                                              "WHERE worker_id = 'fed-worker'", flush=False)[0][0])
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=write)] + [threading.Thread(target=read, args=(n,))
                                                       for n in range(readers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = store.query("SELECT count(*) FROM resource_utilization WHERE worker_id = 'fed-worker'")[0][0]
        close_store(store)
    assert errors == []
    assert final == rows_to_write
    for counts in seen.values():
        assert len(counts) == reads_each
        assert counts == sorted(counts) and 0 <= counts[0] and counts[-1] <= rows_to_write
    assert count_rows(db_path, "WHERE worker_id = 'fed-worker'") == rows_to_write


def test_c19b_two_monitors_initialise_the_schema_at_once(db_path):
    monitors = [HardwareUtilizationMonitor(f"worker-{i}", db_path=db_path, interval_seconds=3600, sources=[])
                for i in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def start(monitor: HardwareUtilizationMonitor) -> None:
        try:
            barrier.wait()
            monitor.start_monitoring()
        except BaseException as err:  # asserted on the main thread
            errors.append(err)

    threads = [threading.Thread(target=start, args=(m,)) for m in monitors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
    finally:
        for m in monitors:
            m.stop_monitoring()
    with duckdb.connect(db_path) as con:
        assert con.execute("SELECT count(*) FROM schema_meta").fetchone()[0] == 1
        tables = sorted(r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall())
        by_worker = dict(con.execute(
            "SELECT worker_id, count(*) FROM resource_utilization GROUP BY worker_id").fetchall())
    assert tables == ["hardware_alerts", "hardware_capabilities", "rejected_rows", "resource_utilization",
                      "schema_meta", "staged_batches", "task_resource_usage"]
    assert by_worker == {"worker-0": 1, "worker-1": 1}


# -- C20: exit without stop() ----------------------------------------------------------------
def test_c20_exit_without_stop_keeps_every_sample(db_path):
    child = """
        import sys
        from datetime import datetime, timedelta, timezone
        from hardware_utilization_monitor import HardwareUtilizationMonitor, ResourceUtilization
        monitor = HardwareUtilizationMonitor("exiting-worker", db_path=sys.argv[1], interval_seconds=0.05,
                                             enable_gpu=False, flush_interval_s=30)
        monitor.start_monitoring()
        t0 = datetime.now(timezone.utc)
        for i in range(100):
            monitor.record_sample(ResourceUtilization(worker_id="fed", timestamp=t0 + timedelta(milliseconds=i),
                                                      cpu_percent=float(i)))
        print("fed", flush=True)
        # no stop_monitoring(): the interpreter exits with the sampler and the writer still running
    """
    result = run_child(child, db_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fed"
    assert "Traceback" not in result.stderr
    with duckdb.connect(db_path) as con:
        values = [r[0] for r in con.execute(
            "SELECT cpu_percent FROM resource_utilization WHERE worker_id = 'fed' ORDER BY timestamp").fetchall()]
        own = con.execute("SELECT count(*) FROM resource_utilization WHERE worker_id = 'exiting-worker'").fetchone()
    assert values == [float(i) for i in range(100)]
    assert own[0] >= 1


# -- SIGKILL ---------------------------------------------------------------------------------
KILLED_CHILD = """
    import sys, time
    from hardware_utilization_monitor import HardwareUtilizationMonitor

    class Reporting(HardwareUtilizationMonitor):
        def record_sample(self, sample):
            events = super().record_sample(sample)  # queued for the writer before it is reported
            print(sample.timestamp.timestamp(), flush=True)
            return events

    monitor = Reporting("killed-worker", db_path=sys.argv[1], interval_seconds=0.05, enable_gpu=False,
                        flush_interval_s=0.5)
    monitor.start_monitoring()
    time.sleep(60)
"""


def test_sigkill_loses_at_most_the_last_flush_interval(db_path):
    flush_interval_s, interval_s = 0.5, 0.05
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_CHILD), db_path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    first = proc.stdout.readline()
    assert first, proc.stderr.read()
    time.sleep(2.0)
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    stamps = [float(line) for line in [first, *rest.splitlines()] if line.strip()]
    assert len(stamps) >= 20
    must_survive = [t for t in stamps if t <= killed_at - flush_interval_s - interval_s]
    with duckdb.connect(db_path) as con:  # opens cleanly: DuckDB replays its WAL
        # the last seconds' flushes were staged (fleet_hwmon.store.staging), not yet merged
        staged = con.execute("SELECT count(*) FROM staged_batches").fetchone()[0]
    assert staged >= 1
    store = open_store(db_path)  # merges what the killed writer had staged
    try:
        stored = store.query("SELECT count(*), max(timestamp) FROM resource_utilization")[0]
        integrity = store.query("SELECT count(*) FROM resource_utilization WHERE worker_id = 'killed-worker'")
        assert integrity[0][0] == stored[0]
        assert store.query("SELECT count(*) FROM staged_batches") == [(0,)]
    finally:
        close_store(store)
    assert stored[0] >= len(must_survive) >= 10
    assert stored[0] <= len(stamps)
