"""Records to Arrow columns: unknown fields, empty nested lists, and what DuckDB then holds."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from fleet_hwmon.sample import RESOURCES, GpuUtilization, ResourceUtilization
from fleet_hwmon.store import close_store, open_store
from fleet_hwmon.store.schema import ColumnConversionError, record_columns, to_arrow

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def _sample(second: int, **fields) -> ResourceUtilization:
    return ResourceUtilization(worker_id="w1", timestamp=T0.replace(second=second), **fields)


def test_a_field_unknown_in_every_row_is_a_null_column_of_its_type():
    table = to_arrow([_sample(0, cpu_percent=None), _sample(1, cpu_percent=None)], ResourceUtilization)
    column = table.column("cpu_percent")
    assert column.type == pa.float64()
    assert column.null_count == 2
    assert table.column("task_ids").type == pa.list_(pa.string())
    assert table.column("task_ids").to_pylist() == [[], []]


def test_batches_without_nested_rows_and_with_them_convert_to_the_same_types():
    empty = to_arrow([_sample(0, cpu_percent=12.5)], ResourceUtilization)
    again = to_arrow([_sample(1, cpu_percent=13.0)], ResourceUtilization)
    gpu = GpuUtilization(index=0, uuid="GPU-1", name="H100", utilization_percent=40.0, memory_used_bytes=7)
    full = to_arrow([_sample(2, gpus=(gpu,))], ResourceUtilization)
    assert empty.schema == again.schema == full.schema
    assert [c.name for c in record_columns(ResourceUtilization)] == empty.column_names
    assert empty.column("gpus").to_pylist() == [[]]
    assert again.column("cpu_percent").to_pylist() == [13.0]
    assert full.column("gpus").to_pylist()[0][0]["memory_used_bytes"] == 7


def test_a_nested_list_that_is_not_a_list_is_still_refused_by_name():
    bad = _sample(0)
    object.__setattr__(bad, "gpus", None)
    with pytest.raises(ColumnConversionError, match="column gpus"):
        to_arrow([bad, bad], ResourceUtilization)


def test_unknown_and_known_values_round_trip_through_the_database(tmp_path):
    store = open_store(str(tmp_path / "m.duckdb"))
    try:
        store.ensure_table("samples", ResourceUtilization)
        for second in range(3):
            store.append("samples", _sample(second, memory_percent=None, disk_usage_percent=50.0 + second))
        gpu = GpuUtilization(index=0, uuid="GPU-1", name="H100", power_watts=300.0)
        store.append("samples", _sample(3, memory_percent=20.0, gpus=(gpu,)))
        rows = store.query("SELECT memory_percent, disk_usage_percent, len(gpus), gpus[1].power_watts "
                           "FROM samples ORDER BY timestamp")
    finally:
        close_store(store)
    assert rows == [(None, 50.0, 0, None), (None, 51.0, 0, None), (None, 52.0, 0, None), (20.0, None, 1, 300.0)]


def test_resource_percent_reads_the_one_field_of_each_resource():
    gpus = (GpuUtilization(index=0, uuid="a", name="A", utilization_percent=30.0, memory_used_bytes=1,
                           memory_total_bytes=4),
            GpuUtilization(index=1, uuid="b", name="B", utilization_percent=70.0, memory_used_bytes=1,
                           memory_total_bytes=2))
    sample = _sample(0, cpu_percent=10.0, memory_percent=20.0, disk_usage_percent=40.0, gpus=gpus)
    assert {r: sample.resource_percent(r) for r in RESOURCES} == {
        "cpu": 10.0, "memory": 20.0, "gpu": 70.0, "gpu_memory": 50.0, "disk": 40.0}
    assert _sample(1).resource_percent("gpu") is None
    with pytest.raises(KeyError):
        sample.resource_percent("network")
