"""Nothing lost in the writer: a row DuckDB cannot hold costs only itself (kept in
``rejected_rows`` with its reason and record), a failing file is retried per failure episode,
and every row that is not stored is counted by table and reason.

Real DuckDB files; a real "file too large" failure comes from ``RLIMIT_FSIZE`` in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from fleet_hwmon.reports.fleet_data import build_report_data
from fleet_hwmon.reports.fleet_report import export_report_json, render_fleet_report
from fleet_hwmon.sample import GpuUtilization, MountUsage, ResourceUtilization
from fleet_hwmon.store import close_store, open_store
from hardware_utilization_monitor import HardwareUtilizationMonitor

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TABLE = "resource_utilization"


def sample(worker_id: str, i: int, **fields) -> ResourceUtilization:
    return ResourceUtilization(worker_id=worker_id, timestamp=T0 + timedelta(seconds=i), **fields)


def poisoned(worker_id: str, field: str, value, **fields) -> ResourceUtilization:
    """A record holding a value its column cannot store, set past the record's own checks (the
    writer must survive whatever it is handed)."""
    record = sample(worker_id, 0, **fields)
    object.__setattr__(record, field, value)
    return record


def poisoned_rows() -> dict[str, ResourceUtilization]:
    gpu = GpuUtilization(0, "GPU-1", "A100")
    object.__setattr__(gpu, "name", 123)  # a GPU field of the wrong type
    return {
        "column memory_used_bytes: OverflowError": poisoned("big-int", "memory_used_bytes", 2**63),
        "column mounts.mountpoint: UnicodeEncodeError": poisoned(  # psutil's escape of an undecodable byte
            "bad-mount", "mounts", (MountUsage("/mnt/caf\udce9", 10.0, 1, 2),)),
        f"column gpus.name: {arrow_error(123, 'string')}": poisoned("bad-gpu", "gpus", (gpu,)),
        f"column swap_used_bytes: {arrow_error('12 GB', 'int64')}": poisoned("text-in-int", "swap_used_bytes",
                                                                             "12 GB"),
    }


def arrow_error(value, type_name: str) -> str:
    """The error pyarrow raises for ``value`` in a column of ``type_name`` (it varies by version)."""
    import pyarrow as pa

    try:
        pa.array([value], type=getattr(pa, type_name)())
    except Exception as err:
        return type(err).__name__
    raise AssertionError(f"pyarrow stored {value!r} as {type_name}")


def test_one_unstorable_value_costs_only_its_own_row(db_path):
    bad = poisoned_rows()
    good = [sample(f"w{i % 50}", i, cpu_percent=float(i % 100), memory_used_bytes=i) for i in range(2000)]
    batch = good[:700] + list(bad.values()) + good[700:]
    store = open_store(db_path, flush_interval_s=60, batch_rows=10_000)
    try:
        store.ensure_table(TABLE, ResourceUtilization)
        assert store.append_many(TABLE, batch) == len(batch)
        store.flush()
        status = store.status()
        stored = store.query(f"SELECT count(*), count(DISTINCT worker_id) FROM {TABLE}")
        rejected = store.query("SELECT table_name, reason, record FROM rejected_rows ORDER BY reason")
    finally:
        close_store(store)
    assert stored == [(2000, 50)]
    reasons = {reason: json.loads(record) for _, reason, record in rejected}
    assert {table for table, _, _ in rejected} == {TABLE}
    assert sorted(reasons) == sorted(bad)
    assert {r["worker_id"] for r in reasons.values()} == {"big-int", "bad-mount", "bad-gpu", "text-in-int"}
    big = next(r for r in reasons.values() if r["worker_id"] == "big-int")
    assert big["memory_used_bytes"] == 2**63  # the raw record, with the value that could not be stored
    mount = next(r for r in reasons.values() if r["worker_id"] == "bad-mount")
    assert mount["mounts"][0]["mountpoint"] == "/mnt/caf\udce9"
    assert status["written_rows"] == {TABLE: 2000} and status["written_rows_total"] == 2000
    assert status["rejected_rows"] == {TABLE: {reason: 1 for reason in reasons}}
    assert (status["rejected_rows_total"], status["dropped_rows_total"], status["pending_rows"]) == (4, 0, 0)


def test_full_buffer_and_closed_store_count_drops_by_table_and_reason(tmp_path):
    store = open_store(tmp_path / "drops.duckdb", flush_interval_s=60, batch_rows=1000, max_pending_rows=5)
    store.ensure_table(TABLE, ResourceUtilization)
    assert store.append_many(TABLE, [sample("w", i) for i in range(12)]) == 5
    assert store.append(TABLE, sample("w", 99)) is False
    store.flush()
    status = store.status()
    close_store(store)
    assert store.append(TABLE, sample("w", 100)) is False
    assert status["dropped_rows"] == {TABLE: {"buffer full": 8}}
    assert store.status()["dropped_rows"] == {TABLE: {"buffer full": 8, "store closed": 1}}
    assert store.stats().dropped_rows == 9 and status["written_rows"] == {TABLE: 5}


# A child process whose files may not grow past a limit: DuckDB's commit then fails with
# "Could not write file ...: File too large", a real failure of the file that says nothing of the rows.
FILE_LIMIT_CHILD = """
import json, os, resource, signal, sys
from datetime import datetime, timedelta, timezone
from fleet_hwmon.sample import ResourceUtilization
from fleet_hwmon.store import close_store, open_store
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path, budget, episodes, failures = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
store = open_store(path, flush_interval_s=3600, batch_rows=10**6, retry_budget=budget)
store.ensure_table("resource_utilization", ResourceUtilization)
store.append_many("resource_utilization", [ResourceUtilization(worker_id="before", timestamp=T0)])
store.flush()
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
for episode in range(episodes):
    sizes = [os.path.getsize(p) for p in (path, path + ".wal") if os.path.exists(p)]
    resource.setrlimit(resource.RLIMIT_FSIZE, (max(sizes) + 1024, hard))
    store.append_many("resource_utilization", [
        ResourceUtilization(worker_id=f"episode-{episode}", timestamp=T0 + timedelta(seconds=i), cpu_percent=1.0)
        for i in range(2000)])
    for _ in range(failures):
        store.flush()  # each flush is one more failed attempt of this episode
    during = store.status()
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    store.flush()
    print(json.dumps({"during": during, "after": store.status()}))
close_store(store)
"""


def run_with_file_limit(path: str, budget: int, episodes: int, failures: int) -> list[dict]:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(FILE_LIMIT_CHILD), path, str(budget),
                             str(episodes), str(failures)], capture_output=True, text=True, timeout=120,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.skipif(not hasattr(os, "setrlimit") and sys.platform != "linux", reason="needs RLIMIT_FSIZE")
def test_retry_budget_is_per_failure_episode_and_renewed_by_a_successful_flush(db_path):
    # Two episodes of 3 failed flushes each with a budget of 4: a budget over the process's life
    # (the old behaviour) would be spent in the second episode and lose its rows.
    episodes = run_with_file_limit(db_path, budget=4, episodes=2, failures=3)
    for number, episode in enumerate(episodes):
        assert episode["during"]["failing"] is True
        assert episode["during"]["pending_rows"] == 2000
        assert episode["after"]["failing"] is False
        assert episode["after"]["written_rows_total"] == 1 + 2000 * (number + 1)
    assert episodes[-1]["after"]["failed_flushes"] == 6
    assert episodes[-1]["after"]["rejected_rows_total"] == episodes[-1]["after"]["dropped_rows_total"] == 0
    with duckdb.connect(db_path) as con:
        assert con.execute(f"SELECT worker_id, count(*) FROM {TABLE} GROUP BY 1 ORDER BY 1").fetchall() == [
            ("before", 1), ("episode-0", 2000), ("episode-1", 2000)]


def test_rows_of_a_spent_episode_are_kept_beside_the_database_or_counted(db_path):
    (episode,) = run_with_file_limit(db_path, budget=2, episodes=1, failures=3)
    during = episode["during"]
    reason = "write failed: TransactionException"
    # The database cannot take them (nor rejected_rows): the JSON-lines file takes what fits
    # under the same size limit, the rest is counted as dropped. None is uncounted.
    kept = during["rejected_rows"].get(TABLE, {}).get(reason, 0)
    lost = during["dropped_rows"].get(TABLE, {}).get("unrecordable", 0)
    assert kept > 0 and kept + lost == 2000
    assert during["pending_rows"] == 0 and during["rejected_rows_file"] == db_path + ".rejected.jsonl"
    lines = [json.loads(line) for line in Path(db_path + ".rejected.jsonl").read_text().splitlines()]
    assert len(lines) == kept
    assert {(line["table_name"], line["reason"]) for line in lines} == {(TABLE, reason)}
    assert json.loads(lines[0]["record"])["worker_id"] == "episode-0"
    assert episode["after"]["written_rows_total"] == 1  # nothing was left to retry


def test_monitor_status_export_and_reports_show_rejected_rows(tmp_path):
    path = str(tmp_path / "monitor.duckdb")
    monitor = HardwareUtilizationMonitor("w1", path, push_only=True).start_monitoring()
    try:
        monitor.record_sample(sample("w1", 1, cpu_percent=10.0))
        monitor.record_sample(poisoned("w1", "memory_used_bytes", 2**64 - 1))
        monitor._store.flush()
        status = monitor.status()
        exported = json.loads(monitor.export_metrics_to_json(str(tmp_path / "m.json")).read_text())
        html = monitor.generate_html_report(str(tmp_path / "m.html")).read_text()
        data = build_report_data(monitor._store)
        fleet_html = render_fleet_report(data, str(tmp_path / "fleet.html")).read_text()
        fleet_json = json.loads(export_report_json(data, str(tmp_path / "fleet.json")).read_text())
    finally:
        monitor.stop_monitoring()
    reason = "column memory_used_bytes: OverflowError"
    assert status["db_rejected_rows"] == 1 and status["store"]["rejected_rows"] == {TABLE: {reason: 1}}
    assert exported["status"]["store"]["rejected_rows"] == {TABLE: {reason: 1}}
    assert "1 rejected" in html and reason in html
    assert fleet_json["storage"]["rejected_in_file"][0]["rows"] == 1
    assert fleet_json["storage"]["status"]["rejected_rows_total"] == 1
    assert 'id="storage"' in fleet_html and reason in fleet_html


def test_bisection_finds_each_bad_row_and_stops_on_a_failure_of_the_file():
    from fleet_hwmon.store.rejects import isolate

    done: list[int] = []

    def attempt(rows):
        if 13 in rows or 77 in rows:
            raise ValueError("row")
        done.extend(rows)

    bad, remaining, err = isolate(list(range(100)), attempt)
    assert [r for r, _ in bad] == [13, 77] and remaining == [] and err is None
    assert sorted(done) == [r for r in range(100) if r not in (13, 77)]

    def disk_full_after_50(rows):
        if max(rows) >= 50:
            raise OSError(28, "No space left on device")

    bad, remaining, err = isolate(list(range(100)), disk_full_after_50)
    assert bad == [] and remaining == list(range(100)) and isinstance(err, OSError)
