"""Row isolation for the writer: which rows of a failed batch cannot be stored, and why.

A batch that fails is split in halves until every row that fails on its own is found; the
other rows land. What decides "the row" or "the disk" is the error: an I/O error, a full disk
or an invalidated database says nothing about the rows (they are retried as a whole later),
anything else does (an integer past 64 bits, a float in an integer column, undecodable text).
A rejected row keeps its reason and the record as JSON text, so nothing is lost silently.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime
from enum import Enum
from typing import Any, Callable, Sequence

import duckdb

from fleet_hwmon.store.schema import ColumnConversionError

REJECTED_TABLE = "rejected_rows"

# Failures of the file or the machine, not of a row: retrying the same rows later can succeed.
_ENVIRONMENTAL = (duckdb.IOException, duckdb.OutOfMemoryException, duckdb.FatalException,
                  duckdb.TransactionException,  # "Failed to commit: Could not write file"
                  duckdb.InternalException, OSError, MemoryError)


def is_environmental(err: BaseException) -> bool:
    """True when ``err`` is about the file, the machine or the process (disk full, I/O, memory,
    an interpreter shutting down), not a row."""
    return isinstance(err, _ENVIRONMENTAL) or "interpreter is shutting down" in str(err)


def reason_of(err: BaseException) -> str:
    """A short, stable reason for counters and the ``reason`` column: the column and the error
    type, without the offending value (so one poisoned field is one reason, not thousands)."""
    if isinstance(err, ColumnConversionError):
        return f"column {err.column}: {err.error_type}"
    return type(err).__name__


def isolate(records: Sequence[Any], attempt: Callable[[Sequence[Any]], Any],
            fatal: Callable[[BaseException], bool] = is_environmental
            ) -> tuple[list[tuple[Any, BaseException]], list[Any], BaseException | None]:
    """Apply ``attempt`` to ``records``, bisecting around the rows it fails on.

    Returns ``(bad, remaining, error)``: ``bad`` are ``(record, error)`` of the rows that failed
    on their own; when an error for which ``fatal(error)`` is true stops the work, ``remaining``
    are the rows not yet handled (in order) and ``error`` is that error, else ``([], None)``.
    Rows of segments that succeeded were handled by ``attempt``. A clean batch costs one call;
    ``k`` bad rows cost about ``2 k log2(n / k)`` calls.
    """
    stack = [list(records)]
    bad: list[tuple[Any, BaseException]] = []
    while stack:
        segment = stack.pop()
        try:
            attempt(segment)
        except Exception as err:
            if fatal(err):
                remaining = [r for s in (segment, *reversed(stack)) for r in s]
                return bad, remaining, err
            if len(segment) == 1:
                bad.append((segment[0], err))
                continue
            middle = len(segment) // 2
            stack.append(segment[middle:])
            stack.append(segment[:middle])
    return bad, [], None


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # "nan", "inf": kept visible, and the text stays strict JSON
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def record_json(record: Any) -> str:
    """The record as strict JSON text; ASCII only, so even undecodable text survives as escapes."""
    return json.dumps(_jsonable(record), ensure_ascii=True, allow_nan=False)


def safe_text(text: str) -> str:
    """``text`` with lone surrogates escaped, so it can be stored as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
