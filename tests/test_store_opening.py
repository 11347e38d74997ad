"""Opening a file a crash or a user left behind: a write-ahead log that cannot be replayed is
moved aside and sampling goes on, a damaged main file is one clear error, a 0-byte file is a
new database, and no start-up path loops on an error.

The logs come from real child processes killed with SIGKILL after writing real rows.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from fleet_hwmon.sample import ResourceUtilization
from fleet_hwmon.store import StoreError, close_store, open_store
from fleet_hwmon.store.opening import connect

ROOT = Path(__file__).resolve().parents[1]

# Writes `checkpointed` rows and a checkpoint, then `logged` rows that only reach the
# write-ahead log, then dies without closing anything.
CRASHING_WRITER = """
import os, sys
from datetime import datetime, timedelta, timezone
from fleet_hwmon.sample import ResourceUtilization
from fleet_hwmon.store import open_store
path, checkpointed, logged = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
store = open_store(path, flush_interval_s=3600)
store.ensure_table("resource_utilization", ResourceUtilization)
store.write("SET checkpoint_threshold='1GB'")
rows = [ResourceUtilization(worker_id="w", timestamp=T0 + timedelta(seconds=i), cpu_percent=1.0)
        for i in range(checkpointed + logged)]
store.append_many("resource_utilization", rows[:checkpointed])
store.write("CHECKPOINT")
for start in range(checkpointed, checkpointed + logged, 100):  # several log entries
    store.append_many("resource_utilization", rows[start:start + 100])
    store.flush()
os.kill(os.getpid(), 9)
"""


def crash_after_writing(path: str, checkpointed: int, logged: int) -> None:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(CRASHING_WRITER), path, str(checkpointed),
                             str(logged)], capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == -9, result.stderr
    assert not logged or os.path.getsize(path + ".wal") > 0


def run_monitor_cli(db_path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "hardware_utilization_monitor.py"), "--duration", "0.3",
                           "--interval", "0.1", "--quiet", "--db-path", db_path], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def rows_in(path: str) -> int:
    with duckdb.connect(path) as con:
        return con.execute("SELECT count(*) FROM resource_utilization").fetchone()[0]


def garble_beyond_replay(db_path: str, log: bytes, scratch: Path) -> bytes:
    """The log with a run of 64 zeroed bytes that DuckDB itself refuses to replay.

    A run that lands on an entry's header reads as the end of the log (a truncated log, which
    DuckDB replays up to there), one inside an entry's payload fails its checksum; which of the
    two the middle of the log hits depends on the entries' sizes, so each candidate offset is
    tried on a copy first.
    """
    scratch.mkdir()
    for offset in range(len(log) // 2, len(log) - 64, 997):
        garbled = log[:offset] + bytes(64) + log[offset + 64:]
        copy = scratch / f"{offset}.duckdb"
        copy.write_bytes(Path(db_path).read_bytes())
        Path(str(copy) + ".wal").write_bytes(garbled)
        try:
            duckdb.connect(str(copy)).close()
        except duckdb.Error:
            return garbled
    raise AssertionError("no zeroed run made the log unreplayable")


def test_unreplayable_log_is_moved_aside_with_a_warning_and_the_store_opens(db_path, caplog, tmp_path):
    crash_after_writing(db_path, checkpointed=300, logged=1000)
    wal = Path(db_path + ".wal")
    garbled = garble_beyond_replay(db_path, wal.read_bytes(), tmp_path / "probe")
    wal.write_bytes(garbled)
    with caplog.at_level(logging.WARNING, logger="fleet_hwmon.store"):
        store = open_store(db_path)
    try:
        store.ensure_table("resource_utilization", ResourceUtilization)
        assert store.query("SELECT count(*) FROM resource_utilization") == [(300,)]  # the checkpointed rows
    finally:
        close_store(store)
    (aside,) = Path(db_path).parent.glob(Path(db_path).name + ".wal.corrupt-*")
    assert aside.read_bytes() == garbled
    assert not wal.exists()
    (warning,) = [r.getMessage() for r in caplog.records if "could not be replayed" in r.getMessage()]
    assert "rows written after the last checkpoint are lost" in warning and str(aside) in warning
    # The monitor starts on that file again and again: no crash loop, sampling goes on.
    for _ in range(2):
        result = run_monitor_cli(db_path)
        assert result.returncode == 0, result.stderr
    assert rows_in(db_path) > 300


def test_truncated_log_is_replayed_up_to_its_last_complete_record_with_a_warning(db_path, caplog):
    crash_after_writing(db_path, checkpointed=100, logged=1000)
    wal = Path(db_path + ".wal")
    with open(wal, "r+b") as handle:
        handle.truncate(wal.stat().st_size - 100)  # the last record cut short
    with caplog.at_level(logging.WARNING, logger="fleet_hwmon.store"):
        connect(db_path).close()
    assert 100 < rows_in(db_path) < 1100
    assert any("was not closed by the process that last wrote it" in r.getMessage() for r in caplog.records)


def test_damaged_main_file_is_one_clear_error_naming_the_file_and_what_to_do(db_path):
    crash_after_writing(db_path, checkpointed=500, logged=0)
    connect(db_path).close()  # replay, checkpoint: a closed, whole file
    with open(db_path, "r+b") as handle:
        handle.seek(64)
        handle.write(b"\x55" * 256)  # a damaged header block
    with pytest.raises(StoreError) as caught:
        open_store(db_path)
    message = str(caught.value)
    assert f"metrics database {db_path!r} is damaged" in message and f"mv {db_path} {db_path}.damaged" in message
    result = run_monitor_cli(db_path)
    assert result.returncode == 2 and "is damaged" in result.stderr and "Traceback" not in result.stderr


def test_an_empty_file_is_a_new_database(db_path):
    Path(db_path).write_bytes(b"")
    result = run_monitor_cli(db_path)
    assert result.returncode == 0, result.stderr
    assert rows_in(db_path) >= 1


@pytest.mark.skipif(not os.path.isfile("/proc/self/status"), reason="needs Linux's /proc")
def test_an_empty_file_that_cannot_be_replaced_is_a_store_error_naming_it():
    # A file of /proc reads as empty (0 bytes) and cannot be removed: not a new database.
    path = "/proc/self/status"
    with pytest.raises(StoreError, match=r"cannot open metrics database '/proc/self/status': it is empty and "
                                         r"cannot be replaced by a database"):
        connect(path)
    assert Path(path).exists()
