"""The one writer of a DuckDB file: a thread that owns the connection and appends in batches.

Callers never touch the writer's connection. ``append`` only puts a record in a bounded
buffer (a full buffer drops the new record and counts it, so a slow disk shows up as drops,
never as a late sample); the writer thread flushes every ``flush_interval_s`` or every
``batch_rows`` records, and on ``flush()`` / ``close()`` / interpreter exit. A flush of few
rows is staged (committed to one narrow table, merged into its table with later ones: see
``staging``), because a statement into a wide table costs milliseconds whatever its rows.
Readers get a cursor of their own per thread. One store is shared per file within a process (reference
counted), so two monitors on the same path never race on the schema.

Nothing is lost silently. A row that cannot be stored (a value its column cannot hold) is
isolated from its batch (``rejects.isolate``) and goes, with its reason and the record as JSON
text, to the ``rejected_rows`` table, or when even that fails to ``<db>.rejected.jsonl``; every
other row lands. A batch that fails for the file's sake (disk full, I/O) is kept and retried,
up to ``retry_budget`` failed flushes in a row (the budget of one failure episode, renewed by
any successful flush); then its rows go to that JSON-lines file. A row is only discarded when
the buffer is full, the store is closed, or neither the table nor the file can take it, and
each such row is counted in ``dropped_rows`` by table and reason.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import duckdb
from pyarrow import concat_tables as pa_concat

from fleet_hwmon import lifecycle
from fleet_hwmon.store import rejects, schema, staging
from fleet_hwmon.store.appender import ArrowAppender
from fleet_hwmon.store.opening import DATABASE, StoreError, StoreLockedError, connect as _connect, translate_error
from fleet_hwmon.store.upkeep import DEFAULT_CHECKPOINT_WAL_BYTES, ReaderGate, Upkeep

log = logging.getLogger(__name__)


@dataclass
class StoreStats:
    """Counters of one store: rows written per table, rows dropped and rejected (totals), failed
    flushes, rows waiting in the buffer. :meth:`MetricsStore.status` has them per table and reason."""

    written_rows: dict[str, int]
    dropped_rows: int
    failed_flushes: int
    pending_rows: int
    rejected_rows: int = 0


class MetricsStore:
    """Batched, single-writer access to one DuckDB file. Obtain one with :func:`open_store`."""

    def __init__(self, path: str, *, flush_interval_s: float = 1.0, batch_rows: int = 5000,
                 max_pending_rows: int = 1_000_000, retry_budget: int = 30,
                 checkpoint_wal_bytes: int = DEFAULT_CHECKPOINT_WAL_BYTES,
                 stage_rows: int = staging.DEFAULT_STAGE_ROWS,
                 merge_interval_s: float = staging.DEFAULT_MERGE_INTERVAL_S) -> None:
        self.path = path
        self.flush_interval_s = flush_interval_s
        self.batch_rows = batch_rows
        self.max_pending_rows = max_pending_rows
        self.retry_budget = retry_budget
        self.stage_rows = stage_rows
        self.merge_interval_s = merge_interval_s
        self.rejected_path = path + ".rejected.jsonl"
        self._con = _connect(path)
        # DuckDB's allocator otherwise keeps freed pages until its next allocations on the same
        # thread; its background threads return them (Upkeep also does after each checkpoint).
        self._con.execute("SET allocator_background_threads=true")
        self._readers = ReaderGate()
        self._upkeep = Upkeep(self._con, path, self._readers, checkpoint_wal_bytes)
        self._owner_pid = os.getpid()
        self._inherited = False  # set in a forked child, whose writes go nowhere
        self._tables: dict[str, type] = {}
        self._appenders: dict[str, ArrowAppender] = {}
        self._buffer: collections.deque[tuple[str, Any]] = collections.deque()
        self._commands: collections.deque[tuple[Callable[[], Any], Future]] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._cursor_lock = threading.Lock()
        self._local = threading.local()
        self._refs = 0
        self.written_rows: dict[str, int] = collections.Counter()
        # table -> reason -> rows; written by the writer and by appending threads, read by status()
        self._rejected: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self._dropped: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self._counts_lock = threading.Lock()
        self._logged_reasons: set[tuple[str, str, str]] = set()
        self.failed_flushes = 0
        self._episode_failures = 0  # failed flushes since the last successful one
        self._retry_at = 0.0
        self._rejected_file_rows = 0
        self._last_error_log = 0.0
        try:
            self._init_schema()
            self._merge_leftovers()
        except duckdb.Error as err:  # the catalog is read here: a damaged file shows first
            self._con.close()
            raise translate_error(path, err) from err
        self._staged = staging.Staged(self._con.execute(
            f"SELECT coalesce(max(staged_id) + 1, 0) FROM {staging.STAGED_TABLE}").fetchone()[0])
        self._merged_below = self._staged.next_id  # staged rows below this id are in their tables
        self._thread = threading.Thread(target=self._run, name=f"duckdb-writer:{Path(path).name}",
                                         daemon=True)
        self._thread.start()

    # -- schema -----------------------------------------------------------------------------
    def _init_schema(self) -> None:
        for ddl in (*schema.FIXED_TABLES.values(), staging.STAGED_DDL):
            self._con.execute(ddl)
        if not self._con.execute("SELECT count(*) FROM schema_meta").fetchone()[0]:
            self._con.execute("INSERT INTO schema_meta (version) VALUES (?)", [schema.SCHEMA_VERSION])

    def _merge_leftovers(self) -> None:
        """Merge the batches a process that died left staged (module ``staging``), each with the
        deletion of its staged row in one transaction. A batch its table no longer accepts goes
        to ``rejected_rows`` row by row, with the reason."""
        leftovers = self._con.execute(f"SELECT staged_id, table_name, arrow_ipc FROM {staging.STAGED_TABLE} "
                                      "ORDER BY staged_id").fetchall()
        merged = 0
        for staged_id, table, blob in leftovers:
            delete = (f"DELETE FROM {staging.STAGED_TABLE} WHERE staged_id = ?", [staged_id])
            try:
                batch = staging.decode(blob)
                self._con.execute("BEGIN TRANSACTION")
                self._con.register("_staged_leftover", batch)
                self._con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM _staged_leftover')
                self._con.execute(*delete)
                self._con.execute("COMMIT")
                self._count_written(table, batch.num_rows)
                merged += batch.num_rows
            except Exception as err:  # noqa: BLE001 - kept as rejected rows, with the reason
                self._rollback()
                try:
                    rows = staging.decode(blob).to_pylist()
                except Exception:  # noqa: BLE001 - undecodable: the bytes themselves are kept
                    rows = [{"staged_id": staged_id, "arrow_ipc_hex": bytes(blob).hex()}]
                self._reject(table, [(row, err) for row in rows],
                             reason=f"staged batch not merged: {type(err).__name__}")
                try:
                    self._con.execute(*delete)
                except duckdb.Error as delete_err:  # tried again at the next open
                    log.error("cannot delete staged batch %d in %s: %s", staged_id, self.path, delete_err)
            finally:
                with contextlib.suppress(duckdb.Error):
                    self._con.unregister("_staged_leftover")
        if leftovers:
            log.warning("%s: %d row(s) that the last writer had staged were merged into their tables",
                        self.path, merged)

    def ensure_table(self, table: str, record_cls: type) -> None:
        """Create ``table`` for ``record_cls`` or add the columns an older file lacks. Blocks."""
        if self._tables.get(table) is record_cls:
            return

        def create() -> None:
            try:
                self._create(table, record_cls)
            except duckdb.Error as err:
                raise translate_error(self.path, err) from err

        self._submit(create)

    def _create(self, table: str, record_cls: type) -> None:
        self._con.execute(schema.create_table_sql(table, record_cls))
        existing = dict(self._con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?", [table]
        ).fetchall())
        for statement in schema.migration_sql(table, record_cls, existing):
            self._con.execute(statement)
        empty = self._con.sql(f'SELECT * FROM "{table}" LIMIT 0')
        current = (getattr(empty, "to_arrow_table", None) or empty.arrow)().schema  # renamed in DuckDB 2
        for statement in schema.nested_migration_sql(table, record_cls, current):
            self._con.execute(statement)
        appender = self._appenders.pop(table, None)
        if appender is not None:  # bound to the columns the table had
            appender.close()
        self._tables[table] = record_cls

    # -- writing ----------------------------------------------------------------------------
    def append(self, table: str, record: Any) -> bool:
        """Queue one record for ``table`` (created with :meth:`ensure_table`). Never blocks.

        Returns False (and counts the drop) when the buffer already holds ``max_pending_rows``.
        Once more than ``batch_rows`` records wait, the caller yields the interpreter lock at
        each append (``time.sleep(0)``), so the writer thread runs at once instead of at the
        next forced switch (5 ms): a caller appending in a tight loop otherwise outran the
        writer, and the records queued meanwhile (up to 28,000 seen, about 0.6 KB each) left
        Python's heap 10-24 MB larger for good. The caller then waits at most one switch
        interval, and never on the writer's I/O (DuckDB runs without the lock); appending at a
        sampling rate never gets a batch behind.
        """
        if self._inherited:
            raise self._inherited_error()
        if len(self._buffer) >= self.max_pending_rows or self._stopping:
            self._drop(table, "store closed" if self._stopping else "buffer full", 1)
            return False
        self._buffer.append((table, record))
        if len(self._buffer) >= self.batch_rows:
            self._wake.set()
            if len(self._buffer) > self.batch_rows:  # the writer is behind: let it run now
                time.sleep(0)
        return True

    def append_many(self, table: str, records: list[Any]) -> int:
        """Queue several records at once (one bounded extend, one wake-up); returns how many were
        accepted. Records beyond ``max_pending_rows`` are dropped and counted, as in :meth:`append`."""
        if self._inherited:
            raise self._inherited_error()
        records = list(records)
        room = 0 if self._stopping else max(0, self.max_pending_rows - len(self._buffer))
        accepted = records[:room]
        if len(accepted) < len(records):
            self._drop(table, "store closed" if self._stopping else "buffer full", len(records) - len(accepted))
        self._buffer.extend(zip(itertools.repeat(table), accepted))
        if len(self._buffer) >= self.batch_rows:
            self._wake.set()
        return len(accepted)

    def write(self, sql: str, params: list | tuple = ()) -> None:
        """Run one statement on the writer thread after the pending appends; waits; re-raises."""
        self._submit(lambda: self._con.execute(sql, list(params)))

    def flush(self, timeout_s: float = 30.0) -> None:
        """Write everything queued so far; returns when it is on disk (or raises StoreError)."""
        self._submit(lambda: None, timeout_s)

    def _inherited_error(self) -> StoreError:
        return StoreError(
            f"the metrics database {self.path!r} was opened by process {self._owner_pid}; this process "
            f"({os.getpid()}) was forked from it and cannot write through its parent's writer. Give this "
            f"process a store of its own with its own path (for example a monitor with "
            f"db_path='metrics-{os.getpid()}.duckdb').")

    def _submit(self, fn: Callable[[], Any], timeout_s: float = 30.0) -> Any:
        if self._inherited:
            raise self._inherited_error()
        if threading.current_thread() is self._thread:
            return fn()
        if not self._thread.is_alive():
            raise StoreError(f"the writer of {self.path!r} has stopped")
        future: Future = Future()
        self._commands.append((fn, future))
        self._wake.set()
        return future.result(timeout=timeout_s)

    # -- reading ----------------------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self._inherited:
            raise self._inherited_error()
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._cursor_lock:
                cursor = self._con.cursor()
            cursor.execute("SET TimeZone='UTC'")
            cursor.execute(f"USE {DATABASE}")  # a new cursor starts in the in-memory home
            self._local.cursor = cursor
        return cursor

    def query(self, sql: str, params: list | tuple = (), *, flush: bool = True) -> list[tuple]:
        """Rows of a read query, on this thread's own cursor (pending appends flushed first)."""
        if flush:
            self.flush()
        cursor = self._cursor()
        with self._readers.reading():
            return cursor.execute(sql, list(params)).fetchall()

    def query_dicts(self, sql: str, params: list | tuple = (), *, flush: bool = True) -> list[dict]:
        if flush:
            self.flush()
        cursor = self._cursor()
        with self._readers.reading():
            cursor.execute(sql, list(params))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    @property
    def dropped_rows(self) -> int:
        """Rows discarded, all tables and reasons together."""
        with self._counts_lock:
            return sum(sum(c.values()) for c in self._dropped.values())

    @property
    def rejected_rows(self) -> int:
        """Rows that could not be stored in their table (kept in ``rejected_rows`` or the file)."""
        with self._counts_lock:
            return sum(sum(c.values()) for c in self._rejected.values())

    def stats(self) -> StoreStats:
        return StoreStats(dict(self.written_rows), self.dropped_rows, self.failed_flushes,
                          len(self._buffer), self.rejected_rows)

    def status(self) -> dict[str, Any]:
        """The store's counters as a plain dict with stable keys (for status pages and exporters).

        ``written_rows``: table -> rows stored; ``rejected_rows`` / ``dropped_rows``: table ->
        reason -> rows (rejected rows are kept in the ``rejected_rows`` table or, failing that,
        in ``rejected_rows_file``; dropped rows are gone: buffer full, store closed, or
        unrecordable); ``*_total``: the sums; ``pending_rows``: the queue depth;
        ``staged_rows``: rows on disk, staged to be merged into their tables (module
        ``staging``); ``failed_flushes``: over the store's life; ``failing``: the last flush failed.
        """
        with self._counts_lock:
            written = dict(self.written_rows)
            rejected = {t: dict(c) for t, c in self._rejected.items() if c}
            dropped = {t: dict(c) for t, c in self._dropped.items() if c}
        return {
            "path": self.path,
            "written_rows": written,
            "rejected_rows": rejected,
            "dropped_rows": dropped,
            "written_rows_total": sum(written.values()),
            "rejected_rows_total": sum(sum(c.values()) for c in rejected.values()),
            "dropped_rows_total": sum(sum(c.values()) for c in dropped.values()),
            "pending_rows": len(self._buffer),
            "staged_rows": self._staged.rows,
            "failed_flushes": self.failed_flushes,
            "failing": self._episode_failures > 0,
            "rejected_rows_file": self.rejected_path if self._rejected_file_rows else None,
        }

    # -- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval_s
        while True:
            self._wake.wait(timeout=max(0.0, next_flush - time.monotonic()))
            self._wake.clear()
            now = time.monotonic()
            # stopping flushes now, not at the next interval; a failing file waits for its retry time
            if self._commands or self._stopping or (
                    now >= self._retry_at and (len(self._buffer) >= self.batch_rows or now >= next_flush)):
                self._flush_buffer(merge=bool(self._commands or self._stopping))
                next_flush = time.monotonic() + self.flush_interval_s
            while self._commands:
                fn, future = self._commands.popleft()
                # rows appended while the last batch was being written were queued before this
                # command: they go first, so flush() and read queries see everything queued so far
                # (a failing file is tried once per wake-up, not once more per command)
                if not self._episode_failures:
                    self._flush_buffer()
                try:
                    future.set_result(fn())
                except BaseException as err:  # handed to the waiting caller
                    future.set_exception(err)
            if self._stopping and not self._buffer and not self._commands and not self._staged.rows:
                break
        self._close_after_readers()

    def _close_after_readers(self, wait_s: float = 10.0) -> None:
        """Close the connection once no query runs on a reader's cursor (a report being made as
        the store closes), waiting at most ``wait_s``; none starts meanwhile. Everything is
        written by then: a query still running past the wait is ended by the close."""
        deadline = time.monotonic() + wait_s
        while True:
            with self._readers.idle() as idle:
                if idle or time.monotonic() >= deadline:
                    try:
                        self._con.close()
                    except duckdb.Error as err:
                        log.warning("closing %s while a query still ran: %s", self.path, err)
                    return
            time.sleep(0.01)

    def _flush_buffer(self, merge: bool = True) -> None:
        """Write what is queued (``_write_buffer``), then checkpoint or release memory (``upkeep``)
        once the batch's records and Arrow tables are freed: a checkpoint takes a while, and
        meanwhile a fast producer queues as many rows again, which must not coexist with these."""
        if self._buffer or self._staged.rows:
            self._upkeep.after_flush(bulk=self._write_buffer(merge))

    def _write_buffer(self, merge: bool) -> bool:
        """Staged when the batch is small and no merge is due (``merge`` False: the interval's
        flush), else into the tables together with the staged batches (returns True)."""
        count = len(self._buffer)
        batches: dict[str, list[Any]] = {}
        for _ in range(count):
            table, record = self._buffer.popleft()
            batches.setdefault(table, []).append(record)
        converted = {table: self._convert(table, records) for table, records in batches.items()}
        if not (merge or self._episode_failures) and self._stage(converted, time.monotonic()):
            return False
        work = {table: self._with_staged(table, *converted.get(table, (None, [])))
                for table in (*self._staged.by_table, *(t for t in converted if t not in self._staged.by_table))}
        self._staged.clear()
        if self._staged.next_id == self._merged_below or not self._merge_at_once(work):
            self._write_each(work)
        return True

    def _stage(self, converted: dict[str, tuple[Any, list[Any]]], now: float) -> bool:
        """Commit the converted batches to the staging table (one statement for every table);
        False when they should go to their tables instead (a merge is due, too many rows, or
        staging failed: the tables' own path then writes or retries them)."""
        rows = sum(len(good) for _, good in converted.values())
        due = self._staged.rows and now - self._staged.since >= self.merge_interval_s
        if due or self._staged.rows + rows >= self.stage_rows:
            return False
        filled = [(table, arrow, good) for table, (arrow, good) in converted.items() if good]
        if filled:
            params = [value for i, (table, arrow, _) in enumerate(filled)
                      for value in (self._staged.next_id + i, table, staging.encode(arrow))]
            try:
                self._con.execute(f"INSERT INTO {staging.STAGED_TABLE} (staged_id, table_name, arrow_ipc) VALUES "
                                  + ", ".join(["(?, ?, ?)"] * len(filled)), params)
            except Exception as err:  # noqa: BLE001 - the tables' path reports and retries
                self._log_once(staging.STAGED_TABLE, "failed", type(err).__name__,
                               "staging rows in %s failed (%s); they go to their tables directly", self.path, err)
                return False
            for table, arrow, good in filled:
                self._staged.add(table, good, arrow, now)
        return True

    def _with_staged(self, table: str, arrow: Any, records: list[Any]) -> tuple[Any, list[Any]]:
        """The staged batches of ``table`` followed by the new one, as one Arrow table and its records."""
        tables = [*self._staged.tables(table), *([arrow] if records else [])]
        return (pa_concat(tables) if len(tables) > 1 else (tables[0] if tables else None),
                [*self._staged.records(table), *records])

    def _merge_at_once(self, work: dict[str, tuple[Any, list[Any]]]) -> bool:
        """Insert every table's rows and delete the staged batches in one transaction, so a crash
        leaves either the staged batches or the merged rows, never both. False after a failure
        (rolled back: the tables' own path then isolates rows and retries)."""
        try:
            self._con.execute("BEGIN TRANSACTION")
            for table, (arrow, records) in work.items():
                if records:
                    self._insert(table, arrow)
            self._con.execute(f"DELETE FROM {staging.STAGED_TABLE} WHERE staged_id < ?", [self._staged.next_id])
            self._con.execute("COMMIT")
        except Exception:  # noqa: BLE001 - rolled back; the rows are written one table at a time
            self._rollback()
            return False
        for table, (_, records) in work.items():
            self._count_written(table, len(records))
        self._merged_below = self._staged.next_id
        self._episode_failures = 0
        return True

    def _rollback(self) -> None:
        with contextlib.suppress(duckdb.Error):  # none is open when the failure came before BEGIN
            self._con.execute("ROLLBACK")
        for appender in self._appenders.values():  # a view registered in the transaction is gone
            with contextlib.suppress(Exception):
                appender.close()
        self._appenders.clear()

    def _write_each(self, work: dict[str, tuple[Any, list[Any]]]) -> None:
        """One table at a time, isolating the rows that cannot be stored; a failure of the file
        keeps the rows for a retry. Staged batches are deleted once all their rows are handled
        (a crash before that merges them again when the file is opened: only after a failure)."""
        retry: list[tuple[str, Any]] = []
        for table, (arrow, records) in work.items():
            if not records:
                continue
            remaining, err = self._store(table, arrow, records)
            if err is None:
                self._episode_failures = 0
                continue
            self.failed_flushes += 1
            self._episode_failures += 1
            self._log_failure(table, len(remaining), err)
            if self._stopping or self._episode_failures > self.retry_budget:
                self._give_up(table, remaining, err)
            else:
                retry.extend(zip(itertools.repeat(table), remaining))
        if retry:  # kept ahead of newer rows for the next flush, which waits one interval
            self._buffer.extendleft(reversed(retry))
            self._retry_at = time.monotonic() + self.flush_interval_s
        elif self._merged_below < self._staged.next_id:
            try:
                self._con.execute(f"DELETE FROM {staging.STAGED_TABLE} WHERE staged_id < ?", [self._staged.next_id])
                self._merged_below = self._staged.next_id
            except Exception as err:  # noqa: BLE001 - tried again after the next flush
                self._log_once(staging.STAGED_TABLE, "failed", "delete", "cannot delete merged staged batches in "
                               "%s (%s); tried again after the next flush", self.path, err)

    def _convert(self, table: str, records: list[Any]) -> tuple[Any, list[Any]]:
        """``(arrow table, the records it holds)``; records no column can hold are rejected."""
        record_cls = self._tables[table]
        try:
            arrow, good, bad = schema.to_arrow_isolating(records, record_cls)
        except Exception:  # not one value's fault: bisect the batch by whole records
            converted: list[Any] = []
            bad, _, _ = rejects.isolate(
                records, lambda rows: converted.append((rows, schema.to_arrow(rows, record_cls))),
                fatal=lambda err: isinstance(err, MemoryError))
            good = [r for rows, _ in converted for r in rows]
            arrow = pa_concat([t for _, t in converted]) if converted else None
        if bad:
            self._reject(table, bad)
        return arrow, good

    def _store(self, table: str, arrow: Any, good: list[Any]) -> tuple[list[Any], BaseException | None]:
        """Insert ``arrow`` (the records ``good``), isolating the rows DuckDB refuses. Returns the
        rows still to write and the error that stopped the work (a failure of the file, not of a row)."""
        try:
            self._insert(table, arrow)
            self._count_written(table, len(good))
            return [], None
        except Exception as insert_err:
            if rejects.is_environmental(insert_err):
                return good, insert_err
            # a value DuckDB refuses although Arrow held it: find the rows
            bad, remaining, err = rejects.isolate(good, lambda rows: self._insert_counted(table, rows))
            if bad:
                self._reject(table, bad)
            return remaining, err

    def _insert(self, table: str, arrow_batch: Any) -> None:
        appender = self._appenders.get(table)
        if appender is None:
            appender = self._appenders[table] = ArrowAppender(self._con, table)
        appender.append(arrow_batch)

    def _insert_counted(self, table: str, rows: list[Any]) -> None:
        self._insert(table, schema.to_arrow(rows, self._tables[table]))
        self._count_written(table, len(rows))

    def _count_written(self, table: str, rows: int) -> None:
        with self._counts_lock:
            self.written_rows[table] += rows

    def _drop(self, table: str, reason: str, rows: int) -> None:
        with self._counts_lock:
            self._dropped[table][reason] += rows
        self._log_once(table, "dropped", reason, "%d row(s) for %s in %s dropped: %s (counted in status())",
                       rows, table, self.path, reason)

    def _reject(self, table: str, bad: list[tuple[Any, BaseException]], reason: str | None = None) -> None:
        """Keep rows that cannot be stored in their table: ``rejected_rows``, else the JSON-lines
        file, else count them as dropped. Counted per table and reason, logged once per reason."""
        now = datetime.now(timezone.utc)
        rows = [(now, table, reason or rejects.reason_of(err), rejects.safe_text(f"{type(err).__name__}: {err}"),
                 rejects.record_json(record)) for record, err in bad]
        try:
            self._con.executemany(f"INSERT INTO {rejects.REJECTED_TABLE} VALUES (?, ?, ?, ?, ?)", rows)
            kept, where = len(rows), rejects.REJECTED_TABLE
        except Exception as err:
            log.error("cannot record %d rejected row(s) in %s (%s); writing them to %s",
                      len(rows), self.path, err, self.rejected_path)
            kept, where = self._write_rejected_file(rows), self.rejected_path
        with self._counts_lock:
            for row in rows[:kept]:
                self._rejected[table][row[2]] += 1
        for row in rows[:kept]:
            self._log_once(table, "rejected", row[2], "a row for %s in %s cannot be stored (%s); it is kept in %s "
                           "with the record (counted in status())", table, self.path, row[3], where)
        if kept < len(rows):
            self._drop(table, "unrecordable", len(rows) - kept)

    def _write_rejected_file(self, rows: list[tuple]) -> int:
        """Append whole lines to the JSON-lines file beside the database; returns how many made
        it (a line cut short by a full disk is removed, so the file stays valid JSON lines)."""
        written = 0
        try:
            with open(self.rejected_path, "ab", buffering=0) as out:
                for at, table, reason, error, record in rows:
                    line = json.dumps({"rejected_at": at.isoformat(), "table_name": table, "reason": reason,
                                       "error": error, "record": record}).encode() + b"\n"
                    start = out.tell()
                    try:
                        complete = out.write(line) == len(line)
                    except OSError:
                        complete = False
                    if not complete:
                        out.truncate(start)
                        break
                    written += 1
        except OSError as err:
            log.error("cannot write rejected rows to %s: %s", self.rejected_path, err)
        if written < len(rows):
            log.error("%d rejected row(s) did not fit in %s", len(rows) - written, self.rejected_path)
        self._rejected_file_rows += written
        return written

    def _give_up(self, table: str, records: list[Any], err: BaseException) -> None:
        """The retry budget of this failure episode is spent (or the store is closing): the rows
        go where rejected rows go, with the failure as their reason."""
        self._reject(table, [(r, err) for r in records], reason=f"write failed: {type(err).__name__}")

    def _log_once(self, table: str, kind: str, reason: str, message: str, *args: Any) -> None:
        key = (table, kind, reason)
        if key not in self._logged_reasons:
            self._logged_reasons.add(key)
            log.error(message, *args)

    def _log_failure(self, table: str, rows: int, err: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 60:
            self._last_error_log = now
            log.error("writing %d rows to %s in %s failed (failure %d of this episode, %d allowed): %s",
                      rows, table, self.path, self._episode_failures, self.retry_budget, err)

    def _stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=60)


_OPEN: dict[str, MetricsStore] = {}
_OPEN_LOCK = threading.Lock()
_INHERITED: dict[str, int] = {}  # in a forked child: path -> the ancestor process holding it


def _after_fork_in_child() -> None:
    """A forked child has no writer thread, and DuckDB's copy of its parent's database is not
    its own (reopening the path would reuse that copy, unlocked): every inherited store refuses
    to work with a clear error, and its path cannot be opened again here. Locks another thread
    held at the fork are replaced, so the child never hangs on them."""
    global _OPEN_LOCK
    _OPEN_LOCK = threading.Lock()
    for path, store in _OPEN.items():
        store._inherited = True
        store._counts_lock = threading.Lock()
        store._cursor_lock = threading.Lock()
        _INHERITED[path] = store._owner_pid
    _OPEN.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def open_store(path: str | os.PathLike, **options: Any) -> MetricsStore:
    """The process-wide store of ``path`` (opened on first use; call :func:`close_store` when done).

    Raises :class:`StoreLockedError` when another process holds the file, :class:`StoreError`
    for other open failures (bad path, corrupt file).
    """
    key = str(Path(path).expanduser().resolve())
    if key in _INHERITED:
        raise StoreLockedError(key, _INHERITED[key], "held by a process this one was forked from; a forked "
                               "child cannot share its parent's writer")
    with _OPEN_LOCK:
        store = _OPEN.get(key)
        if store is None or not store._thread.is_alive():
            Path(key).parent.mkdir(parents=True, exist_ok=True)
            store = MetricsStore(key, **options)
            _OPEN[key] = store
        store._refs += 1
        return store


def close_store(store: MetricsStore) -> None:
    """Release one reference; the last one flushes, stops the writer and closes the file."""
    with _OPEN_LOCK:
        store._refs -= 1
        if store._refs > 0:
            return
        _OPEN.pop(store.path, None)
    store._stop()


def _close_all_at_exit() -> None:
    # A connection left to interpreter finalisation can abort the process and lose rows.
    with _OPEN_LOCK:
        stores = list(_OPEN.values())
        _OPEN.clear()
    for store in stores:
        store._stop()


lifecycle.at_exit("stores", _close_all_at_exit)
