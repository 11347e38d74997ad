"""The one writer of a DuckDB file: a thread that owns the connection and appends in batches.

Callers never touch the writer's connection. ``append`` only puts a record in a bounded
buffer (a full buffer drops the new record and counts it, so a slow disk shows up as drops,
never as a late sample); the writer thread flushes every ``flush_interval_s`` or every
``batch_rows`` records, and on ``flush()`` / ``close()`` / interpreter exit. Readers get a
cursor of their own per thread. One store is shared per file within a process (reference
counted), so two monitors on the same path never race on the schema.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import os
import re
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import duckdb

from fleet_hwmon.store import schema

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """A metrics database could not be opened or written."""


class StoreLockedError(StoreError):
    """Another process holds the DuckDB file open for writing.

    Attributes: ``path`` (the file), ``holder_pid`` (int or None, from DuckDB's message).
    """

    def __init__(self, path: str, holder_pid: int | None, detail: str) -> None:
        self.path = path
        self.holder_pid = holder_pid
        holder = f"process {holder_pid}" if holder_pid else "another process"
        super().__init__(
            f"metrics database {path!r} is locked by {holder}: DuckDB allows one writing process "
            f"per file. Give this process its own file (for example --db-path metrics-{os.getpid()}.duckdb), "
            f"or read the file after the writing process has stopped. ({detail})"
        )

    def __reduce__(self):  # picklable across processes, like psutil's exceptions
        return (type(self), (self.path, self.holder_pid, ""))


@dataclass
class StoreStats:
    """Counters of one store: rows written per table, rows dropped (buffer full), failed flushes."""

    written_rows: dict[str, int]
    dropped_rows: int
    failed_flushes: int
    pending_rows: int


_PID_RE = re.compile(r"PID (\d+)")


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    try:
        con = duckdb.connect(path)
    except duckdb.IOException as err:
        text = str(err)
        if "lock" in text.lower():
            match = _PID_RE.search(text)
            raise StoreLockedError(path, int(match.group(1)) if match else None, text) from err
        raise StoreError(f"cannot open metrics database {path!r}: {text}") from err
    con.execute("SET TimeZone='UTC'")
    return con


class MetricsStore:
    """Batched, single-writer access to one DuckDB file. Obtain one with :func:`open_store`."""

    def __init__(self, path: str, *, flush_interval_s: float = 1.0, batch_rows: int = 5000,
                 max_pending_rows: int = 1_000_000) -> None:
        self.path = path
        self.flush_interval_s = flush_interval_s
        self.batch_rows = batch_rows
        self.max_pending_rows = max_pending_rows
        self._con = _connect(path)
        self._tables: dict[str, type] = {}
        self._buffer: collections.deque[tuple[str, Any]] = collections.deque()
        self._commands: collections.deque[tuple[Callable[[], Any], Future]] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._cursor_lock = threading.Lock()
        self._local = threading.local()
        self._refs = 0
        self.written_rows: dict[str, int] = collections.Counter()
        self.dropped_rows = 0
        self.failed_flushes = 0
        self._last_error_log = 0.0
        self._init_schema()
        self._thread = threading.Thread(target=self._run, name=f"duckdb-writer:{Path(path).name}",
                                         daemon=True)
        self._thread.start()

    # -- schema -----------------------------------------------------------------------------
    def _init_schema(self) -> None:
        for ddl in schema.FIXED_TABLES.values():
            self._con.execute(ddl)
        if not self._con.execute("SELECT count(*) FROM schema_meta").fetchone()[0]:
            self._con.execute("INSERT INTO schema_meta (version) VALUES (?)", [schema.SCHEMA_VERSION])

    def ensure_table(self, table: str, record_cls: type) -> None:
        """Create ``table`` for ``record_cls`` or add the columns an older file lacks. Blocks."""
        if self._tables.get(table) is record_cls:
            return

        def create() -> None:
            self._con.execute(schema.create_table_sql(table, record_cls))
            existing = {r[0] for r in self._con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
            ).fetchall()}
            for statement in schema.migration_sql(table, record_cls, existing):
                self._con.execute(statement)
            self._tables[table] = record_cls

        self._submit(create)

    # -- writing ----------------------------------------------------------------------------
    def append(self, table: str, record: Any) -> bool:
        """Queue one record for ``table`` (created with :meth:`ensure_table`). Never blocks.

        Returns False (and counts the drop) when the buffer already holds ``max_pending_rows``.
        """
        if len(self._buffer) >= self.max_pending_rows or self._stopping:
            self.dropped_rows += 1
            return False
        self._buffer.append((table, record))
        if len(self._buffer) >= self.batch_rows:
            self._wake.set()
        return True

    def append_many(self, table: str, records: list[Any]) -> int:
        """Queue several records at once (one bounded extend, one wake-up); returns how many were
        accepted. Records beyond ``max_pending_rows`` are dropped and counted, as in :meth:`append`."""
        records = list(records)
        room = 0 if self._stopping else max(0, self.max_pending_rows - len(self._buffer))
        accepted = records[:room]
        self.dropped_rows += len(records) - len(accepted)
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

    def _submit(self, fn: Callable[[], Any], timeout_s: float = 30.0) -> Any:
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
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._cursor_lock:
                cursor = self._con.cursor()
            cursor.execute("SET TimeZone='UTC'")
            self._local.cursor = cursor
        return cursor

    def query(self, sql: str, params: list | tuple = (), *, flush: bool = True) -> list[tuple]:
        """Rows of a read query, on this thread's own cursor (pending appends flushed first)."""
        if flush:
            self.flush()
        return self._cursor().execute(sql, list(params)).fetchall()

    def query_dicts(self, sql: str, params: list | tuple = (), *, flush: bool = True) -> list[dict]:
        if flush:
            self.flush()
        cursor = self._cursor().execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def stats(self) -> StoreStats:
        return StoreStats(dict(self.written_rows), self.dropped_rows, self.failed_flushes,
                          len(self._buffer))

    # -- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval_s
        while True:
            self._wake.wait(timeout=max(0.0, next_flush - time.monotonic()))
            self._wake.clear()
            if (len(self._buffer) >= self.batch_rows or self._commands or self._stopping
                    or time.monotonic() >= next_flush):  # stopping flushes now, not at the next interval
                self._flush_buffer()
                next_flush = time.monotonic() + self.flush_interval_s
            while self._commands:
                fn, future = self._commands.popleft()
                # rows appended while the last batch was being written were queued before this
                # command: they go first, so flush() and read queries see everything queued so far
                self._flush_buffer()
                try:
                    future.set_result(fn())
                except BaseException as err:  # handed to the waiting caller
                    future.set_exception(err)
            if self._stopping and not self._buffer and not self._commands:
                break
        self._con.close()

    def _flush_buffer(self) -> None:
        count = len(self._buffer)
        if not count:
            return
        batches: dict[str, list[Any]] = {}
        for _ in range(count):
            table, record = self._buffer.popleft()
            batches.setdefault(table, []).append(record)
        for table, records in batches.items():
            try:
                arrow_batch = schema.to_arrow(records, self._tables[table])
                self._con.register("_append_batch", arrow_batch)
                try:
                    self._con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM _append_batch')
                finally:
                    self._con.unregister("_append_batch")
                self.written_rows[table] += len(records)
            except Exception as err:  # keep the rows for the next flush rather than lose them
                self.failed_flushes += 1
                if not self._stopping and self.failed_flushes < 100:
                    self._buffer.extendleft((table, r) for r in reversed(records))
                now = time.monotonic()
                if now - self._last_error_log > 60:
                    self._last_error_log = now
                    log.error("writing %d rows to %s in %s failed (will retry): %s",
                              len(records), table, self.path, err)

    def _stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=60)


_OPEN: dict[str, MetricsStore] = {}
_OPEN_LOCK = threading.Lock()


def open_store(path: str | os.PathLike, **options: Any) -> MetricsStore:
    """The process-wide store of ``path`` (opened on first use; call :func:`close_store` when done).

    Raises :class:`StoreLockedError` when another process holds the file, :class:`StoreError`
    for other open failures (bad path, corrupt file).
    """
    key = str(Path(path).expanduser().resolve())
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


@atexit.register
def _close_all_at_exit() -> None:
    # A connection left to interpreter finalisation can abort the process and lose rows.
    with _OPEN_LOCK:
        stores = list(_OPEN.values())
        _OPEN.clear()
    for store in stores:
        store._stop()
