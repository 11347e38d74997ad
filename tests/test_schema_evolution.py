"""Runs accumulate in one file across versions: a file written by an earlier schema (kept in
``tests/data``) opens, takes samples whose nested GPU / disk / NIC / mount records gained a
field, and its report renders with the old and the new rows together."""

from __future__ import annotations

import dataclasses
import shutil
import typing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from fleet_hwmon.reports.fleet_data import build_report_data
from fleet_hwmon.reports.fleet_report import export_report_json, render_fleet_report
from fleet_hwmon.sample import GpuUtilization, MountUsage, ResourceUtilization, _Record, _classify
from fleet_hwmon.store import close_store, open_store
from fleet_hwmon.store.schema import nested_migration_sql

KEPT = Path(__file__).parent / "data" / "metrics-schema-v1.duckdb"
TABLE = "resource_utilization"
GIB = 1024**3


def grown(record_cls: type, name: str, **added: type) -> type:
    """``record_cls`` with fields added at the end, as a later version may define it."""
    fields = [(f.name, typing.get_type_hints(record_cls)[f.name], f) for f in dataclasses.fields(record_cls)]
    fields += [(field, hint, dataclasses.field(default=None)) for field, hint in added.items()]
    cls = dataclasses.make_dataclass(name, fields, bases=(_Record,), frozen=True, slots=True)
    _classify(cls)
    return cls


NewGpu = grown(GpuUtilization, "NewGpu", encoder_percent=float | None, memory_reserved_bytes=int | None)
NewMount = grown(MountUsage, "NewMount", inodes_free=int | None)
NewSample = grown(ResourceUtilization, "NewSample")
NewSample.__annotations__ = dict(typing.get_type_hints(NewSample))
for _name, _cls in (("gpus", NewGpu), ("mounts", NewMount)):
    NewSample.__annotations__[_name] = tuple[_cls, ...]


@pytest.fixture
def old_file(tmp_path) -> str:
    path = tmp_path / "accumulated.duckdb"
    shutil.copy(KEPT, path)
    return str(path)


def test_nested_fields_a_record_gained_are_added_to_an_older_file(old_file):
    with duckdb.connect(old_file) as con:
        schema = con.sql(f"SELECT * FROM {TABLE} LIMIT 0").arrow().schema
    today = nested_migration_sql(TABLE, ResourceUtilization, schema)  # the kept file predates GPU health
    assert f'ALTER TABLE "{TABLE}" ADD COLUMN "gpus"."element"."health" VARCHAR' in today
    assert all(s.startswith(f'ALTER TABLE "{TABLE}" ADD COLUMN "gpus"."element".') for s in today)
    assert nested_migration_sql(TABLE, NewSample, schema)[-3:] == [
        f'ALTER TABLE "{TABLE}" ADD COLUMN "gpus"."element"."encoder_percent" DOUBLE',
        f'ALTER TABLE "{TABLE}" ADD COLUMN "gpus"."element"."memory_reserved_bytes" BIGINT',
        f'ALTER TABLE "{TABLE}" ADD COLUMN "mounts"."element"."inodes_free" BIGINT']


def test_kept_file_opens_takes_samples_with_a_new_nested_field_and_renders(old_file, tmp_path):
    t0 = datetime.now(timezone.utc) - timedelta(minutes=1)
    new = NewSample(worker_id="new-worker", timestamp=t0, cpu_percent=70.0,
                    gpus=(NewGpu(0, "GPU-new", "NVIDIA L4", 80.0, 3 * GIB, 24 * GIB, encoder_percent=12.5,
                                 memory_reserved_bytes=GIB),),
                    mounts=(NewMount("/", 10.0, 9 * GIB, 10 * GIB, inodes_free=12345),))
    store = open_store(old_file, flush_interval_s=0.1)
    try:
        store.ensure_table(TABLE, NewSample)
        store.append(TABLE, new)
        store.flush()
        status = store.status()
        data = build_report_data(store)
        html = render_fleet_report(data, str(tmp_path / "report.html")).read_text()
        export_report_json(data, str(tmp_path / "report.json"))
    finally:
        close_store(store)
    assert status["written_rows"] == {TABLE: 1} and status["rejected_rows_total"] == 0
    assert {w["worker_id"] for w in data["workers"]} >= {"old-worker", "new-worker"}
    assert data["summary"]["samples"] == 21 and "new-worker" in html and "old-worker" in html
    with duckdb.connect(old_file) as con:
        rows = con.execute(f"SELECT worker_id, gpus[1].encoder_percent, gpus[1].memory_reserved_bytes, "
                           f"mounts[1].inodes_free FROM {TABLE} ORDER BY timestamp DESC LIMIT 2").fetchall()
    assert rows == [("new-worker", 12.5, GIB, 12345), ("old-worker", None, None, None)]


def test_todays_records_still_append_to_a_file_whose_structs_grew(old_file):
    store = open_store(old_file, flush_interval_s=0.1)
    try:
        store.ensure_table(TABLE, NewSample)  # a newer version wrote here first
        store.ensure_table(TABLE, ResourceUtilization)
        store.append(TABLE, ResourceUtilization(worker_id="today", timestamp=datetime.now(timezone.utc),
                                                gpus=(GpuUtilization(0, "GPU-t", "T4", 5.0),)))
        store.flush()
        assert store.status()["rejected_rows_total"] == 0
        assert store.query(f"SELECT gpus[1].utilization_percent, gpus[1].encoder_percent FROM {TABLE} "
                           f"WHERE worker_id = 'today'") == [(5.0, None)]
    finally:
        close_store(store)
