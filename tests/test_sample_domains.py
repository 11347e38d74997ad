"""Validation at one boundary: every value entering a sample is checked against its field's
domain (read off the field's name and type), out-of-domain values become unknown and are
counted per field, a pushed dict with unknown keys or wrong types is refused with one clear
error, and a sample of an unregistered worker is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import psutil
import pytest

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
from fleet_hwmon.coordinator.coordinator import Coordinator
from fleet_hwmon.domains import checks_for, repair
from fleet_hwmon.sample import GpuUtilization, MountUsage, ResourceUtilization, utc_now
from fleet_hwmon.sampling.host import DiskSource
from hardware_utilization_monitor import HardwareUtilizationMonitor

GIB = 1024**3
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def sample(**fields) -> ResourceUtilization:
    return ResourceUtilization(**{"worker_id": "w", "timestamp": T0, **fields})


def test_out_of_domain_numbers_become_unknown_and_are_named():
    s = sample(cpu_percent=101.0, memory_percent=-0.5, disk_usage_percent=100.0, swap_percent=0.0,
               memory_used_bytes=2**63, memory_total_bytes=16 * GIB, memory_available_bytes=-1,
               net_recv_bytes_per_s=-3.0, net_sent_bytes_per_s=1e12, load_average_1m=-1.0,
               cpu_temperature_celsius=-300.0, per_cpu_percent=(12.0, 250.0, None),
               mounts=(MountUsage("/data", 40.0, free_bytes=2 * GIB, total_bytes=GIB),))
    assert (s.cpu_percent, s.memory_percent, s.disk_usage_percent, s.swap_percent) == (None, None, 100.0, 0.0)
    assert (s.memory_used_bytes, s.memory_total_bytes, s.memory_available_bytes) == (None, 16 * GIB, None)
    assert (s.net_recv_bytes_per_s, s.net_sent_bytes_per_s, s.load_average_1m) == (None, 1e12, None)
    assert s.cpu_temperature_celsius is None and s.per_cpu_percent == (12.0, None, None)
    assert s.mounts[0].free_bytes is None and s.mounts[0].total_bytes == GIB  # a part larger than its whole
    assert sorted(s.invalid_fields) == sorted([
        "cpu_percent", "memory_percent", "load_average_1m", "cpu_temperature_celsius", "memory_used_bytes",
        "memory_available_bytes", "net_recv_bytes_per_s", "per_cpu_percent", "mounts.free_bytes"])


def test_a_clock_offset_may_be_negative_but_must_be_finite():
    behind = sample(clock_offset_s=-42.5, monotonic_s=1234.0)
    assert (behind.clock_offset_s, behind.monotonic_s, behind.invalid_fields) == (-42.5, 1234.0, ())
    assert sample(monotonic_s=-1.0).invalid_fields == ("monotonic_s",)


def test_used_larger_than_total_is_unknown_on_the_host_and_on_a_gpu():
    s = sample(memory_used_bytes=17 * GIB, memory_total_bytes=16 * GIB,
               gpus=(GpuUtilization(0, "GPU-0", "A100", 50.0, memory_used_bytes=81 * GIB,
                                    memory_total_bytes=80 * GIB),))
    assert s.memory_used_bytes is None and s.gpus[0].memory_used_bytes is None
    assert s.gpus[0].memory_total_bytes == 80 * GIB and s.gpus[0].utilization_percent == 50.0
    assert s.invalid_fields == ("memory_used_bytes", "gpus.memory_used_bytes")


def test_nvml_not_available_sentinels_are_unknown():
    # What pynvml hands back for "not available": all bits set, and 0xFFFFFFFF mW read as watts.
    gpu = GpuUtilization(0, "GPU-0", "T4", utilization_percent=4294967295.0, memory_used_bytes=2**64 - 1,
                         memory_total_bytes=2**64 - 1, temperature_celsius=4294967295.0,
                         power_watts=4294967.295, fan_percent=255.0, sm_clock_mhz=4294967295.0,
                         memory_clock_mhz=5001.0)
    s = sample(gpus=(gpu,))
    g = s.gpus[0]
    assert (g.utilization_percent, g.memory_used_bytes, g.memory_total_bytes, g.temperature_celsius,
            g.power_watts, g.fan_percent, g.sm_clock_mhz) == (None,) * 7
    assert g.memory_clock_mhz == 5001.0
    assert set(s.invalid_fields) == {f"gpus.{n}" for n in (
        "utilization_percent", "memory_used_bytes", "memory_total_bytes", "temperature_celsius", "power_watts",
        "fan_percent", "sm_clock_mhz")}


def test_timestamps_outside_the_sane_window_take_the_receive_time_and_are_flagged():
    before = utc_now()
    ancient = sample(timestamp=datetime(1, 1, 1, tzinfo=timezone.utc))
    future = sample(timestamp=before + timedelta(days=2))
    y1999 = sample(timestamp=datetime(1999, 12, 31, 23, 59, tzinfo=timezone.utc))
    after = utc_now()
    for s in (ancient, future, y1999):
        assert before <= s.timestamp <= after and s.invalid_fields == ("timestamp",)
    soon = before + timedelta(hours=1)  # a clock a little ahead is kept
    assert sample(timestamp=soon).timestamp == soon and sample(timestamp=soon).invalid_fields == ()
    naive = sample(timestamp=datetime(2026, 3, 1, 12))
    assert naive.timestamp == datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def test_undecodable_text_becomes_replacement_characters():
    s = sample(mounts=(MountUsage("/mnt/caf\udce9", 10.0, 1, 2),), task_ids=("t\udcff",),
               gpus=(GpuUtilization(0, "GPU-0", "T4 \udc80"),))
    assert s.mounts[0].mountpoint == "/mnt/caf\ufffd" and s.task_ids == ("t\ufffd",)
    assert s.gpus[0].name == "T4 \ufffd"
    assert s.invalid_fields == ("task_ids", "gpus.name", "mounts.mountpoint")
    assert json.dumps(s.to_dict(), ensure_ascii=False).encode("utf-8")  # now valid UTF-8


def test_wrong_types_in_text_or_time_fields_are_a_clear_error():
    with pytest.raises(TypeError, match=r"GpuUtilization.name must be text, not int 7"):
        sample(gpus=(GpuUtilization(0, "GPU-0", 7),))
    with pytest.raises(TypeError, match=r"ResourceUtilization.timestamp must be a datetime, not str"):
        ResourceUtilization(worker_id="w", timestamp="yesterday")


def test_rules_follow_the_field_definitions_so_new_fields_are_covered():
    @dataclasses.dataclass(frozen=True)
    class FutureGpu:  # fields a later version may add, checked with no new validation code
        name: str
        health_reason: str | None = None
        memory_reserved_bytes: int | None = None
        memory_total_bytes: int | None = None
        encoder_percent: float | None = None
        hotspot_celsius: float | None = None
        _SENTINELS = frozenset({2**32 - 1})

    checks = checks_for(FutureGpu)
    assert [n[:3] for n in checks.numbers] == [("memory_reserved_bytes", 0.0, float("inf")),
                                               ("memory_total_bytes", 0.0, float("inf")),
                                               ("encoder_percent", 0.0, 100.0),
                                               ("hotspot_celsius", -273.15, 500.0)]
    assert checks.texts == ("name", "health_reason")
    record = FutureGpu("g", "ok \udce9", memory_reserved_bytes=9, memory_total_bytes=8, encoder_percent=120.0,
                       hotspot_celsius=float(2**32 - 1))
    assert repair(record) == ["memory_reserved_bytes", "encoder_percent", "hotspot_celsius", "health_reason"]
    assert (record.memory_reserved_bytes, record.encoder_percent, record.hotspot_celsius) == (None, None, None)
    assert record.health_reason == "ok \ufffd"


def test_pushed_dict_with_unknown_keys_names_each_and_the_closest_field():
    with pytest.raises(ValueError) as caught:
        ResourceUtilization.from_dict({"worker_id": "w1", "timestamp": T0.isoformat(), "cpu": 97.0, "mem": 40.0,
                                       "gpus": [{"index": 0, "uuid": "GPU-0", "name": "T4", "util_percent": 3}],
                                       "zzz_qqq": 1})
    message = str(caught.value)
    assert "unknown field 'cpu' (did you mean 'cpu_percent'?)" in message
    assert "unknown field 'mem' (did you mean 'memory_percent'?)" in message
    assert "unknown field 'gpus[0].util_percent' (did you mean 'gpus[0].utilization_percent'?)" in message
    assert "unknown field 'zzz_qqq' (no known field is close" in message
    assert message.startswith("sample of worker 'w1' refused: ")


@pytest.mark.parametrize("fields, expected", [
    ({"cpu_percent": "97"}, "cpu_percent must be a number, not str '97'"),
    ({"cpu_percent": True}, "cpu_percent must be a number, not bool True"),
    ({"gpus": {"index": 0}}, "gpus must be a list, not dict"),
    ({"gpus": [{"index": 0, "name": "T4"}]}, "gpus[0].uuid is required"),
    ({"gpus": [{"index": 0, "uuid": "GPU-0", "name": 4}]}, "gpus[0].name must be text, not int 4"),
    ({"per_cpu_percent": [1.0, "x"]}, "per_cpu_percent must hold numbers or null, not 'x'"),
    ({"task_ids": ["t", 3]}, "task_ids must hold text, not 3"),
    ({"timestamp": [1]}, "timestamp must be a datetime, ISO 8601 text or epoch seconds"),
])
def test_pushed_values_of_the_wrong_type_are_refused_clearly(fields, expected):
    with pytest.raises(ValueError) as caught:
        ResourceUtilization.from_dict({"worker_id": "w", "timestamp": T0.isoformat(), **fields})
    assert expected in str(caught.value)


def test_values_of_subclasses_take_the_full_check():
    class Share(float):  # a float subclass (as numpy's float64 is) is a number
        pass

    class Flag(int):
        pass

    s = ResourceUtilization.from_dict({"worker_id": "w", "timestamp": T0.isoformat(), "cpu_percent": Share(12.5),
                                       "memory_used_bytes": Flag(7), "task_ids": ("t",)})
    assert (s.cpu_percent, type(s.cpu_percent), s.memory_used_bytes, s.task_ids) == (12.5, float, 7, ("t",))
    with pytest.raises(ValueError, match="per_cpu_percent must hold numbers or null, not True"):
        ResourceUtilization.from_dict({"worker_id": "w", "timestamp": T0.isoformat(), "per_cpu_percent": [1.0, True]})


def test_pushed_sample_round_trips_with_its_flags():
    s = sample(cpu_percent=250.0, memory_percent=40.0)
    again = ResourceUtilization.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s and again.invalid_fields == ("cpu_percent",)


def test_monitor_counts_invalid_values_and_stores_the_sample(tmp_path):
    path = str(tmp_path / "m.duckdb")
    with HardwareUtilizationMonitor("w", path, push_only=True) as monitor:
        monitor.record_sample(sample(cpu_percent=300.0, memory_percent=20.0))
        monitor.record_sample(sample(cpu_percent=-1.0, timestamp=datetime(1, 1, 1, tzinfo=timezone.utc)))
        monitor.record_sample(sample(cpu_percent=50.0))
        monitor._store.flush()
        status = monitor.status()
        html = monitor.generate_html_report(str(tmp_path / "m.html")).read_text()
    assert status["invalid_values"] == {"cpu_percent": 2, "timestamp": 1}
    assert status["db_rejected_rows"] == 0 and status["db_written_rows"]["resource_utilization"] == 3
    assert "50.0" in html
    with duckdb.connect(path) as con:
        rows = con.execute("SELECT cpu_percent, invalid_fields, year(timestamp) FROM resource_utilization "
                           "ORDER BY cpu_percent NULLS FIRST, len(invalid_fields)").fetchall()
    assert rows[0][:2] == (None, ["cpu_percent"]) and rows[1][:2] == (None, ["cpu_percent", "timestamp"])
    assert rows[2][:2] == (50.0, []) and {r[2] for r in rows} == {utc_now().year}


class _OneMoreMount:
    """Real psutil, with one more partition whose name holds a Latin-1 byte (as a bind mount of
    ``caf\\xe9`` is listed): psutil hands it back surrogate-escaped."""

    def __init__(self, mountpoint: str) -> None:
        self._mountpoint = mountpoint

    def __getattr__(self, name):
        return getattr(psutil, name)

    def disk_partitions(self, all=False):
        partitions = psutil.disk_partitions(all)
        extra = partitions[0]._replace(device="/dev/fake", mountpoint=self._mountpoint, fstype="ext4")
        return [*partitions, extra]


def test_a_mount_with_an_undecodable_name_is_stored_with_every_sample(tmp_path):
    folder = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(folder)
    mountpoint = os.fsdecode(folder)
    assert mountpoint.endswith("caf\udce9")
    path = str(tmp_path / "mounts.duckdb")
    source = DiskSource(_OneMoreMount(mountpoint), mounts=True)
    monitor = HardwareUtilizationMonitor("w", path, interval_seconds=60, sources=[source])
    with monitor:
        for _ in range(12):
            monitor.sample_now()
        monitor._store.flush()
        status = monitor.status()
    assert status["invalid_values"] == {"mounts.mountpoint": 13}  # the start's sample and these 12
    with duckdb.connect(path) as con:
        stored = con.execute("SELECT count(*) FROM resource_utilization WHERE list_contains("
                             "list_transform(mounts, lambda m: m.mountpoint), ?)",
                             [mountpoint.replace("\udce9", "\ufffd")]).fetchone()[0]
    assert stored == status["samples"] == 13 and status["db_rejected_rows"] == 0


def test_integration_refuses_unregistered_workers_unless_told_to_accept_them(tmp_path):
    coordinator = Coordinator()
    coordinator.register_worker("w1", {"hardware": ["cpu"], "memory": {"total_gb": 16}})
    with CoordinatorHardwareMonitoringIntegration(coordinator, db_path=str(tmp_path / "a.duckdb"),
                                                  detect_capabilities=False) as integration:
        integration.update_worker_utilization("w1", {"cpu_percent": 12.0})
        with pytest.raises(ValueError, match="sample of unregistered worker 'w9' refused"):
            integration.update_worker_utilization("w9", {"cpu_percent": 12.0})
        with pytest.raises(ValueError, match=r"unknown field 'cpu' \(did you mean 'cpu_percent'\?\)"):
            integration.update_worker_utilization("w1", {"cpu": 97.0})
        assert sorted(integration.worker_monitors) == ["w1"]
        integration.update_worker_utilization("w1", {"cpu_percent": 12.0, "timestamp": "0001-01-01T00:00:00+00:00"})
        report = integration.export_json(str(tmp_path / "r.json"))
        integration.generate_html_report(str(tmp_path / "r.html"))
    assert json.loads(Path(report).read_text())["summary"]["samples"] == 2
    with CoordinatorHardwareMonitoringIntegration(Coordinator(), db_path=str(tmp_path / "b.duckdb"),
                                                  detect_capabilities=False,
                                                  accept_unknown_workers=True) as integration:
        integration.update_worker_utilization("w9", {"cpu_percent": 12.0})
        assert integration.get_worker_utilization("w9").cpu_percent == 12.0
