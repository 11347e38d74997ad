"""The store's errors, apart from the code that raises them, so catching one imports no DuckDB."""

from __future__ import annotations

import os


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
