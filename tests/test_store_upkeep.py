"""What keeps a writing store's memory bounded: its own checkpoints, small row groups, cached
blocks dropped after a checkpoint unless a reader's query runs, the memory limit left as it was,
a written batch freed before the checkpoint, freed pages released after every bulk flush.

Every test writes a real DuckDB file in a temporary folder.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa
import pytest

from fleet_hwmon.sample import ResourceUtilization
from fleet_hwmon.store import close_store, open_store
from fleet_hwmon.store.opening import ROW_GROUP_ROWS
from fleet_hwmon.store.upkeep import ReaderGate, Upkeep

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TABLE = "resource_utilization"
KIB = 1024


def samples(start: int, count: int) -> list[ResourceUtilization]:
    """Rows whose figures vary like measured ones (so they compress like them); seeded."""
    rows, rng = [], random.Random(start)
    for i in range(start, start + count):
        rows.append(ResourceUtilization(
            worker_id="w1", timestamp=T0 + timedelta(milliseconds=i), cpu_percent=float(i % 97),
            memory_used_bytes=rng.randrange(1 << 33), net_recv_bytes_per_s=rng.random() * 1e6,
            net_sent_bytes_per_s=rng.random() * 1e6, disk_read_bytes_per_s=rng.random() * 1e7,
            task_ids=(f"task-{i // 1000}",)))
    return rows


def wal_bytes(path: str) -> int:
    return os.path.getsize(path + ".wal") if os.path.exists(path + ".wal") else 0


def memory_by_tag(store) -> dict[str, int]:
    return dict(store.query("SELECT tag, memory_usage_bytes FROM duckdb_memory()", flush=False))


@pytest.fixture
def store(db_path):
    s = open_store(db_path, flush_interval_s=0.2, checkpoint_wal_bytes=256 * KIB)
    s.ensure_table(TABLE, ResourceUtilization)
    yield s
    close_store(s)


def test_the_store_checkpoints_once_its_log_passes_the_threshold_and_keeps_every_row(store, db_path):
    limit_before = store.query("SELECT current_setting('memory_limit')", flush=False)[0][0]
    for start in range(0, 12_000, 2_000):  # one flush per 2,000 rows: the log passes 256 KiB
        store.append_many(TABLE, samples(start, 2_000))
        store.flush()
    assert store._upkeep.checkpoints >= 2
    assert wal_bytes(db_path) < 256 * KIB  # restarted by the last checkpoint, below the threshold since
    # the rows since the last checkpoint are all DuckDB holds in memory, and the limit is unchanged
    assert memory_by_tag(store)["IN_MEMORY_TABLE"] < 2 * 1024 * KIB
    assert store.query("SELECT current_setting('memory_limit')", flush=False)[0][0] == limit_before
    assert store.query(f"SELECT count(*), count(DISTINCT timestamp) FROM {TABLE}") == [(12_000, 12_000)]
    close_store(store)
    with duckdb.connect(db_path, read_only=True) as con:
        assert con.execute(f"SELECT count(*), sum(cpu_percent) FROM {TABLE}").fetchone() == (
            12_000, float(sum(i % 97 for i in range(12_000))))


def insert_rows(store, rows: int) -> None:
    """``rows`` sample rows with varying figures, inserted by DuckDB itself (quicker than records)."""
    store.write(f"INSERT INTO {TABLE} (worker_id, timestamp, cpu_percent, memory_used_bytes, net_recv_bytes_per_s, "
                f"disk_read_bytes_per_s) SELECT 'w1', TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_milliseconds(range), "
                f"range % 97, (hash(range) % 8589934592)::BIGINT, (hash(range + 1) % 1000000) / 7.0, "
                f"(hash(range + 2) % 10000000) / 3.0 FROM range({rows})")


def test_new_files_get_small_row_groups(store, db_path):
    insert_rows(store, 2 * ROW_GROUP_ROWS + 100)
    store.write("CHECKPOINT")
    groups = store.query(f"SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('{TABLE}')")[0][0]
    assert groups == 3


def test_a_checkpoint_drops_the_cached_blocks_and_a_reader_query_holds_that_back(store):
    insert_rows(store, 80_000)
    store.write("CHECKPOINT")  # DuckDB keeps the blocks it wrote in its buffer pool
    store.query(f"SELECT max(COLUMNS(*)) FROM {TABLE}")  # and the blocks a query read
    cached = memory_by_tag(store)["BASE_TABLE"]
    assert cached >= 2048 * KIB

    started, finish = threading.Event(), threading.Event()

    def long_reader() -> None:  # a reader's query in progress, as the gate sees it
        with store._readers.reading():
            started.set()
            finish.wait(10)

    reader = threading.Thread(target=long_reader)
    reader.start()
    started.wait(10)
    store._submit(store._upkeep.evict_cached_blocks)
    assert memory_by_tag(store)["BASE_TABLE"] == cached  # not evicted under a running query
    finish.set()
    reader.join()

    limit_before = store.query("SELECT current_setting('memory_limit')", flush=False)[0][0]
    store._submit(store._upkeep.evict_cached_blocks)
    assert memory_by_tag(store)["BASE_TABLE"] <= 1024 * KIB
    assert store.query("SELECT current_setting('memory_limit')", flush=False)[0][0] == limit_before
    # the evicted blocks are read back from the file when a query needs them
    assert store.query(f"SELECT count(*), max(cpu_percent) FROM {TABLE}") == [(80_000, 96.0)]


def test_readers_on_other_threads_query_the_file_and_spill_beside_it(store, db_path):
    store.append_many(TABLE, samples(0, 100))
    results: list = []
    thread = threading.Thread(target=lambda: results.append(
        (store.query(f"SELECT count(*) FROM {TABLE}"), store.query("SELECT current_database()", flush=False))))
    thread.start()
    thread.join(30)
    assert results == [([(100,)], [("metrics_store",)])]
    assert store.query("SELECT current_setting('temp_directory')", flush=False) == [(db_path + ".tmp",)]


def test_a_checkpoint_that_fails_is_logged_once_never_raises_and_runs_after_a_later_flush(tmp_path, caplog):
    path = str(tmp_path / "upkeep.duckdb")
    con = duckdb.connect(path)
    con.execute("CREATE TABLE t (i INTEGER)")
    con.execute("INSERT INTO t SELECT range FROM range(1000)")
    upkeep = Upkeep(con, path, ReaderGate(), checkpoint_wal_bytes=1)  # any log is past the threshold
    con.execute("BEGIN")  # DuckDB refuses to checkpoint inside a transaction with changes of its own
    con.execute("INSERT INTO t VALUES (-1)")
    with caplog.at_level(logging.WARNING, logger="fleet_hwmon.store"):
        upkeep.after_flush()
        upkeep.after_flush()
    failures = [r.getMessage() for r in caplog.records if "checkpoint of" in r.getMessage()]
    assert len(failures) == 1 and "Cannot CHECKPOINT" in failures[0] and "retried after the next flush" in failures[0]
    assert upkeep.checkpoints == 0 and wal_bytes(path) > 0
    con.execute("ROLLBACK")  # (the failed statement has invalidated that transaction anyway)
    upkeep.after_flush()
    assert upkeep.checkpoints == 1 and wal_bytes(path) == 0
    con.close()
    with duckdb.connect(path, read_only=True) as check:
        assert check.execute("SELECT count(*), min(i) FROM t").fetchone() == (1000, 0)


@dataclass
class Reading:
    """A record the test can hold weak references to (the product's records use slots)."""

    worker_id: str
    value_percent: float


def test_a_written_batch_is_freed_before_the_checkpoint_runs(db_path):
    # a checkpoint takes a while, and meanwhile a fast producer queues as many rows again: the
    # batch just written (its records and its Arrow table) must not be held alongside them
    store = open_store(db_path, flush_interval_s=3600)
    store.ensure_table("readings", Reading)
    records = [Reading("w1", float(i % 100)) for i in range(2_000)]
    refs = [weakref.ref(r) for r in records]
    seen_at_upkeep: list[tuple[int, int]] = []
    after_flush = store._upkeep.after_flush

    def checking_after_flush(*args: bool, **kwargs: bool) -> None:
        gc.collect()
        seen_at_upkeep.append((sum(ref() is not None for ref in refs), pa.system_memory_pool().bytes_allocated()))
        after_flush(*args, **kwargs)

    store._upkeep.after_flush = checking_after_flush
    gc.collect()  # Arrow buffers other tests left to the collector
    arrow_bytes_before = pa.system_memory_pool().bytes_allocated()
    store.append_many("readings", records)
    del records
    store.flush()
    [(records_alive, arrow_bytes)] = seen_at_upkeep
    assert records_alive == 0 and arrow_bytes - arrow_bytes_before < 8 * KIB  # the batch's table: 27 KiB
    assert store.query("SELECT count(*), sum(value_percent) FROM readings") == [(2_000, 99_000.0)]
    close_store(store)


def test_freed_pages_are_released_after_a_bulk_flush_not_after_a_staged_one(db_path):
    store = open_store(db_path, flush_interval_s=0.05, merge_interval_s=3600)
    store.ensure_table(TABLE, ResourceUtilization)
    releases = []
    release = store._upkeep.release_freed_memory
    store._upkeep.release_freed_memory = lambda: (releases.append(store.status()["staged_rows"]), release())
    store.append_many(TABLE, samples(0, 10))
    deadline = time.monotonic() + 30
    while store.status()["staged_rows"] < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.status()["staged_rows"] == 10 and releases == []  # staged: a few kilobytes, nothing to release
    store.flush()  # merges the staged rows into their table
    assert releases == [0]
    store.append_many(TABLE, samples(10, 1_000))  # a large batch goes straight into its table
    store.flush()
    assert releases == [0, 0]
    assert store.query(f"SELECT count(*) FROM {TABLE}") == [(1_010,)]
    close_store(store)


def test_appending_past_a_full_batch_yields_to_the_writer(db_path, monkeypatch):
    # a caller appending in a tight loop must not outrun the writer by more than a batch: past
    # one it gives up the interpreter lock at each append (never blocking, never dropping)
    store = open_store(db_path, flush_interval_s=3600, batch_rows=10)
    store.ensure_table(TABLE, ResourceUtilization)
    release_writer, writer_held = threading.Event(), threading.Event()
    holder = threading.Thread(target=store._submit, args=(lambda: (writer_held.set(), release_writer.wait(30)),))
    holder.start()  # the writer is busy: nothing queued from now on is written until it is released
    writer_held.wait(30)
    yields: list[float] = []
    real_sleep, appender = time.sleep, threading.current_thread()
    monkeypatch.setattr(time, "sleep", lambda s: (  # other threads' sleeps are not this caller's
        threading.current_thread() is appender and yields.append(s), real_sleep(s)))
    for record in samples(0, 10):
        assert store.append(TABLE, record)
    assert yields == []  # a batch queued: the writer has been woken, the caller goes on
    for record in samples(10, 5):
        assert store.append(TABLE, record)
    assert yields == [0] * 5
    monkeypatch.undo()
    release_writer.set()
    holder.join(30)
    assert store.query(f"SELECT count(*) FROM {TABLE}") == [(15,)] and store.dropped_rows == 0
    close_store(store)


def test_closing_while_a_report_query_runs_waits_for_it(db_path):
    """A report read on another thread as the store closes (an integration shut down mid-report):
    the query ends with its rows, and the writer closes the file after it, raising nothing."""
    store = open_store(db_path)
    errors: list[BaseException] = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    result: list = []
    reader = threading.Thread(target=lambda: result.extend(
        store.query("SELECT count(*) FROM range(400000000) a", flush=False)))
    try:
        reader.start()
        deadline = time.monotonic() + 60
        while store._readers._active == 0 and reader.is_alive() and time.monotonic() < deadline:
            time.sleep(0.001)
        close_store(store)
        reader.join(timeout=120)
    finally:
        threading.excepthook = previous_hook
    assert result == [(400000000,)] and errors == []
