"""Small flushes are staged in one narrow table and merged into their tables in bulk
(``fleet_hwmon.store.staging``): as durable as a direct insert, merged before any read, merged
when a killed writer's file is opened again, and a row no table accepts is still never lost.

Real DuckDB files; the killed writer is a real child process ended with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from fleet_hwmon.sample import ResourceUtilization
from fleet_hwmon.store import close_store, open_store, staging

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TABLE = "resource_utilization"


def sample(worker_id: str, i: int, **fields) -> ResourceUtilization:
    return ResourceUtilization(worker_id=worker_id, timestamp=T0 + timedelta(seconds=i), cpu_percent=float(i),
                               **fields)


def wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_small_flushes_are_staged_then_merged_before_a_read(db_path):
    store = open_store(db_path, flush_interval_s=0.05, merge_interval_s=3600)
    try:
        store.ensure_table(TABLE, ResourceUtilization)
        store.append_many(TABLE, [sample("w", i) for i in range(3)])
        wait_for(lambda: store.status()["staged_rows"] == 3)
        store.append_many(TABLE, [sample("w", i) for i in range(3, 5)])
        wait_for(lambda: store.status()["staged_rows"] == 5)
        before = store.status()
        in_table = store.query(f"SELECT count(*) FROM {TABLE}", flush=False)
        staged = store.query(f"SELECT table_name, count(*) FROM {staging.STAGED_TABLE} GROUP BY 1", flush=False)
        values = [v for (v,) in store.query(f"SELECT cpu_percent FROM {TABLE} ORDER BY timestamp")]  # flushes
        after = store.status()
        left = store.query(f"SELECT count(*) FROM {staging.STAGED_TABLE}", flush=False)
    finally:
        close_store(store)
    assert in_table == [(0,)] and staged == [(TABLE, 2)]  # two flushes, each one staged row
    assert (before["written_rows"], before["pending_rows"]) == ({}, 0)
    assert values == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert (after["written_rows"], after["staged_rows"], left) == ({TABLE: 5}, 0, [(0,)])


def test_staged_rows_merge_after_the_interval_and_large_flushes_go_straight_in(db_path):
    store = open_store(db_path, flush_interval_s=0.05, merge_interval_s=0.3, stage_rows=10)
    try:
        store.ensure_table(TABLE, ResourceUtilization)
        store.append_many(TABLE, [sample("small", i) for i in range(4)])
        wait_for(lambda: store.status()["staged_rows"] == 4)
        wait_for(lambda: store.status()["written_rows"] == {TABLE: 4})  # no read asked for it
        assert store.status()["staged_rows"] == 0
        store.append_many(TABLE, [sample("large", i) for i in range(10)])  # stage_rows: not staged
        wait_for(lambda: store.status()["written_rows"] == {TABLE: 14})
        by_worker = store.query(f"SELECT worker_id, count(*) FROM {TABLE} GROUP BY 1 ORDER BY 1", flush=False)
        staged = store.query(f"SELECT count(*) FROM {staging.STAGED_TABLE}", flush=False)
    finally:
        close_store(store)
    assert by_worker == [("large", 10), ("small", 4)] and staged == [(0,)]


KILLED_WRITER = """
    import sys, time
    from datetime import datetime, timedelta, timezone
    from fleet_hwmon.sample import ResourceUtilization
    from fleet_hwmon.store import open_store
    T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    store = open_store(sys.argv[1], flush_interval_s=0.05, merge_interval_s=3600)
    store.ensure_table("resource_utilization", ResourceUtilization)
    for i in range(7):
        store.append("resource_utilization", ResourceUtilization(
            worker_id="killed", timestamp=T0 + timedelta(seconds=i), cpu_percent=float(i)))
        time.sleep(0.06)  # one staged batch per flush
    while store.status()["staged_rows"] < 7:
        time.sleep(0.01)
    print("staged", flush=True)
    time.sleep(60)
"""


def test_a_killed_writers_staged_rows_are_merged_when_the_file_opens_again(db_path, caplog):
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_WRITER), db_path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline() == "staged\n", child.stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    with duckdb.connect(db_path) as con:  # DuckDB replays its log: the staged batches are there
        in_table = con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
        blobs = [bytes(b) for (b,) in con.execute(f"SELECT arrow_ipc FROM {staging.STAGED_TABLE}").fetchall()]
    assert in_table == 0 and len(blobs) >= 2
    assert sum(staging.decode(blob).num_rows for blob in blobs) == 7

    store = open_store(db_path)
    try:
        rows = store.query(f"SELECT worker_id, cpu_percent FROM {TABLE} ORDER BY timestamp")
        status = store.status()
        staged = store.query(f"SELECT count(*) FROM {staging.STAGED_TABLE}")
    finally:
        close_store(store)
    assert rows == [("killed", float(i)) for i in range(7)]
    assert (status["written_rows"], status["rejected_rows_total"], staged) == ({TABLE: 7}, 0, [(0,)])
    assert "7 row(s) that the last writer had staged were merged" in caplog.text


def test_a_staged_batch_its_table_refuses_is_kept_in_rejected_rows(db_path):
    store = open_store(db_path)
    store.ensure_table(TABLE, ResourceUtilization)
    close_store(store)
    good = pa.table({"worker_id": ["good"], "timestamp": pa.array([T0], pa.timestamp("us", tz="UTC")),
                     "cpu_percent": [12.5]})
    refused = pa.table({"worker_id": ["refused", "refused"], "cpu_percent": ["not a number", "x"]})
    with duckdb.connect(db_path) as con:  # what a writer that died would have left
        con.executemany(f"INSERT INTO {staging.STAGED_TABLE} (staged_id, table_name, arrow_ipc) VALUES (?, ?, ?)",
                        [(0, TABLE, staging.encode(refused)), (1, TABLE, staging.encode(good))])

    store = open_store(db_path)
    try:
        rows = store.query(f"SELECT worker_id, cpu_percent FROM {TABLE}")
        rejected = store.query("SELECT table_name, reason, record FROM rejected_rows ORDER BY record")
        status = store.status()
        staged = store.query(f"SELECT count(*) FROM {staging.STAGED_TABLE}")
    finally:
        close_store(store)
    assert rows == [("good", 12.5)] and staged == [(0,)]
    reason = "staged batch not merged: ConversionException"
    assert [(t, r, json.loads(rec)) for t, r, rec in rejected] == [
        (TABLE, reason, {"worker_id": "refused", "cpu_percent": "not a number"}),
        (TABLE, reason, {"worker_id": "refused", "cpu_percent": "x"})]
    assert status["rejected_rows"] == {TABLE: {reason: 2}} and status["written_rows"] == {TABLE: 1}


def test_a_row_duckdb_refuses_at_the_merge_costs_only_itself(db_path):
    # A file from a version whose column was narrower: Arrow holds the value, DuckDB refuses it.
    with duckdb.connect(db_path) as con:
        con.execute(f"CREATE TABLE {TABLE} (worker_id VARCHAR, timestamp TIMESTAMPTZ, memory_used_bytes INTEGER)")
    store = open_store(db_path, flush_interval_s=0.05, merge_interval_s=3600)
    try:
        store.ensure_table(TABLE, ResourceUtilization)
        for i in range(4):
            store.append(TABLE, sample("w", i, memory_used_bytes=2**40 if i == 2 else i))
            wait_for(lambda n=i + 1: store.status()["staged_rows"] == n)  # each row its own staged batch
        kept = store.query(f"SELECT memory_used_bytes FROM {TABLE} ORDER BY timestamp")
        rejected = store.query("SELECT record FROM rejected_rows")
        status = store.status()
        staged = store.query(f"SELECT count(*) FROM {staging.STAGED_TABLE}")
    finally:
        close_store(store)
    assert kept == [(0,), (1,), (3,)] and staged == [(0,)]
    assert [json.loads(r)["memory_used_bytes"] for (r,) in rejected] == [2**40]
    assert status["written_rows"] == {TABLE: 3} and status["rejected_rows_total"] == 1


# Files may not grow past a limit while staged batches wait: staging, the merge and the per-table
# path all fail for the file's sake ("File too large"), and the rows must land exactly once after.
FILE_LIMIT_CHILD = """
import json, os, resource, signal, sys, time
from datetime import datetime, timedelta, timezone
from fleet_hwmon.sample import ResourceUtilization
from fleet_hwmon.store import close_store, open_store
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path = sys.argv[1]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
store = open_store(path, flush_interval_s=0.05, merge_interval_s=3600)
store.ensure_table("resource_utilization", ResourceUtilization)
for i in range(5):
    store.append("resource_utilization", ResourceUtilization(
        worker_id="staged-before", timestamp=T0 + timedelta(seconds=i), cpu_percent=1.0))
while store.status()["staged_rows"] < 5:
    time.sleep(0.01)
staged_before = store.status()["staged_rows"]
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path + ".wal"), hard))  # the log cannot grow
for i in range(3):
    store.append("resource_utilization", ResourceUtilization(
        worker_id="during", timestamp=T0 + timedelta(seconds=i), cpu_percent=1.0))
while store.status()["failed_flushes"] < 2:
    time.sleep(0.01)
during = store.status()
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
store.flush()
counts = store.query("SELECT worker_id, count(*) FROM resource_utilization GROUP BY 1 ORDER BY 1")
left = store.query("SELECT count(*) FROM staged_batches")[0][0]
print(json.dumps({"staged_before": staged_before, "during": during, "after": store.status(),
                  "counts": counts, "left": left}))
close_store(store)
"""


def test_rows_staged_before_a_full_disk_land_exactly_once(db_path):
    result = subprocess.run([sys.executable, "-c", FILE_LIMIT_CHILD, db_path], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["staged_before"] == 5
    assert out["during"]["failing"] is True and out["during"]["pending_rows"] == 8  # staged rows kept for a retry
    assert out["counts"] == [["during", 3], ["staged-before", 5]] and out["left"] == 0
    after = out["after"]
    assert (after["written_rows_total"], after["staged_rows"], after["failing"]) == (8, 0, False)
    assert after["rejected_rows_total"] == after["dropped_rows_total"] == 0
