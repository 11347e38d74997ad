"""Opening a DuckDB file for writing, whatever a crash or a user left behind.

- Another process holds the file: :class:`StoreLockedError`, naming the file, the holder and the fix.
- A write-ahead log that cannot be replayed (garbled by a crash or a disk fault) is moved aside to
  ``<db>.wal.corrupt-<UTC time>`` with a warning that its un-checkpointed rows are lost, and the
  file opens: the monitor comes back instead of failing on every start.
- A log that was replayed means the last writer did not close the file: a warning says so (a
  record cut short at its end is lost; DuckDB replays what is complete).
- A damaged main file: :class:`StoreError` naming the file and what to do.
- A 0-byte file holds nothing: it becomes a new database.

The file is attached (as :data:`DATABASE`, made the connection's default) to an in-memory home
rather than opened directly, because only ``ATTACH`` takes a row group size: appended rows go
into the table's last row group and every checkpoint rewrites that whole group, so with
DuckDB's default of 122,880 rows each checkpoint of the samples table decompressed and rebuilt
~120 MB; groups of :data:`ROW_GROUP_ROWS` keep that near 10-25 MB. Readers' cursors must
``USE`` :data:`DATABASE` too (a new cursor starts in the in-memory home).

The instance runs its statements on the calling thread only (``threads=1``): the writer's
statements are small, and handing one to DuckDB's worker threads cost more CPU than it saved
(about 1.7 ms more per insert of a one-second batch, measured); reader queries run on one core
too, which suits a monitor that shares the machine with the work it watches.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timezone

import duckdb

from fleet_hwmon.store.errors import StoreError, StoreLockedError

log = logging.getLogger("fleet_hwmon.store")

_PID_RE = re.compile(r"PID (\d+)")

DATABASE = "metrics_store"
ROW_GROUP_ROWS = 32_768


def damaged_file_error(path: str, err: BaseException) -> StoreError:
    """The error for a main file DuckDB finds corrupt, with what to do about it."""
    return StoreError(
        f"metrics database {path!r} is damaged and cannot be used ({err}). Move it aside (for example "
        f"`mv {path} {path}.damaged`) and start again with a new file at that path; tables that are still "
        f"readable can be copied out of the damaged file with the duckdb command-line tool.")


def translate_error(path: str, err: BaseException) -> StoreError:
    """A DuckDB error met while opening ``path`` as the product's error."""
    if is_damaged(err):
        return damaged_file_error(path, err)
    return StoreError(f"cannot open metrics database {path!r}: {err}")


def is_damaged(err: BaseException) -> bool:
    """Whether a DuckDB error says the file is damaged (a bad checksum, not a database, or cut
    short: a block past the end of the file, found only when it is read)."""
    text = str(err).lower()
    return ("corrupt" in text or "checksum" in text or "not a valid duckdb database" in text
            or "could not read enough bytes" in text)


def connect(path: str) -> duckdb.DuckDBPyConnection:
    """A read-write connection to ``path`` (created when missing). Raises
    :class:`StoreLockedError` or :class:`StoreError` (see the module docstring)."""
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        log.info("%s is empty (0 bytes): starting a new metrics database in it", path)
        try:
            os.remove(path)
        except OSError as err:  # (a file of /proc or /sys reads as empty)
            raise StoreError(f"cannot open metrics database {path!r}: it is empty and cannot be replaced by a "
                             f"database ({err.strerror or err})") from err
    wal = path + ".wal"
    replayed = os.path.exists(wal) and os.path.getsize(wal) > 0
    try:
        con = _connect_or_raise(path)
    except _WalError as err:
        aside = f"{wal}.corrupt-{datetime.now(timezone.utc):%Y%m%dT%H%M%S.%fZ}"
        os.replace(wal, aside)
        log.warning("the write-ahead log of %s could not be replayed (%s): the rows written after the last "
                    "checkpoint are lost. The log was moved to %s; the database opens without it.",
                    path, err.__cause__, aside)
        replayed = False
        con = _connect_or_raise(path)
    if replayed:
        log.warning("%s was not closed by the process that last wrote it: its write-ahead log was replayed "
                    "(a record cut short at its end, if any, is lost)", path)
    con.execute("SET TimeZone='UTC'")
    return con


class _WalError(Exception):
    pass


def _attach(path: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"threads": 1})
    try:
        quoted = path.replace("'", "''")
        con.execute(f"SET temp_directory = '{quoted}.tmp'")  # where opening the file directly puts it
        con.execute(f"ATTACH '{quoted}' AS {DATABASE} (ROW_GROUP_SIZE {ROW_GROUP_ROWS})")
        con.execute(f"USE {DATABASE}")
        return con
    except BaseException:
        con.close()
        raise


def _connect_or_raise(path: str) -> duckdb.DuckDBPyConnection:
    try:
        return _attach(path)
    except duckdb.IOException as err:
        text = str(err)
        if "lock" in text.lower():
            match = _PID_RE.search(text)
            raise StoreLockedError(path, int(match.group(1)) if match else None, text) from err
        raise translate_error(path, err) from err
    except duckdb.Error as err:
        if "replaying wal" in str(err).lower() and os.path.exists(path + ".wal"):
            raise _WalError() from err
        raise translate_error(path, err) from err
