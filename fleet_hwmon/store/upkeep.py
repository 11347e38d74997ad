"""Keeping a store's DuckDB instance small between flushes: checkpoints, cached blocks, freed pages.

Where a writing process's memory went (measured over a million STANDARD samples): DuckDB keeps
every row written since its last checkpoint in memory, uncompressed (about 400 bytes per sample
row: ~20 MB at DuckDB's default 16 MiB log threshold); its buffer pool keeps every block it has
written (the whole file, until the memory limit, by default 80 % of RAM, forces it out); and its
allocator (its own jemalloc) keeps the pages a checkpoint or a burst of inserts freed for a while
before returning them (20-30 MB seen). The row group size (``opening.ROW_GROUP_ROWS``) bounds
what one checkpoint rebuilds.

:class:`Upkeep` bounds the rest. The writer calls :meth:`Upkeep.after_flush` after each flush:

- once the write-ahead log has grown past ``checkpoint_wal_bytes`` it runs ``CHECKPOINT`` (the
  rows move into the main file, their in-memory copies are freed, the log restarts), then drops
  the blocks the buffer pool has cached (they are on disk; a query reads them back) by setting
  ``memory_limit`` very low and back, only while no query of a reader runs (:class:`ReaderGate`);
- after that, after any checkpoint DuckDB ran by itself, after every quarter of that much log,
  and after every bulk flush (rows inserted into their tables: a merge of staged batches or a
  large batch, each of which frees megabytes of DuckDB's working memory; 2-6 MB were still
  resident when read right after such a flush, and the reset costs about 1.5 ms), it resets
  ``memory_limit`` to DuckDB's default (the store's instance is its own): whenever the limit is
  set DuckDB's buffer pool purges the allocator's free pages back to the operating system.

The limit is never left low: a checkpoint that cannot get memory fails and DuckDB then refuses
the whole database. A checkpoint never loses rows: until it completes they are in the log, which
DuckDB replays on the next open after a crash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any, Iterator

import duckdb

log = logging.getLogger("fleet_hwmon.store")

DEFAULT_CHECKPOINT_WAL_BYTES = 4 * 1024 * 1024


class ReaderGate:
    """Counts the queries running on readers' cursors; :meth:`idle` holds new ones back while
    the writer briefly lowers the memory limit (a query that allocated then would fail)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._lock:
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1

    @contextlib.contextmanager
    def idle(self) -> Iterator[bool]:
        """Yields whether no query runs; none starts until the block ends."""
        with self._lock:
            yield self._active == 0


class Upkeep:
    """Checkpoints ``con`` (the writer's connection to the database at ``path``) every
    ``checkpoint_wal_bytes`` of log and returns the memory that frees. Not thread-safe: the
    store's writer thread owns it."""

    def __init__(self, con: Any, path: str, readers: ReaderGate,
                 checkpoint_wal_bytes: int = DEFAULT_CHECKPOINT_WAL_BYTES) -> None:
        self._con = con
        self._wal_path = path + ".wal"
        self._readers = readers
        self.checkpoint_wal_bytes = checkpoint_wal_bytes
        self.checkpoints = 0  # run here, over the store's life
        self._released_at = self._log_size()  # the log's size at the last release
        self._failure_logged = False

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self._wal_path)
        except OSError:  # no log: nothing written since the last checkpoint
            return 0

    def after_flush(self, bulk: bool = False) -> None:
        """Checkpoint when the log has passed ``checkpoint_wal_bytes``; release memory as the
        module docstring says, and after every ``bulk`` flush (rows inserted into their tables
        rather than staged). A failure is logged once and the work retried after the next
        flush (the rows stay in the log); never raises."""
        size = self._log_size()
        # a log smaller than at the last release was restarted by DuckDB's automatic checkpoint
        due = bulk or size < self._released_at or size - self._released_at >= self.checkpoint_wal_bytes // 4
        try:
            if size >= self.checkpoint_wal_bytes:
                self._con.execute("CHECKPOINT")
                self.checkpoints += 1
                size = self._log_size()
                self.evict_cached_blocks()
            elif due:
                self.release_freed_memory()
            self._released_at = size
        except Exception as err:  # noqa: BLE001 - a file or transaction problem: the rows stay logged
            if not self._failure_logged:
                self._failure_logged = True
                log.warning("checkpoint of %s failed (%s); its rows stay in the write-ahead log and the "
                            "checkpoint is retried after the next flush", self._wal_path[:-4], err)

    def evict_cached_blocks(self) -> None:
        """Drop the buffer pool's unpinned blocks (then release the freed pages), unless a reader's
        query runs; then only release. Rows not yet checkpointed would be spilled to the temporary
        directory, so call this right after a checkpoint."""
        with self._readers.idle() as idle:
            if idle:
                try:  # evicts what it can; refused (limit unchanged) when something stays pinned
                    self._con.execute("SET memory_limit = '1MB'")
                except duckdb.Error:
                    pass
            self.release_freed_memory()

    def release_freed_memory(self) -> None:
        """Hand the allocator's free pages back to the operating system: DuckDB's buffer pool
        purges them whenever ``memory_limit`` is set. It is reset to DuckDB's default, the limit
        of the store's own instance (``opening``): the value it reads back is rounded down, so
        setting that would lower it a little each time."""
        self._con.execute("RESET memory_limit")
