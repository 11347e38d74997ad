"""Small flushes staged in one narrow table and merged into their tables in bulk.

What a DuckDB insert costs is mostly fixed per statement, and that fixed part grows with the
columns of the table it appends to: about 8 ms of CPU into the samples table (33 columns, four
of them lists of structs) whether it appends 1 row or 20, about 3 ms into a table of two
columns (measured on 2 shared cores). A monitor sampling every 0.05 s flushes 20 rows every
second, and the crash guarantee (at most ``flush_interval_s`` of rows lost) forbids flushing
less often. So a flush of fewer than ``stage_rows`` rows is committed as one row of
:data:`STAGED_TABLE` per table (the batch as an Arrow IPC stream), which is as durable as the
insert it replaces, and the staged batches are merged into their tables (one insert per table
and the staged rows deleted, in one transaction) every ``merge_interval_s``, once they hold
``stage_rows`` rows, and before anything reads the store (``flush()``, queries, close).

A process that dies leaves its staged batches in the file; the store merges them when it opens
the file again (a batch its table no longer accepts goes to ``rejected_rows``, row by row, with
the reason). Until then a plain DuckDB client sees them only in :data:`STAGED_TABLE`. When a
merge fails, the rows go through the writer's usual path (row isolation, retries) and the staged
batches are deleted once every row is handled; a crash in between merges them again at the next
open (rows stored twice, never lost). ``stage_rows=0`` turns staging off.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

STAGED_TABLE = "staged_batches"
STAGED_DDL = (f"CREATE TABLE IF NOT EXISTS {STAGED_TABLE} (staged_id BIGINT NOT NULL, "
              "staged_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp, table_name VARCHAR NOT NULL, "
              "arrow_ipc BLOB NOT NULL)")

DEFAULT_STAGE_ROWS = 500
DEFAULT_MERGE_INTERVAL_S = 10.0


def encode(batch: pa.Table) -> bytes:
    """``batch`` as an Arrow IPC stream (schema included, so a later version can read it)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_table(batch)
    return sink.getvalue().to_pybytes()


def decode(blob: bytes) -> pa.Table:
    return pa.ipc.open_stream(blob).read_all()


class Staged:
    """The batches staged since the last merge, kept in memory too (records and their Arrow
    table) so a merge needs no read back. Not thread-safe: the store's writer thread owns it."""

    def __init__(self, next_id: int) -> None:
        self.next_id = next_id  # staged_id of the next batch
        self.by_table: dict[str, list[tuple[list[Any], pa.Table]]] = {}
        self.rows = 0
        self.since = 0.0  # monotonic time of the oldest batch held

    def add(self, table: str, records: list[Any], batch: pa.Table, now: float) -> None:
        if not self.rows:
            self.since = now
        self.by_table.setdefault(table, []).append((records, batch))
        self.rows += len(records)
        self.next_id += 1

    def records(self, table: str) -> list[Any]:
        return [r for records, _ in self.by_table.get(table, ()) for r in records]

    def tables(self, table: str) -> list[pa.Table]:
        return [batch for _, batch in self.by_table.get(table, ())]

    def clear(self) -> None:
        self.by_table.clear()
        self.rows = 0
