"""Appending Arrow batches to one table through a statement bound once.

DuckDB binds and plans an ``INSERT ... SELECT`` from a registered Arrow object on every run,
and registering or unregistering the object changes the connection's catalog, which forces the
next run to bind again. For a 29-column table of nested lists of structs that fixed part costs
milliseconds per batch whatever its size. Here the view is registered once, over a holder whose
batch is swapped per append, and the statement is prepared once (``PREPARE`` / ``EXECUTE``), so
a batch pays for its rows, its commit and little else. The holder drops its batch after each
append, so no Arrow buffers outlive the insert.
"""

from __future__ import annotations

import itertools
from typing import Any

_names = itertools.count()


class _BatchView:
    """What the registered view reads: the batch being appended (an Arrow table)."""

    def __init__(self) -> None:
        self.batch: Any = None

    def __arrow_c_schema__(self) -> Any:
        return self.batch.schema.__arrow_c_schema__()

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self.batch.__arrow_c_stream__(requested_schema)


class ArrowAppender:
    """``append(batch)`` inserts an Arrow table into ``table`` on ``con`` (by column name), in
    the connection's current transaction (its own, committed, by default). Every batch must have
    the schema of the first one (one record class per table); make a new appender when the
    table's columns change. Not thread-safe: the store's writer thread owns it."""

    def __init__(self, con: Any, table: str) -> None:
        self._con = con
        serial = next(_names)
        self._view_name = f"_append_batch_{serial}"
        self._statement = f"_append_{serial}"
        self._view = _BatchView()
        self._table = table
        self._prepared = False

    def append(self, batch: Any) -> None:
        self._view.batch = batch
        try:
            if not self._prepared:  # bound against the first batch's schema
                self._con.register(self._view_name, self._view)
                self._con.execute(f'PREPARE {self._statement} AS INSERT INTO "{self._table}" BY NAME '
                                  f"SELECT * FROM {self._view_name}")
                self._prepared = True
            self._con.execute(f"EXECUTE {self._statement}")
        finally:
            self._view.batch = None

    def close(self) -> None:
        """Drop the prepared statement and the view (the connection stays open)."""
        if self._prepared:
            self._prepared = False
            self._con.execute(f"DEALLOCATE {self._statement}")
            self._con.unregister(self._view_name)
